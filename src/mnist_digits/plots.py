"""Figures from plain data. Functions return matplotlib figures; callers decide where they go."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot's import

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

GALLERY_MAX = 64  # the most mistakes the gallery shows (8x8); at least 36 is the requirement
GALLERY_COLUMNS = 8


def training_curves(history: Mapping[str, Sequence[float]], *, title: str) -> Figure:
    """Accuracy and loss per epoch, training vs validation, side by side.

    Args:
        history: columns of `history.csv`: `accuracy`, `loss`, `val_accuracy`, `val_loss`.
        title: the figure's title (the model and seed).
    """
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax, metric, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        for prefix, name, style in (("", "train", "-o"), ("val_", "validation", "-s")):
            values = history.get(prefix + metric)
            if values is not None and len(values):
                ax.plot(epochs, values, style, markersize=3, label=name)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    if "val_accuracy" in history and len(history["val_accuracy"]):
        best = int(np.nanargmax(history["val_accuracy"]))
        axes[0].annotate(f"best val {history['val_accuracy'][best]:.2%}",
                         (epochs[best], history["val_accuracy"][best]),
                         textcoords="offset points", xytext=(0, -18), ha="center", fontsize=8)
    fig.suptitle(f"Training curves: {title}")
    return fig


def confusion_matrix(cm: np.ndarray, *, title: str) -> Figure:
    """The test confusion matrix, as counts and row-normalized percentages, side by side.

    Args:
        cm: integer `(10, 10)` counts, rows = true digit, columns = predicted digit.
        title: the figure's title.
    """
    cm = np.asarray(cm)
    n = len(cm)
    rows = cm.sum(axis=1, keepdims=True)
    normalized = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0) * 100
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.8), layout="constrained")
    panels = ((axes[0], cm, "Counts", "{:d}"), (axes[1], normalized, "Row-normalized (% of true)",
                                                "{:.1f}"))
    for ax, values, name, fmt in panels:
        # Log-ish colour scale through sqrt: the diagonal would otherwise wash out every mistake.
        ax.imshow(np.sqrt(values), cmap="Blues")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xlabel("Predicted digit")
        ax.set_ylabel("True digit")
        ax.set_title(name)
        threshold = np.sqrt(values.max()) / 2 if values.max() > 0 else 1
        for t in range(n):
            for p in range(n):
                v = values[t, p]
                if v == 0 and t != p:
                    continue  # blanks read faster than a sea of zeros
                text = fmt.format(int(v)) if fmt == "{:d}" else fmt.format(v)
                ax.text(p, t, text, ha="center", va="center", fontsize=8,
                        color="white" if np.sqrt(v) > threshold else "black")
    total = cm.sum()
    accuracy = np.trace(cm) / total if total else float("nan")
    fig.suptitle(f"Confusion matrix on {total:,} test digits: {title} "
                 f"(accuracy {accuracy:.2%}, {total - np.trace(cm)} errors)")
    return fig


def misclassified_gallery(images: np.ndarray, labels: Sequence[tuple[int, int, float]], *,
                          total_errors: int, total: int, title: str) -> Figure:
    """A grid of misclassified digits, in the order given (most confident mistakes first).

    Args:
        images: `(k, 28, 28[, 1])` images in [0, 1].
        labels: `(true, predicted, confidence)` per image.
        total_errors: how many mistakes there are in all (the gallery may show fewer).
        total: how many images were evaluated.
        title: the figure's title.
    """
    k = len(labels)
    columns = GALLERY_COLUMNS
    rows = max(1, math.ceil(k / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.35, rows * 1.6 + 0.7),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= k:
            continue
        true, predicted, confidence = labels[i]
        ax.imshow(np.asarray(images[i]).reshape(images[i].shape[:2]), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"true {true} → {predicted}\n{confidence:.0%} sure", fontsize=8)
    shown = f"the {k} most confident" if k < total_errors else f"all {k}"
    if k == 0:
        axes[0, 0].text(0, 0.5, "no mistakes", fontsize=12)
    fig.suptitle(f"Misclassified test digits: {title}\n{shown} of {total_errors} mistakes on "
                 f"{total:,} digits (true → predicted, confidence)", fontsize=10)
    return fig


def comparison_bars(rows: Sequence[Mapping[str, float | str]], *, title: str) -> Figure:
    """Test accuracy per model with error bars (std over seeds).

    Args:
        rows: dicts with `model` (or a `label` to show instead), `test_accuracy_mean` and
            `test_accuracy_std` (fractions) and `seeds`.
        title: the figure's title.
    """
    names = [str(r.get("label", r["model"])) for r in rows]
    means = np.array([float(r["test_accuracy_mean"]) for r in rows]) * 100
    stds = np.array([float(r["test_accuracy_std"]) for r in rows]) * 100
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) + 2), 4.8), layout="constrained")
    bars = ax.bar(names, means, yerr=stds, capsize=6, color="#4C72B0")
    low = max(0.0, float(np.min(means - stds)) - 0.5) if len(means) else 0.0
    ax.set_ylim(low, 100)
    ax.set_ylabel("Test accuracy (%)")
    ax.set_xlabel("Model")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    for bar, mean, std in zip(bars, means, stds, strict=True):
        ax.annotate(f"{mean:.2f}±{std:.2f}", (bar.get_x() + bar.get_width() / 2, mean + std),
                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    return fig


def sweep_scatter(params: Mapping[str, Sequence[object]], scores: Sequence[float], *,
                  metric: str, maximize: bool = True, log_keys: Sequence[str] = (),
                  title: str) -> Figure:
    """A sweep's metric against each hyperparameter: one panel per hyperparameter, one dot per
    trial, the best trial in red.

    Args:
        params: hyperparameter -> its value in each trial (numbers, or choices of any kind).
        scores: the metric of each trial, in the same order.
        metric: the metric's name, for the axis.
        maximize: whether higher scores are better (accuracy) or lower (loss).
        log_keys: hyperparameters drawn on a log axis.
        title: the figure's title.
    """
    keys = list(params)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), layout="constrained",
                             squeeze=False)
    best = int(np.argmax(scores) if maximize else np.argmin(scores))
    for ax, key in zip(axes[0], keys, strict=True):
        values = list(params[key])
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            x = [float(v) for v in values]
        else:  # choices of lists or strings: one column each, in first-seen order
            labels = list(dict.fromkeys(map(str, values)))
            x = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.scatter(x, scores, color="#4C72B0", alpha=0.8)
        ax.scatter([x[best]], [scores[best]], color="#C44E52", zorder=3, label="best")
        if key in log_keys:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    return fig


def reliability_diagram(tables: Mapping[str, Mapping[str, Sequence[float]]],
                        eces: Mapping[str, float], *, title: str) -> Figure:
    """Accuracy against confidence per bin, one line per curve, beside the diagonal.

    Args:
        tables: curve name -> `calibrate.reliability` output (edges, count, confidence,
            accuracy).
        eces: curve name -> its expected calibration error, shown in the legend.
        title: the figure's title.
    """
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=(3, 1),
                                     sharex=True, layout="constrained")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for name, table in tables.items():
        confidence = np.asarray(table["confidence"], float)
        accuracy = np.asarray(table["accuracy"], float)
        filled = np.asarray(table["count"]) > 0
        ax.plot(confidence[filled], accuracy[filled], "-o", markersize=4,
                label=f"{name} (ECE {eces[name]:.2%})")
        edges = np.asarray(table["edges"])
        counts.bar(edges[:-1], table["count"], width=np.diff(edges), align="edge", alpha=0.5,
                   label=name)
    ax.set_ylabel("Accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(f"Reliability: {title}")
    counts.set_yscale("log")
    counts.set_xlabel("Confidence of the predicted digit (15 bins)")
    counts.set_ylabel("Images")
    return fig
