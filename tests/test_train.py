"""`train()` end to end on tiny synthetic data: every run-folder file exists and is valid."""

from __future__ import annotations

import csv
import gc
import json
import os
import signal

import keras
import numpy as np
import pytest
from PIL import Image

from mnist_digits import backend, evaluate, predict, runs, train
from mnist_digits.callbacks import InterruptGuard
from mnist_digits.config import resolve_config
from mnist_digits.errors import ConfigError


def tiny_config(**overrides):
    return resolve_config({}, {"model": "mlp_small", "epochs": 1, "batch_size": 32, **overrides})


def test_train_writes_a_complete_valid_run(tmp_path, tiny_splits):
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    metrics = train.train(tiny_config(), run_dir, splits=tiny_splits)

    saved = json.loads((run_dir / runs.CONFIG).read_text())
    assert saved["config"]["model"] == "mlp_small" and saved["config"]["epochs"] == 1
    assert {"keras", "tensorflow", "numpy", "data"} <= set(saved["environment"])

    with (run_dir / runs.HISTORY).open() as f:
        history = list(csv.DictReader(f))
    assert len(history) == 1
    assert {"accuracy", "loss", "val_accuracy", "val_loss", "epoch_seconds"} <= set(history[0])

    on_disk = json.loads((run_dir / runs.METRICS).read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in ("model", "family", "params", "seed", "epochs_run", "train_seconds", "val", "test",
                "per_class", "most_confused"):
        assert key in on_disk
    assert on_disk["epochs_run"] == 1 and on_disk["family"] == "mlp"
    assert 0 <= on_disk["test"]["accuracy"] <= 1 and on_disk["val"]["loss"] > 0
    assert sum(c["support"] for c in on_disk["per_class"].values()) == len(tiny_splits.x_test)

    # The reported test accuracy is that of the saved model.keras.
    model = predict.load_model(run_dir)
    probabilities = predict.predict_proba(model, tiny_splits.x_test)
    accuracy = np.mean(probabilities.argmax(1) == tiny_splits.test_labels)
    assert on_disk["test"]["accuracy"] == pytest.approx(accuracy)

    with (run_dir / runs.ERRORS).open() as f:
        errors = list(csv.DictReader(f))
    assert len(errors) == round((1 - accuracy) * len(tiny_splits.x_test))

    for plot in (runs.CURVES_PLOT, runs.CONFUSION_PLOT, runs.MISCLASSIFIED_PLOT):
        with Image.open(run_dir / plot) as image:
            image.verify()
            assert image.size[0] > 400 and image.size[1] > 200
    assert any((run_dir / runs.TENSORBOARD).rglob("events.out.tfevents.*"))
    assert json.loads((run_dir / runs.STATUS).read_text())["state"] == "done"


def test_training_learns_the_synthetic_task(tmp_path, tiny_splits):
    config = tiny_config(epochs=8, learning_rate=3e-3)
    metrics = train.train(config, runs.new_run_dir(tmp_path, "mlp_small"), splits=tiny_splits)
    assert metrics["test"]["accuracy"] >= 0.8


class StepCounter(keras.callbacks.Callback):
    """The optimizer's step count at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_epoch_end(self, epoch, logs=None):
        self.steps.append(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))


def test_each_epoch_is_one_pass_over_the_training_images(tmp_path, tiny_splits):
    # 96 images in batches of 12: on TensorFlow the repeated stream of `backend.fit_data`, which
    # must not run past an epoch's 8 batches to fill a call.
    assert len(tiny_splits.x_train) == 96
    counter = StepCounter()
    train.train(tiny_config(epochs=3, batch_size=12), runs.new_run_dir(tmp_path, "mlp_small"),
                splits=tiny_splits, callbacks=[counter])
    assert counter.steps == [8, 16, 24]


class Interrupt(keras.callbacks.Callback):
    """Stands in for Ctrl-C part-way through the second epoch."""

    def on_train_batch_begin(self, batch, logs=None):
        # Batch callbacks come once per `steps_per_execution` batches, so batch 0 is the hook.
        if self.epoch == 1:
            raise KeyboardInterrupt

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


# Batch 32: 3 batches an epoch, fed as arrays; batch 12: 8, fed as TensorFlow's stream.
@pytest.mark.parametrize("batch_size", [32, 12])
def test_interrupted_run_resumes_from_last_completed_epoch(tmp_path, tiny_splits, batch_size):
    config = tiny_config(epochs=3, batch_size=batch_size)
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    with pytest.raises(KeyboardInterrupt):
        train.train(config, run_dir, splits=tiny_splits, callbacks=[Interrupt()])
    status = json.loads((run_dir / runs.STATUS).read_text())
    assert status["state"] == "interrupted" and "--resume" in status["resume_with"]
    assert len(runs.read_history(run_dir)["epoch"]) == 1
    assert not (run_dir / runs.METRICS).exists()

    metrics = train.train(config, run_dir, splits=tiny_splits, resume=True)
    history = runs.read_history(run_dir)
    assert history["epoch"] == [0.0, 1.0, 2.0]  # continued at epoch 2 of 3, not from scratch
    assert metrics["epochs_run"] == 3
    assert (run_dir / runs.CONFUSION_PLOT).exists()


def test_evaluate_run_rewrites_the_report(tmp_path, tiny_splits):
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    first = train.train(tiny_config(), run_dir, splits=tiny_splits)
    (run_dir / runs.METRICS).unlink()
    (run_dir / runs.CONFUSION_PLOT).unlink()
    again = evaluate.evaluate_run(run_dir, splits=tiny_splits)
    assert again["test"] == first["test"]
    assert (run_dir / runs.CONFUSION_PLOT).exists()


class FirstAndLastWeights(keras.callbacks.Callback):
    """The model's trainable weights before the first step and after fit's last callback."""

    def on_train_begin(self, logs=None):
        self.first = [keras.ops.convert_to_numpy(w) for w in self.model.trainable_weights]

    def on_train_end(self, logs=None):
        self.last = [keras.ops.convert_to_numpy(w) for w in self.model.trainable_weights]


def test_weight_averaging_validates_checkpoints_and_keeps_the_average(tmp_path, tiny_splits):
    """With a slow average (momentum 0.999 over a few dozen steps) the averaged weights stay
    near where the first step put them (Keras starts the average there), far from where the raw
    weights went; validation sees the average."""
    moved, val_loss = {}, {}
    for ema in (0.0, 0.999):
        config = tiny_config(epochs=3, batch_size=4, learning_rate=3e-3, ema_momentum=ema)
        run_dir = runs.new_run_dir(tmp_path, "mlp_small", f"ema{ema}")
        weights = FirstAndLastWeights()
        metrics = train.train(config, run_dir, splits=tiny_splits, callbacks=[weights])
        moved[ema] = sum(float(np.abs(a - b).sum()) for a, b in
                         zip(weights.first, weights.last, strict=True))
        history = runs.read_history(run_dir)
        val_loss[ema] = history["val_loss"][-1]
        # The saved model is the checkpoint of the best validated epoch: the same weights.
        best = int(np.argmin(history["val_loss"]))
        assert metrics["val"]["accuracy"] == pytest.approx(history["val_accuracy"][best])
        assert json.loads((run_dir / runs.CONFIG).read_text())["config"]["ema_momentum"] == ema
        assert metrics["epochs_run"] == 3
    assert 0 < moved[0.999] < 0.35 * moved[0.0]
    # An average of barely trained weights validates worse than the trained ones.
    assert val_loss[0.999] > val_loss[0.0] + 0.1


class RawAndAveragedWeights(keras.callbacks.Callback):
    """At each epoch's start, the weights in the model (the raw ones); at its end, the model's
    (the average, swapped in) and the optimizer's average slots (the raw ones, swapped out)."""

    def __init__(self):
        super().__init__()
        self.begin, self.end_averaged, self.end_raw = {}, {}, {}

    @staticmethod
    def _values(variables):
        return [keras.ops.convert_to_numpy(v) for v in variables]

    def on_epoch_begin(self, epoch, logs=None):
        self.begin[epoch] = self._values(self.model.trainable_weights)

    def on_epoch_end(self, epoch, logs=None):
        self.end_averaged[epoch] = self._values(self.model.trainable_weights)
        self.end_raw[epoch] = self._values(self.model.optimizer._model_variables_moving_average)


def test_a_resumed_run_with_weight_averaging_trains_on_from_the_raw_weights(tmp_path,
                                                                           tiny_splits):
    config = tiny_config(epochs=3, batch_size=8, ema_momentum=0.99)
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    first = RawAndAveragedWeights()
    with pytest.raises(KeyboardInterrupt):
        train.train(config, run_dir, splits=tiny_splits, callbacks=[first, Interrupt()])
    resumed = RawAndAveragedWeights()
    metrics = train.train(config, run_dir, splits=tiny_splits, resume=True, callbacks=[resumed])
    assert list(resumed.begin) == [1, 2] and metrics["epochs_run"] == 3
    # The average and the raw weights differ, so the check below can tell which one epoch 1
    # starts from: the raw weights epoch 0 ended with, as it did before the interruption.
    assert max(np.abs(a - r).max() for a, r in
               zip(first.end_averaged[0], first.end_raw[0], strict=True)) > 1e-3
    for start in (first.begin[1], resumed.begin[1]):
        for got, raw in zip(start, first.end_raw[0], strict=True):
            np.testing.assert_allclose(got, raw, atol=1e-6)


def test_ema_momentum_must_be_below_one():
    with pytest.raises(ConfigError, match="ema_momentum"):
        tiny_config(ema_momentum=1.0)
    optimizer = train.make_optimizer(tiny_config(ema_momentum=0.99), steps_per_epoch=10)
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.99)
    assert not train.make_optimizer(tiny_config(), steps_per_epoch=10).use_ema


