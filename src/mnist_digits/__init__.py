"""mnist-digits: train, compare and evaluate digit classifiers on MNIST with Keras.

The public API is imported lazily, so `import mnist_digits` (and `mnist-digits --help`) does not
pay for importing TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_mnist": "mnist_digits.data",
    "make_splits": "mnist_digits.data",
    "build_model": "mnist_digits.models",
    "list_models": "mnist_digits.models",
    "TrainConfig": "mnist_digits.config",
    "resolve_config": "mnist_digits.config",
    "train": "mnist_digits.train",
    "evaluate_run": "mnist_digits.evaluate",
    "load_model": "mnist_digits.predict",
    "predict_proba": "mnist_digits.predict",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mnist_digits' has no attribute {name!r}")
