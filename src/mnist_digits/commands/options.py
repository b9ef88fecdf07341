"""What the subcommands' parsers share: argument types, the training and cluster flags, the
help texts, and the progress bar. Imports no framework."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mnist_digits.config import FIELD_NAMES, TrainConfig, read_config_file
from mnist_digits.defaults import DEFAULT_RESULTS_DIR, DEFAULT_THRESHOLD
from mnist_digits.errors import ConfigError, RunError


def parser_type(convert: Callable[[str], Any], expected: str,
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


integer = parser_type(int, "a whole number")
number = parser_type(float, "a number")
positive_int = parser_type(int, "a whole number", lambda v: v >= 1, "must be at least 1")
non_negative_int = parser_type(int, "a whole number", lambda v: v >= 0, "must be 0 or more")
positive_float = parser_type(float, "a number", lambda v: v > 0, "must be positive")
non_negative_float = parser_type(float, "a number", lambda v: v >= 0, "must be 0 or more")
threshold = parser_type(float, "a number in [0, 1]", lambda v: 0 <= v <= 1,
                        "must be between 0 and 1")

MODEL_HELP = ("'packaged' (the default: the packaged, calibrated reading model), a run folder "
              "or a .keras file (results/latest is your last run)")
THRESHOLD_HELP = ("calibrated confidence under which a digit is 'unsure' (default %(default)s); "
                  "higher rejects more")


def add_threshold(p: argparse.ArgumentParser, help: str = THRESHOLD_HELP) -> None:
    p.add_argument("--threshold", type=threshold, default=DEFAULT_THRESHOLD, metavar="P",
                   help=help)


def command(sub: Any, name: str, summary: str, description: str,
            examples: Sequence[str]) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (in the command list), a description and examples."""
    epilog = "examples:\n" + "\n".join(f"  mnist-digits {e}" for e in examples)
    # Raw, so the examples keep their lines; the description is wrapped here instead.
    return sub.add_parser(name, help=summary, description=textwrap.fill(description, 79),
                          epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


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
    "int": {"type": integer}, "int | None": {"type": integer},
    "float": {"type": number}, "str": {}, "str | None": {},
    "augment": {"type": _augment}, "model_options": {"type": _option, "action": "append"},
}
_METAVARS = {"int": "N", "int | None": "N", "float": "X", "str": "NAME"}


def add_training_flags(p: argparse.ArgumentParser, *, exclude: Sequence[str] = ()) -> None:
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


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as flags (None where not given)."""
    values = {name: getattr(args, name, None) for name in FIELD_NAMES}
    if values["model_options"]:
        values["model_options"] = dict(values["model_options"])
    return values


def file_values(args: argparse.Namespace) -> dict[str, Any]:
    """The fields of `--config FILE`, or none."""
    return read_config_file(args.config) if args.config else {}


def _address(text: str) -> str:
    from mnist_digits.cluster.connect import check_address

    try:
        return check_address(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--cluster {text!r}: ")) \
            from None


def add_cluster_flags(p: argparse.ArgumentParser, what: str = "jobs") -> None:
    """--cluster and what each job gets on it (Ray, the [cluster] extra)."""
    g = p.add_argument_group("cluster (Ray; the [cluster] extra)")
    g.add_argument("--cluster", type=_address, metavar="ADDRESS",
                   help=f"run the {what} side by side on Ray: 'ray' starts Ray on this machine; "
                        f"HOST:PORT or ray://HOST:PORT uses an existing cluster (default: one "
                        f"after another, here)")
    g.add_argument("--cpus-per-job", type=positive_float, metavar="N",
                   help="CPUs each job gets; its framework threads are held to them (default 1 "
                        "on a cluster; here, the whole machine)")
    g.add_argument("--gpus-per-job", type=non_negative_float, default=0.0, metavar="N",
                   help="GPUs each job gets on a cluster; fractions share one (default 0)")
    g.add_argument("--retries", type=non_negative_int, default=2, metavar="N",
                   help="times a job whose worker or node died is run again (default 2)")


def check_model_name(name: str | None) -> None:
    """Fails fast, before any framework loads, on a `--model` that names nothing, or a folder
    that is no finished run (a SavedModel folder is refused when loaded, with its reason).

    Raises:
        ConfigError: what `--model` names is missing; the message says what it takes.
    """
    from mnist_digits import runs
    from mnist_digits.defaults import PACKAGED

    if name is None or name == PACKAGED:
        return
    path = Path(name)
    if not path.exists():
        raise ConfigError(f"model {name} not found; pass 'packaged', a run folder or a .keras "
                          f"file")
    if path.is_dir() and not (path / "saved_model.pb").exists():
        try:
            runs.resolve_run_dir(path)
        except RunError as err:
            raise ConfigError(str(err)) from None


def load_model(name: str | None) -> Any:
    """The model `--model` names; a bad one is a usage error (its message says what to do)."""
    from mnist_digits import predict

    try:
        return predict.load_model(name)
    except RunError as err:
        raise ConfigError(str(err)) from None


@contextlib.contextmanager
def progress_bar(what: str) -> Iterator[Callable[..., None]]:
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
