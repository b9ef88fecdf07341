"""Loading saved models and running them: class probabilities for arrays of 28x28 images.

Reading image files (finding the digits, statuses) is `reading`'s job.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from mnist_digits import data, modelfile, pretrained
from mnist_digits.backend import forward
from mnist_digits.defaults import PACKAGED


def load_model(path: str | os.PathLike | None = None) -> keras.Model:
    """Loads a model from a run folder or a `.keras` file, safely; see `modelfile.load_model`.

    Args:
        path: the run folder or file; None or `"packaged"` means the packaged reading model,
            which goes through the same checks as any other file.

    Raises:
        RunError: the model cannot be found, or fails the checks.
    """
    if path is None or str(path) == PACKAGED:
        path = pretrained.model_file()
    return modelfile.load_model(path)


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_function(model: keras.Model) -> Callable[[np.ndarray], Any]:
    """The model's compiled inference-mode forward pass (`forward.compiled_forward`), made once
    per model and kept while the model lives."""
    compiled = _FORWARD.get(model)
    if compiled is None:
        compiled = _FORWARD[model] = forward.compiled_forward(model)
    return compiled


def warm_up(model: keras.Model, sizes: tuple[int, ...] = (1,)) -> None:
    """Compiles the model's forward pass for these batch sizes now (see `forward.warm_up`)."""
    forward.warm_up(forward_function(model), tuple(model.input_shape[1:]), sizes)


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
    run = forward_function(model)
    out = [keras.ops.convert_to_numpy(run(images[i:i + batch_size]))
           for i in range(0, len(images), batch_size)]
    if not out:
        return np.zeros((0, data.NUM_CLASSES), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
