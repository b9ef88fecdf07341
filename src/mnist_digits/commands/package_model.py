"""`mnist-digits package-model`: put a finished, calibrated run into the package as the default
model, with its model card."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_digits.commands import options


def add_parser(sub) -> None:
    p = options.command(
        sub, "package-model", "put a finished, calibrated run into the package as the default "
                              "model, with its model card",
        "Copies a finished, calibrated run's model into the package as the model predict and "
        "serve use by default, with a model card of its figures.",
        ["package-model results/latest --bench bench/results/2026-11-27-host.json"])
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the finished run")
    options.add_threshold(p, "the operating point the card states (default %(default)s)")
    p.add_argument("--bench", type=Path, metavar="FILE",
                   help="a bench result JSON measured with this model, for the card's figures")
    p.add_argument("--dest", type=Path, metavar="DIR",
                   help="target folder (default: the package's pretrained/)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnist_digits import pretrained, runs

    bench = {**runs.read_json(args.bench), "_path": str(args.bench)} if args.bench else None
    target = pretrained.package_model(args.run_dir, threshold=args.threshold, bench=bench,
                                      dest=args.dest)
    print(f"packaged {args.run_dir} as {target}, with {pretrained.CARD_MD}")
    print(target)
    return 0