OPTIMIZER_CLASSES = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
                     "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}


@pytest.mark.parametrize("optimizer", list(OPTIMIZER_CLASSES))
def test_each_optimizer_is_the_one_named(optimizer):
    config = tiny_config(optimizer=optimizer, weight_decay=1e-4 if optimizer == "adamw" else 0.0)
    opt = train.make_optimizer(config, steps_per_epoch=10)
    assert type(opt) is OPTIMIZER_CLASSES[optimizer]
    if optimizer == "adamw":
        assert opt.weight_decay == pytest.approx(1e-4)


def _rate(optimizer, step: int) -> float:
    """The optimizer's learning rate at training step `step`."""
    optimizer.iterations.assign(step)
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


@pytest.mark.parametrize(("schedule", "start", "after_warmup"), [
    ("constant", 1.0, 1.0), ("cosine", 1.0, 0.8536), ("warmup_cosine", 0.0, 1.0)])
def test_learning_rate_schedules_follow_their_shape(schedule, start, after_warmup):
    # 4 epochs of 10 steps at a peak of 2e-3; warm-up (warmup_cosine only) is the first epoch.
    config = tiny_config(lr_schedule=schedule, epochs=4, learning_rate=2e-3, warmup_epochs=1.0)
    opt = train.make_optimizer(config, steps_per_epoch=10)
    peak = 2e-3
    assert _rate(opt, 0) == pytest.approx(start * peak, abs=1e-9)
    # cosine at step 10 of 40: 0.5 * (1 + cos(pi / 4)) of the peak.
    assert _rate(opt, 10) == pytest.approx(after_warmup * peak, rel=1e-3)
    end = _rate(opt, 40)
    assert end == pytest.approx(peak) if schedule == "constant" else end < 1e-6


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_that_python_drops_still_stops_training():
    # A KeyboardInterrupt raised inside a garbage-collection callback (JAX has one) is printed
    # as "Exception ignored" and dropped; that is how a data-parallel run once trained to its
    # end after Ctrl-C.
    def collecting(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)

    guard = InterruptGuard()
    with guard:
        gc.callbacks.append(collecting)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(collecting)
        assert guard.interrupted
        with pytest.raises(KeyboardInterrupt):
            guard.on_train_batch_end(0)
    # Outside the guard, SIGINT is Python's own again.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="float32, mixed_bfloat16"):
        tiny_config(precision="float16")


