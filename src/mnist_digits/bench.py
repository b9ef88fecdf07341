"""`mnist-digits bench`: measured figures, written to `bench/results/<date>-<host>.json` and `.md`.

Sections (run all, in this order, or one with `--only NAME`):
- `training`: the reference recipes (keras-io's convnet, the classic FFNN; see `BASELINES`)
  against our fast presets, 3 seeds each, on the same split and machine: training time, test
  accuracy (mean ± std), the time ratio, peak memory; and the augmentation pipeline's throughput
  next to the training throughput, to show it is not the bottleneck.
- `ablation`: each recipe choice of the fast presets undone in turn (one seed): does it pay?
- `best`: the best-accuracy preset over 5 seeds, and the 5 averaged by `ensemble`.
- `realworld`: the `predict` path on synthetic user-style images of MNIST test digits (see
  `userimages`), against the naive "shrink the whole image" approach most demos use.
- `inference`: the default model's throughput through `predict_proba`, batched and one image
  at a time, the code path of `predict` and the web server.
- `load`: the web server under concurrent load (see `loadtest`): status codes, wrong answers,
  latency percentiles, throughput and the server's memory before and after.

Every training run happens in a fresh child process, so its peak RSS is its own and no run warms
up or slows down another. Run folders go to `results/bench/<stamp>/`.

`--quick` runs a tiny version in seconds, for the CI smoke test; its numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
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
from mnist_digits.errors import ConfigError

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


@dataclasses.dataclass
class Context:
    """What the sections share: options, a work folder, the model under test, and the results
    of the sections that ran before (`cache`), which later ones may reuse but never change.

    `model_path` is `--model`; if None, the packaged reading model is measured, which is what
    `predict` and `serve` use by default.
    """

    quick: bool
    work_dir: Path
    model_path: str | None = None
    _model: Any = None
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    def model(self) -> tuple[Any, str]:
        from mnist_digits import predict

        if self._model is None:
            self._model = predict.load_model(self.model_path)
        return self._model, self.model_path or str(predict.packaged_model_path())


# The reference recipes, as published, in plain Keras: nothing of ours but the data split (our
# 50k/10k train/validation split, validated every epoch as keras-io's validation_split does).
BASELINES: dict[str, dict[str, Any]] = {
    # https://keras.io/examples/vision/mnist_convnet/
    "keras_io_convnet": {"epochs": 15, "batch_size": 128, "pair": "cnn_fast",
                         "description": "keras-io simple MNIST convnet, 15 epochs, batch 128, "
                                        "Adam"},
    # The original project: 784-512-512-10, dropout 0.2, Adam, 20 epochs of batch 128.
    "classic_ffnn": {"epochs": 20, "batch_size": 128, "pair": "mlp_fast",
                     "description": "classic FFNN 784-512-512-10, dropout 0.2, 20 epochs, "
                                    "batch 128, Adam"},
}
# Our presets in the training section: the fast pair of each baseline, and the augmented FFNN.
TRAINING_PRESETS = ("cnn_fast", "mlp_fast", "mlp_aug")
BEST_PRESET = "cnn_best"
SEEDS = 3
BEST_SEEDS = 5


def build_baseline(name: str) -> Any:
    """A reference recipe's model, layer for layer as published."""
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1))
    if name == "keras_io_convnet":
        x = layers.Conv2D(32, kernel_size=(3, 3), activation="relu")(inputs)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
        x = layers.Conv2D(64, kernel_size=(3, 3), activation="relu")(x)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
        x = layers.Flatten()(x)
        x = layers.Dropout(0.5)(x)
    elif name == "classic_ffnn":
        x = layers.Flatten()(inputs)
        for _ in range(2):
            x = layers.Dense(512, activation="relu")(x)
            x = layers.Dropout(0.2)(x)
    else:
        raise ValueError(f"unknown baseline {name!r}")
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _train_job(kind: str, name: str, seed: int, quick: bool, work_dir: str,
               overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One training run, in a child process: time, accuracy and peak RSS.

    Time is the sum of the epochs' wall times (training plus the per-epoch validation), measured
    the same way for baselines and presets by `train.EpochTimer`.
    """
    import keras

    from mnist_digits import train
    from mnist_digits.config import resolve_config

    limit = 2000 if quick else None
    splits = data.make_splits(*data.load_mnist(), val_size=500 if quick else 10_000,
                              limit=limit)
    start = time.perf_counter()
    if kind == "baseline":
        recipe = BASELINES[name]
        keras.utils.set_random_seed(seed)
        model = build_baseline(name)
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        timer = train.EpochTimer()
        seconds: list[float] = []
        record = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: seconds.append(logs["epoch_seconds"]))
        model.fit(splits.x_train, splits.y_train, batch_size=recipe["batch_size"],
                  epochs=1 if quick else recipe["epochs"], verbose=0,
                  validation_data=(splits.x_val, splits.y_val), callbacks=[timer, record])
        predicted = model(splits.x_test, training=False)
        accuracy = float(np.mean(keras.ops.convert_to_numpy(predicted).argmax(1)
                                 == splits.test_labels))
        result = {"train_seconds": float(sum(seconds)), "epochs": len(seconds),
                  "test_accuracy": accuracy}
    else:
        cli = {"model": name, "seed": seed, **(overrides or {}),
               **({"epochs": 1, "warmup_epochs": 0.5} if quick else {})}
        config = resolve_config({}, cli)
        run_dir = runs.new_run_dir(work_dir, name, f"s{seed}")
        metrics = train.train(config, run_dir, splits=splits)
        result = {"train_seconds": metrics["train_seconds"], "epochs": metrics["epochs_run"],
                  "test_accuracy": metrics["test"]["accuracy"], "run_dir": str(run_dir),
                  "calibration": metrics["calibration"]}
    result["job_seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """Runs fn(*args) in a fresh spawned process and returns its result."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    from mnist_digits.compare import mean_std

    acc, acc_std = mean_std([r["test_accuracy"] for r in results])
    seconds, seconds_std = mean_std([r["train_seconds"] for r in results])
    return {"runs": results, "seeds": len(results), "test_accuracy_mean": acc,
            "test_accuracy_std": acc_std, "train_seconds_mean": seconds,
            "train_seconds_std": seconds_std,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def _train_many(kind: str, name: str, seeds: int, ctx: Context,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    results = []
    for seed in range(seeds):
        log.info("bench: training %s %s %s, seed %d", kind, name, overrides or "", seed)
        results.append(_in_child(_train_job, kind, name, seed, ctx.quick, str(ctx.work_dir),
                                 overrides))
    return _summary(results)


# Each recipe choice of the fast presets, undone one at a time (seed 0): does it pay?
ABLATIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    "cnn_fast": ("cnn_fast", {}, "as registered"),
    "cnn_fast/no-label-smoothing": ("cnn_fast", {"label_smoothing": 0.0}, "label smoothing 0"),
    "cnn_fast/constant-lr": ("cnn_fast", {"lr_schedule": "constant", "learning_rate": 1e-3},
                             "constant LR 1e-3 (Adam's default) instead of warm-up + cosine"),
    "cnn_fast/conv-batch-norm": ("cnn_fast", {"model_options": {"batch_norm": True}},
                                 "batch norm on the convolutions too"),
    "cnn_fast/no-batch-norm": ("cnn_fast", {"model_options": {"dense_batch_norm": False}},
                               "no batch norm at all"),
    "cnn_fast/batch-128": ("cnn_fast", {"batch_size": 128}, "batch 128 instead of 256"),
    "mlp_fast": ("mlp_fast", {}, "as registered"),
    "mlp_fast/2-epochs": ("mlp_fast", {"epochs": 2}, "2 epochs instead of 3"),
    "mlp_fast/512x2": ("mlp_fast", {"model_options": {"hidden": [512, 512]}},
                       "784-512-512-10 (the classic size) instead of 768-768"),
    "mlp_aug": ("mlp_aug", {}, "as registered"),
    "mlp_aug/no-augmentation": ("mlp_aug", {"augment": {}}, "no augmentation"),
}


def section_ablation(ctx: Context) -> dict[str, Any]:
    """One training run per recipe variant in `ABLATIONS` (one seed: a screen, not a proof)."""
    names = ["cnn_fast", "cnn_fast/no-label-smoothing"] if ctx.quick else list(ABLATIONS)
    result = {}
    for name in names:
        preset, overrides, what = ABLATIONS[name]
        result[name] = {"preset": preset, "change": what, "overrides": overrides,
                        **_train_many("preset", preset, 1, ctx, overrides)}
    return result


def augmentation_throughput(policy: dict[str, float], x: np.ndarray,
                            batch_size: int = 128) -> float:
    """Images per second through a policy's augmentation layers in training mode, on `x`."""
    from mnist_digits import augment

    stack = augment.augmentation_layers(policy, seed=0)

    def run_all() -> None:
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size]
            for layer in stack:
                batch = layer(batch, training=True)

    run_all()  # warm-up
    start = time.perf_counter()
    run_all()
    return len(x) / (time.perf_counter() - start)


def section_training(ctx: Context) -> dict[str, Any]:
    """Baselines against our presets: time, accuracy over seeds, ratio, peak RSS."""
    from mnist_digits import models

    seeds = 1 if ctx.quick else SEEDS
    result: dict[str, Any] = {"seeds": seeds, "baselines": {}, "presets": {}}
    for name, recipe in BASELINES.items():
        result["baselines"][name] = {"description": recipe["description"],
                                     **_train_many("baseline", name, seeds, ctx)}
    for name in TRAINING_PRESETS:
        spec = models.get_model_spec(name)
        result["presets"][name] = {"description": spec.description, "recipe": dict(spec.recipe),
                                   **_train_many("preset", name, seeds, ctx)}
    for name, recipe in BASELINES.items():
        ours = result["presets"][recipe["pair"]]
        ours["baseline"] = name
        ours["speedup"] = (result["baselines"][name]["train_seconds_mean"]
                           / ours["train_seconds_mean"])
    # The augmentation runs inside the model, on the same 2 cores, so what matters is that it
    # is much faster than the training step it feeds.
    augmented = {name: models.get_model_spec(name).recipe.get("augment")
                 for name in (*TRAINING_PRESETS, BEST_PRESET)}
    result["augmentation"] = {}
    (x_train, _), _ = data.load_mnist()
    x = data.normalize_images(x_train[:1024 if ctx.quick else 8192])
    for name, policy in augmented.items():
        if policy:
            result["augmentation"][name] = {"policy": policy,
                                            "images_per_second": augmentation_throughput(
                                                policy, x)}
            if name in result["presets"]:
                trained = result["presets"][name]
                epochs = np.mean([r["epochs"] for r in trained["runs"]])
                n_train = 2000 - 500 if ctx.quick else 50_000
                result["augmentation"][name]["training_images_per_second"] = \
                    n_train * epochs / trained["train_seconds_mean"]
    return result


def section_best(ctx: Context) -> dict[str, Any]:
    """The best-accuracy preset over `BEST_SEEDS` seeds, and their ensemble."""
    from mnist_digits import ensemble, models

    seeds = 2 if ctx.quick else BEST_SEEDS
    singles = _train_many("preset", BEST_PRESET, seeds, ctx)
    run_dir, metrics = ensemble.make_ensemble(
        [r["run_dir"] for r in singles["runs"]], ctx.work_dir, name=f"ensemble_{BEST_PRESET}")
    spec = models.get_model_spec(BEST_PRESET)
    return {"preset": BEST_PRESET, "description": spec.description, "recipe": dict(spec.recipe),
            **singles,
            "ensemble": {"members": seeds, "run_dir": str(run_dir),
                         "test_accuracy": metrics["test"]["accuracy"],
                         "num_errors": metrics["num_errors"]}}


def _read_all(model: Any, images: list[bytes], threshold: float) -> list[Any]:
    """`reading` results for encoded images, with the per-image preprocessing time."""
    from mnist_digits import preprocess, reading

    out = []
    for data_ in images:
        start = time.perf_counter()
        result = reading.read_images(model, [preprocess.open_image(data_)], ["bench"],
                                     threshold=threshold)[0]
        out.append((result, time.perf_counter() - start))
    return out


def _min_confidence(result: Any) -> float:
    """The least sure digit's confidence: the image is `ok` at any threshold up to this."""
    return min((d.confidence for d in result.digits), default=0.0)


def section_realworld(ctx: Context) -> dict[str, Any]:
    """`predict` on user-style images, per kind, against the naive approach; "unsure" is wrong.

    Two families: MNIST test digits drawn as photos, scans and canvas exports
    (`userimages.render`), and tightly cropped scans of them (`userimages.tight_crop`: strokes
    touching the edges, a thick pen, blur, 8- and 16-pixel scans enlarged).
    """
    from mnist_digits import predict, reading, userimages

    model, model_path = ctx.model()
    threshold = reading.DEFAULT_THRESHOLD
    n = 50 if ctx.quick else 2000
    (_, _), (x_test, y_test) = data.load_mnist()
    result: dict[str, Any] = {"model": str(model_path), "threshold": threshold,
                              "model_mnist_test_accuracy": _mnist_accuracy(model_path)}
    for family, make, kinds in (("user_style", userimages.render, userimages.KINDS),
                                ("tight_crops", userimages.tight_crop, userimages.TIGHT_KINDS)):
        rng = np.random.default_rng(2026 if family == "user_style" else 2027)
        indices = rng.choice(len(x_test), n, replace=False)
        images = [make(x_test[i], int(y_test[i]), rng) for i in indices]
        read = _read_all(model, [im.data for im in images], threshold)
        labels = np.array([im.label for im in images])
        kinds_array = np.array([im.kind for im in images])
        texts = [r.text for r, _ in read]
        correct = np.array([t == str(label) for t, label in zip(texts, labels, strict=True)])
        # Without the threshold: the most probable digit of an image with exactly one digit.
        argmax = np.array([len(r.digits) == 1 and r.digits[0].digit == label
                           for (r, _), label in zip(read, labels, strict=True)])
        unsure = np.array([r.status == "unsure" for r, _ in read])
        naive = predict.predict_proba(model, np.stack(
            [userimages.naive_frame(im.data) for im in images])).argmax(axis=1) == labels
        result[family] = {
            "images": n, "accuracy": float(correct.mean()), "argmax_accuracy": float(
                argmax.mean()), "unsure_rate": float(unsure.mean()),
            "naive_accuracy": float(naive.mean()),
            "per_kind": {kind: {"images": int((kinds_array == kind).sum()),
                                "accuracy": float(correct[kinds_array == kind].mean()),
                                "unsure_rate": float(unsure[kinds_array == kind].mean())}
                         for kind in kinds if (kinds_array == kind).any()},
            "read_ms_median": 1000 * statistics.median(t for _, t in read)}
        # For the rejection section's curve; too long for the result file.
        ctx.cache[f"{family}_min_confidence"] = [_min_confidence(r) for r, _ in read]
    return result


def _mnist_accuracy(model_path: str) -> float | None:
    """The MNIST test accuracy recorded beside a model (its run's metrics.json), if any."""
    path = Path(model_path)
    metrics_path = (path if path.is_dir() else path.parent) / runs.METRICS
    return runs.read_json(metrics_path)["test"]["accuracy"] if metrics_path.exists() else None


NUMBER_LENGTHS = (2, 3, 4, 5, 6)


def section_numbers(ctx: Context) -> dict[str, Any]:
    """Handwritten numbers of 2-6 MNIST test digits on plain, ruled and squared paper, read
    exactly (every digit right, none missing or extra, none unsure)."""
    from mnist_digits import reading, userimages

    model, model_path = ctx.model()
    threshold = reading.DEFAULT_THRESHOLD
    n = 20 if ctx.quick else 1000
    (_, _), (x_test, y_test) = data.load_mnist()
    rng = np.random.default_rng(2028)
    images, lengths = [], []
    for _ in range(n):
        length = int(rng.choice(NUMBER_LENGTHS))
        chosen = rng.choice(len(x_test), length, replace=False)
        images.append(userimages.number_image(x_test[chosen], y_test[chosen], rng))
        lengths.append(length)
    read = _read_all(model, [im.data for im in images], threshold)
    exact = np.array([r.text == im.text for (r, _), im in zip(read, images, strict=True)])
    found = np.array([len(r.digits) == len(im.text)
                      for (r, _), im in zip(read, images, strict=True)])
    unsure = np.array([r.status == "unsure" for r, _ in read])
    lengths_array = np.array(lengths)
    papers = np.array([im.paper for im in images])
    return {"model": str(model_path), "threshold": threshold, "images": n,
            "exact": float(exact.mean()), "digit_count_right": float(found.mean()),
            "unsure_rate": float(unsure.mean()),
            "per_length": {str(k): {"images": int((lengths_array == k).sum()),
                                    "exact": float(exact[lengths_array == k].mean())}
                           for k in NUMBER_LENGTHS if (lengths_array == k).any()},
            "per_paper": {p: {"images": int((papers == p).sum()),
                              "exact": float(exact[papers == p].mean())}
                          for p in userimages.NUMBER_PAPERS if (papers == p).any()},
            "read_ms_median": 1000 * statistics.median(t for _, t in read),
            "examples_wrong": [{"true": im.text, "read": r.text, "status": r.status,
                                "found": "".join(str(d.digit) for d in r.digits)}
                               for (r, _), im, ok in zip(read, images, exact, strict=True)
                               if not ok][:20]}


REJECTION_PLOT = "rejection.png"


def section_rejection(ctx: Context) -> dict[str, Any]:
    """Drawings that are not digits rejected, against digits wrongly rejected, per threshold.

    An image is rejected when its status is not `ok`: no digit, or a mark under the threshold.
    The non-digits (`userimages.nondigit_image`: font letters that resemble no digit, shapes,
    scribbles, crossed-out letters) are drawn by other code than the training outliers. The
    digits: the MNIST test set as the model sees it, and user-style images of test digits.
    Writes the curve as `<out>/<stem>-rejection.png` (see `run_bench`).
    """
    from mnist_digits import predict, reading, userimages

    model, model_path = ctx.model()
    n = 40 if ctx.quick else 1200
    rng = np.random.default_rng(2029)
    images = [userimages.nondigit_image(rng) for _ in range(n)]
    read = _read_all(model, [im.data for im in images], reading.DEFAULT_THRESHOLD)
    nondigit_conf = np.array([_min_confidence(r) for r, _ in read])
    kinds = np.array([im.kind for im in images])
    (_, _), (x_test, _) = data.load_mnist()
    limit = 500 if ctx.quick else len(x_test)
    mnist_conf = predict.predict_proba(model, data.normalize_images(x_test[:limit])).max(axis=1)
    if "user_style_min_confidence" not in ctx.cache:
        section_realworld(ctx)
    user_conf = np.array(ctx.cache["user_style_min_confidence"])
    thresholds = np.round(np.linspace(0, 0.95, 20), 2)
    curve = [{"threshold": float(t),
              "nondigits_rejected": float(np.mean(nondigit_conf < t)),
              "mnist_test_rejected": float(np.mean(mnist_conf < t)),
              "user_style_rejected": float(np.mean(user_conf < t))} for t in thresholds]
    chosen = reading.DEFAULT_THRESHOLD
    return {"model": str(model_path), "threshold": chosen, "nondigit_images": n,
            "mnist_test_images": int(limit), "user_style_images": len(user_conf),
            "nondigits_rejected": float(np.mean(nondigit_conf < chosen)),
            "mnist_test_rejected": float(np.mean(mnist_conf < chosen)),
            "user_style_rejected": float(np.mean(user_conf < chosen)),
            "per_kind": {k: {"images": int((kinds == k).sum()),
                             "rejected": float(np.mean(nondigit_conf[kinds == k] < chosen))}
                         for k in userimages.NONDIGIT_KINDS if (kinds == k).any()},
            "curve": curve}


def rejection_figure(r: dict[str, Any]) -> Any:
    """The rejection section's curve: share rejected against the threshold, per image set.

    Non-digits on the left axis (0-100%), digits on the right one (0-5%): the digits' share is
    a few tenths of a percent, invisible on the non-digits' scale.
    """
    import matplotlib.pyplot as plt

    from mnist_digits import plots  # noqa: F401  (selects the Agg backend)

    curve = r["curve"]
    t = [c["threshold"] for c in curve]
    fig, ax = plt.subplots(figsize=(7, 4.4), layout="constrained")
    digits = ax.twinx()
    ax.plot(t, [100 * c["nondigits_rejected"] for c in curve], "-o", markersize=3,
            color="tab:blue", label=f"non-digit drawings ({r['nondigit_images']}), left")
    digits.plot(t, [100 * c["user_style_rejected"] for c in curve], "-s", markersize=3,
                color="tab:orange", label=f"user-style digits ({r['user_style_images']}), right")
    digits.plot(t, [100 * c["mnist_test_rejected"] for c in curve], "-^", markersize=3,
                color="tab:green", label=f"MNIST test digits ({r['mnist_test_images']}), right")
    ax.axvline(r["threshold"], color="grey", linestyle=":")
    ax.set_xlabel("Threshold on the calibrated confidence")
    ax.set_ylabel("Non-digits rejected (%)")
    digits.set_ylabel("Digits rejected (%)")
    ax.set_ylim(0, 102)
    digits.set_ylim(0, 5)
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = digits.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize=8)
    ax.set_title(f"Rejection at threshold {r['threshold']:g}: non-digits "
                 f"{r['nondigits_rejected']:.1%}, user-style {r['user_style_rejected']:.1%}, "
                 f"MNIST {r['mnist_test_rejected']:.2%}", fontsize=10)
    return fig


