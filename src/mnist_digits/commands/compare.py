"""`mnist-digits compare`: train several models over seeds and tabulate them."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_digits.commands import jobs, options
from mnist_digits.errors import RunError


def add_parser(sub) -> None:
    p = options.command(
        sub, "compare", "train several models over seeds and tabulate them",
        "Trains each preset with seeds 0..N-1 as ordinary runs, then writes a comparison "
        "(Markdown, CSV and a chart) of accuracy and training time, mean ± std over seeds. "
        "--runs tabulates finished runs instead.",
        ["compare --models cnn_fast,mlp_fast --seeds 3", "compare --models all",
         "compare --runs results/2026*-cnn_fast-s*"])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--models", help="comma-separated presets, or 'all'")
    src.add_argument("--runs", type=Path, nargs="+", metavar="RUN_DIR",
                     help="tabulate existing runs instead of training")
    p.add_argument("--seeds", type=options.positive_int, default=3, metavar="N",
                   help="seeds 0..N-1 (default 3)")
    options.add_training_flags(p, exclude=("model", "seed"))
    options.add_cluster_flags(p)
    p.set_defaults(run=run, prepare=jobs.prepare)


def run(args: argparse.Namespace) -> int:
    from mnist_digits import compare, runs

    failed = 0
    if args.runs:
        run_dirs = args.runs
    else:
        run_dirs, failed = jobs.train_presets(args, "compare")
        if not run_dirs:
            raise RunError("every job failed (see above); nothing to compare")
    out_dir = runs.new_run_dir(args.results_dir, "compare")
    rows = compare.write_comparison(run_dirs, out_dir)
    print(compare.to_markdown(rows), end="")
    print(out_dir)
    return 1 if failed else 0
