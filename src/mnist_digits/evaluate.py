"""Evaluation: metrics from labels and probabilities as plain data, and a run's full report."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

from mnist_digits import backend, calibrate, data, models, plots, predict, runs


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean categorical cross-entropy of integer labels under predicted probabilities.

    Probabilities are clipped as Keras does, so one confident mistake cannot make it infinite.
    """
    p = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return float(-np.mean(np.log(p))) if len(labels) else float("nan")


def evaluate_predictions(labels: np.ndarray, probabilities: np.ndarray,
                         *, top_confused: int = 10) -> dict[str, Any]:
    """Metrics for one set of predictions.

    Args:
        labels: integer true labels `(n,)` in 0..9.
        probabilities: float `(n, 10)` predicted probabilities.
        top_confused: how many (true, predicted) pairs to list in `most_confused`.

    Returns:
        A JSON-ready dict: `accuracy`, `loss`, `per_class` (precision, recall, f1, support for
        each digit), `confusion_matrix` (10x10 counts, rows = true), `most_confused`
        (`[{"true", "predicted", "count"}]`, most frequent first) and `errors` (one dict per
        misclassified image, most confident mistake first).
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    digits = list(range(data.NUM_CLASSES))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=digits, zero_division=0)
    cm = skm.confusion_matrix(labels, predicted, labels=digits)
    off_diagonal = [(int(cm[t, p]), t, p) for t in digits for p in digits if t != p and cm[t, p]]
    off_diagonal.sort(key=lambda c: (-c[0], c[1], c[2]))
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")]
    top3 = np.argsort(-probabilities, axis=1, kind="stable")[:, :3]
    return {
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "loss": cross_entropy(labels, probabilities),
        "per_class": {
            str(d): {"precision": float(precision[d]), "recall": float(recall[d]),
                     "f1": float(f1[d]), "support": int(support[d])} for d in digits},
        "confusion_matrix": cm.tolist(),
        "most_confused": [{"true": t, "predicted": p, "count": n}
                          for n, t, p in off_diagonal[:top_confused]],
        "errors": [{"index": int(i), "true": int(labels[i]), "predicted": int(predicted[i]),
                    "confidence": float(probabilities[i, predicted[i]]),
                    "top3": [int(k) for k in top3[i]],
                    "top3_probabilities": [float(probabilities[i, k]) for k in top3[i]]}
                   for i in order],
    }


def errors_csv(errors: list[dict[str, Any]]) -> str:
    """The misclassified digits as CSV text: index, true, predicted, confidence, top-3."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "true", "predicted", "confidence", "top3", "top3_probabilities"])
    for e in errors:
        writer.writerow([e["index"], e["true"], e["predicted"], f"{e['confidence']:.6f}",
                         " ".join(map(str, e["top3"])),
                         " ".join(f"{p:.6f}" for p in e["top3_probabilities"])])
    return out.getvalue()


def evaluate_run(run_dir: str | os.PathLike, *, splits: data.Splits | None = None) -> \
        dict[str, Any]:
    """(Re)writes a run's evaluation report from its `model.keras` and `config.json`.

    Works for trained runs and for ensembles (`mnist-digits ensemble`), whose config.json holds
    an `"ensemble"` entry instead of a training config. See `write_report` for the files.

    Args:
        run_dir: a run folder holding `model.keras` and `config.json`.
        splits: the data to evaluate on; loaded as the run's config says if None.

    Returns:
        The metrics written to `metrics.json`.

    Raises:
        RunError: the folder, model or config is missing or unreadable.
        DataError: the MNIST files are missing or corrupt.
    """
    run_dir = runs.resolve_run_dir(run_dir)
    saved = runs.read_config(run_dir)
    if saved.kind == runs.ENSEMBLE:
        members = saved.ensemble["members"]
        # Ensembles saved before the turned views recorded their one-pixel moves instead.
        views = saved.ensemble.get("tta_rotations", saved.ensemble.get("tta_shifts", []))
        header = {"model": saved.name, "family": "ensemble", "members": len(members),
                  "views": 1 + len(views), "seed": None,
                  "members_train_seconds": round(sum(
                      m.get("train_seconds") or 0.0 for m in members), 2)}
    else:
        header = {"model": saved.name, "family": models.get_model_spec(saved.name).family,
                  "seed": saved.config.seed}
    if splits is None:
        splits = data.load_splits(**saved.split)
    model = predict.load_model(run_dir / runs.MODEL)
    return write_report(run_dir, model, splits, header=header,
                        history=runs.read_history(run_dir))


