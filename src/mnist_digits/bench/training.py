"""Bench sections about training: speed and accuracy against reference recipes (`training`),
recipe ablations (`ablation`), the best presets and their ensembles (`best`), and the calibration
of every preset (`calibration`).

Every training run happens in a fresh child process, so its peak RSS is its own and no run warms
up or slows down another. Time is the sum of the epochs' wall times (training plus the per-epoch
validation), measured the same way for baselines and presets by `callbacks.EpochTimer`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import multiprocessing
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mnist_digits import data, runs
from mnist_digits.bench.context import Context, Section

log = logging.getLogger(__name__)


# The reference recipes, as published, in plain Keras: nothing of ours but the data split (our
# 50k/10k train/validation split, validated every epoch as keras-io's validation_split does).
BASELINES: dict[str, dict[str, Any]] = {
    # https://keras.io/examples/vision/mnist_convnet/
    "keras_io_convnet": {"epochs": 15, "batch_size": 128,
                         "pairs": ("cnn_fast", "cnn_fast/float32"),
                         "description": "keras-io simple MNIST convnet, 15 epochs, batch 128, "
                                        "Adam"},
    # The original project: 784-512-512-10, dropout 0.2, Adam, 20 epochs of batch 128.
    "classic_ffnn": {"epochs": 20, "batch_size": 128, "pairs": ("mlp_fast", "mlp_deskew"),
                     "description": "classic FFNN 784-512-512-10, dropout 0.2, 20 epochs, "
                                    "batch 128, Adam"},
}
# Our presets in the training section: the fast pair of each baseline, and the augmented FFNN.
TRAINING_PRESETS = ("cnn_fast", "mlp_fast", "mlp_deskew", "mlp_aug")
# Presets trained another way beside them: name -> (preset, config overrides, what changes).
# cnn_fast's precision is "auto", so where it trains in bfloat16 this row shows what float32
# would take (and where it trains in float32, the two rows agree).
TRAINING_VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "cnn_fast/float32": ("cnn_fast", {"precision": "float32"},
                         "`cnn_fast` in float32 (`--precision float32`)"),
}
# The most accurate presets, the best single model first. Each is averaged over its seeds, and
# then all of them together: the wide and the narrow network err on partly other digits.
BEST_PRESETS = ("cnn_wide", "cnn_best")
# The most accurate feedforward preset, measured on its own (`feedforward`): a long recipe.
FEEDFORWARD_PRESET = "mlp_distill"
SEEDS = 3
BEST_SEEDS = 5


def build_baseline(name: str) -> Any:
    """A reference recipe's model, layer for layer as published."""
    import keras
    from keras import layers

    inputs = keras.Input(data.IMAGE_SHAPE)
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
    return keras.Model(inputs, layers.Dense(data.NUM_CLASSES, activation="softmax")(x))


