"""Evaluation metrics on hand-built labels and probabilities."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from mnist_digits import evaluate


def one_hot_probs(predicted, confidence):
    """Probabilities putting `confidence` on `predicted`, the rest spread evenly."""
    probs = np.full((len(predicted), 10), 0.0)
    for i, (p, c) in enumerate(zip(predicted, confidence, strict=True)):
        probs[i] = (1 - c) / 9
        probs[i, p] = c
    return probs


def test_metrics_on_hand_built_predictions():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 7])
    predicted = [0, 0, 1, 7, 2, 1, 3, 1]  # three mistakes: 1->7, 2->1, 7->1
    confidence = [0.9, 0.8, 0.9, 0.6, 0.9, 0.95, 0.9, 0.7]
    result = evaluate.evaluate_predictions(labels, one_hot_probs(predicted, confidence))

    assert result["accuracy"] == pytest.approx(5 / 8)
    expected_loss = -np.mean(np.log([0.9, 0.8, 0.9, 0.4 / 9, 0.9, 0.05 / 9, 0.9, 0.3 / 9]))
    assert result["loss"] == pytest.approx(expected_loss)
    cm = np.array(result["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 8
    assert cm[1, 7] == 1 and cm[2, 1] == 1 and cm[7, 1] == 1 and cm[0, 0] == 2
    # Digit 1: predicted 3 times (indices 2, 5, 7), correct once; 2 true ones, 1 found.
    assert result["per_class"]["1"]["precision"] == pytest.approx(1 / 3)
    assert result["per_class"]["1"]["recall"] == pytest.approx(1 / 2)
    assert result["per_class"]["1"]["support"] == 2
    assert result["per_class"]["5"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert {(c["true"], c["predicted"], c["count"]) for c in result["most_confused"]} == \
        {(1, 7, 1), (2, 1, 1), (7, 1, 1)}
    # Most confident mistakes first.
    assert [e["index"] for e in result["errors"]] == [5, 7, 3]
    assert result["errors"][0]["top3"][0] == 1 and result["errors"][0]["true"] == 2


def test_most_confused_is_ordered_by_count():
    labels = np.array([4] * 3 + [9] * 2 + [3])
    predicted = [9, 9, 9, 4, 4, 5]
    result = evaluate.evaluate_predictions(labels, one_hot_probs(predicted, [0.9] * 6))
    assert [(c["true"], c["predicted"], c["count"]) for c in result["most_confused"]] == \
        [(4, 9, 3), (9, 4, 2), (3, 5, 1)]


def test_cross_entropy_is_finite_for_confident_mistakes():
    probs = np.zeros((1, 10))
    probs[0, 3] = 1.0
    assert math.isfinite(evaluate.cross_entropy(np.array([2]), probs))


def test_errors_csv_has_one_row_per_mistake():
    labels = np.array([0, 1, 2])
    result = evaluate.evaluate_predictions(labels, one_hot_probs([0, 2, 1], [0.9, 0.6, 0.7]))
    rows = list(csv.DictReader(io.StringIO(evaluate.errors_csv(result["errors"]))))
    assert [r["index"] for r in rows] == ["2", "1"]  # most confident mistake first
    # The rest of each row's probability is spread evenly, so ties go to the lower digit.
    assert rows[0] == {"index": "2", "true": "2", "predicted": "1", "confidence": "0.700000",
                       "top3": "1 0 2", "top3_probabilities": "0.700000 0.033333 0.033333"}
    assert rows[1]["top3"] == "2 0 1" and rows[1]["confidence"] == "0.600000"