def section_calibration(ctx: Context) -> dict[str, Any]:
    """Expected calibration error of every preset (one seed each), before and after scaling."""
    from mnist_digits import models

    names = ["mlp_small", "cnn_fast"] if ctx.quick else models.list_models()
    out = {}
    for name in names:
        trained = _train_many("preset", name, 1, ctx)
        out[name] = {"test_accuracy": trained["test_accuracy_mean"],
                     **trained["runs"][0]["calibration"]}
    return out


def section_inference(ctx: Context) -> dict[str, Any]:
    """Images per second through `predict_proba`, batched and one at a time."""
    from mnist_digits import predict

    model, model_path = ctx.model()
    quick = ctx.quick
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


def section_load(ctx: Context) -> dict[str, Any]:
    """The web server under concurrent load: good and bad uploads, latency, memory."""
    from mnist_digits import loadtest

    model, model_path = ctx.model()
    good, bad = loadtest.make_samples(model, 20 if ctx.quick else 100)
    return {"model": str(model_path),
            **loadtest.run_load_test(model_path, good, bad, requests=100 if ctx.quick else 2000,
                                     clients=4 if ctx.quick else 8)}


SECTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "training": section_training,
    "ablation": section_ablation,
    "best": section_best,
    "calibration": section_calibration,
    "realworld": section_realworld,
    "numbers": section_numbers,
    "rejection": section_rejection,
    "inference": section_inference,
    "load": section_load,
}


