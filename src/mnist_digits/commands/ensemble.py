"""`mnist-digits ensemble`: average trained runs into one model and evaluate it."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_digits.commands import jobs, options
from mnist_digits.errors import ConfigError, RunError


def add_parser(sub) -> None:
    p = options.command(
        sub, "ensemble", "average trained runs into one model and evaluate it",
        "Averages the probabilities of finished runs (trained on the same split) in one model, "
        "calibrates it, saves it as a new run and evaluates it like any run. With --models, "
        "trains the members first (each model with seeds 0..N-1), on a cluster with --cluster. "
        "With --tta, it also averages over each image turned 4 degrees either way (3 forward "
        "passes per image); then one run will do.",
        ["ensemble results/*-cnn_best-s0 results/*-cnn_best-s1 results/*-cnn_best-s2",
         "ensemble --tta results/latest",
         "ensemble --models cnn_best --seeds 5 --cluster ray",
         "ensemble --models cnn_best,cnn_reader --seeds 2"])
    p.add_argument("run_dirs", type=Path, nargs="*", metavar="RUN_DIR",
                   help="the members: finished run folders trained on the same split")
    p.add_argument("--models", help="train the members instead: comma-separated presets")
    p.add_argument("--seeds", type=options.positive_int, default=3, metavar="N",
                   help="with --models: seeds 0..N-1 of each (default 3)")
    p.add_argument("--name", default="ensemble", help="name in reports (default: ensemble)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over each image turned +-4 degrees too")
    p.add_argument("--tag", help="suffix for the run folder's name")
    options.add_training_flags(p, exclude=("model", "seed"))
    options.add_cluster_flags(p, "members' trainings")
    p.set_defaults(run=run, prepare=prepare)


def prepare(args: argparse.Namespace, backend_name: str) -> None:
    if bool(args.run_dirs) == bool(args.models):
        raise ConfigError("give the members' run folders, or --models to train them, not both")
    jobs.prepare(args, backend_name)


def run(args: argparse.Namespace) -> int:
    from mnist_digits import ensemble, runs

    run_dirs, failed = (args.run_dirs, 0) if args.run_dirs else \
        jobs.train_presets(args, "members")
    if failed:
        raise RunError(f"{failed} member(s) failed to train (see above); the ensemble was not "
                       f"made. The finished members are in {args.results_dir}")
    run_dir, metrics = ensemble.make_ensemble(run_dirs, args.results_dir, tag=args.tag,
                                              name=args.name, tta=args.tta)
    runs.point_latest(args.results_dir, run_dir)
    views = f" x {metrics['views']} views" if metrics["views"] > 1 else ""
    print(f"{metrics['model']} of {metrics['members']}{views}: test accuracy "
          f"{metrics['test']['accuracy']:.2%} (validation {metrics['val']['accuracy']:.2%}), "
          f"{metrics['num_errors']} errors")
    print(run_dir)
    return 0
