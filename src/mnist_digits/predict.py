"""Loading saved models and running them: class probabilities for arrays of 28x28 images.

Reading image files (finding the digits, statuses) is `reading`'s job.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_digits import data, modelfile, pretrained
from mnist_digits.errors import RunError


def packaged_model_path() -> Path:
    """Where the packaged, calibrated reading model is (see `pretrained`)."""
    return pretrained.package_dir() / pretrained.MODEL_FILE


def load_model(path: str | os.PathLike | None = None) -> keras.Model:
    """Loads a model from a run folder or a `.keras` file, safely; see `modelfile.load_model`.

    Args:
        path: the run folder or file; None means the packaged reading model, which goes through
            the same checks as any other file.
    """
    if path is None:
        path = packaged_model_path()
        if not path.is_file():
            raise RunError(f"this installation has no packaged model ({path})")
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

            def call(x):
                return model(x, training=False)

            # No AutoGraph: the forward pass has no Python control flow to convert.
            forward = tf.function(
                call, autograph=False,
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
        return np.zeros((0, data.NUM_CLASSES), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
