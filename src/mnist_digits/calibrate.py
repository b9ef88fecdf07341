"""Honest confidence: temperature scaling fitted on the validation set, and its measures.

A network trained with label smoothing is under-confident (a clear 3 gets 0.9), one trained
without it is often over-confident. Temperature scaling (Guo et al. 2017) divides the logits by
one number T fitted to minimise the validation log-loss: the predicted digit never changes, only
how sure the model says it is.

The models end in a softmax, so the layer here works on probabilities: softmax(log(p) / T) is
exactly softmax(z / T) for the logits z, because log(softmax(z)) differs from z by a constant per
row. Keeping T inside the saved model as a registered layer means `predict`, `serve`,
`evaluate`, ensembles and every export use it without knowing it is there.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from scipy import optimize

ECE_BINS = 15
LAYER_NAME = "calibration"
_EPSILON = 1e-12  # floor under probabilities before the log; far below float32's resolution


def logits(probabilities):
    """Logits for softmax probabilities, up to a constant per row: log(p), floored.

    Keras ops, so a model's layers (this temperature, `distill`'s softened targets) use it.
    """
    return keras.ops.log(keras.ops.maximum(probabilities, _EPSILON))


@keras.saving.register_keras_serializable(package="mnist_digits")
class TemperatureScaling(keras.layers.Layer):
    """Rescales class probabilities by a temperature: softmax(log(p) / T).

    T > 1 softens over-confident predictions, T < 1 sharpens under-confident ones; the argmax is
    unchanged.

    Args:
        temperature: the fitted temperature, > 0.
    """

    def __init__(self, temperature: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def call(self, probabilities):
        return keras.ops.softmax(logits(probabilities) / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}


def temperature_of(model: keras.Model) -> float | None:
    """The model's calibration temperature, or None if it has no calibration layer."""
    layer = model.layers[-1] if model.layers else None
    return layer.temperature if isinstance(layer, TemperatureScaling) else None


def uncalibrated(model: keras.Model) -> keras.Model:
    """The model without its calibration layer (the model itself if it has none)."""
    if temperature_of(model) is None:
        return model
    # `model.input`, not `.inputs`: a one-element list would change the saved signature.
    return keras.Model(model.input, model.layers[-1].input, name=model.name)


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """`model` (uncalibrated, or its calibration replaced) followed by a TemperatureScaling layer.

    The new model shares the weights and keeps the name, so reports and registries see the same
    model.
    """
    base = uncalibrated(model)
    outputs = TemperatureScaling(temperature, name=LAYER_NAME)(base.output)
    return keras.Model(base.input, outputs, name=base.name)


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """NumPy twin of `TemperatureScaling`: float64 `(n, k)` probabilities at temperature T."""
    logits = np.log(np.maximum(np.asarray(probabilities, np.float64), _EPSILON)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature that minimises the log-loss of `probabilities` on integer `labels`.

    Args:
        labels: int `(n,)` true classes.
        probabilities: float `(n, k)` uncalibrated probabilities.

    Returns:
        T in [0.05, 20] (searched on a log scale; the bounds are far outside what any trained
        model here needs).

    Raises:
        ValueError: no labels, or shapes that disagree.
    """
    labels = np.asarray(labels, np.int64)
    probabilities = np.asarray(probabilities, np.float64)
    if len(labels) == 0 or probabilities.shape[0] != len(labels):
        raise ValueError(f"need one probability row per label, got {probabilities.shape} rows "
                         f"for {len(labels)} labels")
    rows = np.arange(len(labels))

    def log_loss(log_t: float) -> float:
        return float(-np.mean(np.log(np.maximum(
            scale(probabilities, float(np.exp(log_t)))[rows, labels], _EPSILON))))

    found = optimize.minimize_scalar(log_loss, bounds=(np.log(0.05), np.log(20.0)),
                                     method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
                ) -> dict[str, list[float]]:
    """Per-bin counts, mean confidence and accuracy of the top prediction, equal-width bins.

    Returns:
        `{"edges", "count", "confidence", "accuracy"}`; empty bins have NaN confidence/accuracy.
    """
    probabilities = np.asarray(probabilities, np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 cannot occur (rows sum to 1).
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=bins) / count
        accuracy = np.bincount(which, correct.astype(np.float64), minlength=bins) / count
    return {"edges": edges.tolist(), "count": count.tolist(), "confidence": mean_conf.tolist(),
            "accuracy": accuracy.tolist()}


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    table = reliability(labels, probabilities, bins)
    count = np.asarray(table["count"])
    if count.sum() == 0:
        return float("nan")
    gap = np.abs(np.nan_to_num(np.asarray(table["accuracy"]) - np.asarray(table["confidence"])))
    return float(np.sum(count * gap) / count.sum())
