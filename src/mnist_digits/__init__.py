"""mnist-digits: read handwritten digits and numbers; train, compare and evaluate the Keras
models that do it.

    >>> import mnist_digits
    >>> mnist_digits.read("docs/examples/digit-7.png").text  # doctest: +SKIP
    '7'

The public API is imported lazily: `import mnist_digits` imports no framework, and Keras loads
(quietly) with the first model.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

try:
    __version__ = importlib.metadata.version("mnist-digits")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"

# name -> (module, whether it imports Keras: then Keras is imported quietly first, as the CLI
# does, so a Python user sees no framework start-up notices either).
_EXPORTS = {
    "read": ("mnist_digits.reading", False),
    "Reader": ("mnist_digits.reading", False),
    "Reading": ("mnist_digits.reading", False),
    "DigitReading": ("mnist_digits.reading", False),
    "ImageError": ("mnist_digits.reading", False),
    "frame_image": ("mnist_digits.reading", False),
    "MnistDigitsError": ("mnist_digits.errors", False),
    "load_mnist": ("mnist_digits.data", False),
    "make_splits": ("mnist_digits.data", False),
    "TrainConfig": ("mnist_digits.config", False),
    "resolve_config": ("mnist_digits.config", False),
    "build_model": ("mnist_digits.models", True),
    "list_models": ("mnist_digits.models", True),
    "train": ("mnist_digits.train", True),
    "evaluate_run": ("mnist_digits.evaluate", True),
    "load_model": ("mnist_digits.predict", True),
    "predict_proba": ("mnist_digits.predict", True),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mnist_digits' has no attribute {name!r}")
    module, needs_keras = _EXPORTS[name]
    if needs_keras:
        from mnist_digits import backend

        backend.import_keras_quietly()
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
