"""The `mnist-digits` command line: argparse subcommands that parse and dispatch, nothing more.

User mistakes (`MnistDigitsError`, bad flags) print one line to stderr and exit 2 (usage) or 1
(anything else the user must fix), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib.metadata
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mnist_digits import __version__, backend
from mnist_digits.config import FIELD_NAMES, TrainConfig, read_config_file, resolve_config
from mnist_digits.data import NUM_CLASSES
from mnist_digits.errors import ConfigError, MnistDigitsError, RunError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a tool killed by the signal reports
DEFAULT_RESULTS_DIR = "results"
# The packaged model's operating point; `reading.DEFAULT_THRESHOLD` (a test keeps them equal:
# importing `reading` here would load Keras before every `--help`).
DEFAULT_THRESHOLD = 0.6


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not the usage block plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser(convert: Callable[[str], Any], expected: str,
            accept: Callable[[Any], bool] = lambda value: True,
            requirement: str = "") -> Callable[[str], Any]:
    """An argparse `type`: `convert` the text, then check the value; errors say what to give."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{requirement}, got {value}")
        return value

    return parse


_integer = _parser(int, "a whole number")
_number = _parser(float, "a number")
_positive_int = _parser(int, "a whole number", lambda v: v >= 1, "must be at least 1")
_positive_float = _parser(float, "a number", lambda v: v > 0, "must be positive")
_threshold = _parser(float, "a number in [0, 1]", lambda v: 0 <= v <= 1,
                     "must be between 0 and 1")


