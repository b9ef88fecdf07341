"""The training configuration: one frozen dataclass, resolved from defaults, a file and flags.

Precedence, lowest first: the dataclass defaults < the chosen model's recipe (its registered
training defaults, so `train --model NAME` reproduces that preset's figure) < `--config file.json`
< command-line flags. The resolved config is saved as `config.json` in the run folder before
training starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mnist_digits.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine")
DEFAULT_MODEL = "cnn_fast"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run does.

    Attributes:
        model: registry name of the model preset (`mnist-digits list-models`).
        model_options: keyword arguments passed to the preset's builder, e.g. `{"dropout": 0.3}`.
        epochs: maximum number of epochs (early stopping may end sooner).
        batch_size: training batch size.
        optimizer: one of `OPTIMIZERS`.
        learning_rate: peak learning rate.
        lr_schedule: `constant`, `cosine` (decay to 0 over the run) or `warmup_cosine` (linear
            warm-up over `warmup_epochs`, then cosine decay).
        warmup_epochs: length of the warm-up for `warmup_cosine`, in epochs (may be fractional).
        weight_decay: decoupled weight decay, used by `adamw` only.
        label_smoothing: label smoothing for the categorical cross-entropy.
        augment: on-the-fly augmentation during training, e.g. `{"rotation": 10, "shift": 2}`;
            empty means none. See `augment.PARAMETERS` and the named `augment.POLICIES`.
        early_stopping_patience: epochs without validation-loss improvement before stopping;
            0 disables early stopping. The best weights on validation are restored either way.
        val_size: number of training images held out for validation (the last ones).
        seed: seed for `keras.utils.set_random_seed` (weights, shuffling, dropout).
        data_dir: folder with the MNIST files; None means the vendored copy.
        limit: if set, use only the first `limit` images of each split (smoke tests).
        outliers: synthetic non-digits added to the training set, as a share of its size, with
            a uniform target (outlier exposure, see `outliers`); 0 adds none.
    """

    model: str = DEFAULT_MODEL
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    early_stopping_patience: int = 0
    val_size: int = 10_000
    seed: int = 0
    data_dir: str | None = None
    limit: int | None = None
    outliers: float = 0.0

    def __post_init__(self) -> None:
        # Types first, so a JSON file with "epochs": "ten" gets a clear message, not a crash later.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            _check_type(field.name, value, field.type)
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of "
                              f"{', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of "
                              f"{', '.join(LR_SCHEDULES)}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.warmup_epochs < 0 or (
            self.lr_schedule == "warmup_cosine" and self.warmup_epochs >= self.epochs
        ):
            raise ConfigError(f"warmup_epochs must be in [0, epochs={self.epochs}), got "
                              f"{self.warmup_epochs}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.early_stopping_patience < 0:
            raise ConfigError("early_stopping_patience must be >= 0 (0 disables it), got "
                              f"{self.early_stopping_patience}")
        if self.val_size < 1:
            raise ConfigError(f"val_size must be at least 1, got {self.val_size}")
        if not 0 <= self.outliers <= 1:
            raise ConfigError(f"outliers must be in [0, 1], got {self.outliers}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1, got {self.limit}")
        # A plain dict, so the config serializes and compares the same whatever was passed in.
        object.__setattr__(self, "model_options", dict(self.model_options))
        from mnist_digits import augment  # late: it imports Keras, which is slow to import

        object.__setattr__(self, "augment", augment.check_policy(self.augment))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)


_TYPES = {
    "str": (str,), "int": (int,), "float": (int, float), "str | None": (str, type(None)),
    "int | None": (int, type(None)), "Mapping[str, Any]": (Mapping,),
}


def _check_type(name: str, value: Any, annotation: str) -> None:
    allowed = _TYPES[annotation]
    # bool is an int subclass; "epochs": true is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise ConfigError(f"config field {name!r} must be {annotation}, got "
                          f"{type(value).__name__} {value!r}")


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))


def split_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields that decide the data split, from a config dict (defaults filled in).

    Runs that share them were validated and tested on the same images.
    """
    return {"data_dir": values.get("data_dir"),
            "val_size": values.get("val_size", TrainConfig.val_size),
            "limit": values.get("limit")}


def check_keys(values: Mapping[str, Any], *, source: str) -> None:
    """Raises ConfigError naming any key that is not a TrainConfig field."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"{source}: unknown config key(s) {', '.join(unknown)}; valid keys are "
                          f"{', '.join(FIELD_NAMES)}")


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a JSON config file: a flat object of TrainConfig fields, or a run's `config.json`.

    Raises:
        ConfigError: the file is missing, not JSON, not an object, or has unknown keys.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"config file {path} is not readable JSON: {err}") from None
    # A run folder's config.json nests the config next to environment details; accept it, so a
    # run can be repeated with `--config results/RUN/config.json`.
    if isinstance(values, dict) and isinstance(values.get("config"), dict):
        values = values["config"]
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of config fields")
    check_keys(values, source=str(path))
    return values


def resolve_config(
    file_values: Mapping[str, Any] | None = None,
    cli_values: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Builds the config: defaults < model recipe < file values < CLI values.

    Args:
        file_values: fields read from `--config` (see `read_config_file`).
        cli_values: fields given as flags; None values mean "not given".

    Returns:
        The validated `TrainConfig`.

    Raises:
        ConfigError: an unknown model, key or invalid value.
    """
    from mnist_digits import models  # late: models imports Keras, which is slow to import

    file_values = dict(file_values or {})
    cli_values = {k: v for k, v in (cli_values or {}).items() if v is not None}
    check_keys(file_values, source="config file")
    check_keys(cli_values, source="command line")
    model = cli_values.get("model", file_values.get("model", DEFAULT_MODEL))
    recipe = dict(models.get_model_spec(model).recipe)
    merged: dict[str, Any] = {**recipe, **file_values, **cli_values, "model": model}
    # Model options merge key by key, so `--option dropout=0.3` keeps the file's other options.
    merged["model_options"] = {
        **recipe.get("model_options", {}),
        **file_values.get("model_options", {}),
        **cli_values.get("model_options", {}),
    }
    config = TrainConfig(**merged)
    models.check_model_options(config.model, config.model_options)
    return config
