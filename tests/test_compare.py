"""`compare`'s table: runs grouped by model and by what their configs changed."""

from __future__ import annotations

import pytest

from mnist_digits import compare


def _run(model, seed, accuracy, **config):
    return {"model": model, "family": "cnn", "params": 10, "epochs_run": 3,
            "train_seconds": 10.0, "val": {"accuracy": accuracy}, "test": {"accuracy": accuracy},
            "config": {"model": model, "seed": seed, "epochs": 3, **config}}


def test_runs_of_one_model_trained_two_ways_are_tabulated_apart():
    metrics = [_run("cnn_fast", 0, 0.990, precision="float32"),
               _run("cnn_fast", 0, 0.980, precision="mixed_bfloat16"),
               _run("cnn_fast", 1, 0.992, precision="float32"),
               _run("cnn_fast", 1, 0.982, precision="mixed_bfloat16"),
               _run("mlp_small", 0, 0.95, precision="float32"),
               _run("mlp_small", 1, 0.97, precision="float32")]
    assert compare.variants(metrics)[:2] == ["precision=float32", "precision=mixed_bfloat16"]
    rows = compare.summarize(metrics)
    # Registry order puts mlp_small first; the seed alone makes no variant.
    assert [(r["model"], r["variant"], r["seeds"]) for r in rows] == [
        ("mlp_small", "", 2), ("cnn_fast", "precision=float32", 2),
        ("cnn_fast", "precision=mixed_bfloat16", 2)]
    assert rows[1]["test_accuracy_mean"] == pytest.approx(0.991)
    assert rows[2]["test_accuracy_mean"] == pytest.approx(0.981)
    table = compare.to_markdown(rows)
    assert "| mlp_small | cnn |" in table
    assert "| cnn_fast (precision=mixed_bfloat16) | cnn |" in table


def test_ensembles_without_a_training_config_keep_their_own_row():
    ensemble = {**_run("ensemble_cnn_best", 0, 0.997), "config": {"members": ["a", "b"]}}
    rows = compare.summarize([ensemble, _run("cnn_fast", 0, 0.99)])
    assert [(r["model"], r["variant"]) for r in rows] == [("cnn_fast", ""),
                                                          ("ensemble_cnn_best", "")]
