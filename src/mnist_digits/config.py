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
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
KEEP_EPOCHS = ("best", "last")
DEFAULT_MODEL = "cnn_fast"

# Parameter -> (meaning, upper bound that still leaves a readable digit).
AUGMENT_PARAMETERS: dict[str, tuple[str, float]] = {
    "rotation": ("maximum rotation, degrees either way", 45.0),
    "shift": ("maximum shift, pixels in each direction", 8.0),
    "zoom": ("maximum relative change of size, e.g. 0.1 for 90%..110%", 0.5),
    "squish": ("maximum relative change of aspect ratio", 0.5),
    "elastic": ("elastic distortion: scale of the smoothed displacement field, pixels (Simard "
                "et al. 2003 used 34)", 40.0),
    "elastic_sigma": ("smoothness of the elastic field, pixels (default 4)", 10.0),
    "erasing": ("probability of erasing a random rectangle (Keras RandomErasing factor)", 1.0),
    "thicken": ("probability of a broader pen: strokes one pixel thicker on each side", 1.0),
    "lowres": ("probability of a low-resolution scan: down to 10 or 14 pixels and back up", 1.0),
}

# Named policies. "standard" is the usual MNIST set (Ciresan et al. 2010; Simard et al. 2003 used
# rotation, scaling and elastic distortion); "strong" adds erasing for the longest recipes.
AUGMENT_POLICIES: dict[str, dict[str, float]] = {
    "none": {},
    "light": {"rotation": 8.0, "shift": 2.0, "zoom": 0.08},
    "standard": {"rotation": 10.0, "shift": 2.0, "zoom": 0.1, "squish": 0.1},
    "strong": {"rotation": 12.0, "shift": 2.5, "zoom": 0.12, "squish": 0.15, "erasing": 0.25},
}


def check_augment_policy(policy: Mapping[str, Any]) -> dict[str, float]:
    """Validates an augmentation policy and returns it as a plain dict of floats.

    Raises:
        ConfigError: an unknown key, or a value that is not a number in its allowed range.
    """
    unknown = sorted(set(policy) - set(AUGMENT_PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown augmentation parameter(s) {', '.join(unknown)}; valid ones "
                          f"are {', '.join(AUGMENT_PARAMETERS)}")
    checked = {}
    for key, value in policy.items():
        upper = AUGMENT_PARAMETERS[key][1]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 <= value <= upper):
            raise ConfigError(f"augmentation {key} must be a number in [0, {upper:g}] "
                              f"({AUGMENT_PARAMETERS[key][0]}), got {value!r}")
        if value:
            checked[key] = float(value)
    return checked


def parse_augment_policy(text: str) -> dict[str, float]:
    """Parses `--augment`: a policy name from `AUGMENT_POLICIES`, or `key=value,...`.

    Only the syntax is checked here; `TrainConfig` checks the keys and ranges.

    Raises:
        ConfigError: an unknown name, or a malformed value.
    """
    text = text.strip()
    if text in AUGMENT_POLICIES:
        return dict(AUGMENT_POLICIES[text])
    if "=" not in text:
        raise ConfigError(f"unknown augmentation policy {text!r}; use one of "
                          f"{', '.join(AUGMENT_POLICIES)} or key=value pairs such as "
                          f"rotation=10,shift=2")
    policy: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            policy[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"augmentation {item.strip()!r} is not key=number, e.g. "
                              f"rotation=10") from None
        if not sep:
            raise ConfigError(f"augmentation {item.strip()!r} is not key=number")
    return policy


