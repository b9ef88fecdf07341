"""Run as `python backend_probe.py BACKEND OUT_DIR [MODEL_FILE ...]`, in a fresh process: the
per-backend checks that cannot share a process, since Keras picks its backend once.

Without model files it trains on BACKEND (tiny, real MNIST) and writes `OUT_DIR/probe.json`:
- a run interrupted after its first epoch and resumed, with its full report;
- the same config trained twice more (determinism);
- the saved model's predictions on fixed images, through the compiled forward and eagerly;
- the same model averaged over test-time views, against views turned by SciPy;
- the same config in mixed bfloat16: the compute dtypes it trained with, the saved model's;
- `mnist_digits.read` with the packaged model on two of the docs' examples;
- whether TensorFlow was imported.
With model files it loads each (saved by any backend) and writes their predictions on the same
images to `OUT_DIR/loaded.json`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np


class _Interrupt:
    """A Keras callback standing in for Ctrl-C at the start of the second epoch."""

    def __new__(cls):
        import keras

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    raise KeyboardInterrupt

        return Interrupt()


class _ComputeDtypes:
    """A Keras callback that records the compute dtypes of the model's layers with weights, by
    layer class, as it trains."""

    def __new__(cls):
        import keras

        class ComputeDtypes(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.seen: dict[str, list[str]] = {}
                for layer in self.model.layers:
                    if layer.weights:
                        kind = self.seen.setdefault(type(layer).__name__, [])
                        kind[:] = sorted({*kind, layer.compute_dtype})

        return ComputeDtypes()


def images() -> np.ndarray:
    from mnist_digits import data

    (_, _), (x_test, _) = data.load_mnist()
    return data.normalize_images(x_test[:64])


def train_and_check(out: Path) -> dict:
    import keras
    import scipy.ndimage

    from mnist_digits import data, ensemble, predict, runs, train
    from mnist_digits.config import resolve_config

    splits = data.load_splits(val_size=300, limit=600)
    config = resolve_config({}, {"model": "cnn_fast", "epochs": 2, "batch_size": 64,
                                 "warmup_epochs": 0.5})
    interrupted = runs.new_run_dir(out, "cnn_fast", "resumed")
    try:
        train.train(config, interrupted, splits=splits, callbacks=[_Interrupt()])
        raise AssertionError("the interruption did not happen")
    except KeyboardInterrupt:
        pass
    status_after_interrupt = runs.read_status(interrupted)["state"]
    resumed = train.train(config, interrupted, splits=splits, resume=True)
    first = train.train(config, runs.new_run_dir(out, "cnn_fast", "a"), splits=splits)
    second_dir = runs.new_run_dir(out, "cnn_fast", "b")
    second = train.train(config, second_dir, splits=splits)
    # Every augmentation layer at once, traced into this backend's compiled train step.
    every_layer = resolve_config({}, {"model": "mlp_small", "epochs": 2, "batch_size": 64,
                                      "augment": {"rotation": 10, "shift": 2, "zoom": 0.1,
                                                  "squish": 0.1, "elastic": 34, "erasing": 0.2,
                                                  "thicken": 0.2, "lowres": 0.2}})
    augmented = train.train(every_layer, runs.new_run_dir(out, "mlp_small", "augmented"),
                            splits=splits)
    # Distillation through this backend's train step: every training label says 0, so what
    # the student reads it learned from the teacher (the cnn_fast run above).
    misled = np.zeros_like(splits.y_train)
    misled[:, 0] = 1
    student_dir = runs.new_run_dir(out, "mlp_small", "student")
    student = train.train(
        resolve_config({}, {"model": "mlp_small", "epochs": 6, "batch_size": 64,
                            "learning_rate": 3e-3, "augment": {"rotation": 5},
                            "teacher": str(second_dir), "distill_weight": 20.0}),
        student_dir, splits=dataclasses.replace(splits, y_train=misled))
    mixed_dir = runs.new_run_dir(out, "cnn_fast", "bf16")
    trained_in = _ComputeDtypes()
    mixed = train.train(dataclasses.replace(config, precision="mixed_bfloat16"), mixed_dir,
                        splits=splits, callbacks=[trained_in])
    saved_in = sorted({layer.dtype_policy.name for layer in predict.load_model(mixed_dir).layers})
    model = predict.load_model(second_dir)
    x = images()
    compiled = predict.predict_proba(model, x)
    eager = keras.ops.convert_to_numpy(model(x, training=False))
    # Test-time views through this backend's compiled forward pass, against the model on views
    # turned by SciPy (ink kept off the border, where the two fill the outside differently).
    inner = np.zeros_like(x)
    inner[:, 3:-3, 3:-3] = x[:, 3:-3, 3:-3]
    tta = ensemble.build_ensemble([model], rotations=ensemble.TTA_ROTATIONS)
    turned = [inner, *(scipy.ndimage.rotate(inner, degrees, axes=(1, 2), reshape=False, order=1)
                       for degrees in ensemble.TTA_ROTATIONS)]
    expected = np.mean([predict.predict_proba(model, view) for view in turned], axis=0)
    tta_error = float(np.max(np.abs(predict.predict_proba(tta, inner) - expected)))
    import mnist_digits

    examples = Path(__file__).resolve().parents[2] / "docs" / "examples"
    read = mnist_digits.read([examples / "number-4021.png", examples / "seven.png"])
    return {
        "backend": keras.backend.backend(),
        "status_after_interrupt": status_after_interrupt,
        "resumed_epochs": runs.read_history(interrupted)["epoch"],
        "resumed_metrics": resumed,
        "run_dir": str(interrupted),
        "determinism": [first["test"], second["test"], first["val"], second["val"]],
        "model_file": str(second_dir / runs.MODEL),
        "predictions": compiled.tolist(),
        "compiled_vs_eager": float(np.max(np.abs(compiled - eager))),
        "tta_vs_scipy": tta_error,
        "augmented_accuracy": augmented["test"]["accuracy"],
        "distilled": {"accuracy": student["test"]["accuracy"],
                      "teacher_accuracy": second["test"]["accuracy"],
                      "saved_params": predict.load_model(student_dir).count_params()},
        "mixed": {"trained_in": trained_in.seen, "saved_in": saved_in,
                  "accuracy": mixed["test"]["accuracy"]},
        "read": [reading.text for reading in read],
    }


def load_and_predict(files: list[str]) -> dict:
    import keras

    from mnist_digits import predict

    x = images()
    return {"backend": keras.backend.backend(),
            "predictions": {f: predict.predict_proba(predict.load_model(f), x).tolist()
                            for f in files}}


def main() -> None:
    name, out, files = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    from mnist_digits import backend

    backend.choose(name)
    backend.import_keras_quietly()
    result = load_and_predict(files) if files else train_and_check(out)
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    (out / ("loaded.json" if files else "probe.json")).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
