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


@pytest.fixture(scope="session")
def mnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test images (uint8, white on black) and labels."""
    return data.load_mnist()[1]


@pytest.fixture(scope="session")
def mnist_run() -> object:
    """A model that really reads digits, as `--model` takes it: the packaged reading model's
    file (what `predict` and `serve` use by default), for the tests whose point is reading real
    digits: prediction, the web API, export. Real training is tested on tiny data, and from a
    wheel on real data (`test_wheel`)."""
    from mnist_digits import pretrained

    return pretrained.model_path()


@pytest.fixture(scope="session")
def mnist_model(mnist_run):
    from mnist_digits import predict

    return predict.load_model(mnist_run)


def ink_on_paper(digit: np.ndarray, *, size: int = 300, scale: float = 6.0, offset=(40, 60),
                 dark_on_light: bool = True) -> np.ndarray:
    """An MNIST digit enlarged onto a bigger uint8 "sheet of paper", as a person would write it."""
    from PIL import Image

    side = int(28 * scale)
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
    sheet = np.zeros((size, size), np.uint8)
    top, left = offset
    sheet[top:top + side, left:left + side] = big[: size - top, : size - left]
    return 255 - sheet if dark_on_light else sheet
