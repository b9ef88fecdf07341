"""The `mnist-digits` command line: argparse subcommands that parse and dispatch, nothing more.

User mistakes (`MnistDigitsError`, bad flags) print one line to stderr and exit 2 (usage) or 1
(anything else the user must fix), never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mnist_digits.errors import ConfigError, MnistDigitsError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_RESULTS_DIR = "results"
# The packaged model's operating point; `reading.DEFAULT_THRESHOLD` (a test keeps them equal:
# importing `reading` here would load Keras before every `--help`).
DEFAULT_THRESHOLD = 0.6


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not the usage block plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


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
    from mnist_digits import augment

    try:
        return augment.parse_policy(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `train` and `compare`; each overrides the model's recipe and --config."""
    g = p.add_argument_group("training (override the model's recipe and --config)")
    g.add_argument("--epochs", type=_positive_int, help="maximum number of epochs")
    g.add_argument("--batch-size", type=_positive_int)
    g.add_argument("--optimizer", help="adam, adamw, sgd or rmsprop")
    g.add_argument("--learning-rate", "--lr", type=_positive_float, dest="learning_rate")
    g.add_argument("--lr-schedule", help="constant, cosine or warmup_cosine")
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--patience", type=int, dest="early_stopping_patience",
                   help="early-stopping patience in epochs; 0 disables")
    g.add_argument("--augment", type=_augment, metavar="POLICY",
                   help="training augmentation: none, light, standard or strong, or key=value "
                        "pairs such as rotation=10,shift=2,zoom=0.1,squish=0.1,elastic=0.5,"
                        "erasing=0.25 (replaces the model's own policy)")
    g.add_argument("--outliers", type=float, metavar="SHARE",
                   help="synthetic non-digits added to training, as a share of it (e.g. 0.15), "
                        "so the model learns to say 'not a digit'")
    g.add_argument("--val-size", type=_positive_int, help="validation images (default 10000)")
    g.add_argument("--option", type=_option, action="append", dest="model_options",
                   metavar="KEY=VALUE", help="a model builder option, e.g. dropout=0.3; repeatable")
    g.add_argument("--data-dir", help="folder with the MNIST .gz files (default: data/mnist)")
    g.add_argument("--limit", type=_positive_int,
                   help="use only the first N images of each split (quick experiments)")
    g.add_argument("--config", type=Path, help="JSON file of config fields (below the flags)")
    p.add_argument("--results-dir", type=Path, default=Path(DEFAULT_RESULTS_DIR),
                   help="where run folders go (default: results)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = _Parser(prog="mnist-digits",
                     description="Train, compare and evaluate digit classifiers on MNIST.")
    from mnist_digits import __version__
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("train", help="train a model, evaluate it, write the report")
    p.add_argument("--model", help="model preset (see list-models); default cnn_fast")
    p.add_argument("--seed", type=int)
    p.add_argument("--tag", help="suffix for the run folder's name")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run in RUN_DIR from its last completed epoch")
    _add_training_flags(p)

    p = sub.add_parser("data", help="check the MNIST files, or download them if they are gone")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION",
                                parser_class=_Parser)
    d = data_sub.add_parser("verify", help="check the four MNIST files (hashes, IDX format)")
    d.add_argument("--data-dir", help="folder with the MNIST .gz files (default: data/mnist)")
    d = data_sub.add_parser("download", help="fetch missing or corrupt MNIST files from the "
                                             "public mirrors, verified")
    d.add_argument("--dest", help="target folder (default: data/mnist)")
    d.add_argument("--force", action="store_true", help="download even files that verify")
    d.add_argument("--timeout", type=_positive_float, default=30.0,
                   help="seconds to wait on each mirror (default 30)")

    p = sub.add_parser("evaluate", help="redo a run's evaluation report on the test set")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")

    p = sub.add_parser("list-models", help="list the model presets")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("compare", help="train several models over seeds and tabulate them")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--models", help="comma-separated presets, or 'all'")
    src.add_argument("--runs", type=Path, nargs="+", metavar="RUN_DIR",
                     help="tabulate existing runs instead of training")
    p.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1 (default 3)")
    _add_training_flags(p)

    p = sub.add_parser("ensemble", help="average trained runs into one model and evaluate it")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                   help="the members: finished run folders trained on the same split")
    p.add_argument("--name", default="ensemble", help="name in reports (default: ensemble)")
    p.add_argument("--tag", help="suffix for the run folder's name")
    p.add_argument("--results-dir", type=Path, default=Path(DEFAULT_RESULTS_DIR),
                   help="where the run folder goes (default: results)")

    p = sub.add_parser("predict", help="read digits from image files or folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders (recursive)")
    p.add_argument("--model", help="run folder or .keras file (default: the packaged, "
                                   "calibrated reading model; results/latest is your last run)")
    p.add_argument("--format", choices=("text", "jsonl", "csv"), default="text")
    p.add_argument("--top", type=_positive_int, default=1, metavar="K",
                   help="show the K most probable digits (text, jsonl)")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--save-preprocessed", type=Path, metavar="DIR",
                   help="write the 28x28 images the model saw into DIR")
    p.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD, metavar="P",
                   help="calibrated confidence under which a digit is 'unsure' (default "
                        "%(default)s); higher rejects more")

    p = sub.add_parser("serve", help="the drawing web page and its JSON API")
    p.add_argument("--model", help="run folder or .keras file (default: the packaged, "
                                   "calibrated reading model; results/latest is your last run)")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=_positive_float, default=5.0)
    p.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD, metavar="P",
                   help="calibrated confidence under which a digit is 'unsure' (default "
                        "%(default)s)")

    p = sub.add_parser("export", help="export a model for serving elsewhere, verified")
    p.add_argument("--model", required=True, help="run folder or .keras file")
    p.add_argument("--format", required=True, choices=("savedmodel", "litert", "onnx"))
    p.add_argument("--out", type=Path, required=True, help="output folder or file")
    p = sub.add_parser("package-model", help="put a finished, calibrated run into the package "
                                             "as the default model, with its model card")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the finished run")
    p.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD, metavar="P",
                   help="the operating point the card states (default %(default)s)")
    p.add_argument("--bench", type=Path, metavar="FILE",
                   help="a bench result JSON measured with this model, for the card's figures")
    p.add_argument("--dest", type=Path, help="target folder (default: the package's pretrained/)")

    p = sub.add_parser("bench", help="measure and record: training speed and accuracy against "
                                     "reference recipes, ensembles, user-style images, inference")
    p.add_argument("--model", help="run folder or .keras file for realworld and inference "
                                   "(default: the training section's cnn_fast run, else "
                                   "results/latest)")
    p.add_argument("--only", metavar="SECTION[,SECTION]",
                   help="run only these sections: training, ablation, best, realworld, "
                        "inference, load")
    p.add_argument("--quick", action="store_true", help="a tiny run in seconds (smoke test)")
    p.add_argument("--out", type=Path, default=Path("bench") / "results",
                   help="where the result files go (default: bench/results)")
    p.add_argument("--results-dir", type=Path, default=Path(DEFAULT_RESULTS_DIR),
                   help="the training runs go to RESULTS_DIR/bench/<stamp>/ (default: results)")
    return parser