def to_markdown(result: dict[str, Any]) -> str:
    """The bench result as Markdown tables."""
    m = result["machine"]
    lines = [f"# mnist-digits bench, {result['date']}", "",
             f"{m['cpu']}, {m['cores']} cores; TensorFlow {m['tensorflow']}, Keras "
             f"{m['keras']}, NumPy {m['numpy']}, Python {m['python']}"
             + (" — **--quick: these numbers mean nothing**" if result["quick"] else ""), ""]
    sections = result["sections"]
    if "training" in sections:
        lines += _training_markdown(sections["training"])
    if "ablation" in sections:
        lines += ["## Recipe choices, undone one at a time (`ablation`, seed 0)", "",
                  "| variant | change | test acc. (%) | train s |", "|---|---|--:|--:|"]
        for name, r in sections["ablation"].items():
            if isinstance(r, dict) and "change" in r:
                lines.append(f"| `{name}` | {r['change']} | "
                             f"{100 * r['test_accuracy_mean']:.2f} | "
                             f"{r['train_seconds_mean']:.1f} |")
        lines.append("")
    if "best" in sections:
        r = sections["best"]
        e = r["ensemble"]
        lines += ["## Best accuracy (`best`)", "",
                  f"`{r['preset']}`: {r['description']}", "",
                  "| model | seeds | test acc. (%) | train s (each) | peak RSS |",
                  "|---|--:|--:|--:|--:|",
                  f"| `{r['preset']}` | {r['seeds']} | {_pct(r)} | {_secs(r)} | "
                  f"{r['peak_rss_mb']:.0f} MiB |",
                  f"| ensemble of those {e['members']} (`mnist-digits ensemble`) | – | "
                  f"**{100 * e['test_accuracy']:.2f}** ({e['num_errors']} errors) | – | – |",
                  "", "Single runs: " + ", ".join(f"{100 * x['test_accuracy']:.2f}%"
                                                  for x in r["runs"]), ""]
    if "calibration" in sections:
        lines += ["## Calibration (`calibration`, one seed per preset)", "",
                  "Expected calibration error on the test set (15 equal-width bins), before and "
                  "after the temperature fitted on the validation set.", "",
                  "| preset | test acc. (%) | temperature | test ECE before | test ECE after |",
                  "|---|--:|--:|--:|--:|"]
        for name, r in sections["calibration"].items():
            if isinstance(r, dict):
                lines.append(f"| `{name}` | {100 * r['test_accuracy']:.2f} | "
                             f"{r['temperature']:.3f} | {r['test_ece_uncalibrated']:.2%} | "
                             f"**{r['test_ece']:.2%}** |")
        lines.append("")
    if "realworld" in sections:
        r = sections["realworld"]
        acc = r["model_mnist_test_accuracy"]
        lines += ["## User-style images and tight crops (`realworld`)", "",
                  f"MNIST test digits (writers the training set does not have) drawn as photos, "
                  f"scans and canvas exports, and as tightly cropped scans; model `{r['model']}`"
                  + (f" (MNIST test accuracy {100 * acc:.2f}%)" if acc is not None else "")
                  + f", threshold {r['threshold']:g}. An `unsure` answer counts as wrong.", "",
                  "| images | read right | unsure | most probable digit right | naive: shrink "
                  "the image to 28×28 |", "|---|--:|--:|--:|--:|"]
        for family in ("user_style", "tight_crops"):
            f = r[family]
            lines.append(f"| {family.replace('_', '-')} ({f['images']}) | "
                         f"**{100 * f['accuracy']:.2f}%** | {100 * f['unsure_rate']:.2f}% | "
                         f"{100 * f['argmax_accuracy']:.2f}% | "
                         f"{100 * f['naive_accuracy']:.2f}% |")
        lines += ["", "| image kind | images | read right | unsure |", "|---|--:|--:|--:|"]
        for family in ("user_style", "tight_crops"):
            lines += [f"| {k} | {v['images']} | {100 * v['accuracy']:.2f}% | "
                      f"{100 * v['unsure_rate']:.2f}% |" for k, v in r[family]["per_kind"].items()]
        lines += ["", f"Median time to read one image: "
                      f"{r['user_style']['read_ms_median']:.1f} ms (user-style), "
                      f"{r['tight_crops']['read_ms_median']:.1f} ms (tight crops).", ""]
    if "numbers" in sections:
        r = sections["numbers"]
        lines += ["## Handwritten numbers (`numbers`)", "",
                  f"{r['images']} numbers of 2-6 MNIST test digits, mixed sizes, gaps of 0.1-0.6 "
                  f"of a digit's height, a slope of up to 6°, specks, on plain, ruled or squared "
                  f"paper; threshold {r['threshold']:g}.", "",
                  "| measure | value |", "|---|--:|",
                  f"| read exactly | **{100 * r['exact']:.2f}%** |",
                  f"| right number of digits found | {100 * r['digit_count_right']:.2f}% |",
                  f"| unsure | {100 * r['unsure_rate']:.2f}% |",
                  "| read exactly, by length | " + ", ".join(
                      f"{k}: {100 * v['exact']:.1f}%" for k, v in r["per_length"].items()) + " |",
                  "| read exactly, by paper | " + ", ".join(
                      f"{k}: {100 * v['exact']:.1f}%" for k, v in r["per_paper"].items()) + " |",
                  f"| median time per image | {r['read_ms_median']:.1f} ms |", ""]
    if "rejection" in sections:
        r = sections["rejection"]
        lines += ["## Not a digit (`rejection`)", "",
                  f"Threshold {r['threshold']:g} on the calibrated confidence; an image is "
                  f"rejected when its status is not `ok`.", "",
                  "| images | rejected |", "|---|--:|",
                  f"| non-digit drawings ({r['nondigit_images']}) | "
                  f"**{100 * r['nondigits_rejected']:.2f}%** |",
                  f"| MNIST test digits ({r['mnist_test_images']}) | "
                  f"{100 * r['mnist_test_rejected']:.2f}% |",
                  f"| user-style digits ({r['user_style_images']}) | "
                  f"{100 * r['user_style_rejected']:.2f}% |", "",
                  "| non-digit kind | images | rejected |", "|---|--:|--:|"]
        lines += [f"| {k} | {v['images']} | {100 * v['rejected']:.2f}% |"
                  for k, v in r["per_kind"].items()]
        lines += ["", "| threshold | non-digits rejected | user-style rejected | MNIST test "
                      "rejected |", "|--:|--:|--:|--:|"]
        lines += [f"| {c['threshold']:.2f} | {100 * c['nondigits_rejected']:.1f}% | "
                  f"{100 * c['user_style_rejected']:.2f}% | "
                  f"{100 * c['mnist_test_rejected']:.2f}% |" for c in r["curve"]]
        lines.append("")
    if "inference" in sections:
        r = sections["inference"]
        lines += ["## Inference (`inference`)", "", "| measure | value |", "|---|--:|",
                  f"| batched | {r['batched_images_per_second']:,.0f} images/s |",
                  f"| one image, median | {r['single_image_ms_median']:.2f} ms |",
                  f"| one image, p95 | {r['single_image_ms_p95']:.2f} ms |", ""]
    if "load" in sections:
        r = sections["load"]
        lines += ["## Web server under load (`load`)", "",
                  f"`mnist-digits serve` on 127.0.0.1, {r['requests']:,} POST /api/predict from "
                  f"{r['clients']} concurrent clients: {r['good_requests']:,} user-style digit "
                  f"images and {r['bad_requests']:,} bad uploads (text, truncated, empty, PDF, "
                  f"decompression bomb).", "",
                  "| measure | value |", "|---|--:|",
                  "| responses by status | " + ", ".join(
                      f"{k}: {v:,}" for k, v in r["status_counts"].items()) + " |",
                  f"| 5xx responses | {r['server_errors_5xx']} |",
                  f"| wrong answers (good image misread or bad one accepted) | "
                  f"{r['wrong_answers']} |",
                  f"| latency p50 / p95 / p99 | {r['latency_ms_p50']:.1f} / "
                  f"{r['latency_ms_p95']:.1f} / {r['latency_ms_p99']:.1f} ms |",
                  f"| throughput | {r['throughput_rps']:.0f} requests/s |",
                  f"| server RSS before → after | {r['server_rss_mb_before']:.0f} → "
                  f"{r['server_rss_mb_after']:.0f} MiB |",
                  "| server RSS after each tenth of the requests | " + ", ".join(
                      f"{v:.0f}" for v in r.get("server_rss_mb_per_tenth", [])) + " MiB |", ""]
    return "\n".join(lines)


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f}"


