"""`mnist-digits bench`: measure and record the figures the docs quote."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_digits.commands import options
from mnist_digits.defaults import BENCH_SECTIONS, DEFAULT_RESULTS_DIR


def add_parser(sub) -> None:
    p = options.command(
        sub, "bench", "measure and record the figures the docs quote",
        "Measures training speed and accuracy against reference recipes, ablations, the best "
        "presets and their ensembles, the best feedforward net, calibration, reading "
        "user-style images and numbers, rejecting non-digits, inference speed, the server "
        "under load, the backends and the cluster. Writes bench/results/<date>-<host>.json "
        "and .md. All of it takes about three and three-quarter hours on 2 cores.",
        ["bench --only realworld,numbers,rejection", "bench --quick"])
    p.add_argument("--model", help="for the reading, inference and load sections: "
                                   + options.MODEL_HELP)
    p.add_argument("--only", metavar="SECTION[,SECTION]",
                   help="run only these sections: " + ", ".join(BENCH_SECTIONS))
    p.add_argument("--quick", action="store_true", help="a tiny run in seconds (smoke test)")
    p.add_argument("--out", type=Path, default=Path("bench") / "results", metavar="DIR",
                   help="where the result files go (default: bench/results)")
    p.add_argument("--results-dir", type=Path, default=Path(DEFAULT_RESULTS_DIR), metavar="DIR",
                   help="the training runs go to DIR/bench/<stamp>/ (default: results)")
    p.set_defaults(run=run, prepare=prepare)


def prepare(args: argparse.Namespace, backend_name: str) -> None:
    options.check_model_name(args.model)


def run(args: argparse.Namespace) -> int:
    from mnist_digits.bench import runner

    # A bad --model fails now, not after an hour of training.
    model = options.load_model(args.model) if args.model else None
    with options.progress_bar("bench") as progress:
        result, path = runner.run_bench(
            model_path=args.model, model=model, only=args.only, quick=args.quick,
            out_dir=args.out, results_dir=args.results_dir,
            progress=lambda done, total, name: progress(done, total, f"bench: {name}"))
    print(runner.to_markdown(result))
    print(path)
    return 0
