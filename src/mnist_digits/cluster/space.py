"""A sweep's search space: read from JSON, checked before anything runs, turned into configs.

The format, one entry per hyperparameter:

    {"learning_rate": {"loguniform": [1e-4, 1e-2]},
     "dropout": {"uniform": [0.1, 0.5]},
     "batch_size": {"choice": [128, 256]},
     "epochs": {"randint": [2, 6]}}

Keys are `TrainConfig` fields (bar `model`) or options of the swept model's builder (as
`--option` sets them). `randint` bounds are both included.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mnist_digits.config import FIELD_NAMES, TrainConfig, resolve_config
from mnist_digits.errors import ConfigError

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")

Space = dict[str, tuple[str, list[Any]]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_space(text: str, *, source: str = "space") -> Space:
    """Parses and checks the format of a search space (not yet its keys: see `check_space`).

    Returns:
        Key -> (distribution, its arguments).

    Raises:
        ConfigError: not JSON, or an entry is not one of the distributions with valid bounds.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source} is not valid JSON: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source} must be a JSON object with at least one hyperparameter, "
                          f'like {{"learning_rate": {{"loguniform": [1e-4, 1e-2]}}}}')
    space: Space = {}
    for key, entry in raw.items():
        where = f"{source}: {key}"
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in \
                DISTRIBUTIONS:
            raise ConfigError(f"{where} must be one of {{\"{'|'.join(DISTRIBUTIONS)}\": [...]}}, "
                              f"got {json.dumps(entry)}")
        kind, args = next(iter(entry.items()))
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: {kind} takes a non-empty list, got {json.dumps(args)}")
        if kind != "choice":
            ordered = len(args) == 2 and all(_is_number(a) for a in args) and (
                args[0] < args[1] or (kind == "randint" and args[0] == args[1]))
            if not ordered:
                raise ConfigError(f"{where}: {kind} takes [low, high] numbers with low < high, "
                                  f"got {json.dumps(args)}")
            if kind == "loguniform" and args[0] <= 0:
                raise ConfigError(f"{where}: loguniform bounds must be positive, got "
                                  f"{json.dumps(args)}")
            if kind == "randint" and not all(isinstance(a, int) for a in args):
                raise ConfigError(f"{where}: randint takes whole numbers, got "
                                  f"{json.dumps(args)}")
        space[key] = (kind, args)
    return space


def read_space(path: str | os.PathLike) -> Space:
    """Reads a search space file (see `parse_space`).

    Raises:
        ConfigError: the file is missing or invalid.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"space file {path}: {err.strerror}") from None
    return parse_space(text, source=f"space file {path}")


def model_option_keys(space: Space) -> list[str]:
    """The keys of `space` that are not config fields: options of the model's builder."""
    return [key for key in space if key not in FIELD_NAMES]


def trial_config(model: str, sampled: Mapping[str, Any],
                 file_values: Mapping[str, Any] | None = None,
                 cli_values: Mapping[str, Any] | None = None) -> TrainConfig:
    """The config of one trial: the model's recipe < `--config` < flags < the sampled values.

    Raises:
        ConfigError: a value the config or the model rejects.
    """
    fields = {k: v for k, v in sampled.items() if k in FIELD_NAMES}
    options = {k: v for k, v in sampled.items() if k not in FIELD_NAMES}
    cli = dict(cli_values or {})
    cli["model_options"] = {**cli.get("model_options", {}), **options}
    return resolve_config(file_values, {**cli, **fields, "model": model})


def check_space(space: Space, model: str, file_values: Mapping[str, Any] | None = None,
                cli_values: Mapping[str, Any] | None = None) -> None:
    """Checks that every trial the space can produce is a valid config, before any runs.

    Every key must be a config field or an option of `model`; then every bound and choice is
    tried, each with the others at their first value, the config validated and, for model
    options, the model built.

    Raises:
        ConfigError: an unknown key, or a value the config or the model rejects.
    """
    from mnist_digits import models

    if "model" in space:
        raise ConfigError("the space cannot vary `model`; sweep one model at a time (compare "
                          "models with `mnist-digits compare`)")
    options = model_option_keys(space)
    models.check_model_options(model, dict.fromkeys(options))
    first = {key: args[0] for key, (_, args) in space.items()}
    for key, (kind, args) in space.items():
        values = args if kind == "choice" else args[:1] + args[-1:]
        for value in values:
            sampled = {**first, key: value}
            try:
                config = trial_config(model, sampled, file_values, cli_values)
                if options:
                    models.build_model(config.model, **config.model_options)
            except ConfigError as err:
                raise ConfigError(f"space: {key}={json.dumps(value)} gives an invalid trial: "
                                  f"{err}") from None


def to_tune(space: Space) -> dict[str, Any]:
    """The space as Ray Tune's sampling domains."""
    from ray import tune

    domains: dict[str, Any] = {}
    for key, (kind, args) in space.items():
        if kind == "choice":
            domains[key] = tune.choice(args)
        elif kind == "randint":
            domains[key] = tune.randint(args[0], args[1] + 1)  # Tune's upper bound is excluded
        else:
            domains[key] = getattr(tune, kind)(*args)
    return domains


def is_log_scale(space: Space, key: str) -> bool:
    """Whether the key is best plotted on a log axis."""
    return space[key][0] == "loguniform"