def _secs(r: dict[str, Any]) -> str:
    return f"{r['train_seconds_mean']:.1f} ± {r['train_seconds_std']:.1f}"


def _training_markdown(t: dict[str, Any]) -> list[str]:
    lines = ["## Training speed and accuracy (`training`)", "",
             f"Test accuracy on the official 10k test set and training time (sum of epoch wall "
             f"times, validation included), mean ± std over {t['seeds']} seed(s); each run in "
             f"its own process.", "",
             "| recipe | kind | test acc. (%) | train s | speed-up vs baseline | peak RSS |",
             "|---|---|--:|--:|--:|--:|"]
    for name, r in t["baselines"].items():
        lines.append(f"| {r['description']} (`{name}`) | reference | {_pct(r)} | {_secs(r)} | "
                     f"1× | {r['peak_rss_mb']:.0f} MiB |")
    for name, r in t["presets"].items():
        speedup = f"**{r['speedup']:.1f}×** vs `{r['baseline']}`" if "speedup" in r else "–"
        lines.append(f"| `{name}`: {r['description']} | ours | {_pct(r)} | {_secs(r)} | "
                     f"{speedup} | {r['peak_rss_mb']:.0f} MiB |")
    if t.get("augmentation"):
        lines += ["", "| augmentation of | policy | augmented images/s | training images/s |",
                  "|---|---|--:|--:|"]
        for name, a in t["augmentation"].items():
            policy = ", ".join(f"{k} {v:g}" for k, v in a["policy"].items())
            training = a.get("training_images_per_second")
            lines.append(f"| `{name}` | {policy} | {a['images_per_second']:,.0f} | "
                         + (f"{training:,.0f} |" if training else "– |"))
    return [*lines, ""]


