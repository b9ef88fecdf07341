"""`mnist-digits train`: train a model, evaluate it, write the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_digits import launch
from mnist_digits.commands import options
from mnist_digits.config import resolve_config

EXIT_INTERRUPTED = 130


def _data_parallel(text: str) -> int | str:
    return text if text == "all" else options.positive_int(text)


def add_parser(sub) -> None:
    p = options.command(
        sub, "train", "train a model, evaluate it, write the report",
        "Trains a model preset on MNIST (50k training, 10k validation images), calibrates it, "
        "and writes a run folder: config.json, history.csv, model.keras, metrics.json, plots, "
        "errors.csv and TensorBoard logs.",
        ["train", "train --model cnn_best --seed 1",
         "train --model mlp_classic --epochs 5 --option dropout=0.3",
         "train --resume results/20261127-101500-cnn_fast"])
    p.add_argument("--tag", help="suffix for the run folder's name")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run in RUN_DIR from its last completed epoch")
    g = p.add_argument_group("data-parallel training (JAX backend)")
    g.add_argument("--data-parallel", type=_data_parallel, metavar="N|all",
                   help="train over N devices of this process (GPUs, else CPU devices split "
                        "from the cores), or all of them; --batch-size is the global batch")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="with several processes or hosts: process 0's address, the same for all")
    g.add_argument("--num-processes", type=options.positive_int, default=1, metavar="P",
                   help="processes taking part (default 1)")
    g.add_argument("--process-id", type=options.non_negative_int, default=0, metavar="I",
                   help="this process's number, 0 to P-1 (default 0)")
    options.add_training_flags(p)
    p.set_defaults(run=run, prepare=prepare)


def prepare(args: argparse.Namespace, backend_name: str) -> None:
    """Before Keras: the config (a bad value or model name fails here, in a moment), the run to
    resume, and data-parallel training's CPU devices."""
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k, v in options.cli_values(args).items()
                 if v is not None]
        given += [flag for flag, value in (("--config", args.config), ("--tag", args.tag))
                  if value]
        config = None
    else:
        given = []
        config = resolve_config(options.file_values(args), options.cli_values(args))
    args.launch = launch.plan(config, args.results_dir, resume=args.resume, given=given,
                              data_parallel=args.data_parallel,
                              num_processes=args.num_processes)
    launch.prepare_devices(args.launch, backend_name)


def run(args: argparse.Namespace) -> int:
    from mnist_digits import runs, train

    plan = args.launch
    data_parallel = launch.join_processes(plan, coordinator=args.coordinator,
                                          num_processes=args.num_processes,
                                          process_id=args.process_id)
    config = plan.config
    run_dir = plan.resume_dir or runs.new_run_dir(plan.results_dir, config.model, args.tag)
    print(f"Run folder: {run_dir}", flush=True)
    try:
        metrics = train.train(config, run_dir, resume=plan.resume_dir is not None,
                              data_parallel=data_parallel)
    except KeyboardInterrupt:
        print(f"mnist-digits train: interrupted; continue with: mnist-digits train --resume "
              f"{run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    runs.point_latest(plan.results_dir, run_dir)
    print(f"{config.model}: test accuracy {metrics['test']['accuracy']:.2%} "
          f"(validation {metrics['val']['accuracy']:.2%}), {metrics['epochs_run']} epochs, "
          f"{metrics['train_seconds']:.0f} s of training")
    print(run_dir)
    return 0


