"""The model registry: named presets over two parametric builders.

Each preset is a small function decorated with `@register_model`, timm-style. The decorator
gives its family, the one-line description that `list-models` shows, and its training recipe:
the config defaults that `train --model NAME` uses, so the figures in the docs can be
reproduced by name. The CLI, `compare` and the tests all iterate over this one registry.
Measured results behind each recipe are in docs/training.md.

Importing this module imports no framework (the CLI checks `--model` names before Keras
starts); the builders import Keras when they run.

Builders return *uncompiled* functional `keras.Model`s named after their registry key, taking
float32 `(n, 28, 28, 1)` images in [0, 1] and returning softmax probabilities `(n, 10)`. All
layers are stock Keras layers (no Lambda), so `model.keras` reloads with `safe_mode=True`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mnist_digits.data import IMAGE_SHAPE, NUM_CLASSES
from mnist_digits.errors import ConfigError

if TYPE_CHECKING:
    import keras
    from keras import layers


def _classifier() -> layers.Dense:
    """Every network's last layer: softmax over the digits.

    It computes in float32 whatever the training precision, so the probabilities, the loss and
    the calibration keep their full resolution in mixed bfloat16 (`TrainConfig.precision`).
    """
    from keras import layers

    return layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities",
                        dtype="float32")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered preset.

    Attributes:
        name: the registry key, also the Keras model's name.
        family: `"mlp"` or `"cnn"`.
        description: one line for `list-models`.
        build: the preset function; `build(**options)` returns a new uncompiled model.
        recipe: TrainConfig field defaults for this preset (epochs, schedule, ...).
    """

    name: str
    family: str
    description: str
    build: Callable[..., keras.Model]
    recipe: Mapping[str, Any]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(family: str, description: str, **recipe: Any) -> Callable:
    """Registers a preset function under its own name, with its description and training recipe.

    Args:
        family: `"mlp"` or `"cnn"`: which parametric builder the preset uses.
        description: one line for `list-models` and the comparison.
        **recipe: TrainConfig fields that differ from the defaults for this preset.
    """
    if family not in _BUILDERS:
        raise ValueError(f"family must be one of {', '.join(_BUILDERS)}, got {family!r}")

    def decorator(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        _REGISTRY[fn.__name__] = ModelSpec(fn.__name__, family, description, fn, recipe)
        return fn

    return decorator


def list_models(family: str | None = None) -> list[str]:
    """Names of the registered presets, in registration order (small to large per family)."""
    return [name for name, spec in _REGISTRY.items() if family in (None, spec.family)]


def get_model_spec(name: str) -> ModelSpec:
    """Looks a preset up by name.

    Raises:
        ConfigError: no such preset; the message suggests the closest names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(f"unknown model {name!r}; {hint}run `mnist-digits list-models` to see "
                          f"all {len(_REGISTRY)} presets") from None


def parse_names(text: str) -> list[str]:
    """The presets a `--models` value names: a comma-separated list, or `all`.

    Raises:
        ConfigError: no name given, or an unknown one.
    """
    names = list_models() if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--models needs at least one preset name")
    for name in names:
        get_model_spec(name)
    return names


def model_option_names(name: str) -> list[str]:
    """The options a preset accepts: its builder's keyword parameters."""
    builder = _BUILDERS[get_model_spec(name).family]
    return [p for p in inspect.signature(builder).parameters if p != "name"]


def check_model_options(name: str, options: Mapping[str, Any]) -> None:
    """Raises ConfigError if `options` has a key the preset's builder does not take."""
    valid = model_option_names(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {', '.join(unknown)}; its options are "
                          f"{', '.join(valid)}")


def build_model(name: str, **options: Any) -> keras.Model:
    """Builds a fresh, uncompiled model from a preset, with builder options overridden.

    Raises:
        ConfigError: unknown preset or option, or an option value the builder rejects.
    """
    spec = get_model_spec(name)
    check_model_options(name, options)
    try:
        return spec.build(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model {name!r}: invalid options {dict(options)}: {err}") from None


def describe() -> list[dict[str, Any]]:
    """Every preset as `list-models --format json` prints it: name, family, trainable
    parameters, description and recipe."""
    return [{"name": name, "family": spec.family,
             "params": count_params(build_model(name)), "description": spec.description,
             "recipe": dict(spec.recipe)} for name, spec in _REGISTRY.items()]


def count_params(model: keras.Model) -> int:
    """The number of trainable parameters."""
    import keras

    return int(sum(keras.ops.size(w) for w in model.trainable_weights))


# --- parametric builders ---------------------------------------------------------------------


def build_mlp(
    name: str,
    hidden: Sequence[int] = (512, 512),
    dropout: float = 0.2,
    input_dropout: float = 0.0,
    batch_norm: bool = False,
    bn_momentum: float = 0.9,
    activation: str = "relu",
    deskew: bool = False,
) -> keras.Model:
    """A feedforward net: flatten, then Dense(+BatchNorm)+activation+Dropout per hidden layer.

    Args:
        name: the model's name.
        hidden: width of each hidden layer.
        dropout: dropout rate after each hidden layer.
        input_dropout: dropout rate on the input pixels (Hinton et al. 2012 used 0.2).
        batch_norm: batch normalization before each activation.
        bn_momentum: momentum of the batch-norm moving statistics (see `build_cnn`).
        activation: activation of the hidden layers.
        deskew: straighten each digit's slant first (`layers.Deskew`), at training and
            inference alike.
    """
    import keras
    from keras import layers

    from mnist_digits.layers import Deskew

    inputs = keras.Input(IMAGE_SHAPE, name="image")
    x = layers.Flatten()(Deskew(name="deskew")(inputs) if deskew else inputs)
    if input_dropout:
        x = layers.Dropout(input_dropout)(x)
    for width in hidden:
        # The bias is redundant when batch norm follows: its beta does the same job.
        x = layers.Dense(int(width), use_bias=not batch_norm)(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.Activation(activation)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = _classifier()(x)
    return keras.Model(inputs, outputs, name=name)


def build_cnn(
    name: str,
    stages: Sequence[Sequence[int]] = ((32,), (64,)),
    kernel_size: int = 3,
    first_kernel_size: int | None = None,
    padding: str = "valid",
    batch_norm: bool = False,
    dense_batch_norm: bool | None = None,
    bn_momentum: float = 0.9,
    head: str = "flatten",
    dense: Sequence[int] = (),
    dropout: float = 0.5,
    feature_dropout: float | None = None,
    deskew: bool = False,
) -> keras.Model:
    """A VGG-style convnet: stages of convolutions, each stage ending in 2x2 max pooling.

    Args:
        name: the model's name.
        stages: filters of each convolution, per stage; e.g. `((32, 32), (64,))`.
        kernel_size: convolution kernel size.
        first_kernel_size: kernel size of the very first convolution (a larger one sees whole
            strokes); `kernel_size` if None.
        padding: `"valid"` or `"same"`.
        batch_norm: batch normalization after each convolution and hidden dense layer.
        dense_batch_norm: batch normalization after the hidden dense layers; `batch_norm` if
            None. Batch norm on the convolutions doubled the training time of a small convnet on
            this CPU (15.7 vs 8.1 s/epoch), while on the dense layer it costs almost nothing.
        bn_momentum: momentum of the batch-norm moving statistics. Keras's 0.99 averages over
            ~100 steps of weights that change fast early on; after one epoch (391 steps) the
            inference-mode statistics still lag so much that validation accuracy measured 59-68%
            against 98% in training mode. 0.9 measured 98.8% for the same run.
        head: `"flatten"` or `"gap"` (global average pooling) before the dense layers.
        dense: widths of the hidden dense layers after the convolutions.
        dropout: dropout rate before each dense layer, including the classifier.
        feature_dropout: dropout rate on the convolutional features, before the first hidden
            dense layer; `dropout` if None.
        deskew: straighten each digit's slant first (`layers.Deskew`), at training and inference
            alike: an input treatment that makes a member err on other digits than its
            ensemble's plain-input members.
    """
    if head not in ("flatten", "gap"):
        raise ValueError(f"head must be 'flatten' or 'gap', got {head!r}")
    import keras
    from keras import layers

    from mnist_digits.layers import Deskew

    inputs = keras.Input(IMAGE_SHAPE, name="image")
    x = Deskew(name="deskew")(inputs) if deskew else inputs
    first = True
    for stage in stages:
        for filters in stage:
            size = first_kernel_size if first and first_kernel_size else kernel_size
            first = False
            x = layers.Conv2D(int(filters), size, padding=padding, use_bias=not batch_norm)(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=bn_momentum)(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    # The dense head computes in float32 whatever the training precision, so mixed bfloat16
    # speeds up the convolutions, where the time goes, and leaves the head's arithmetic alone
    # (all-bfloat16 cost accuracy: docs/benchmarks-log.md, "Mixed bfloat16").
    full = {"dtype": "float32"}
    pool = layers.Flatten if head == "flatten" else layers.GlobalAveragePooling2D
    x = pool(**full)(x)
    if dense_batch_norm is None:
        dense_batch_norm = batch_norm
    for i, width in enumerate(dense):
        rate = feature_dropout if i == 0 and feature_dropout is not None else dropout
        if rate:
            x = layers.Dropout(rate, **full)(x)
        x = layers.Dense(int(width), use_bias=not dense_batch_norm, **full)(x)
        if dense_batch_norm:
            x = layers.BatchNormalization(momentum=bn_momentum, **full)(x)
        x = layers.ReLU(**full)(x)
    if dropout:
        x = layers.Dropout(dropout, **full)(x)
    outputs = _classifier()(x)
    return keras.Model(inputs, outputs, name=name)


_BUILDERS = {"mlp": build_mlp, "cnn": build_cnn}


# --- presets -----------------------------------------------------------------------------------
# Recipes give only what differs from the TrainConfig defaults (epochs 10, batch 128, Adam 1e-3,
# constant LR, no early stopping).


@register_model("mlp", description="Small FFNN 784-128-10, dropout 0.2: a quick baseline.",
                epochs=20)
def mlp_small(**options: Any) -> keras.Model:
    return build_mlp("mlp_small", **{"hidden": (128,), "dropout": 0.2, **options})


@register_model(
    "mlp", epochs=20,
    description="The original project's FFNN 784-512-512-10, dropout 0.2, Adam, 20 epochs.")
def mlp_classic(**options: Any) -> keras.Model:
    return build_mlp("mlp_classic", **{"hidden": (512, 512), "dropout": 0.2, **options})


@register_model(
    "mlp",
    description="Deep FFNN 784-512x4-10 with batch norm and dropout 0.2, cosine LR.",
    epochs=20, lr_schedule="cosine")
def mlp_deep(**options: Any) -> keras.Model:
    return build_mlp("mlp_deep", **{"hidden": (512,) * 4, "dropout": 0.2, "batch_norm": True,
                                    **options})


@register_model(
    "mlp",
    description="Wide FFNN 784-1024-1024-10, input dropout 0.2, dropout 0.5, cosine LR "
                "(after Hinton 2012).",
    epochs=40, batch_size=128, lr_schedule="cosine")
def mlp_wide(**options: Any) -> keras.Model:
    return build_mlp("mlp_wide", **{"hidden": (1024, 1024), "dropout": 0.5,
                                    "input_dropout": 0.2, **options})


@register_model(
    "cnn", epochs=20, batch_size=128,
    description='The keras-io "simple MNIST convnet": conv32-pool-conv64-pool-dropout0.5-dense10.')
def cnn_keras_io(**options: Any) -> keras.Model:
    return build_cnn("cnn_keras_io", **{"stages": ((32,), (64,)), "kernel_size": 3,
                                        "padding": "valid", "dropout": 0.5, **options})


@register_model(
    "cnn",
    description="Batch-norm CNN conv32@5x5-pool-conv64-pool-dense128, warm-up+cosine LR.",
    epochs=6, batch_size=128, learning_rate=3e-3, lr_schedule="warmup_cosine",
    warmup_epochs=0.6)
def cnn_bn(**options: Any) -> keras.Model:
    return build_cnn("cnn_bn", **{"stages": ((32,), (64,)), "kernel_size": 3,
                                  "first_kernel_size": 5, "padding": "same", "batch_norm": True,
                                  "dense": (128,), "dropout": 0.25, **options})


@register_model(
    "cnn",
    description="Fast CNN conv24@5x5-pool-conv32-pool-dense256(BN), 3 epochs: the default.",
    epochs=3, batch_size=256, learning_rate=4e-3, lr_schedule="warmup_cosine",
    warmup_epochs=0.3, label_smoothing=0.1, precision="auto")
def cnn_fast(**options: Any) -> keras.Model:
    return build_cnn("cnn_fast", **{"stages": ((24,), (32,)), "kernel_size": 3,
                                    "first_kernel_size": 5, "padding": "valid",
                                    "dense_batch_norm": True, "dense": (256,), "dropout": 0.25,
                                    "feature_dropout": 0.0, **options})


@register_model(
    "mlp",
    description="Fast FFNN 784-768-768-10 with batch norm, dropout 0.2, 3 epochs.",
    epochs=3, batch_size=128, learning_rate=2e-3, lr_schedule="warmup_cosine",
    warmup_epochs=0.3, label_smoothing=0.1)
def mlp_fast(**options: Any) -> keras.Model:
    return build_mlp("mlp_fast", **{"hidden": (768, 768), "dropout": 0.2, "batch_norm": True,
                                    **options})


@register_model(
    "mlp",
    description="Deskewed-input FFNN 784-768-768-10 with batch norm, dropout 0.2, 1 epoch.",
    epochs=1, batch_size=128, learning_rate=2e-3, lr_schedule="warmup_cosine",
    warmup_epochs=0.3, label_smoothing=0.1)
def mlp_deskew(**options: Any) -> keras.Model:
    return build_mlp("mlp_deskew", **{"hidden": (768, 768), "dropout": 0.2, "batch_norm": True,
                                      "bn_momentum": 0.99, "deskew": True, **options})


_MLP_AUG_NETWORK = {"hidden": (1024, 1024), "dropout": 0.2, "batch_norm": True}
_MLP_AUG_RECIPE = {"batch_size": 128, "learning_rate": 2e-3, "lr_schedule": "warmup_cosine",
                   "warmup_epochs": 1.0, "label_smoothing": 0.1}
_MLP_AUG_AFFINE = {"rotation": 8.0, "shift": 2.0, "zoom": 0.08}


@register_model(
    "mlp",
    description="FFNN 784-1024-1024-10 with batch norm, trained on augmented digits "
                "(rotate/shift/zoom).",
    epochs=20, **_MLP_AUG_RECIPE, augment=_MLP_AUG_AFFINE)
def mlp_aug(**options: Any) -> keras.Model:
    return build_mlp("mlp_aug", **{**_MLP_AUG_NETWORK, **options})


@register_model(
    "mlp",
    description="FFNN 784-1024-1024-10 on deskewed digits, affine + elastic distortion, "
                "60 epochs.",
    epochs=60, **_MLP_AUG_RECIPE, augment={**_MLP_AUG_AFFINE, "elastic": 34.0})
def mlp_elastic(**options: Any) -> keras.Model:
    return build_mlp("mlp_elastic", **{**_MLP_AUG_NETWORK, "deskew": True, **options})


@register_model(
    "mlp",
    description="FFNN 784-1024-1024-10 as mlp_elastic, distilled from the packaged reading "
                "CNN, 100 epochs.",
    epochs=100, **_MLP_AUG_RECIPE, augment={**_MLP_AUG_AFFINE, "elastic": 34.0},
    teacher="packaged", distill_temperature=4.0, distill_weight=3.0, keep_epoch="last")
def mlp_distill(**options: Any) -> keras.Model:
    return build_mlp("mlp_distill", **{**_MLP_AUG_NETWORK, "deskew": True, **options})


_CNN_BEST_NETWORK = {"stages": ((32,), (64,)), "kernel_size": 3, "first_kernel_size": 5,
                     "padding": "valid", "dense_batch_norm": True, "dense": (256,),
                     "dropout": 0.25, "feature_dropout": 0.0}
_CNN_BEST_RECIPE = {"epochs": 40, "batch_size": 128, "learning_rate": 3e-3,
                    "lr_schedule": "warmup_cosine", "warmup_epochs": 1.0, "label_smoothing": 0.1,
                    "augment": {"rotation": 10.0, "shift": 2.0, "zoom": 0.1, "squish": 0.1}}


@register_model(
    "cnn",
    description="Frontier CNN: conv32@5x5-pool-conv64-pool-dense256(BN), augmentation, "
                "40 epochs.",
    **_CNN_BEST_RECIPE, precision="auto")
def cnn_best(**options: Any) -> keras.Model:
    return build_cnn("cnn_best", **{**_CNN_BEST_NETWORK, **options})


@register_model(
    "cnn",
    description="Wide CNN conv64@5x5-pool-conv128-pool-dense256(BN): cnn_best's recipe, the "
                "most accurate single model.",
    **_CNN_BEST_RECIPE, precision="auto")
def cnn_wide(**options: Any) -> keras.Model:
    return build_cnn("cnn_wide", **{**_CNN_BEST_NETWORK, "stages": ((64,), (128,)), **options})


@register_model(
    "cnn",
    description='Reading CNN: cnn_best trained with synthetic non-digits too, to say "not a '
                'digit".',
    **{**_CNN_BEST_RECIPE, "epochs": 30, "outliers": 0.5,
       "augment": {**_CNN_BEST_RECIPE["augment"], "thicken": 0.15, "lowres": 0.15}})
def cnn_reader(**options: Any) -> keras.Model:
    return build_cnn("cnn_reader", **{**_CNN_BEST_NETWORK, **options})
