"""Model export with Keras's `model.export`, each format verified with its own runtime.

An export is only as good as its agreement with the Keras model, so every export is loaded back
with the runtime that will serve it (TensorFlow for a SavedModel, the LiteRT interpreter,
onnxruntime) and compared on real test digits: same argmax, probabilities within 1e-4.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_digits import backend, data
from mnist_digits.errors import MnistDigitsError

if TYPE_CHECKING:
    import keras

FORMATS = {"savedmodel": "tf_saved_model", "litert": "litert", "onnx": "onnx"}
TOLERANCE = 1e-4
VERIFY_IMAGES = 500

# What each format needs beyond the TensorFlow backend: the `export` extra.
_INSTALL = "pip install 'mnist-digits[export]' (in a checkout: pip install -e '.[export]')"
# The modules each format's converter and runtime come from (the SavedModel's: TensorFlow).
_NEEDS = {"savedmodel": (), "litert": ("ai_edge_litert",),
          "onnx": ("tf2onnx", "onnx", "onnxruntime")}


class ExportError(MnistDigitsError):
    """An export failed, or the exported model disagrees with the Keras model."""


def check_requirements(fmt: str) -> None:
    """Checks, before anything is written or any framework loads, that `fmt` can be exported
    and verified here.

    Raises:
        ExportError: the export extra is missing for this format.
        ConfigError: the backend is not TensorFlow (see `backend.require_tensorflow`).
    """
    missing = [name for name in _NEEDS[fmt] if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"the {fmt} export needs the export extra (missing: "
                          f"{', '.join(missing)}); install it with {_INSTALL}")


def _runner(fmt: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Loads an export with its own runtime; returns images -> probabilities."""
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        return lambda x: np.asarray(loaded.serve(x))
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

        def run_litert(x: np.ndarray) -> np.ndarray:
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(out["index"])

        return run_litert
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def export_and_verify(model: keras.Model, fmt: str, out: str | os.PathLike,
                      *, images: np.ndarray | None = None) -> dict[str, Any]:
    """Exports `model` to `out` in `fmt` and checks the export against the Keras model.

    Args:
        model: the Keras model.
        fmt: `savedmodel`, `litert` or `onnx`.
        out: the output path (a folder for savedmodel, a file otherwise).
        images: float32 `(n, 28, 28, 1)` to compare on; the first 500 MNIST test digits if None.

    Returns:
        `{"format", "path", "images", "argmax_agreement", "max_abs_diff"}`.

    Raises:
        ExportError: the runtime is missing, the export fails, or it disagrees with Keras (the
            failed export is removed, so nothing unverified is left behind).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    check_requirements(fmt)
    if fmt != "onnx" or backend.current() != "torch":
        # Keras exports these through TensorFlow on every backend (JAX via jax2tf); only torch's
        # ONNX export goes without it.
        backend.require_tensorflow(f"export --format {fmt}")
    out = Path(out)
    if images is None:
        (_, _), (x_test, _) = data.load_mnist()
        images = data.normalize_images(x_test[:VERIFY_IMAGES])
    images = np.asarray(images, np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Keras's ONNX path refuses a model that was loaded but never called ("The model
        # provided has never called"); one eager call on one image settles it for every format.
        model(images[:1], training=False)
        model.export(str(out), format=FORMATS[fmt], verbose=False)
        run = _runner(fmt, out)
        exported = np.concatenate([run(images[i:i + 100]) for i in range(0, len(images), 100)])
    except ImportError as err:
        _remove(out)
        raise ExportError(f"the {fmt} export needs the export extra ({err}); install it with "
                          f"{_INSTALL}") from None
    except Exception as err:  # converters raise anything; the user needs the reason, not a type
        _remove(out)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"{fmt} export failed: {reason}") from None
    from mnist_digits import predict

    reference = predict.predict_proba(model, images)
    agreement = float(np.mean(exported.argmax(1) == reference.argmax(1)))
    max_diff = float(np.max(np.abs(exported - reference)))
    report = {"format": fmt, "path": str(out), "images": len(images),
              "argmax_agreement": agreement, "max_abs_diff": max_diff}
    if agreement < 1.0 or max_diff > TOLERANCE:
        _remove(out)
        raise ExportError(f"{fmt} export disagrees with the Keras model: argmax agreement "
                          f"{agreement:.2%}, max |diff| {max_diff:.2e} (tolerance {TOLERANCE})")
    return report


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
