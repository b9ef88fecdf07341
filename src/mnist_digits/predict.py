"""Loading saved models and predicting class probabilities for arrays of images."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from mnist_digits import runs
from mnist_digits.errors import RunError


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads a model from a run folder or a `.keras` file, with `safe_mode=True`.

    Safe mode refuses to deserialize arbitrary code (Lambda layers), so a downloaded model file
    cannot run code on load.

    Raises:
        RunError: the path is missing, not a `.keras` file, or cannot be loaded.
    """
    path = Path(path)
    if path.is_dir() or path.name == runs.LATEST:
        path = runs.resolve_run_dir(path) / runs.MODEL
    if path.suffix != ".keras":
        raise RunError(f"{path}: only .keras model files (or run folders) can be loaded; other "
                       f"formats can run code on load or are not portable")
    if not path.is_file():
        raise RunError(f"model file {path} not found")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # Keras raises many types for a bad file; all mean the same here.
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"cannot load model {path}: {reason}") from None


def predict_proba(model: keras.Model, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities for a batch of images.

    Calls the model directly per batch rather than through `model.predict`, which builds a
    dataset pipeline on every call and costs far more than the model itself on small inputs.

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
    out = [keras.ops.convert_to_numpy(model(images[i:i + batch_size], training=False))
           for i in range(0, len(images), batch_size)]
    if not out:
        return np.zeros((0, 10), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