def _option(text: str) -> tuple[str, Any]:
    """Parses `KEY=VALUE`, VALUE as JSON when it parses (numbers, lists, true), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _augment(text: str) -> dict[str, float]:
    from mnist_digits.config import parse_augment_policy

    try:
        return parse_augment_policy(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# How each TrainConfig field's type is read from the command line. The ranges are checked once,
# by TrainConfig itself; here only the syntax.
_FLAG_PARSERS: dict[str, dict[str, Any]] = {
    "int": {"type": _integer}, "int | None": {"type": _integer},
    "float": {"type": _number}, "str": {}, "str | None": {},
    "augment": {"type": _augment}, "model_options": {"type": _option, "action": "append"},
}


_METAVARS = {"int": "N", "int | None": "N", "float": "X", "str": "NAME"}


def _add_training_flags(p: argparse.ArgumentParser, *, exclude: Sequence[str] = ()) -> None:
    """One flag per TrainConfig field (bar `exclude`), with the field's help; plus --config.

    Generated from the dataclass, so a new config field is a new flag with no second list.
    """
    g = p.add_argument_group("training (each overrides the model's recipe and --config)")
    for field in dataclasses.fields(TrainConfig):
        if field.name in exclude:
            continue
        flags = field.metadata.get("flags") or ("--" + field.name.replace("_", "-"),)
        parser = _FLAG_PARSERS.get(field.name) or _FLAG_PARSERS[field.type]
        metavar = field.metadata.get("metavar") or _METAVARS.get(field.type)
        g.add_argument(*flags, dest=field.name, help=field.metadata["help"], metavar=metavar,
                       **parser)
    g.add_argument("--config", type=Path, metavar="FILE",
                   help="JSON file of config fields, under the flags (a run's config.json works)")
    p.add_argument("--results-dir", type=Path, default=Path(DEFAULT_RESULTS_DIR), metavar="DIR",
                   help="where run folders go (default: results)")


def _data_parallel(text: str) -> int | str:
    if text == "all":
        return text
    return _positive_int(text)


def _address(text: str) -> str:
    from mnist_digits.cluster.connect import check_address

    try:
        return check_address(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--cluster {text!r}: ")) \
            from None


_non_negative_float = _parser(float, "a number", lambda v: v >= 0, "must be 0 or more")


def _add_cluster_flags(p: argparse.ArgumentParser, what: str = "jobs") -> None:
    """--cluster and what each job gets on it (Ray, the [cluster] extra)."""
    g = p.add_argument_group("cluster (Ray; the [cluster] extra)")
    g.add_argument("--cluster", type=_address, metavar="ADDRESS",
                   help=f"run the {what} side by side on Ray: 'ray' starts Ray on this machine; "
                        f"HOST:PORT or ray://HOST:PORT uses an existing cluster (default: one "
                        f"after another, here)")
    g.add_argument("--cpus-per-job", type=_positive_float, metavar="N",
                   help="CPUs each job gets; its framework threads are held to them (default 1 "
                        "on a cluster; here, the whole machine)")
    g.add_argument("--gpus-per-job", type=_non_negative_float, default=0.0, metavar="N",
                   help="GPUs each job gets on a cluster; fractions share one (default 0)")
    g.add_argument("--retries", type=_parser(int, "a whole number", lambda v: v >= 0,
                                             "must be 0 or more"), default=2, metavar="N",
                   help="times a job whose worker or node died is run again (default 2)")


_MODEL_HELP = ("run folder or .keras file (default: the packaged, calibrated reading model; "
               "results/latest is your last run)")
_THRESHOLD_HELP = ("calibrated confidence under which a digit is 'unsure' (default %(default)s); "
                   "higher rejects more")
# `bench --only` choices, in run order; a test keeps them equal to the bench's own registry
# (importing it here would slow every command's start).
BENCH_SECTIONS = ("training", "ablation", "best", "feedforward", "calibration", "realworld",
                  "numbers", "rejection", "inference", "load", "backends", "cluster")


def _command(sub: Any, name: str, summary: str, description: str,
             examples: Sequence[str]) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (in the command list), a description and examples."""
    epilog = "examples:\n" + "\n".join(f"  mnist-digits {e}" for e in examples)
    # Raw, so the examples keep their lines; the description is wrapped here instead.
    return sub.add_parser(name, help=summary, description=textwrap.fill(description, 79),
                          epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = _Parser(
        prog="mnist-digits", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read handwritten digits and numbers; train, compare and evaluate the "
                    "models that do it.",
        epilog="examples:\n  mnist-digits predict my-digit.png\n  mnist-digits serve\n"
               "  mnist-digits train --model cnn_best\n\n"
               "`mnist-digits COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    parser.add_argument("--backend", choices=backend.BACKENDS, metavar="NAME",
                        help="Keras backend: tensorflow (default), jax or torch; "
                             "KERAS_BACKEND is read too")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep JAX's compiled programs between runs (kept by "
                             f"default in {backend.default_compile_cache()}, or "
                             f"${backend.COMPILE_CACHE_ENV})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = _command(sub, "train", "train a model, evaluate it, write the report",
                 "Trains a model preset on MNIST (50k training, 10k validation images), "
                 "calibrates it, and writes a run folder: config.json, history.csv, model.keras, "
                 "metrics.json, plots, errors.csv and TensorBoard logs.",
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
    g.add_argument("--num-processes", type=_positive_int, default=1, metavar="P",
                   help="processes taking part (default 1)")
    g.add_argument("--process-id", type=_parser(int, "a whole number", lambda v: v >= 0,
                                                "must be 0 or more"), default=0, metavar="I",
                   help="this process's number, 0 to P-1 (default 0)")
    _add_training_flags(p)

    p = _command(sub, "data", "check the MNIST files, or download them if they are gone",
                 "The four MNIST files come with the project (data/mnist), checked against "
                 "pinned SHA-256 hashes on every load. `verify` checks them; `download` fetches "
                 "missing or damaged ones from the public mirrors, verified.",
                 ["data verify", "data download", "data download --dest /tmp/mnist --force"])
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION",
                                parser_class=_Parser)
    d = data_sub.add_parser("verify", help="check the four MNIST files (hashes, IDX format)",
                            description="Checks the four MNIST files: hashes and IDX format.")
    d.add_argument("--data-dir", metavar="DIR",
                   help="folder with the MNIST .gz files (default: data/mnist)")
    d = data_sub.add_parser("download", help="fetch missing or corrupt MNIST files from the "
                                             "public mirrors, verified",
                            description="Fetches missing or corrupt MNIST files from the "
                                        "public mirrors and verifies them.")
    d.add_argument("--dest", metavar="DIR", help="target folder (default: data/mnist)")
    d.add_argument("--force", action="store_true", help="download even files that verify")
    d.add_argument("--timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                   help="seconds to wait on each mirror (default 30)")

    _command(sub, "info", "the backend, its devices, the compile cache, the data, the versions",
             "Prints the Keras backend and its version, the devices it sees (GPU names "
             "included), JAX's compile cache, the MNIST data check and the versions that "
             "matter. Exits 1 if the data check fails.",
             ["info", "--backend jax info"])

    p = _command(sub, "evaluate", "redo a run's evaluation report on the test set",
                 "Rewrites a finished run's metrics.json, errors.csv and plots from its "
                 "model.keras, on the run's own validation split and the official test set.",
                 ["evaluate results/latest"])
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a finished run folder (results/latest is your last run)")

    p = _command(sub, "list-models", "list the model presets",
                 "Lists the registered presets: name, family, trainable parameters and "
                 "description. JSON adds each preset's training recipe.",
                 ["list-models", "list-models --format json"])
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="a table (default) or JSON with the recipes")

    p = _command(sub, "compare", "train several models over seeds and tabulate them",
                 "Trains each preset with seeds 0..N-1 as ordinary runs, then writes a "
                 "comparison (Markdown, CSV and a chart) of accuracy and training time, mean ± "
                 "std over seeds. --runs tabulates finished runs instead.",
                 ["compare --models cnn_fast,mlp_fast --seeds 3", "compare --models all",
                  "compare --runs results/2026*-cnn_fast-s*"])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--models", help="comma-separated presets, or 'all'")
    src.add_argument("--runs", type=Path, nargs="+", metavar="RUN_DIR",
                     help="tabulate existing runs instead of training")
    p.add_argument("--seeds", type=_positive_int, default=3, metavar="N",
                   help="seeds 0..N-1 (default 3)")
    _add_training_flags(p, exclude=("model", "seed"))
    _add_cluster_flags(p)

    p = _command(sub, "ensemble", "average trained runs into one model and evaluate it",
                 "Averages the probabilities of finished runs (trained on the same split) in "
                 "one model, calibrates it, saves it as a new run and evaluates it like any run. "
                 "With --models, trains the members first (each model with seeds 0..N-1), on a "
                 "cluster with --cluster. With --tta, it also averages over each image turned 4 "
                 "degrees either way (3 forward passes per image); then one run will do.",
                 ["ensemble results/*-cnn_best-s0 results/*-cnn_best-s1 results/*-cnn_best-s2",
                  "ensemble --tta results/latest",
                  "ensemble --models cnn_best --seeds 5 --cluster ray",
                  "ensemble --models cnn_best,cnn_reader --seeds 2"])
    p.add_argument("run_dirs", type=Path, nargs="*", metavar="RUN_DIR",
                   help="the members: finished run folders trained on the same split")
    p.add_argument("--models", help="train the members instead: comma-separated presets")
    p.add_argument("--seeds", type=_positive_int, default=3, metavar="N",
                   help="with --models: seeds 0..N-1 of each (default 3)")
    p.add_argument("--name", default="ensemble", help="name in reports (default: ensemble)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over each image turned +-4 degrees too")
    p.add_argument("--tag", help="suffix for the run folder's name")
    _add_training_flags(p, exclude=("model", "seed"))
    _add_cluster_flags(p, "members' trainings")

    p = _command(sub, "sweep", "search hyperparameters with Ray Tune",
                 "Trains --trials configs of one model drawn from a search space (JSON), each as "
                 "an ordinary run, reporting every epoch to Ray Tune; ASHA stops weak trials "
                 "early. Writes a sweep folder with the trials' runs, trials.csv, summary.md, "
                 "best_config.json (for train --config) and sweep.png. Space format: "
                 '{"learning_rate": {"loguniform": [1e-4, 1e-2]}, "dropout": {"uniform": '
                 '[0.1, 0.5]}, "batch_size": {"choice": [128, 256]}, "epochs": {"randint": '
                 "[2, 5]}}; keys are config fields and model options.",
                 ["sweep --model mlp_fast --space space.json --trials 16 --scheduler asha "
                  "--cluster ray",
                  "sweep --model cnn_fast --space space.json --trials 8 --cluster head:6379"])
    p.add_argument("--space", type=Path, required=True, metavar="FILE",
                   help="the search space, JSON")
    p.add_argument("--trials", type=_positive_int, required=True, metavar="N",
                   help="configs to draw and train")
    p.add_argument("--metric", default="val_accuracy",
                   choices=("val_accuracy", "val_loss", "accuracy", "loss"),
                   help="what the sweep optimizes, per epoch (default val_accuracy)")
    p.add_argument("--scheduler", default="fifo", choices=("fifo", "asha"),
                   help="fifo trains every trial fully; asha stops weak ones early")
    _add_training_flags(p)
    _add_cluster_flags(p, "trials")

    p = _command(sub, "predict", "read digits from image files or folders",
                 "Reads the digits in photos, scans and drawings: one digit or a whole number "
                 "per image, each with a calibrated confidence. An image that is not "
                 "confidently digits is 'unsure'; a blank one has 'no digit'. Exits 1 if any "
                 "file could not be read.",
                 ["predict my-digit.png", "predict photos/ --format csv > digits.csv",
                  "predict scan.jpg --top 3 --format jsonl",
                  "predict cheque.png --model results/latest --threshold 0.8"])
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders (recursive)")
    p.add_argument("--model", help=_MODEL_HELP)
    p.add_argument("--format", choices=("text", "jsonl", "csv"), default="text",
                   help="one line per image (default), JSON lines, or CSV with every "
                        "probability")
    p.add_argument("--top", type=_positive_int, default=1, metavar="K",
                   help="show the K most probable digits (text, jsonl)")
    p.add_argument("--batch-size", type=_positive_int, default=256, metavar="N",
                   help="images read and predicted together (default 256)")
    p.add_argument("--save-preprocessed", type=Path, metavar="DIR",
                   help="write the 28x28 images the model saw into DIR")
    p.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD, metavar="P",
                   help=_THRESHOLD_HELP)

    p = _command(sub, "serve", "the drawing web page and its JSON API",
                 "Serves a page to draw or upload digits and read them, and its JSON API "
                 "(POST /api/predict; documented at /docs).",
                 ["serve", "serve --port 8080 --model results/latest"])
    p.add_argument("--model", help=_MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_positive_int, default=8000,
                   help="port to listen on (default 8000)")
    p.add_argument("--max-upload-mb", type=_positive_float, default=5.0, metavar="MB",
                   help="largest upload accepted, in MB (default 5)")
    p.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD, metavar="P",
                   help=_THRESHOLD_HELP)

    p = _command(sub, "export", "export a model for serving elsewhere, verified",
                 "Exports a model as a TensorFlow SavedModel, a LiteRT (.tflite) file or ONNX, "
                 "then loads the export with its own runtime and checks it agrees with Keras on "
                 "500 test digits. LiteRT and ONNX need the export extra.",
                 ["export --model results/latest --format onnx --out model.onnx",
                  "export --model results/latest --format savedmodel --out exported/"])
    p.add_argument("--model", required=True, help="run folder or .keras file")
    p.add_argument("--format", required=True, choices=("savedmodel", "litert", "onnx"),
                   help="the export format")
    p.add_argument("--out", type=Path, required=True, help="output folder or file")

    p = _command(sub, "package-model", "put a finished, calibrated run into the package as "
                                       "the default model, with its model card",
                 "Copies a finished, calibrated run's model into the package as the model "
                 "predict and serve use by default, with a model card of its figures.",
                 ["package-model results/latest --bench bench/results/2026-11-27-host.json"])
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the finished run")
    p.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD, metavar="P",
                   help="the operating point the card states (default %(default)s)")
    p.add_argument("--bench", type=Path, metavar="FILE",
                   help="a bench result JSON measured with this model, for the card's figures")
    p.add_argument("--dest", type=Path, metavar="DIR",
                   help="target folder (default: the package's pretrained/)")

    p = _command(sub, "bench", "measure and record the figures the README quotes",
                 "Measures training speed and accuracy against reference recipes, ablations, "
                 "the best presets and their ensembles, the best feedforward net, calibration, "
                 "reading user-style images and numbers, rejecting non-digits, inference speed "
                 "and the server under load. Writes bench/results/<date>-<host>.json and .md. "
                 "All of it takes about three and three-quarter hours on 2 cores.",
                 ["bench --only realworld,numbers,rejection", "bench --quick"])
    p.add_argument("--model", help="run folder or .keras file for the reading, inference and "
                                   "load sections (default: the packaged reading model)")
    p.add_argument("--only", metavar="SECTION[,SECTION]",
                   help="run only these sections: " + ", ".join(BENCH_SECTIONS))
    p.add_argument("--quick", action="store_true", help="a tiny run in seconds (smoke test)")
    p.add_argument("--out", type=Path, default=Path("bench") / "results", metavar="DIR",
                   help="where the result files go (default: bench/results)")
    p.add_argument("--results-dir", type=Path, default=Path(DEFAULT_RESULTS_DIR), metavar="DIR",
                   help="the training runs go to DIR/bench/<stamp>/ (default: results)")
    return parser


