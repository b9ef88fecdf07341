"""`mnist-digits bench`: measured figures, written to `bench/results/<date>-<host>.json` and `.md`.

Sections (run all, or one with `--only NAME`):
- `realworld`: the `predict` path on synthetic user-style images of MNIST test digits (see
  `userimages`), against the naive "shrink the whole image" approach most demos use.
- `inference`: the default model's throughput through `predict_proba`, batched and one image
  at a time, the code path of `predict` and the web server.

`--quick` runs a tiny version in seconds, for the CI smoke test; its numbers mean nothing.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_digits import data, runs

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("bench") / "results"


def machine() -> dict[str, Any]:
    """CPU model, core count and library versions."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


def section_realworld(model: Any, model_path: str, *, quick: bool) -> dict[str, Any]:
    """Accuracy of `predict` on user-style images, and of the naive approach, per image kind."""
    from mnist_digits import predict, preprocess, userimages

    n = 50 if quick else 2000
    (_, _), (x_test, y_test) = data.load_mnist()
    rng = np.random.default_rng(2026)
    indices = rng.choice(len(x_test), n, replace=False)
    frames, naive, kinds, labels, seconds = [], [], [], [], []
    for i in indices:
        image = userimages.render(x_test[i], int(y_test[i]), rng)
        start = time.perf_counter()
        frame = preprocess.preprocess_bytes(image.data)
        seconds.append(time.perf_counter() - start)
        frames.append(frame if frame is not None else np.zeros((28, 28), np.float32))
        naive.append(userimages.naive_frame(image.data))
        kinds.append(image.kind)
        labels.append(image.label)
    labels_array, kinds_array = np.array(labels), np.array(kinds)
    proper = predict.predict_proba(model, np.stack(frames)).argmax(axis=1) == labels_array
    shrunk = predict.predict_proba(model, np.stack(naive)).argmax(axis=1) == labels_array
    run_dir = Path(model_path)
    metrics_path = (run_dir if run_dir.is_dir() else run_dir.parent) / runs.METRICS
    mnist_accuracy = runs.read_json(metrics_path)["test"]["accuracy"] \
        if metrics_path.exists() else None
    return {
        "model": str(model_path),
        "model_mnist_test_accuracy": mnist_accuracy,
        "images": n,
        "accuracy": float(proper.mean()),
        "naive_accuracy": float(shrunk.mean()),
        "per_kind": {kind: {"images": int((kinds_array == kind).sum()),
                            "accuracy": float(proper[kinds_array == kind].mean())}
                     for kind in userimages.KINDS if (kinds_array == kind).any()},
        "preprocess_ms_median": 1000 * statistics.median(seconds),
    }


def section_inference(model: Any, model_path: str, *, quick: bool) -> dict[str, Any]:
    """Images per second through `predict_proba`, batched and one at a time."""
    from mnist_digits import predict

    (_, _), (x_test, _) = data.load_mnist()
    images = data.normalize_images(x_test)
    predict.predict_proba(model, images[:1024])  # warm-up: first calls trace and allocate
    start = time.perf_counter()
    rounds = 1 if quick else 3
    for _ in range(rounds):
        predict.predict_proba(model, images)
    batched = rounds * len(images) / (time.perf_counter() - start)
    single = []
    for i in range(20 if quick else 500):
        start = time.perf_counter()
        predict.predict_proba(model, images[i:i + 1])
        single.append(time.perf_counter() - start)
    single_ms = np.array(single) * 1000
    return {"model": str(model_path), "batched_images_per_second": batched,
            "single_image_ms_median": float(np.median(single_ms)),
            "single_image_ms_p95": float(np.percentile(single_ms, 95))}


SECTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "realworld": section_realworld,
    "inference": section_inference,
}


def to_markdown(result: dict[str, Any]) -> str:
    """The bench result as Markdown tables."""
    m = result["machine"]
    lines = [f"# mnist-digits bench, {result['date']}", "",
             f"{m['cpu']}, {m['cores']} cores; TensorFlow {m['tensorflow']}, Keras "
             f"{m['keras']}, NumPy {m['numpy']}, Python {m['python']}"
             + (" — **--quick: these numbers mean nothing**" if result["quick"] else ""), ""]
    sections = result["sections"]
    if "realworld" in sections:
        r = sections["realworld"]
        acc = r["model_mnist_test_accuracy"]
        lines += ["## User-style images (`realworld`)", "",
                  f"{r['images']} MNIST test digits drawn as photos, scans and canvas exports; "
                  f"model `{r['model']}`"
                  + (f" (MNIST test accuracy {100 * acc:.2f}%)" if acc is not None else ""), "",
                  "| approach | accuracy |", "|---|--:|",
                  f"| `predict` (MNIST-style preprocessing) | {100 * r['accuracy']:.2f}% |",
                  f"| naive: shrink the whole image to 28×28 | {100 * r['naive_accuracy']:.2f}% |",
                  "", "| image kind | images | accuracy |", "|---|--:|--:|"]
        lines += [f"| {k} | {v['images']} | {100 * v['accuracy']:.2f}% |"
                  for k, v in r["per_kind"].items()]
        lines += ["", f"Median preprocessing time: {r['preprocess_ms_median']:.1f} ms per image.",
                  ""]
    if "inference" in sections:
        r = sections["inference"]
        lines += ["## Inference (`inference`)", "", "| measure | value |", "|---|--:|",
                  f"| batched | {r['batched_images_per_second']:,.0f} images/s |",
                  f"| one image, median | {r['single_image_ms_median']:.2f} ms |",
                  f"| one image, p95 | {r['single_image_ms_p95']:.2f} ms |", ""]
    return "\n".join(lines)


def run_bench(model: Any, *, model_path: str, only: str | None = None, quick: bool = False,
              out_dir: str | os.PathLike = DEFAULT_OUT) -> tuple[dict[str, Any], Path]:
    """Runs the sections and writes `<out_dir>/<date>-<host>[-quick].json` and `.md`.

    Args:
        model: the loaded model (`predict.load_model(model_path)`).
        model_path: where it came from, recorded with the results.
        only: a section name, or None for all.
        quick: a tiny run for smoke tests.
        out_dir: where the files go.

    Returns:
        The result and the path of the JSON file.
    """
    names = [only] if only else list(SECTIONS)
    result: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                              "quick": quick, "machine": machine(), "sections": {}}
    for name in names:
        log.info("bench: %s", name)
        start = time.perf_counter()
        result["sections"][name] = SECTIONS[name](model, model_path, quick=quick)
        result["sections"][name]["seconds"] = time.perf_counter() - start
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.date.today():%Y-%m-%d}-{result['machine']['host']}" + \
        ("-quick" if quick else "") + (f"-{only}" if only else "")
    runs.write_json(out_dir / f"{stem}.json", result)
    runs.atomic_write_text(out_dir / f"{stem}.md", to_markdown(result))
    return result, out_dir / f"{stem}.json"
