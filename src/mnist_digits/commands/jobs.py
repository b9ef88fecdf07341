"""What `compare`, `ensemble` and `sweep` share: training presets as jobs, here or on Ray."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mnist_digits.backend import parallel
from mnist_digits.commands import options


def prepare(args: argparse.Namespace, backend_name: str) -> None:
    """Before Keras: the presets named are checked, --cluster needs Ray (the [cluster] extra),
    and jobs run here with --cpus-per-job hold their framework threads to it."""
    from mnist_digits import models
    from mnist_digits.cluster import connect

    if getattr(args, "models", None):
        args.models = models.parse_names(args.models)
    if args.cluster or args.command == "sweep":
        connect.require_ray()
    if args.cpus_per_job and not args.cluster:
        os.environ.update(parallel.thread_env(max(1, int(args.cpus_per_job))))


def resources(args: argparse.Namespace):
    from mnist_digits.cluster import jobs

    return jobs.Resources(cpus=args.cpus_per_job or 1.0, gpus=args.gpus_per_job)


def train_presets(args: argparse.Namespace, what: str) -> tuple[list[Path], int]:
    """Trains every --models preset with seeds 0..--seeds-1 (on --cluster if given); returns
    the finished run folders and how many jobs failed (each listed on stderr)."""
    from mnist_digits import compare
    from mnist_digits.cluster import jobs

    cli_values = {k: v for k, v in options.cli_values(args).items() if k not in ("model", "seed")}
    with options.progress_bar(what) as progress:
        run_dirs, outcomes = compare.train_presets(
            args.models, args.seeds, args.results_dir,
            file_values=options.file_values(args), cli_values=cli_values,
            cluster=args.cluster, resources=resources(args), retries=args.retries,
            progress=lambda done, total, line: progress(done, total, f"{what}: {line}"))
    failed = jobs.summary(outcomes)
    if failed:
        print(failed, file=sys.stderr)
    return run_dirs, len(outcomes) - len(run_dirs)