def _train_job(kind: str, name: str, seed: int, quick: bool, work_dir: str,
               overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One training run (in a child process but for `quick`): time, accuracy and peak RSS."""
    from mnist_digits import backend

    backend.import_keras_quietly()  # a fresh process: TensorFlow's start-up notices again
    import keras

    from mnist_digits import callbacks, train
    from mnist_digits.config import resolve_config

    # A quick run trains on 1,500 images, its split in its config too, so that ensembles of its
    # runs evaluate on that split; a distilled one keeps the 10,000 its teacher held out.
    split = {"limit": None, "val_size": 10_000}
    if quick:
        distilled = kind == "preset" and resolve_config({}, {"model": name}).teacher
        split = {"limit": 11_500, "val_size": 10_000} if distilled else \
            {"limit": 2000, "val_size": 500}
    splits = data.load_splits(**split)
    start = time.perf_counter()
    if kind == "baseline":
        recipe = BASELINES[name]
        keras.utils.set_random_seed(seed)
        model = build_baseline(name)
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        timer = callbacks.EpochTimer()
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
                  "test_accuracy": accuracy, "precision": "float32"}
    else:
        cli = {"model": name, "seed": seed, **(overrides or {}),
               **({"epochs": 1, "warmup_epochs": 0.5, **split} if quick else {})}
        config = resolve_config({}, cli)
        run_dir = runs.new_run_dir(work_dir, name, f"s{seed}")
        metrics = train.train(config, run_dir, splits=splits)
        result = {"train_seconds": metrics["train_seconds"], "epochs": metrics["epochs_run"],
                  "test_accuracy": metrics["test"]["accuracy"], "run_dir": str(run_dir),
                  "calibration": metrics["calibration"],
                  # What `auto` resolved to on this machine, as train() resolved it.
                  "precision": backend.precision(config.precision)}
    result["job_seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    return result


def _in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """Runs fn(*args) in a fresh spawned process and returns its result."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def recorded_precision(results: list[dict[str, Any]]) -> str:
    """The precisions a preset's runs trained in, as recorded: one name unless they differed."""
    return ", ".join(sorted({r["precision"] for r in results}))


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    from mnist_digits.compare import mean_std

    acc, acc_std = mean_std([r["test_accuracy"] for r in results])
    seconds, seconds_std = mean_std([r["train_seconds"] for r in results])
    return {"runs": results, "seeds": len(results), "test_accuracy_mean": acc,
            "test_accuracy_std": acc_std, "train_seconds_mean": seconds,
            "train_seconds_std": seconds_std,
            "precision": recorded_precision(results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def _train_many(kind: str, name: str, seeds: int, ctx: Context,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    results = []
    # Each run in a fresh process, so its time and peak memory are its own; a quick run's
    # figures mean nothing, so it saves the processes' start (seconds each) and runs here.
    run = _train_job if ctx.quick else functools.partial(_in_child, _train_job)
    for seed in range(seeds):
        log.info("bench: training %s %s %s, seed %d", kind, name, overrides or "", seed)
        results.append(run(kind, name, seed, ctx.quick, str(ctx.work_dir), overrides))
    return _summary(results)


# Each recipe choice of the fast presets, undone one at a time, and a cheaper cnn_fast that
# missed its accuracy (seed 0): does it pay?
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
    "cnn_fast/16-filters": ("cnn_fast", {"model_options": {"stages": [[16], [32]],
                                                           "dropout": 0.1},
                                         "batch_size": 250},
                            "16 first filters instead of 24, dropout 0.1, batch 250: faster"),
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
    for name, (preset, overrides, what) in TRAINING_VARIANTS.items():
        result["presets"][name] = {"description": what, "preset": preset,
                                   "overrides": overrides,
                                   **_train_many("preset", preset, seeds, ctx, overrides)}
    for name, recipe in BASELINES.items():
        for pair in recipe["pairs"]:
            ours = result["presets"][pair]
            ours["baseline"] = name
            ours["speedup"] = (result["baselines"][name]["train_seconds_mean"]
                               / ours["train_seconds_mean"])
    # The augmentation runs inside the model, on the same 2 cores, so what matters is that it
    # is much faster than the training step it feeds.
    augmented = {name: models.get_model_spec(name).recipe.get("augment")
                 for name in (*TRAINING_PRESETS, *BEST_PRESETS)}
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


def _averaged(ctx: Context, run_dirs: list[str], name: str, *, tta: bool,
              tag: str | None = None) -> dict[str, Any]:
    """`mnist-digits ensemble` of run_dirs: its folder, test accuracy and errors."""
    from mnist_digits import ensemble

    run_dir, metrics = ensemble.make_ensemble(run_dirs, ctx.work_dir, name=name, tag=tag,
                                              tta=tta)
    return {"members": len(run_dirs), "views": metrics["views"], "run_dir": str(run_dir),
            "test_accuracy": metrics["test"]["accuracy"], "num_errors": metrics["num_errors"]}


def _best_preset(ctx: Context, preset: str, seeds: int) -> dict[str, Any]:
    """One preset over seeds and their ensemble, each also with test-time views."""
    from mnist_digits import models
    from mnist_digits.compare import mean_std

    singles = _train_many("preset", preset, seeds, ctx)
    run_dirs = [r["run_dir"] for r in singles["runs"]]
    tta_singles = [_averaged(ctx, [d], f"tta_{preset}", tta=True, tag=f"s{seed}")
                   for seed, d in enumerate(run_dirs)]
    accuracy, accuracy_std = mean_std([t["test_accuracy"] for t in tta_singles])
    spec = models.get_model_spec(preset)
    return {"preset": preset, "description": spec.description, "recipe": dict(spec.recipe),
            **singles,
            "ensemble": _averaged(ctx, run_dirs, f"ensemble_{preset}", tta=False),
            "tta": {"views": tta_singles[0]["views"], "runs": tta_singles,
                    "test_accuracy_mean": accuracy, "test_accuracy_std": accuracy_std},
            "ensemble_tta": _averaged(ctx, run_dirs, f"ensemble_{preset}_tta", tta=True)}


def section_best(ctx: Context) -> dict[str, Any]:
    """Each of `BEST_PRESETS` over `BEST_SEEDS` seeds and its ensemble, then the ensemble of all
    their runs; each also with test-time views (`ensemble --tta`), which the goals count apart."""
    seeds = 2 if ctx.quick else BEST_SEEDS
    presets = {name: _best_preset(ctx, name, seeds) for name in BEST_PRESETS}
    run_dirs = [r["run_dir"] for p in presets.values() for r in p["runs"]]
    return {"presets": presets, "seeds": seeds,
            "ensemble": _averaged(ctx, run_dirs, "ensemble_best", tta=False),
            "ensemble_tta": _averaged(ctx, run_dirs, "ensemble_best_tta", tta=True)}


def section_feedforward(ctx: Context) -> dict[str, Any]:
    """The most accurate feedforward preset over `SEEDS` seeds."""
    from mnist_digits import models

    spec = models.get_model_spec(FEEDFORWARD_PRESET)
    return {"preset": FEEDFORWARD_PRESET, "description": spec.description,
            "recipe": dict(spec.recipe),
            **_train_many("preset", FEEDFORWARD_PRESET, 1 if ctx.quick else SEEDS, ctx)}


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


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f}"


def _secs(r: dict[str, Any]) -> str:
    return f"{r['train_seconds_mean']:.1f} ± {r['train_seconds_std']:.1f}"


def training_markdown(t: dict[str, Any]) -> list[str]:
    """The `training` section as Markdown."""
    lines = ["## Training speed and accuracy (`training`)", "",
             f"Test accuracy on the official 10k test set and training time (sum of epoch wall "
             f"times, validation included), mean ± std over {t['seeds']} seed(s); each run in "
             f"its own process.", "",
             "| recipe | kind | precision | test acc. (%) | train s | speed-up vs baseline | "
             "peak RSS |",
             "|---|---|---|--:|--:|--:|--:|"]
    for name, r in t["baselines"].items():
        lines.append(f"| {r['description']} (`{name}`) | reference | {r['precision']} | "
                     f"{_pct(r)} | {_secs(r)} | 1× | {r['peak_rss_mb']:.0f} MiB |")
    for name, r in t["presets"].items():
        speedup = f"**{r['speedup']:.1f}×** vs `{r['baseline']}`" if "speedup" in r else "–"
        lines.append(f"| `{name}`: {r['description']} | ours | {r['precision']} | {_pct(r)} | "
                     f"{_secs(r)} | {speedup} | {r['peak_rss_mb']:.0f} MiB |")
    if t.get("augmentation"):
        lines += ["", "| augmentation of | policy | augmented images/s | training images/s |",
                  "|---|---|--:|--:|"]
        for name, a in t["augmentation"].items():
            policy = ", ".join(f"{k} {v:g}" for k, v in a["policy"].items())
            training = a.get("training_images_per_second")
            lines.append(f"| `{name}` | {policy} | {a['images_per_second']:,.0f} | "
                         + (f"{training:,.0f} |" if training else "– |"))
    return [*lines, ""]


def ablation_markdown(result: dict[str, Any]) -> list[str]:
    """The `ablation` section as Markdown."""
    lines = ["## Recipe choices, undone one at a time (`ablation`, seed 0)", "",
             "| variant | change | test acc. (%) | train s |", "|---|---|--:|--:|"]
    for name, r in result.items():
        if isinstance(r, dict) and "change" in r:
            lines.append(f"| `{name}` | {r['change']} | {100 * r['test_accuracy_mean']:.2f} | "
                         f"{r['train_seconds_mean']:.1f} |")
    return [*lines, ""]


def _preset_lines(r: dict[str, Any], *more_rows: str) -> list[str]:
    """A preset trained over seeds: its description, its table row (then `more_rows`) and its
    single runs."""
    return [f"`{r['preset']}` (trained in {r['precision']}): {r['description']}", "",
            "| model | seeds | test acc. (%) | train s (each) | peak RSS |",
            "|---|--:|--:|--:|--:|",
            f"| `{r['preset']}` | {r['seeds']} | {_pct(r)} | {_secs(r)} | "
            f"{r['peak_rss_mb']:.0f} MiB |", *more_rows,
            "", "Single runs: " + ", ".join(f"{100 * x['test_accuracy']:.2f}%"
                                            for x in r["runs"]), ""]


def _ensemble_row(what: str, e: dict[str, Any]) -> str:
    return f"| {what} | – | **{100 * e['test_accuracy']:.2f}** ({e['num_errors']} errors) | – | – |"


def best_markdown(r: dict[str, Any]) -> list[str]:
    """The `best` section as Markdown."""
    lines = ["## Best accuracy (`best`)", ""]
    for p in r["presets"].values():
        t = p["tta"]
        # The goals ask for a 3-seed mean; the bench runs more seeds, so it says both.
        first = [x["test_accuracy"] for x in p["runs"][:3]]
        lines += _preset_lines(
            p, _ensemble_row(f"ensemble of those {p['ensemble']['members']} "
                             f"(`mnist-digits ensemble`)", p["ensemble"]),
            f"| each of those with test-time views, {t['views']} views "
            f"(`ensemble --tta RUN`) | {len(t['runs'])} | {_pct(t)} | – | – |",
            _ensemble_row("the ensemble with test-time views (`ensemble --tta`)",
                          p["ensemble_tta"]))
        lines += [f"First {len(first)} seeds: {100 * sum(first) / len(first):.3f}%. "
                  "With test-time views: " + ", ".join(f"{100 * x['test_accuracy']:.2f}%"
                                                       for x in t["runs"]), ""]
    e, et = r["ensemble"], r["ensemble_tta"]
    names = " and ".join(f"`{name}`" for name in r["presets"])
    lines += [f"All {e['members']} runs of {names} averaged (`mnist-digits ensemble RUN...`): "
              f"**{100 * e['test_accuracy']:.2f}%** ({e['num_errors']} errors); with "
              f"test-time views, {et['views']} views: **{100 * et['test_accuracy']:.2f}%** "
              f"({et['num_errors']} errors).", ""]
    return lines


def feedforward_markdown(r: dict[str, Any]) -> list[str]:
    """The `feedforward` section as Markdown."""
    return ["## Best feedforward net (`feedforward`)", "", *_preset_lines(r)]


def calibration_markdown(result: dict[str, Any]) -> list[str]:
    """The `calibration` section as Markdown."""
    lines = ["## Calibration (`calibration`, one seed per preset)", "",
             "Expected calibration error on the test set (15 equal-width bins), before and "
             "after the temperature fitted on the validation set.", "",
             "| preset | test acc. (%) | temperature | test ECE before | test ECE after |",
             "|---|--:|--:|--:|--:|"]
    for name, r in result.items():
        if isinstance(r, dict):
            lines.append(f"| `{name}` | {100 * r['test_accuracy']:.2f} | "
                         f"{r['temperature']:.3f} | {r['test_ece_uncalibrated']:.2%} | "
                         f"**{r['test_ece']:.2%}** |")
    return [*lines, ""]


SECTIONS = (
    Section("training", section_training, training_markdown),
    Section("ablation", section_ablation, ablation_markdown),
    Section("best", section_best, best_markdown),
    Section("feedforward", section_feedforward, feedforward_markdown),
    Section("calibration", section_calibration, calibration_markdown),
)