_TRAIN_FIELDS = ("model", "seed", "epochs", "batch_size", "optimizer", "learning_rate",
                 "lr_schedule", "warmup_epochs", "weight_decay", "label_smoothing",
                 "early_stopping_patience", "augment", "val_size", "data_dir", "limit", "outliers")


def _cli_values(args: argparse.Namespace) -> dict[str, Any]:
    values = {k: getattr(args, k, None) for k in _TRAIN_FIELDS}
    if args.model_options:
        values["model_options"] = dict(args.model_options)
    return values


def _file_values(args: argparse.Namespace) -> dict[str, Any]:
    from mnist_digits.config import read_config_file

    return read_config_file(args.config) if args.config else {}


def cmd_train(args: argparse.Namespace) -> int:
    from mnist_digits import runs, train
    from mnist_digits.config import TrainConfig, resolve_config

    if args.resume:
        given = [k for k, v in _cli_values(args).items() if v is not None]
        if given or args.config or args.tag:
            flags = ", ".join("--" + k.replace("_", "-") for k in given) or "the other flags"
            raise ConfigError(f"--resume continues a run with its saved config; drop {flags}")
        run_dir = runs.resolve_run_dir(args.resume, need=runs.CONFIG)
        config = TrainConfig(**runs.read_json(run_dir / runs.CONFIG)["config"])
        results_dir = run_dir.parent
    else:
        config = resolve_config(_file_values(args), _cli_values(args))
        results_dir = args.results_dir
        run_dir = runs.new_run_dir(results_dir, config.model, args.tag)
    print(f"Run folder: {run_dir}", flush=True)
    try:
        metrics = train.train(config, run_dir, resume=bool(args.resume))
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