def _cli_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as flags (None where not given)."""
    values = {name: getattr(args, name, None) for name in FIELD_NAMES}
    if values["model_options"]:
        values["model_options"] = dict(values["model_options"])
    return values


def _file_values(args: argparse.Namespace) -> dict[str, Any]:
    return read_config_file(args.config) if args.config else {}


def cmd_train(args: argparse.Namespace) -> int:
    from mnist_digits import runs, train
    if args.resume:
        given = [k for k, v in _cli_values(args).items() if v is not None]
        if given or args.config or args.tag:
            flags = ", ".join("--" + k.replace("_", "-") for k in given) or "the other flags"
            raise ConfigError(f"--resume continues a run with its saved config; drop {flags}")
        run_dir = runs.resolve_run_dir(args.resume, need=runs.CONFIG)
        saved = runs.read_config(run_dir)
        config = saved.config
        if config is None:
            raise ConfigError(f"{run_dir} is an ensemble, not a training run; nothing to resume")
        results_dir = run_dir.parent
        plan = _data_parallel_plan(args, saved.distribution)
    else:
        config = resolve_config(_file_values(args), _cli_values(args))
        plan = _data_parallel_plan(args, None)
        results_dir = args.results_dir
        run_dir = runs.new_run_dir(results_dir, config.model, args.tag)
    print(f"Run folder: {run_dir}", flush=True)
    try:
        metrics = train.train(config, run_dir, resume=bool(args.resume), data_parallel=plan)
    except KeyboardInterrupt:
        print(f"mnist-digits train: interrupted; continue with: mnist-digits train --resume "
              f"{run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    runs.point_latest(results_dir, run_dir)
    print(f"{config.model}: test accuracy {metrics['test']['accuracy']:.2%} "
          f"(validation {metrics['val']['accuracy']:.2%}), {metrics['epochs_run']} epochs, "
          f"{metrics['train_seconds']:.0f} s of training")
    print(run_dir)
    return 0


def _data_parallel_request(args: argparse.Namespace) -> int | str | None:
    """The devices per process `train` is asked to use: --data-parallel, else a resumed run's
    (read before Keras starts: JAX's CPU devices are fixed then), else "all" over several
    processes; None for one device."""
    if args.command != "train":
        return None
    if args.data_parallel is None and args.resume:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            saved = json.loads((args.resume / "config.json").read_text()).get("distribution")
            if saved:
                return saved["devices"] // saved["processes"]
    if args.data_parallel is None and args.num_processes > 1:
        return "all"
    return args.data_parallel


def _data_parallel_plan(args: argparse.Namespace, saved: dict[str, Any] | None) -> Any:
    """Joins the other processes (if any) and plans data-parallel training; None for one
    device. `saved` is a resumed run's recorded distribution."""
    request = args.devices_per_process  # set by _prepare_process
    if saved and saved["processes"] != args.num_processes:
        raise ConfigError(f"this run was trained by {saved['processes']} process(es); resume it "
                          f"with --num-processes {saved['processes']} and the same coordinator")
    if args.num_processes > 1:
        if not args.coordinator:
            raise ConfigError("--num-processes needs --coordinator HOST:PORT: process 0's "
                              "address, the same in every process")
        if args.process_id >= args.num_processes:
            raise ConfigError(f"--process-id must be below --num-processes "
                              f"({args.num_processes}), got {args.process_id}")
        backend.start_processes(args.coordinator, args.num_processes, args.process_id)
    if request is None:
        return None
    return backend.data_parallel(None if request == "all" else request)


def _prepare_process(args: argparse.Namespace, backend_name: str) -> None:
    """What must be set before Keras starts: the CPU devices of data-parallel training, and the
    thread limit of jobs run here with --cpus-per-job. Records `args.devices_per_process`."""
    # Read once: on resume it reads the run's config.json.
    request = args.devices_per_process = _data_parallel_request(args)
    if request is not None:
        if backend_name != "jax":
            raise ConfigError("data-parallel training needs the JAX backend (Keras's "
                              "distribution API); run `mnist-digits --backend jax train ...`")
        backend.prepare_devices(None if request == "all" else request)
    if getattr(args, "cpus_per_job", None) and not args.cluster:
        os.environ.update(backend.thread_env(max(1, int(args.cpus_per_job))))


def _verified_data(data_dir: str | None = None) -> str:
    """Loads (so verifies) the MNIST files; says what was found. Raises DataError."""
    from mnist_digits import data

    (x_train, _), (x_test, _) = data.load_mnist(data_dir)
    return (f"MNIST files OK: {len(x_train)} training and {len(x_test)} test images, SHA-256 "
            f"verified ({data_dir or data.default_data_dir()})")


def cmd_data(args: argparse.Namespace) -> int:
    from mnist_digits import data, download

    if args.data_command == "verify":
        print(_verified_data(args.data_dir))
        return 0
    outcome = download.download_mnist(args.dest, timeout=args.timeout, force=args.force)
    for name, source in outcome.items():
        print(f"{name}: {'already present, verified' if source == 'present' else source}")
    print(args.dest or data.default_data_dir())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import keras

    name = backend.current()
    print(f"mnist-digits {__version__}")
    print(f"backend: {name} {backend.version(name)} (Keras {keras.__version__})")
    print("devices: " + ", ".join(backend.devices()))
    print(f"precision auto: {backend.precision('auto')} (bfloat16 units on the CPU: "
          f"{'yes' if backend.cpu_has_bfloat16() else 'no'})")
    cache = backend.compile_cache_dir()
    if name != "jax":
        print("compile cache: not used (JAX only)")
    elif cache is None:
        print("compile cache: off")
    else:
        files = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
        size = sum(p.stat().st_size for p in files) / 2**20
        print(f"compile cache: {cache} ({len(files)} files, {size:.1f} MiB)")
    status = 0
    try:
        print(f"data: {_verified_data()}")
    except MnistDigitsError as err:
        print(f"data: {err}")
        status = EXIT_ERROR
    versions = {"python": sys.version.split()[0]}
    versions.update({b: backend.version(b) for b in backend.BACKENDS})
    for dist in ("numpy", "scipy", "pillow", "fastapi", "ray"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    print("versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items()))
    return status


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mnist_digits import evaluate

    metrics = evaluate.evaluate_run(args.run_dir)
    print(f"{metrics['model']}: test accuracy {metrics['test']['accuracy']:.2%} "
          f"(validation {metrics['val']['accuracy']:.2%}), {metrics['num_errors']} errors")
    print(Path(args.run_dir).resolve())
    return 0


def cmd_list_models(args: argparse.Namespace) -> int:
    from mnist_digits import models

    rows = []
    for name in models.list_models():
        spec = models.get_model_spec(name)
        rows.append({"name": name, "family": spec.family,
                     "params": models.count_params(models.build_model(name)),
                     "description": spec.description, "recipe": dict(spec.recipe)})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "FAMILY", "PARAMS", "DESCRIPTION")] + [
        (r["name"], r["family"], f"{r['params']:,}", r["description"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for name, family, params, description in table:
        print(f"{name:<{widths[0]}}  {family:<{widths[1]}}  {params:>{widths[2]}}  "
              f"{description}")
    return 0


def _model_names(text: str) -> list[str]:
    from mnist_digits import models

    names = models.list_models() if text == "all" else \
        [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--models needs at least one preset name")
    return names


def _train_jobs(args: argparse.Namespace, what: str) -> tuple[list[Path], int]:
    """Trains every --models preset with seeds 0..--seeds-1 (on --cluster if given); returns
    the finished run folders and how many jobs failed (each listed on stderr)."""
    from mnist_digits import compare
    from mnist_digits.cluster import jobs

    cli_values = {k: v for k, v in _cli_values(args).items() if k not in ("model", "seed")}
    planned = compare.make_jobs(_model_names(args.models), range(args.seeds),
                                file_values=_file_values(args), cli_values=cli_values)
    resources = jobs.Resources(cpus=args.cpus_per_job or 1.0, gpus=args.gpus_per_job)
    with _progress_bar(what) as progress:
        outcomes = jobs.run_jobs(planned, args.results_dir, cluster=args.cluster,
                                 resources=resources, retries=args.retries,
                                 progress=lambda done, total, line: progress(
                                     done, total, f"{what}: {line}"))
    failed = jobs.summary(outcomes)
    if failed:
        print(failed, file=sys.stderr)
    return [o.run_dir for o in outcomes if o.ok], len(outcomes) - sum(o.ok for o in outcomes)


def cmd_compare(args: argparse.Namespace) -> int:
    from mnist_digits import compare, runs

    failed = 0
    if args.runs:
        run_dirs = args.runs
    else:
        run_dirs, failed = _train_jobs(args, "compare")
        if not run_dirs:
            raise RunError("every job failed (see above); nothing to compare")
    out_dir = runs.new_run_dir(args.results_dir, "compare")
    rows = compare.write_comparison(run_dirs, out_dir)
    print(compare.to_markdown(rows), end="")
    print(out_dir)
    return EXIT_ERROR if failed else 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from mnist_digits import ensemble, runs

    if bool(args.run_dirs) == bool(args.models):
        raise ConfigError("give the members' run folders, or --models to train them, not both")
    run_dirs, failed = (args.run_dirs, 0) if args.run_dirs else _train_jobs(args, "members")
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


def cmd_sweep(args: argparse.Namespace) -> int:
    from mnist_digits.cluster import connect, jobs, space, sweep

    connect.require_ray()
    cli_values = {k: v for k, v in _cli_values(args).items() if k != "model" and v is not None}
    settings = sweep.SweepSettings(
        model=args.model or resolve_config().model, space=space.read_space(args.space),
        trials=args.trials, metric=args.metric, scheduler=args.scheduler,
        file_values=_file_values(args), cli_values=cli_values, seed=args.seed or 0)
    resources = jobs.Resources(cpus=args.cpus_per_job or 1.0, gpus=args.gpus_per_job)
    with _progress_bar("sweep") as progress:
        folder, trials = sweep.run_sweep(
            settings, args.results_dir, cluster=args.cluster, resources=resources,
            retries=args.retries,
            progress=lambda done, total, line: progress(done, total, f"sweep: {line}"))
    print((folder / sweep.SUMMARY_MD).read_text(), end="")
    print(folder)
    return EXIT_ERROR if any(t.status == "failed" for t in trials) else 0


def _load_model_or_usage_error(path: str):
    """The model `--model` names; a bad one is a usage error (its message says what to do)."""
    from mnist_digits import predict

    try:
        return predict.load_model(path)
    except RunError as err:
        raise ConfigError(str(err)) from None


@contextlib.contextmanager
def _progress_bar(what: str) -> Iterator[Callable[..., None]]:
    """A progress bar with an ETA on stderr, when it is a terminal; yields `update(done, total,
    description=what)`. Elsewhere (logs, CI, pipes) it draws nothing: the log lines stay."""
    if not sys.stderr.isatty():
        yield lambda done, total, description=what: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total, description=what: bar.update(
            task, completed=done, total=total, description=description)


def _percent(p: float) -> str:
    """A probability for people: a calibrated model is never certain, so never "100.0%"."""
    return ">99.9%" if p >= 0.9995 else f"{p:.1%}"


def _text_line(result: Any, top: int) -> str:
    """One line of `predict`'s text format: the number, and each digit's confidence."""
    if result.error is not None:
        return f"{result.path}: error: {result.error}"
    if result.status == "no_digit":
        return f"{result.path}: no digit"
    if result.single:
        shown = ", ".join(f"{d} ({_percent(p)})" for d, p in result.top(top))
    else:
        shown = ", ".join(f"{d.digit} ({_percent(d.confidence)}"
                          f"{', unsure' if d.unsure else ''})" for d in result.digits)
    if result.status == "unsure":
        return f"{result.path}: unsure, not confidently a digit (best guess: {shown})"
    return f"{result.path}: {shown}" if result.single else f"{result.path}: {result.text} " \
                                                             f"[{shown}]"


def cmd_predict(args: argparse.Namespace) -> int:
    from mnist_digits import preprocess, reading

    model = _load_model_or_usage_error(args.model)
    paths = reading.expand_paths(args.paths)
    if not paths:
        raise ConfigError("no image files found in " + ", ".join(args.paths))
    if args.save_preprocessed:
        args.save_preprocessed.mkdir(parents=True, exist_ok=True)
    failed = 0
    # Results print as each batch is read; the bar (on a terminal) stays below them.
    with _progress_bar("images") as progress:
        # Made inside the bar's block, which routes stdout around the bar.
        writer = csv.writer(sys.stdout, lineterminator="\n") if args.format == "csv" else None
        if writer:
            writer.writerow(["path", "status", "text", "digit", "confidence",
                             *(f"p{d}" for d in range(NUM_CLASSES)), "error"])
        results = reading.read_files(model, paths, threshold=args.threshold,
                                     batch_size=args.batch_size, progress=progress)
        for i, result in enumerate(results):
            failed += result.error is not None
            if args.save_preprocessed:
                for k, found in enumerate(result.digits):
                    suffix = f"-{k}" if len(result.digits) > 1 else ""
                    name = f"{i:05d}-{Path(result.path).stem}{suffix}.png"
                    (args.save_preprocessed / name).write_bytes(preprocess.to_png(found.frame))
            if args.format == "jsonl":
                record = result.to_dict()
                if args.top > 1 and result.single:
                    record["top"] = [[d, p] for d, p in result.top(args.top)]
                print(json.dumps(record))
            elif writer:
                probs = result.probabilities or [""] * NUM_CLASSES
                writer.writerow([result.path, result.status, result.text or "",
                                 "" if result.digit is None else result.digit,
                                 "" if result.confidence is None else result.confidence, *probs,
                                 result.error or ""])
            else:
                print(_text_line(result, args.top))
    return EXIT_ERROR if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mnist_digits import predict
    from mnist_digits.serve.app import create_app

    model = _load_model_or_usage_error(args.model)
    # Compiled before the first request (on torch that takes seconds), so it is not the one to
    # wait: a request is one image, with up to a few digits.
    predict.warm_up(model, (1, 8))
    app = create_app(model, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                     threshold=args.threshold)
    print(f"Serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mnist_digits import export

    model = _load_model_or_usage_error(args.model)
    report = export.export_and_verify(model, args.format, args.out)
    print(f"exported {args.format} to {args.out}: {report['images']} test digits, argmax "
          f"agreement {report['argmax_agreement']:.2%}, max |diff| "
          f"{report['max_abs_diff']:.2e}")
    print(args.out)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from mnist_digits.bench import runner

    # A bad --model fails now, not after an hour of training.
    model = _load_model_or_usage_error(args.model) if args.model else None
    with _progress_bar("bench") as progress:
        result, path = runner.run_bench(
            model_path=args.model, model=model, only=args.only, quick=args.quick,
            out_dir=args.out, results_dir=args.results_dir,
            progress=lambda done, total, name: progress(done, total, f"bench: {name}"))
    print(runner.to_markdown(result))
    print(path)
    return 0


def cmd_package_model(args: argparse.Namespace) -> int:
    from mnist_digits import pretrained, runs

    bench = {**runs.read_json(args.bench), "_path": str(args.bench)} if args.bench else None
    target = pretrained.package_model(args.run_dir, threshold=args.threshold, bench=bench,
                                      dest=args.dest)
    print(f"packaged {args.run_dir} as {target}, with {pretrained.CARD_MD}")
    print(target)
    return 0


COMMANDS = {"train": cmd_train, "data": cmd_data, "info": cmd_info, "evaluate": cmd_evaluate,
            "list-models": cmd_list_models, "compare": cmd_compare, "ensemble": cmd_ensemble,
            "sweep": cmd_sweep,
            "predict": cmd_predict, "serve": cmd_serve, "export": cmd_export,
            "package-model": cmd_package_model, "bench": cmd_bench}


# Commands that never import Keras, so need not pay for it.
_WITHOUT_KERAS = frozenset({"data"})


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # TensorFlow's C++ info and warning logs (e.g. a "rendezvous aborting" line at the end of
    # each epoch's data) bury the useful output; its errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        _prepare_process(args, backend.choose(args.backend))
        if args.no_compile_cache:
            os.environ[backend.COMPILE_CACHE_ENV] = "off"
        if args.command not in _WITHOUT_KERAS:
            backend.import_keras_quietly()
            backend.configure_compile_cache()
        status = COMMANDS[args.command](args)
        # Flushed here, so a reader that has gone away is noticed inside the try.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader closed the pipe (`mnist-digits list-models | head -1`): stop quietly, as
        # Unix tools do, and keep Python from complaining again when it flushes at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ConfigError as err:
        print(f"mnist-digits {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except MnistDigitsError as err:
        print(f"mnist-digits {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"mnist-digits {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