def _field(default: Any = dataclasses.MISSING, *, help: str, factory: Any = dataclasses.MISSING,
           **cli: Any) -> Any:
    """A config field whose metadata carries its help text (the CLI flag's help, too).

    `cli` may give the generated flag's names (`flags`, when not `--field-name`) and `metavar`.
    """
    return dataclasses.field(default=default, default_factory=factory,
                             metadata={"help": help, **cli})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run does.

    Each field's `help` metadata says what it means; `mnist-digits train --help` shows the same
    text, because the CLI's training flags are generated from these fields.
    """

    model: str = _field(DEFAULT_MODEL, help="model preset (see `mnist-digits list-models`)",
                        metavar="NAME")
    model_options: Mapping[str, Any] = _field(
        factory=dict, help="a model builder option, e.g. dropout=0.3; repeatable",
        flags=("--option",), metavar="KEY=VALUE")
    epochs: int = _field(10, help="maximum number of epochs (early stopping may end sooner)")
    batch_size: int = _field(128, help="training batch size")
    optimizer: str = _field("adam", help=f"one of {', '.join(OPTIMIZERS)}")
    learning_rate: float = _field(1e-3, help="peak learning rate",
                                  flags=("--learning-rate", "--lr"))
    lr_schedule: str = _field(
        "constant", help="constant; cosine (decay to 0 over the run); or warmup_cosine (linear "
                         "warm-up over --warmup-epochs, then cosine decay)")
    warmup_epochs: float = _field(0.0, help="warm-up length for warmup_cosine, in epochs (may "
                                            "be fractional)")
    weight_decay: float = _field(0.0, help="decoupled weight decay (adamw only)")
    label_smoothing: float = _field(0.0, help="label smoothing of the cross-entropy, in [0, 1)")
    ema_momentum: float = _field(
        0.0, flags=("--ema",), metavar="M",
        help="weight averaging: keep an exponential moving average of the weights with this "
             "momentum (e.g. 0.999), and validate, checkpoint and save it; 0 disables")
    augment: Mapping[str, Any] = _field(
        factory=dict, metavar="POLICY",
        help=f"training augmentation: {', '.join(AUGMENT_POLICIES)}, or key=value pairs of "
             f"{', '.join(AUGMENT_PARAMETERS)}, e.g. rotation=10,shift=2 (replaces the "
             f"model's own policy)")
    precision: str = _field(
        "float32", metavar="NAME",
        help="training arithmetic: float32; mixed_bfloat16 (bfloat16 arithmetic on float32 "
             "weights, a CNN's dense head in float32: faster where the hardware has bfloat16 "
             "units); or auto: mixed_bfloat16 where that was measured faster (TensorFlow or "
             "torch on a CPU with bfloat16 units; `info` says), float32 elsewhere. The saved "
             "model is float32 either way")
    early_stopping_patience: int = _field(
        0, flags=("--patience",),
        help="epochs without a better validation loss before stopping; 0 disables (the best "
             "weights on validation are restored either way)")
    keep_epoch: str = _field(
        "best", metavar="WHICH",
        help="the epoch whose weights the run keeps: best (the lowest validation loss) or last "
             "(for a schedule that decays to 0, where a distilled student's loss against the "
             "labels is no guide)")
    val_size: int = _field(10_000, help="training images held out for validation (the last ones)")
    seed: int = _field(0, help="seed of the weights, shuffling, dropout and augmentation")
    data_dir: str | None = _field(None, help="folder with the MNIST .gz files (default: the "
                                             "vendored data/mnist)", metavar="DIR")
    limit: int | None = _field(None, metavar="N", help="use only the first N images of each "
                                                       "split (quick experiments)")
    outliers: float = _field(
        0.0, metavar="SHARE",
        help="synthetic non-digits added to training, as a share of it (e.g. 0.15), with a "
             "uniform target, so the model learns to say 'not a digit'")
    teacher: str | None = _field(
        None, metavar="RUN_DIR",
        help="knowledge distillation: train on this model's probabilities for each augmented "
             "image as well as on the labels; 'packaged' (the packaged reading model) or a "
             "finished run folder trained on the same split")
    distill_weight: float = _field(
        1.0, metavar="W", help="with --teacher: weight of the teacher's term against the label "
                               "loss")
    distill_temperature: float = _field(
        1.0, metavar="T", help="with --teacher: temperature that softens the teacher's and the "
                               "student's probabilities alike in the teacher's term")

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
        if not 0 <= self.ema_momentum < 1:
            raise ConfigError(f"ema_momentum must be in [0, 1) (0 disables it), got "
                              f"{self.ema_momentum}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of "
                              f"{', '.join(PRECISIONS)}")
        if self.early_stopping_patience < 0:
            raise ConfigError("early_stopping_patience must be >= 0 (0 disables it), got "
                              f"{self.early_stopping_patience}")
        if self.keep_epoch not in KEEP_EPOCHS:
            raise ConfigError(f"unknown keep_epoch {self.keep_epoch!r}; choose one of "
                              f"{', '.join(KEEP_EPOCHS)}")
        if self.keep_epoch == "last" and self.early_stopping_patience:
            raise ConfigError("keep_epoch last and early stopping contradict each other (early "
                              "stopping restores the best weights); drop one of them")
        if self.val_size < 1:
            raise ConfigError(f"val_size must be at least 1, got {self.val_size}")
        if not 0 <= self.outliers <= 1:
            raise ConfigError(f"outliers must be in [0, 1], got {self.outliers}")
        if self.teacher is not None and not self.teacher.strip():
            raise ConfigError("teacher must be 'packaged' or a run folder, got an empty string")
        if not self.distill_weight >= 0:
            raise ConfigError(f"distill_weight must be >= 0, got {self.distill_weight}")
        if not self.distill_temperature > 0:
            raise ConfigError(f"distill_temperature must be positive, got "
                              f"{self.distill_temperature}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1, got {self.limit}")
        # A plain dict, so the config serializes and compares the same whatever was passed in.
        object.__setattr__(self, "model_options", dict(self.model_options))
        object.__setattr__(self, "augment", check_augment_policy(self.augment))

    @property
    def split(self) -> dict[str, Any]:
        """The fields that decide the data split, as `data.load_splits` takes them.

        Runs that share them were validated and tested on the same images.
        """
        return {"data_dir": self.data_dir, "val_size": self.val_size, "limit": self.limit}

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
    # Imported here, not at the top: models imports Keras, and the CLI imports this module to
    # build its flags, where `--help` should not wait for Keras.
    from mnist_digits import models

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
