"""Shared fixtures: tiny synthetic MNIST-shaped data, so most tests run in seconds."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from mnist_digits import data


def synthetic_splits(n_train: int = 96, n_val: int = 32, n_test: int = 40, seed: int = 0) -> \
        data.Splits:
    """Random images whose class is readable from a bright bar's row, so a model can learn it."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % data.NUM_CLASSES
        rng.shuffle(labels)
        images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        return images, labels.astype(np.uint8)

    x_train, y_train = make(n_train + n_val)
    x_test, y_test = make(n_test)
    return data.make_splits((x_train, y_train), (x_test, y_test), val_size=n_val)


@pytest.fixture
def tiny_splits() -> data.Splits:
    return synthetic_splits()
