"""Knowledge distillation: the teacher's term, what is saved, and which teachers are refused."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from mnist_digits import distill, modelfile, models, predict, pretrained, runs, train
from mnist_digits.config import resolve_config
from mnist_digits.defaults import PACKAGED
from mnist_digits.errors import ConfigError, RunError


def tiny_config(**overrides):
    return resolve_config({}, {"model": "mlp_small", "epochs": 1, "batch_size": 32, **overrides})


def fixed_teacher(probabilities: np.ndarray) -> keras.Model:
    """A 'teacher' that says `probabilities` (one row, 10 classes) for every image."""
    inputs = keras.Input((28, 28, 1))
    zero = keras.layers.Dense(10, kernel_initializer="zeros", use_bias=False)(
        keras.layers.Flatten()(inputs))
    logits = keras.layers.Dense(10, kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant(
                                    np.log(probabilities)))(zero)
    return keras.Model(inputs, keras.layers.Softmax()(logits))


def softened(p: np.ndarray, temperature: float) -> np.ndarray:
    z = np.log(p) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_the_teachers_term_is_the_weighted_softened_kl_divergence(temperature):
    rng = np.random.default_rng(0)
    target = rng.dirichlet(np.ones(10))
    student = rng.dirichlet(np.ones(10), size=4).astype(np.float32)
    layer = distill.TeacherLoss(fixed_teacher(target), weight=0.5, temperature=temperature)
    images = np.zeros((4, 28, 28, 1), np.float32)

    passed = layer(images, student, training=True)
    t, s = softened(target, temperature), softened(student, temperature)
    expected = 0.5 * temperature ** 2 * np.mean(np.sum(t * (np.log(t) - np.log(s)), axis=-1))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(passed), student)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(layer.losses[0])), expected,
                               rtol=1e-4)


def test_the_teacher_adds_nothing_at_inference_and_nothing_when_it_agrees():
    target = np.full(10, 0.1)
    layer = distill.TeacherLoss(fixed_teacher(target), weight=1.0, temperature=1.0)
    images = np.zeros((3, 28, 28, 1), np.float32)
    layer(images, np.tile(target, (3, 1)).astype(np.float32), training=False)
    assert layer.losses == []
    layer(images, np.tile(target, (3, 1)).astype(np.float32), training=True)
    assert float(keras.ops.convert_to_numpy(layer.losses[0])) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture
def teacher_run(tmp_path, tiny_splits):
    """A run that reads the synthetic task well, to teach with."""
    run_dir = runs.new_run_dir(tmp_path, "mlp_small", "teacher")
    metrics = train.train(tiny_config(epochs=8, learning_rate=3e-3), run_dir, splits=tiny_splits)
    assert metrics["test"]["accuracy"] >= 0.8
    return run_dir


def test_a_student_learns_from_the_teacher_what_its_labels_do_not_say(tmp_path, tiny_splits,
                                                                      teacher_run):
    # Every training label says 0; only the teacher knows the digits.
    wrong = np.zeros_like(tiny_splits.y_train)
    wrong[:, 0] = 1
    misled = dataclasses.replace(tiny_splits, y_train=wrong)
    config = tiny_config(epochs=8, learning_rate=3e-3, augment={"rotation": 5})
    alone = train.train(config, runs.new_run_dir(tmp_path, "mlp_small", "alone"),
                        splits=misled)
    student_dir = runs.new_run_dir(tmp_path, "mlp_small", "student")
    taught = train.train(dataclasses.replace(config, teacher=str(teacher_run),
                                             distill_weight=20.0),
                         student_dir, splits=misled)
    assert alone["test"]["accuracy"] <= 0.2
    assert taught["test"]["accuracy"] >= 0.6

    # The run folder is an ordinary one: the saved model is the student alone, its config says
    # who taught it, and its validation loss is the student's own against the (wrong) labels.
    model = predict.load_model(student_dir)
    assert not any(isinstance(layer, distill.TeacherLoss) for layer in model.layers)
    # The teacher is an mlp_small too: saved with the student, it would double the count.
    assert model.count_params() == models.build_model("mlp_small").count_params()
    saved = json.loads((student_dir / runs.CONFIG).read_text())
    assert saved["config"]["teacher"] == str(teacher_run)
    assert saved["config"]["distill_weight"] == 20.0
    teacher_model = teacher_run / runs.MODEL
    assert saved["teacher"] == {"teacher": str(teacher_run), "file": str(teacher_model.resolve()),
                                "sha256": modelfile.sha256_file(teacher_model)}
    assert "teacher" not in json.loads((teacher_run / runs.CONFIG).read_text())


class StopAtEpoch(keras.callbacks.Callback):
    """Ctrl-C as epoch `epoch` begins, after the one before it was backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_a_resumed_run_refuses_a_teacher_that_changed_since_it_began(tmp_path, tiny_splits,
                                                                    teacher_run):
    config = tiny_config(epochs=4, teacher=str(teacher_run))
    run_dir = runs.new_run_dir(tmp_path, "mlp_small", "student")
    with pytest.raises(KeyboardInterrupt):
        train.train(config, run_dir, splits=tiny_splits, callbacks=[StopAtEpoch(1)])
    # The same teacher: the run goes on (to the next interruption).
    with pytest.raises(KeyboardInterrupt):
        train.train(config, run_dir, splits=tiny_splits, resume=True, callbacks=[StopAtEpoch(2)])
    assert len(runs.read_history(run_dir)["epoch"]) == 2
    # Retrained, or replaced: another model in the same file.
    modelfile.save_model(models.build_model("mlp_small"), teacher_run / runs.MODEL)
    with pytest.raises(ConfigError, match=r"changed since this run began.*start a new run"):
        train.train(config, run_dir, splits=tiny_splits, resume=True)


def test_the_packaged_teacher_is_identified_by_its_manifests_hash():
    manifest = json.loads(modelfile.manifest_path(pretrained.model_path()).read_text())
    assert distill.identify(PACKAGED)["sha256"] == manifest["sha256"]


def test_a_teacher_run_without_a_model_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "unfinished"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(RunError, match=r"has no model\.keras; is it a finished run folder"):
        distill.identify(str(folder))


def test_a_teacher_that_held_out_other_images_is_refused(tiny_splits, teacher_run, tmp_path):
    config = tiny_config(teacher=str(teacher_run), val_size=5_000)
    with pytest.raises(ConfigError, match=r"held out 10000 validation images.*--val-size 10000"):
        distill.load_teacher(config)


def test_the_packaged_teacher_loads_frozen():
    teacher = distill.load_teacher(tiny_config(teacher=PACKAGED))
    assert teacher.trainable_weights == [] and teacher.output_shape == (None, 10)


@pytest.mark.parametrize("values, message", [
    ({"teacher": " "}, "teacher must be"),
    ({"distill_weight": -1.0}, "distill_weight must be >= 0"),
    ({"distill_temperature": 0.0}, "distill_temperature must be positive"),
])
def test_bad_distillation_settings_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**values)
