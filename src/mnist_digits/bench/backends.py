"""Bench section `backends`: each Keras backend on this machine.

Per backend: `cnn_fast` trained over 3 seeds (time per epoch, the first, which compiles, apart;
the training time and test accuracy, and whether it reached 99.2%); the packaged model's
inference through the compiled forward pass (batched images/s, one image's median and p95);
for JAX, the first run with an empty compilation cache against the later ones, which find it
warm; for torch, one run with Keras's `jit_compile=True` (torch.compile of the train step).
Every job runs in a fresh process started with that backend.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from mnist_digits.bench.context import Context, Section, environment
from mnist_digits.bench.training import recorded_precision

PRESET = "cnn_fast"
TARGET = 0.992
SEEDS = 3

log = logging.getLogger(__name__)


def _job(name: str, seed: int, quick: bool, work_dir: str, jit_compile: Any,
         inference: bool) -> dict[str, Any]:
    """One training run (and optionally the inference figures) in a process on `name`."""
    from mnist_digits import backend

    backend.choose(name)
    backend.import_keras_quietly()
    backend.configure_compile_cache()
    from mnist_digits import data, predict, runs, train
    from mnist_digits.config import resolve_config

    splits = data.load_splits(val_size=500 if quick else 10_000, limit=2000 if quick else None)
    overrides = {"epochs": 1, "warmup_epochs": 0.5} if quick else {}
    config = resolve_config({}, {"model": PRESET, "seed": seed, **overrides})
    run_dir = runs.new_run_dir(work_dir, f"{PRESET}-{name}", f"s{seed}")
    metrics = train.train(config, run_dir, splits=splits, jit_compile=jit_compile)
    epochs = runs.read_history(run_dir)["epoch_seconds"]
    result: dict[str, Any] = {"seed": seed, "epoch_seconds": epochs,
                              "train_seconds": metrics["train_seconds"],
                              "test_accuracy": metrics["test"]["accuracy"],
                              # What the preset's `auto` resolved to on this backend.
                              "precision": backend.precision(config.precision)}
    if inference:
        model = predict.load_model(None)
        (_, _), (x_test, _) = data.load_mnist()
        images = data.normalize_images(x_test)
        start = time.perf_counter()
        predict.warm_up(model, (1, 1024))
        result["inference_warm_up_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        rounds = 1 if quick else 3
        for _ in range(rounds):
            predict.predict_proba(model, images)
        result["batched_images_per_second"] = rounds * len(images) / (
            time.perf_counter() - start)
        single = []
        for i in range(20 if quick else 500):
            start = time.perf_counter()
            predict.predict_proba(model, images[i:i + 1])
            single.append(1000 * (time.perf_counter() - start))
        result["single_image_ms_median"] = float(np.median(single))
        result["single_image_ms_p95"] = float(np.percentile(single, 95))
    return result


def _run(name: str, seed: int, ctx: Context, *, cache: str | None = None,
         jit_compile: Any = None, inference: bool = False) -> dict[str, Any]:
    from mnist_digits import backend
    from mnist_digits.bench.training import _in_child

    settings = {"KERAS_BACKEND": name}
    if cache is not None:
        settings[backend.COMPILE_CACHE_ENV] = cache
    with environment(**settings):
        result = _in_child(_job, name, seed, ctx.quick, str(ctx.work_dir), jit_compile, inference)
    # The section writes its files when every job is done; a run cut off before that (a lent
    # GPU's time running out) still has each finished job's figures in its log.
    log.info("bench: %s", _job_summary(name, result, jit_compile=jit_compile))
    return result


def _job_summary(name: str, result: dict[str, Any], *, jit_compile: Any = None) -> str:
    """One log line with a finished job's figures."""
    line = (f"{name} seed {result['seed']}{' jit_compile' if jit_compile else ''}: test "
            f"{100 * result['test_accuracy']:.2f}%, training {result['train_seconds']:.1f} s, "
            f"epochs {', '.join(f'{s:.2f}' for s in result['epoch_seconds'])} s")
    if "batched_images_per_second" in result:
        line += (f"; inference {result['batched_images_per_second']:,.0f} images/s, one image "
                 f"{result['single_image_ms_median']:.2f} ms median")
    return line


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    steady = [s for r in results for s in r["epoch_seconds"][1:]]
    return {
        "runs": results,
        "first_epoch_seconds_median": statistics.median(r["epoch_seconds"][0] for r in results),
        "epoch_seconds_median": statistics.median(steady) if steady else None,
        "train_seconds_median": statistics.median(r["train_seconds"] for r in results),
        "test_accuracy_mean": float(np.mean([r["test_accuracy"] for r in results])),
        "reached_target": sum(r["test_accuracy"] >= TARGET for r in results),
        "precision": recorded_precision(results),
    }