def cmd_data(args: argparse.Namespace) -> int:
    from mnist_digits import data, download

    if args.data_command == "verify":
        (x_train, _), (x_test, _) = data.load_mnist(args.data_dir)
        print(f"MNIST files OK: {len(x_train)} training and {len(x_test)} test images, "
              f"SHA-256 verified ({args.data_dir or data.default_data_dir()})")
        return 0
    outcome = download.download_mnist(args.dest, timeout=args.timeout, force=args.force)
    for name, source in outcome.items():
        print(f"{name}: {'already present, verified' if source == 'present' else source}")
    print(args.dest or data.default_data_dir())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mnist_digits import evaluate

    metrics = evaluate.evaluate_run(args.run_dir)
    print(f"{metrics['model']}: test accuracy {metrics['test']['accuracy']:.2%} "
          f"(validation {metrics['val']['accuracy']:.2%}), {metrics['num_errors']} errors")
    print(Path(args.run_dir).resolve())
    return 0


def cmd_list_models(args: argparse.Namespace) -> int:
    from mnist_digits import models

    names = models.list_models()
    if args.format == "text":
        print("\n".join(names))
        return 0
    out = []
    for name in names:
        spec = models.get_model_spec(name)
        out.append({"name": name, "family": spec.family,
                    "params": models.count_params(models.build_model(name)),
                    "description": spec.description, "recipe": dict(spec.recipe)})
    print(json.dumps(out, indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mnist_digits import compare, models, runs

    if args.runs:
        run_dirs = args.runs
    else:
        names = models.list_models() if args.models == "all" else \
            [n.strip() for n in args.models.split(",") if n.strip()]
        if not names:
            raise ConfigError("--models needs at least one preset name")
        cli_values = {k: v for k, v in _cli_values(args).items() if k not in ("model", "seed")}
        run_dirs = compare.train_runs(names, range(args.seeds), args.results_dir,
                                      file_values=_file_values(args), cli_values=cli_values)
    out_dir = runs.new_run_dir(args.results_dir, "compare")
    rows = compare.write_comparison(run_dirs, out_dir)
    print(compare.to_markdown(rows), end="")
    print(out_dir)
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from mnist_digits import ensemble, runs

    run_dir, metrics = ensemble.make_ensemble(args.run_dirs, args.results_dir, tag=args.tag,
                                              name=args.name)
    runs.point_latest(args.results_dir, run_dir)
    print(f"{metrics['model']} of {metrics['members']}: test accuracy "
          f"{metrics['test']['accuracy']:.2%} (validation {metrics['val']['accuracy']:.2%}), "
          f"{metrics['num_errors']} errors")
    print(run_dir)
    return 0


def _load_model_or_usage_error(path: str):
    from mnist_digits import predict
    from mnist_digits.errors import RunError

    try:
        return predict.load_model(path)
    except RunError as err:
        raise ConfigError(f"{err} (pass --model RUN_DIR or a .keras file)") from None


def _progress(done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\r{done}/{total} images", end=end, file=sys.stderr, flush=True)


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
    show_progress = sys.stderr.isatty() and len(paths) > args.batch_size
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.format == "csv" else None
    if writer:
        writer.writerow(["path", "status", "text", "digit", "confidence",
                         *(f"p{d}" for d in range(10)), "error"])
    failed = 0
    results = reading.read_files(model, paths, threshold=args.threshold,
                                 batch_size=args.batch_size,
                                 progress=_progress if show_progress else None)
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
            probs = result.probabilities or [""] * 10
            writer.writerow([result.path, result.status, result.text or "",
                             "" if result.digit is None else result.digit,
                             "" if result.confidence is None else result.confidence, *probs,
                             result.error or ""])
        else:
            print(_text_line(result, args.top))
    return EXIT_ERROR if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mnist_digits.serve.app import create_app

    model = _load_model_or_usage_error(args.model)
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
    from mnist_digits import bench

    # A bad --model fails now, not after an hour of training.
    model = _load_model_or_usage_error(args.model) if args.model else None
    result, path = bench.run_bench(model_path=args.model, model=model, only=args.only,
                                   quick=args.quick, out_dir=args.out,
                                   results_dir=args.results_dir)
    print(bench.to_markdown(result))
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


COMMANDS = {"train": cmd_train, "data": cmd_data, "evaluate": cmd_evaluate,
            "list-models": cmd_list_models, "compare": cmd_compare, "ensemble": cmd_ensemble,
            "predict": cmd_predict, "serve": cmd_serve, "export": cmd_export,
            "package-model": cmd_package_model, "bench": cmd_bench}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # TensorFlow's C++ start-up chatter buries the useful output; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"mnist-digits {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except MnistDigitsError as err:
        print(f"mnist-digits {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"mnist-digits {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
