"""`mnist-digits ensemble`: one loadable model.keras that averages its members, with a report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error, random_inner_ink, turned

from mnist_digits import calibrate, ensemble, predict, runs, train
from mnist_digits.cli import main
from mnist_digits.config import resolve_config
from mnist_digits.errors import ConfigError


@pytest.fixture(scope="module")
def member_runs(tmp_path_factory) -> list[Path]:
    """Three tiny runs on real MNIST (1,000 images each split), different seeds and presets."""
    results = tmp_path_factory.mktemp("members")
    run_dirs = []
    for model, seed in (("mlp_small", 0), ("mlp_small", 1), ("cnn_keras_io", 0)):
        config = resolve_config({}, {"model": model, "seed": seed, "epochs": 1, "limit": 1000,
                                     "val_size": 500})
        run_dir = runs.new_run_dir(results, model, f"s{seed}")
        train.train(config, run_dir)
        run_dirs.append(run_dir)
    return run_dirs


def test_ensemble_saves_loads_and_averages_its_members(member_runs, tmp_path, capsys):
    assert main(["ensemble", *map(str, member_runs), "--results-dir", str(tmp_path)]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])

    for name in (runs.MODEL, runs.METRICS, runs.ERRORS, runs.CONFUSION_PLOT,
                 runs.MISCLASSIFIED_PLOT, runs.CONFIG):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / runs.METRICS).read_text())
    assert metrics["family"] == "ensemble" and metrics["members"] == 3
    assert metrics["members_train_seconds"] > 0
    assert (tmp_path / runs.LATEST).resolve() == run_dir.resolve()

    # The saved file reloads in safe mode and predicts the mean of its members' probabilities,
    # at the ensemble's own temperature, fitted on the validation set.
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    members = [predict.load_model(d) for d in member_runs]
    expected = np.mean([predict.predict_proba(m, x) for m in members], axis=0)
    loaded = predict.load_model(run_dir)
    temperature = calibrate.temperature_of(loaded)
    assert temperature == pytest.approx(metrics["calibration"]["temperature"])
    np.testing.assert_allclose(predict.predict_proba(calibrate.uncalibrated(loaded), x),
                               expected, atol=1e-6)
    np.testing.assert_allclose(predict.predict_proba(loaded, x),
                               calibrate.scale(expected, temperature), atol=1e-5)
    assert (run_dir / runs.CALIBRATION_PLOT).is_file()

    # Its reported test accuracy is that of the saved model, and `evaluate` redoes it alike.
    assert main(["evaluate", str(run_dir)]) == 0
    again = json.loads((run_dir / runs.METRICS).read_text())
    assert again["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert again["members_train_seconds"] == metrics["members_train_seconds"]
    saved = json.loads((run_dir / runs.CONFIG).read_text())["ensemble"]
    assert [m["run_dir"] for m in saved["members"]] == [str(d.resolve()) for d in member_runs]


def test_one_run_with_tta_averages_it_over_three_views(member_runs, tmp_path, capsys):
    assert main(["ensemble", "--tta", str(member_runs[2]), "--results-dir", str(tmp_path),
                 "--name", "tta"]) == 0
    out = capsys.readouterr().out
    assert "tta of 1 x 3 views: test accuracy" in out
    run_dir = Path(out.strip().splitlines()[-1])
    metrics = json.loads((run_dir / runs.METRICS).read_text())
    assert metrics["members"] == 1 and metrics["views"] == 3

    x = random_inner_ink(32, seed=1)
    member = predict.load_model(member_runs[2])
    views = [x, *(turned(x, degrees) for degrees in ensemble.TTA_ROTATIONS)]
    expected = np.mean([predict.predict_proba(member, v) for v in views], axis=0)
    loaded = calibrate.uncalibrated(predict.load_model(run_dir))
    np.testing.assert_allclose(predict.predict_proba(loaded, x), expected, atol=1e-5)
    # A turned digit is a different input to the member, so the views differ.
    moved = predict.predict_proba(member, views[1])
    assert np.abs(moved - predict.predict_proba(member, x)).max() > 1e-3

    # Two members with tta: every member sees every view.
    two = ensemble.build_ensemble([member, predict.load_model(member_runs[0])],
                                  rotations=ensemble.TTA_ROTATIONS)
    second = predict.load_model(member_runs[0])
    both = np.mean([predict.predict_proba(m, v) for m in (member, second) for v in views], axis=0)
    np.testing.assert_allclose(predict.predict_proba(two, x), both, atol=1e-5)


def test_ensemble_needs_two_distinct_members(member_runs, tmp_path):
    with pytest.raises(ConfigError, match=r"at least 2.*--tta"):
        ensemble.make_ensemble(member_runs[:1], tmp_path)
    with pytest.raises(ConfigError, match="listed twice"):
        ensemble.make_ensemble([member_runs[0], member_runs[0]], tmp_path)


def test_ensemble_refuses_members_validated_on_different_splits(member_runs, tmp_path,
                                                                tiny_splits):
    config = resolve_config({}, {"model": "mlp_small", "epochs": 1, "val_size": 32})
    other = runs.new_run_dir(tmp_path, "mlp_small")
    train.train(config, other, splits=tiny_splits)
    with pytest.raises(ConfigError, match="same split"):
        ensemble.make_ensemble([member_runs[0], other], tmp_path)


def test_ensemble_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    one_line_error(capsys, main(["ensemble", str(tmp_path / "nope"), str(tmp_path / "nada")]), 1,
                   "not found")
