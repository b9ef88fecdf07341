"""Temperature scaling: the fit, the ECE, the layer inside saved models, and the run report."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from mnist_digits import calibrate, modelfile, predict, runs, train
from mnist_digits.config import TrainConfig


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sampled(true_temperature: float, n: int = 20_000, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / T): T is the right temperature for them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 10))
    probs = _softmax(logits / true_temperature)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_the_labels_were_drawn_with(true_temperature):
    logits, labels = _sampled(true_temperature)
    fitted = calibrate.fit_temperature(labels, _softmax(logits))
    assert fitted == pytest.approx(true_temperature, rel=0.08)


def test_scaling_with_the_fitted_temperature_lowers_the_ece():
    logits, labels = _sampled(2.0)
    raw = _softmax(logits)
    fitted = calibrate.scale(raw, calibrate.fit_temperature(labels, raw))
    before = calibrate.expected_calibration_error(labels, raw)
    after = calibrate.expected_calibration_error(labels, fitted)
    assert before > 0.1 and after < 0.02
    assert (fitted.argmax(axis=1) == raw.argmax(axis=1)).all()


def test_ece_by_hand():
    # Two images at confidence 0.9 (one right), two at 0.6 (both right):
    # |0.5 - 0.9| * 2/4 + |1.0 - 0.6| * 2/4 = 0.4.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    assert calibrate.expected_calibration_error(labels, probabilities) == pytest.approx(0.4)
    table = calibrate.reliability(labels, probabilities)
    assert sum(table["count"]) == 4 and len(table["count"]) == calibrate.ECE_BINS


def test_fit_refuses_mismatched_input():
    with pytest.raises(ValueError, match="one probability row per label"):
        calibrate.fit_temperature(np.array([0, 1]), np.ones((3, 10)) / 10)


def _tiny_model() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(4.0)(inputs))
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny")


def test_layer_matches_numpy_keeps_argmax_and_survives_a_safe_reload(tmp_path):
    keras.utils.set_random_seed(0)
    base = _tiny_model()
    model = calibrate.with_temperature(base, 1.7)
    assert model.name == "tiny" and calibrate.temperature_of(model) == pytest.approx(1.7)
    x = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
    raw = predict.predict_proba(base, x)
    scaled = predict.predict_proba(model, x)
    np.testing.assert_allclose(scaled, calibrate.scale(raw, 1.7), atol=1e-5)
    assert (scaled.argmax(1) == raw.argmax(1)).all()
    assert scaled.max(1).mean() < raw.max(1).mean()  # T > 1 softens
    path = tmp_path / "model.keras"
    modelfile.save_model(model, path)
    loaded = modelfile.load_model(path)
    assert calibrate.temperature_of(loaded) == pytest.approx(1.7)
    np.testing.assert_allclose(predict.predict_proba(loaded, x), scaled, atol=1e-6)
    # Calibrating again replaces the temperature instead of stacking a second layer.
    again = calibrate.with_temperature(loaded, 0.5)
    assert sum(isinstance(layer, calibrate.TemperatureScaling) for layer in again.layers) == 1
    np.testing.assert_allclose(predict.predict_proba(calibrate.uncalibrated(again), x), raw,
                               atol=1e-5)


def test_a_training_run_stores_its_temperature_and_reports_calibration(tiny_splits, tmp_path):
    config = TrainConfig(model="mlp_small", epochs=2, val_size=32, label_smoothing=0.1)
    run_dir = runs.new_run_dir(tmp_path, config.model)
    metrics = train.train(config, run_dir, splits=tiny_splits)
    calibration = metrics["calibration"]
    assert set(calibration) >= {"temperature", "val_ece", "test_ece", "test_ece_uncalibrated"}
    assert calibration["bins"] == 15
    model = predict.load_model(run_dir)
    assert calibrate.temperature_of(model) == pytest.approx(calibration["temperature"])
    # The stored temperature is the validation optimum: no other does better on validation.
    raw = predict.predict_proba(calibrate.uncalibrated(model), tiny_splits.x_val)
    labels = tiny_splits.y_val.argmax(1)

    def loss(t):
        return -np.mean(np.log(calibrate.scale(raw, t)[np.arange(len(labels)), labels]))

    best = loss(calibration["temperature"])
    assert all(best <= loss(t) + 1e-6 for t in (0.5 * calibration["temperature"],
                                                2.0 * calibration["temperature"]))
    assert (run_dir / runs.CALIBRATION_PLOT).stat().st_size > 1000
    assert json.loads((run_dir / runs.METRICS).read_text())["calibration"] == calibration