def write_report(run_dir: Path, model: Any, splits: data.Splits, *, header: dict[str, Any],
                 history: dict[str, list[float]]) -> dict[str, Any]:
    """Evaluates `model` and writes the report files into `run_dir`.

    Writes `metrics.json`, `errors.csv`, `confusion_matrix.png`, `misclassified.png` and, when
    there is a training history, `training_curves.png`. Validation figures come from the
    validation split; test figures from the official test set, which nothing in training sees.

    Args:
        header: the first entries of metrics.json: at least `model`, `family` and `seed`.
        history: `history.csv` columns (see `runs.read_history`), or {}.
    """
    val_labels, test_labels = splits.y_val.argmax(axis=1), splits.test_labels
    val_probabilities = predict.predict_proba(model, splits.x_val)
    test_probabilities = predict.predict_proba(model, splits.x_test)
    val = evaluate_predictions(val_labels, val_probabilities)
    test = evaluate_predictions(test_labels, test_probabilities)
    # A model without a calibration layer is its own uncalibrated self: no second pass.
    raw_test = test_probabilities if calibrate.temperature_of(model) is None else \
        predict.predict_proba(calibrate.uncalibrated(model), splits.x_test)
    metrics = {
        **header,
        "backend": backend.current(),
        "params": models.count_params(model),
        "epochs_run": len(history.get("epoch", [])),
        "train_seconds": round(float(np.nansum(history.get("epoch_seconds", []))), 2),
        "val": {"accuracy": val["accuracy"], "loss": val["loss"]},
        "test": {"accuracy": test["accuracy"], "loss": test["loss"]},
        "per_class": test["per_class"],
        "most_confused": test["most_confused"],
        "confusion_matrix": test["confusion_matrix"],
        "num_errors": len(test["errors"]),
        "calibration": {
            "temperature": calibrate.temperature_of(model),
            "val_ece": calibrate.expected_calibration_error(val_labels, val_probabilities),
            "test_ece": calibrate.expected_calibration_error(test_labels, test_probabilities),
            "test_ece_uncalibrated": calibrate.expected_calibration_error(test_labels, raw_test),
            "bins": calibrate.ECE_BINS,
        },
    }
    runs.write_json(run_dir / runs.METRICS, metrics)
    runs.atomic_write_text(run_dir / runs.ERRORS, errors_csv(test["errors"]))
    title = header["model"] + (f" (seed {header['seed']})" if header.get("seed") is not None
                               else "")
    if history:
        runs.save_figure(plots.training_curves(history, title=title), run_dir / runs.CURVES_PLOT)
    runs.save_figure(plots.confusion_matrix(np.array(test["confusion_matrix"]), title=title),
                     run_dir / runs.CONFUSION_PLOT)
    calibration = metrics["calibration"]
    runs.save_figure(plots.reliability_diagram(
        {"uncalibrated": calibrate.reliability(test_labels, raw_test),
         "calibrated": calibrate.reliability(test_labels, test_probabilities)},
        {"uncalibrated": calibration["test_ece_uncalibrated"],
         "calibrated": calibration["test_ece"]},
        title=f"{title}, test set, T = {calibration['temperature'] or 1:.3f}"),
        run_dir / runs.CALIBRATION_PLOT)
    gallery = test["errors"][:plots.GALLERY_MAX]
    runs.save_figure(
        plots.misclassified_gallery(
            splits.x_test[[e["index"] for e in gallery]],
            [(e["true"], e["predicted"], e["confidence"]) for e in gallery],
            total_errors=len(test["errors"]), total=len(test_labels), title=title),
        run_dir / runs.MISCLASSIFIED_PLOT)
    return metrics


def load_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads a finished run's `metrics.json`, with its config under `"config"`."""
    run_dir = runs.resolve_run_dir(run_dir, need=runs.METRICS)
    metrics = runs.read_json(run_dir / runs.METRICS)
    saved = runs.read_config(run_dir)
    metrics["config"] = saved.config.to_dict() if saved.config else saved.ensemble
    metrics["run_dir"] = str(Path(run_dir))
    return metrics