def run_bench(*, model_path: str | None = None, model: Any = None, only: str | None = None,
              quick: bool = False,
              out_dir: str | os.PathLike = DEFAULT_OUT,
              results_dir: str | os.PathLike = "results") -> tuple[dict[str, Any], Path]:
    """Runs the sections and writes `<out_dir>/<date>-<host>[-quick][-only].json` and `.md`.

    Args:
        model_path: the model for `realworld`, `inference` and `load` (run folder or .keras
            file); None means the `training` section's default-preset run, or `results/latest`.
        model: the model at `model_path`, if the caller has loaded it already.
        only: comma-separated section names, or None for all.
        quick: a tiny run for smoke tests.
        out_dir: where the result files go.
        results_dir: the training runs go to `<results_dir>/bench/<stamp>/`.

    Returns:
        The result and the path of the JSON file.

    Raises:
        ConfigError: an unknown section name.
    """
    names = [n.strip() for n in only.split(",")] if only else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown bench section(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(SECTIONS)}")
    stamp = datetime.datetime.now()
    work_dir = Path(results_dir) / "bench" / f"{stamp:%Y%m%d-%H%M%S}"
    ctx = Context(quick=quick, work_dir=work_dir, model_path=model_path, _model=model)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"date": stamp.isoformat(timespec="seconds"), "quick": quick,
                              "machine": machine(), "sections": {}}
    for name in names:
        log.info("bench: section %s", name)
        start = time.perf_counter()
        result["sections"][name] = SECTIONS[name](ctx)
        result["sections"][name]["seconds"] = time.perf_counter() - start
        ctx.cache[name] = result["sections"][name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{stamp:%Y-%m-%d}-{result['machine']['host']}" + ("-quick" if quick else "") + \
        (f"-{'-'.join(names)}" if only else "")
    if "rejection" in result["sections"]:
        runs.save_figure(rejection_figure(result["sections"]["rejection"]),
                         out_dir / f"{stem}-{REJECTION_PLOT}")
    runs.write_json(out_dir / f"{stem}.json", result)
    runs.atomic_write_text(out_dir / f"{stem}.md", to_markdown(result))
    return result, out_dir / f"{stem}.json"
