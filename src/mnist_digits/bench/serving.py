"""Bench sections about serving: inference speed through `predict_proba` (`inference`) and
the web server under concurrent load (`load`, see `loadtest`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mnist_digits import data
from mnist_digits.bench.context import Context, Section


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
    from mnist_digits.bench import loadtest

    model, model_path = ctx.model()
    good, bad = loadtest.make_samples(model, 20 if ctx.quick else 100)
    return {"model": str(model_path),
            **loadtest.run_load_test(model_path, good, bad, requests=100 if ctx.quick else 2000,
                                     clients=4 if ctx.quick else 8)}


def inference_markdown(r: dict[str, Any]) -> list[str]:
    """The `inference` section as Markdown."""
    return ["## Inference (`inference`)", "", "| measure | value |", "|---|--:|",
            f"| batched | {r['batched_images_per_second']:,.0f} images/s |",
            f"| one image, median | {r['single_image_ms_median']:.2f} ms |",
            f"| one image, p95 | {r['single_image_ms_p95']:.2f} ms |", ""]


def load_markdown(r: dict[str, Any]) -> list[str]:
    """The `load` section as Markdown."""
    return ["## Web server under load (`load`)", "",
            f"`mnist-digits serve` on 127.0.0.1, {r['requests']:,} POST /api/predict from "
            f"{r['clients']} concurrent clients: {r['good_requests']:,} user-style digit images "
            f"and {r['bad_requests']:,} bad uploads (text, truncated, empty, PDF, decompression "
            f"bomb).", "",
            "| measure | value |", "|---|--:|",
            "| responses by status | " + ", ".join(
                f"{k}: {v:,}" for k, v in r["status_counts"].items()) + " |",
            f"| 5xx responses | {r['server_errors_5xx']} |",
            f"| wrong answers (good image misread or bad one accepted) | {r['wrong_answers']} |",
            f"| latency p50 / p95 / p99 | {r['latency_ms_p50']:.1f} / "
            f"{r['latency_ms_p95']:.1f} / {r['latency_ms_p99']:.1f} ms |",
            f"| throughput | {r['throughput_rps']:.0f} requests/s |",
            f"| server RSS before → after | {r['server_rss_mb_before']:.0f} → "
            f"{r['server_rss_mb_after']:.0f} MiB |",
            "| server RSS after each tenth of the requests | " + ", ".join(
                f"{v:.0f}" for v in r.get("server_rss_mb_per_tenth", [])) + " MiB |", ""]


SECTIONS = (
    Section("inference", section_inference, inference_markdown),
    Section("load", section_load, load_markdown),
)
