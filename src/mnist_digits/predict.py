"""Loading saved models and predicting digits: arrays of images, or image files."""

from __future__ import annotations

import dataclasses
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_digits import modelfile, preprocess


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads a model from a run folder or a `.keras` file, safely; see `modelfile.load_model`."""
    return modelfile.load_model(path)


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# Each model gets its own compiled function, traced once. TensorFlow counts the traces of all of
# them as "retracing" of one function and warns after a few models (compare, ensembles, tests);
# the warning is wrong here. (Getting the logger does not import TensorFlow.)
logging.getLogger("tensorflow").addFilter(
    lambda record: "triggered tf.function retracing" not in record.getMessage())


def forward_function(model: keras.Model) -> Callable[[np.ndarray], Any]:
    """The model's inference-mode forward pass, compiled once where the backend allows.

    On TensorFlow this is a `tf.function` with a fixed input signature: one graph for every batch
    size, traced on first use. A plain eager call re-dispatches every layer from Python and
    measured 10.8 ms for one image; `model.predict` is slower still, as it builds a dataset per
    call. (XLA, `jit_compile=True`, was not used: it compiles per batch shape, and measured slower
    on this CPU for small convnets.) Other backends get the direct call.
    """
    forward = _FORWARD.get(model)
    if forward is None:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            forward = tf.function(
                lambda x: model(x, training=False),
                input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
        else:
            def forward(x):
                return model(x, training=False)
        _FORWARD[model] = forward
    return forward


def predict_proba(model: keras.Model, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities for a batch of images, through `forward_function`.

    `model.predict` is avoided: it builds a dataset pipeline on every call and costs far more than
    the model itself on small inputs.

    Args:
        model: a model from the registry or `load_model`.
        images: float32 `(n, 28, 28, 1)` (or `(n, 28, 28)`) in [0, 1].
        batch_size: images per forward pass.

    Returns:
        float32 `(n, 10)`, each row summing to 1.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    forward = forward_function(model)
    out = [keras.ops.convert_to_numpy(forward(images[i:i + batch_size]))
           for i in range(0, len(images), batch_size)]
    if not out:
        return np.zeros((0, 10), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The outcome for one input image.

    Attributes:
        path: the input as the user named it (or found it in a folder).
        digit: the predicted class, or None when the image holds no digit or failed.
        confidence: the probability of `digit`, or None.
        probabilities: the 10 class probabilities, or None.
        error: a one-line reason the file could not be read, or None.
        frame: the 28x28 image the model saw, or None.
    """

    path: str
    digit: int | None = None
    confidence: float | None = None
    probabilities: tuple[float, ...] | None = None
    error: str | None = None
    frame: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON fields of `predict --format jsonl` and the web API."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "digit": self.digit, "confidence": self.confidence,
                "probabilities": list(self.probabilities) if self.probabilities else None}

    def top(self, k: int) -> list[tuple[int, float]]:
        """The k most probable digits with their probabilities, most probable first."""
        if not self.probabilities:
            return []
        order = np.argsort(-np.asarray(self.probabilities), kind="stable")[:k]
        return [(int(d), float(self.probabilities[d])) for d in order]


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, and folders replaced by the image files below them (sorted, recursive).

    A path that does not exist, and a folder with no image files in it, are kept, so that each
    is reported as an error in its place rather than silently skipped.
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            out.extend(found or [path])
        else:
            out.append(path)
    return out


def predict_frames(model: keras.Model, paths: Sequence[str], frames: Sequence[np.ndarray | None]
                   ) -> list[Prediction]:
    """Predictions for preprocessed frames (None = no digit), one model call for the batch."""
    present = [i for i, f in enumerate(frames) if f is not None]
    probabilities = predict_proba(model, np.stack([frames[i] for i in present])) if present \
        else np.zeros((0, 10), np.float32)
    results = [Prediction(path=p) for p in paths]
    for row, i in enumerate(present):
        probs = tuple(round(float(v), 6) for v in probabilities[row])
        digit = int(np.argmax(probabilities[row]))
        results[i] = Prediction(path=paths[i], digit=digit, confidence=probs[digit],
                                probabilities=probs, frame=frames[i])
    return results


def predict_files(model: keras.Model, paths: Sequence[str | os.PathLike], *,
                  batch_size: int = 256, max_pixels: int = preprocess.DEFAULT_MAX_PIXELS,
                  progress: Callable[[int, int], None] | None = None) -> Iterator[Prediction]:
    """Predicts image files in order, a batch at a time; a bad file never stops the others.

    Args:
        model: the classifier.
        paths: image files (see `expand_paths` for folders).
        batch_size: files preprocessed and predicted together.
        max_pixels: the decompression-bomb limit.
        progress: called with (done, total) after each batch.

    Yields:
        One `Prediction` per path, in input order.
    """
    total = len(paths)
    for start in range(0, total, batch_size):
        batch = [str(p) for p in paths[start:start + batch_size]]
        frames: list[np.ndarray | None] = []
        errors: dict[int, str] = {}
        for i, path in enumerate(batch):
            try:
                frames.append(preprocess.preprocess_file(path, max_pixels=max_pixels))
            except preprocess.ImageError as err:
                frames.append(None)
                errors[i] = str(err)
        results = predict_frames(model, batch, frames)
        for i, result in enumerate(results):
            yield Prediction(path=batch[i], error=errors[i]) if i in errors else result
        if progress:
            progress(min(start + batch_size, total), total)