@pytest.mark.parametrize(("units", "expected"), [(True, "mixed_bfloat16"), (False, "float32")])
def test_auto_precision_is_saved_as_what_the_run_trained_in(tmp_path, tiny_splits, monkeypatch,
                                                             units, expected):
    # This suite runs on TensorFlow, where "auto" on a CPU follows the CPU's bfloat16 units.
    monkeypatch.setattr(backend, "devices", lambda: ["CPU:0"])
    monkeypatch.setattr(backend, "cpu_has_bfloat16", lambda: units)
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    train.train(tiny_config(precision="auto"), run_dir, splits=tiny_splits)
    assert runs.read_config(run_dir).config.precision == expected
    assert json.loads((run_dir / runs.STATUS).read_text())["state"] == "done"


@pytest.mark.parametrize("every_epoch, saved_after", [(False, [0, 2]), (True, [0, 1, 2, 3])])
def test_the_checkpoint_keeps_the_best_epoch_or_every_last_one(monkeypatch, tmp_path,
                                                                every_epoch, saved_after):
    from mnist_digits import callbacks

    saves = []
    monkeypatch.setattr(callbacks.modelfile, "save_model", lambda model, path: saves.append(
        saver.epoch))
    saver = callbacks.BestModelSaver(tmp_path / "model.keras", every_epoch=every_epoch)
    saver.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for epoch, loss in enumerate([1.0, 1.5, 0.5, 0.9]):
        saver.epoch = epoch
        saver.on_epoch_end(epoch, {"val_loss": loss})
    assert saves == saved_after


class FinalWeights(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.weights = [keras.ops.convert_to_numpy(w) for w in self.model.weights]


def test_keep_epoch_last_saves_the_weights_training_ended_with(tmp_path, tiny_splits):
    final = FinalWeights()
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    train.train(tiny_config(epochs=3, keep_epoch="last"), run_dir, splits=tiny_splits,
                callbacks=[final])
    saved = [keras.ops.convert_to_numpy(w) for w in predict.load_model(run_dir).weights]
    assert len(saved) == len(final.weights)
    for got, expected in zip(saved, final.weights, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_keep_epoch_is_best_or_last_and_last_refuses_early_stopping():
    with pytest.raises(ConfigError, match="unknown keep_epoch 'first'; choose one of best, last"):
        tiny_config(keep_epoch="first")
    with pytest.raises(ConfigError, match="contradict"):
        tiny_config(keep_epoch="last", early_stopping_patience=2)
