"""Synthetic non-digits for outlier exposure, and their place in training."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_digits import outliers, train
from mnist_digits.config import TrainConfig
from mnist_digits.errors import ConfigError


def test_outliers_are_framed_like_user_images_and_reproducible(mnist_test_set):
    images, labels = mnist_test_set
    digits = (images[:200], labels[:200])
    first = outliers.make_outliers(60, np.random.default_rng(5), digits)
    again = outliers.make_outliers(60, np.random.default_rng(5), digits)
    assert first.shape == (60, 28, 28, 1) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert first.min() >= 0 and first.max() <= 1
    # Framed as MNIST is: the drawing scaled to a 20-pixel box, full-strength ink.
    assert (first.reshape(60, -1).max(axis=1) > 0.9).all()
    for frame in first[..., 0]:
        rows, cols = np.nonzero(frame > 0.1)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21
    # Not 60 copies of one drawing.
    assert len({frame.tobytes() for frame in first}) == 60


def test_training_set_gets_the_share_with_uniform_targets(tiny_splits):
    config = TrainConfig(model="mlp_small", outliers=0.5, val_size=32)
    x, y = train.with_outliers(config, tiny_splits.x_train, tiny_splits.y_train)
    n = len(tiny_splits.x_train)
    assert len(x) == len(y) == n + n // 2
    np.testing.assert_array_equal(x[:n], tiny_splits.x_train)
    np.testing.assert_allclose(y[n:], 0.1)
    none = TrainConfig(model="mlp_small", val_size=32)
    assert train.with_outliers(none, tiny_splits.x_train, tiny_splits.y_train)[0] is \
        tiny_splits.x_train


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_share_out_of_range_is_a_config_error(share):
    with pytest.raises(ConfigError, match="outliers must be in"):
        TrainConfig(outliers=share)
