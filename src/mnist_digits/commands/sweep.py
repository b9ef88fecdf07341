"""`mnist-digits sweep`: search hyperparameters with Ray Tune."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_digits.commands import jobs, options


def add_parser(sub) -> None:
    p = options.command(
        sub, "sweep", "search hyperparameters with Ray Tune",
        "Trains --trials configs of one model drawn from a search space (JSON), each as an "
        "ordinary run, reporting every epoch to Ray Tune; ASHA stops weak trials early. Writes a "
        "sweep folder with the trials' runs, trials.csv, summary.md, best_config.json (for "
        "train --config) and sweep.png. Space format: "
        '{"learning_rate": {"loguniform": [1e-4, 1e-2]}, "dropout": {"uniform": [0.1, 0.5]}, '
        '"batch_size": {"choice": [128, 256]}, "epochs": {"randint": [2, 5]}}; keys are config '
        "fields and model options.",
        ["sweep --model mlp_fast --space space.json --trials 16 --scheduler asha --cluster ray",
         "sweep --model cnn_fast --space space.json --trials 8 --cluster head:6379"])
    p.add_argument("--space", type=Path, required=True, metavar="FILE",
                   help="the search space, JSON")
    p.add_argument("--trials", type=options.positive_int, required=True, metavar="N",
                   help="configs to draw and train")
    p.add_argument("--metric", default="val_accuracy",
                   choices=("val_accuracy", "val_loss", "accuracy", "loss"),
                   help="what the sweep optimizes, per epoch (default val_accuracy)")
    p.add_argument("--scheduler", default="fifo", choices=("fifo", "asha"),
                   help="fifo trains every trial fully; asha stops weak ones early")
    options.add_training_flags(p)
    options.add_cluster_flags(p, "trials")
    p.set_defaults(run=run, prepare=jobs.prepare)


def run(args: argparse.Namespace) -> int:
    from mnist_digits.cluster import space, sweep
    from mnist_digits.config import resolve_config

    cli_values = {k: v for k, v in options.cli_values(args).items()
                  if k != "model" and v is not None}
    settings = sweep.SweepSettings(
        model=args.model or resolve_config().model, space=space.read_space(args.space),
        trials=args.trials, metric=args.metric, scheduler=args.scheduler,
        file_values=options.file_values(args), cli_values=cli_values, seed=args.seed or 0)
    with options.progress_bar("sweep") as progress:
        folder, trials = sweep.run_sweep(
            settings, args.results_dir, cluster=args.cluster, resources=jobs.resources(args),
            retries=args.retries,
            progress=lambda done, total, line: progress(done, total, f"sweep: {line}"))
    print((folder / sweep.SUMMARY_MD).read_text(), end="")
    print(folder)
    return 1 if any(t.status == "failed" for t in trials) else 0
