"""`mnist-digits evaluate`: redo a run's evaluation report on the test set."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_digits.commands import options


def add_parser(sub) -> None:
    p = options.command(
        sub, "evaluate", "redo a run's evaluation report on the test set",
        "Rewrites a finished run's metrics.json, errors.csv and plots from its model.keras, on "
        "the run's own validation split and the official test set.",
        ["evaluate results/latest"])
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a finished run folder (results/latest is your last run)")
    p.set_defaults(run=run, prepare=prepare)


def prepare(args: argparse.Namespace, backend_name: str) -> None:
    from mnist_digits import runs

    runs.resolve_run_dir(args.run_dir)  # a missing folder fails before Keras loads


def run(args: argparse.Namespace) -> int:
    from mnist_digits import evaluate

    metrics = evaluate.evaluate_run(args.run_dir)
    print(f"{metrics['model']}: test accuracy {metrics['test']['accuracy']:.2%} "
          f"(validation {metrics['val']['accuracy']:.2%}), {metrics['num_errors']} errors")
    print(Path(args.run_dir).resolve())
    return 0