def section_backends(ctx: Context) -> dict[str, Any]:
    """`cnn_fast` training and the packaged model's inference on each installed backend."""
    from mnist_digits import backend

    seeds = 1 if ctx.quick else SEEDS
    result: dict[str, Any] = {"preset": PRESET, "target": TARGET, "seeds": seeds,
                              "backends": {}}
    for name in backend.BACKENDS:
        if backend.version(name) is None:
            result["backends"][name] = {"installed": False}
            continue
        entry: dict[str, Any] = {"version": backend.version(name)}
        with tempfile.TemporaryDirectory() as cache:
            cold = _run(name, 0, ctx, cache=cache, inference=True) if name == "jax" else None
            runs_ = [_run(name, seed, ctx, cache=cache, inference=seed == 0 and cold is None)
                     for seed in range(seeds)]
        if cold is not None:
            # The cold run's training is seed 0 with an empty cache; seed 0 again found it warm.
            entry["compile_cache"] = {
                "cold_first_epoch_seconds": cold["epoch_seconds"][0],
                "warm_first_epoch_seconds": runs_[0]["epoch_seconds"][0],
                "cold_train_seconds": cold["train_seconds"],
                "warm_train_seconds": runs_[0]["train_seconds"]}
        measured = cold or runs_[0]
        entry["inference"] = {k: v for k, v in measured.items() if k.startswith(
            ("batched", "single", "inference"))}
        entry.update(_summary(runs_))
        if name == "torch" and not ctx.quick:  # its compile alone takes a minute and more
            compiled = _run(name, 0, ctx, jit_compile=True)
            entry["jit_compile"] = {"epoch_seconds": compiled["epoch_seconds"],
                                    "train_seconds": compiled["train_seconds"],
                                    "test_accuracy": compiled["test_accuracy"]}
        result["backends"][name] = entry
    return result


def backends_markdown(r: dict[str, Any]) -> list[str]:
    """The `backends` section as Markdown."""
    lines = ["## Backends (`backends`)", "",
             f"`{r['preset']}` over {r['seeds']} seed(s) per backend, each run in a fresh "
             f"process; the packaged model's inference through the compiled forward pass "
             f"(after its warm-up).", "",
             "| backend | precision | first epoch s | later epochs s | training s | "
             f"test acc. (%) | runs ≥ {100 * r['target']:.1f}% | batched images/s | one image "
             "median / p95 ms |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name, e in r["backends"].items():
        if not e.get("version"):
            lines.append(f"| {name} | not installed | | | | | | | |")
            continue
        inf = e["inference"]
        steady = f"{e['epoch_seconds_median']:.1f}" if e["epoch_seconds_median"] else "–"
        lines.append(
            f"| {name} {e['version']} | {e['precision']} | "
            f"{e['first_epoch_seconds_median']:.1f} | {steady} | "
            f"{e['train_seconds_median']:.1f} | {100 * e['test_accuracy_mean']:.2f} | "
            f"{e['reached_target']}/{len(e['runs'])} | {inf['batched_images_per_second']:,.0f} "
            f"| {inf['single_image_ms_median']:.2f} / {inf['single_image_ms_p95']:.2f} |")
    jax = r["backends"].get("jax", {})
    if "compile_cache" in jax:
        c = jax["compile_cache"]
        lines += ["", f"JAX's compilation cache: first epoch {c['cold_first_epoch_seconds']:.1f} s "
                      f"cold, {c['warm_first_epoch_seconds']:.1f} s warm; training "
                      f"{c['cold_train_seconds']:.1f} s cold, {c['warm_train_seconds']:.1f} s "
                      f"warm."]
    torch = r["backends"].get("torch", {})
    if "jit_compile" in torch:
        j = torch["jit_compile"]
        lines += ["", f"torch with `jit_compile=True` (torch.compile of the train step), seed 0: "
                      f"epochs {', '.join(f'{s:.1f}' for s in j['epoch_seconds'])} s, "
                      f"{100 * j['test_accuracy']:.2f}%; without it: epochs "
                      f"{', '.join(f'{s:.1f}' for s in torch['runs'][0]['epoch_seconds'])} s."]
    return [*lines, ""]


SECTIONS = (Section("backends", section_backends, backends_markdown),)
