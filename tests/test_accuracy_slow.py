"""The presets' accuracy goals, one seed each on the real data: minutes each, so marked `slow`
(`make slow`); the 3-seed figures come from `mnist-digits bench`."""

from __future__ import annotations

import pytest

from mnist_digits import runs, train
from mnist_digits.config import resolve_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("model", "goal"), [
    ("cnn_fast", 0.992), ("mlp_fast", 0.982), ("mlp_deskew", 0.982), ("mlp_aug", 0.988),
    # The long presets' goals are means over seeds; one seed checks that they still get near.
    ("cnn_best", 0.9965), ("cnn_wide", 0.9965),
    ("mlp_distill", 0.9935),
])
def test_preset_reaches_its_accuracy_goal(model, goal, tmp_path):
    config = resolve_config({}, {"model": model, "seed": 0})
    metrics = train.train(config, runs.new_run_dir(tmp_path, model))
    assert metrics["test"]["accuracy"] >= goal
