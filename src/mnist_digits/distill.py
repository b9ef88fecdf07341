"""Knowledge distillation: a student trained on a teacher's probabilities besides the labels.

A feedforward net has to learn from the pixels alone what a convnet's shared weights know from
the start, so it runs out of examples long before a convnet does. Augmentation makes more
examples, but each distorted digit still carries the label of the digit it was made from, even
where the distortion left it closer to another digit. A teacher (a trained convnet) reads every
distorted digit itself, so the student learns from a soft target per image: how much it looks
like a 7, and how much like a 1 (Hinton et al. 2015, "Distilling the knowledge in a neural
network"; Ba and Caruana 2014).

The teacher sits inside the training model, after the augmentation layers, and reads the same
augmented batch as the student, on any backend. It is frozen and always in inference mode. Its
term is added to the loss only in training, so `val_loss` stays the student's own cross-entropy
against the labels, comparable with every other run's. (Softened at a temperature above 1, the
student's loss against the labels rises while its accuracy still improves, so such a recipe
keeps its last epoch: `TrainConfig.keep_epoch`.) The saved `model.keras` is the student alone:
nothing of the teacher goes into it.

The teacher must not have trained on this run's validation or test images: `load_teacher`
refuses one trained on another split. A run's `config.json` names the model file that taught it
and that file's SHA-256 (`identify`), so replacing the packaged model or retraining a teacher
run cannot go unnoticed, and a resumed run refuses a teacher that changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
from keras import layers, ops

from mnist_digits import calibrate, modelfile, predict, pretrained, runs
from mnist_digits.config import TrainConfig
from mnist_digits.defaults import PACKAGED
from mnist_digits.errors import ConfigError

log = logging.getLogger(__name__)



def _teacher_file(teacher: str) -> Path:
    """The model file that `TrainConfig.teacher` names: the packaged model's, or a run folder's.

    Raises:
        RunError: the run folder or its model is missing.
    """
    if teacher == PACKAGED:
        return pretrained.model_file()
    return runs.resolve_run_dir(Path(teacher)) / runs.MODEL


def identify(teacher: str) -> dict[str, str]:
    """What a run records of its teacher: the name it was given, the model file it names and
    that file's SHA-256 (`modelfile.sha256_file`).

    Raises:
        RunError: the run folder or its model is missing.
    """
    path = _teacher_file(teacher)
    return {"teacher": teacher, "file": str(path.resolve()), "sha256": modelfile.sha256_file(path)}


def check_unchanged(recorded: dict[str, str] | None, teacher: str) -> None:
    """Raises ConfigError if the teacher's model file is not the one `recorded` (by `identify`,
    when the run began) names: a resumed run would learn from two teachers.

    Runs from before teachers were recorded have nothing to check against, and pass.
    """
    if recorded is None:
        return
    now = identify(teacher)
    if now["sha256"] != recorded["sha256"]:
        raise ConfigError(f"the teacher {recorded['file']} changed since this run began "
                          f"(SHA-256 {recorded['sha256'][:16]}, now {now['sha256'][:16]}); "
                          f"restore it, or start a new run")


def load_teacher(config: TrainConfig) -> keras.Model:
    """Loads `config.teacher`, frozen, after checking that it never saw this run's held-out images.

    Args:
        config: a config whose `teacher` is `PACKAGED` or a finished run folder.

    Returns:
        The teacher: a calibrated model mapping float32 `(n, 28, 28, 1)` images in [0, 1] to
        `(n, 10)` probabilities.

    Raises:
        ConfigError: the teacher held out another number of validation images, so its training
            images may include this run's validation images.
        RunError: the run folder or its model is missing or unreadable.
    """
    # The loader accepts only the pinned MNIST files, so the data are the same for every run
    # and the split is decided by val_size alone (`limit` takes a subset of the same split).
    path = _teacher_file(config.teacher)
    if config.teacher == PACKAGED:
        card = runs.read_json(pretrained.package_dir() / pretrained.CARD_JSON)
        val_size = card["recipe"].get("val_size", TrainConfig.val_size)
        what = "the packaged model"
    else:
        val_size = runs.read_config(path.parent).split["val_size"]
        what = str(path.parent)
    model = predict.load_model(path)
    if val_size != config.val_size:
        raise ConfigError(f"teacher {what} held out {val_size} validation images, this run "
                          f"{config.val_size}, so it may have trained on this run's validation "
                          f"images; use --val-size {val_size} or another teacher")
    model.trainable = False
    log.info("distillation: teacher %s (temperature %s inside)", what,
             calibrate.temperature_of(model))
    return model


class TeacherLoss(layers.Layer):
    """Passes the student's probabilities through and, in training, adds the distillation loss.

    The loss is `weight * T^2 * KL(teacher_T || student_T)`, averaged over the batch, where `p_T`
    is `softmax(log(p) / T)`: the temperature softens both sides alike, and T^2 keeps the
    gradients' size independent of it (Hinton et al. 2015).

    Args:
        teacher: the frozen teacher model.
        weight: the term's weight against the label loss.
        temperature: T, > 0.

    Call args:
        images: the images the student read, augmented as it saw them.
        probabilities: the student's `(n, 10)` output for them.
        training: the teacher's term is added only when True.
    """

    def __init__(self, teacher: keras.Model, weight: float, temperature: float,
                 **kwargs: Any) -> None:
        super().__init__(dtype="float32", **kwargs)
        self.teacher, self.weight, self.temperature = teacher, weight, temperature

    def call(self, images, probabilities, training=None):
        if training:
            # training=False here is kept, as a Functional model's would not be: the teacher's
            # dropout stays off and its batch norm uses its moving statistics.
            target = ops.stop_gradient(self.teacher(images, training=False))
            self.add_loss(self.weight * self.temperature ** 2 * ops.mean(
                _kl_divergence(target, probabilities, self.temperature)))
        return probabilities

    def compute_output_shape(self, images_shape, probabilities_shape):
        return probabilities_shape


def _log_softened(probabilities, temperature: float):
    """log softmax(log(p) / T): the log of `calibrate.TemperatureScaling`'s output."""
    return ops.log_softmax(calibrate.logits(ops.cast(probabilities, "float32")) / temperature,
                           axis=-1)


def _kl_divergence(target, probabilities, temperature: float):
    """KL(target_T || probabilities_T) per row."""
    log_target = _log_softened(target, temperature)
    return ops.sum(ops.exp(log_target) * (log_target - _log_softened(probabilities, temperature)),
                   axis=-1)


def with_teacher(student: keras.Model, images: keras.KerasTensor, teacher: keras.Model, *,
                 weight: float, temperature: float) -> keras.Model:
    """The training model: `student`, with the teacher's loss on the images its network reads.

    Args:
        student: the model that is trained and saved (augmentation layers, then the network).
        images: the symbolic images in `student`'s graph that its network reads
            (`augment.augmented`'s second value).
        teacher: the frozen teacher (`load_teacher`).
        weight, temperature: see `TeacherLoss`.

    Returns:
        A model with `student`'s input and output that shares its layers and weights, so
        training it trains `student`.
    """
    outputs = TeacherLoss(teacher, weight, temperature, name="distillation")(
        images, student.output)
    return keras.Model(student.input, outputs, name=student.name)
