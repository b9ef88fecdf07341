"""Ensembles: several trained runs averaged into one model that loads, predicts and exports alike.

`mnist-digits ensemble RUN_DIR...` loads each member (safe mode), wraps them in one functional
model that averages their probabilities, saves it as the new run's `model.keras` and evaluates it
with the same report as a trained run. Averaging probabilities (not votes) lets a confident member
outvote two unsure ones, and keeps the output a probability distribution like any model's.

With `--tta` (test-time augmentation) the model also averages over views of each image: as given,
and turned 4 degrees either way (`TTA_ROTATIONS`). It works with a single run too, and costs three
forward passes per image. The views were chosen on the validation set, over ten finished
`cnn_best` runs (5 plain, 5 with `--ema`): a run alone 99.667% on average; as given and moved
one pixel up, down, left and right (the earlier views) 99.678%; as given and turned +-4 degrees
99.699%, +-6 99.702%, +-8 99.701%; five views turned and zoomed up to 99.706%, within noise of
three views that cost less (docs/benchmarks-log.md has the test figures too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
from keras import layers

from mnist_digits import data, evaluate, modelfile, predict, runs
from mnist_digits.errors import ConfigError
from mnist_digits.layers import Rotate

log = logging.getLogger(__name__)

MIN_MEMBERS = 2
# Test-time views besides the image as given: turns, in degrees counter-clockwise.
TTA_ROTATIONS: tuple[float, ...] = (-4.0, 4.0)


def _check_count(count: int, views: bool, what: str) -> None:
    """Raises ConfigError unless there are enough members: two, or one averaged over views."""
    if count < (1 if views else MIN_MEMBERS):
        raise ConfigError(f"an ensemble needs at least {MIN_MEMBERS} {what}, got {count}; to "
                          f"average one model over test-time views, add --tta")


def build_ensemble(members: Sequence[keras.Model], name: str = "ensemble",
                   rotations: Sequence[float] = ()) -> keras.Model:
    """One model whose output is the mean of the members' output probabilities, over the image
    as given and, if `rotations` lists angles in degrees, over those turned views of it too.

    Each member becomes a nested sub-model named `m<i>_<its name>`, so members trained from the
    same preset (same layer and model names) can sit side by side.
    """
    _check_count(len(members), bool(rotations), "members")
    inputs = keras.Input(data.IMAGE_SHAPE, name="image")
    views = [inputs, *(Rotate(degrees, name=f"view_rotate_{degrees:g}".replace("-", "m"))(inputs)
                       for degrees in rotations)]
    outputs = []
    for i, member in enumerate(members):
        if tuple(member.input_shape[1:]) != data.IMAGE_SHAPE or \
                tuple(member.output_shape[1:]) != (data.NUM_CLASSES,):
            raise ConfigError(f"member {i} ({member.name}) maps {member.input_shape} to "
                              f"{member.output_shape}; every member must map {data.IMAGE_SHAPE} "
                              f"images to {data.NUM_CLASSES} probabilities")
        renamed = keras.Model(member.input, member.output, name=f"m{i}_{member.name}")
        outputs += [renamed(view) for view in views]
    averaged = layers.Average(name="probabilities")(outputs)
    return keras.Model(inputs, averaged, name=name)


def make_ensemble(
    run_dirs: Sequence[str | os.PathLike],
    results_dir: str | os.PathLike,
    *,
    tag: str | None = None,
    name: str = "ensemble",
    tta: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Builds, saves and evaluates an ensemble of finished runs in a new run folder.

    Args:
        run_dirs: the members' run folders (each with `model.keras` and `config.json`).
        results_dir: where the new run folder goes.
        tag: suffix for the folder's name.
        name: the ensemble's name in reports.
        tta: average over the test-time views of `TTA_ROTATIONS` too; then one run will do.

    Returns:
        The new run folder and its metrics (as in `metrics.json`).

    Raises:
        ConfigError: fewer than two members (one, with `tta`), or members validated on
            different splits (their validation figures would not be comparable, and one may
            have seen another's validation images in training).
        RunError: a member folder or model is missing or cannot be loaded.
    """
    folders = [runs.resolve_run_dir(d) for d in run_dirs]
    # Checked before any member is loaded; build_ensemble checks again for direct callers.
    _check_count(len(folders), tta, "run folders")
    if len(set(folders)) != len(folders):
        raise ConfigError("the same run folder is listed twice; each member must be a "
                          "different run")
    members, infos, settings = [], [], None
    for folder in folders:
        saved = runs.read_config(folder)
        if saved.kind == runs.ENSEMBLE:
            raise ConfigError(f"{folder} is itself an ensemble; list its members instead")
        if settings is None:
            settings = saved.split
        elif saved.split != settings:
            raise ConfigError(f"{folder} was trained with data settings {saved.split}, unlike "
                              f"the first member's {settings}; ensemble runs that share the "
                              f"same split")
        metrics_path = folder / runs.METRICS
        metrics = runs.read_json(metrics_path) if metrics_path.exists() else {}
        members.append(predict.load_model(folder / runs.MODEL))
        infos.append({"run_dir": str(folder), "model": saved.config.model,
                      "seed": saved.config.seed,
                      "test_accuracy": metrics.get("test", {}).get("accuracy"),
                      "train_seconds": metrics.get("train_seconds")})
    rotations = TTA_ROTATIONS if tta else ()
    model = build_ensemble(members, name=name, rotations=rotations)
    run_dir = runs.new_run_dir(results_dir, name, tag)
    runs.write_config(run_dir, ensemble={"name": name, "members": infos, "data": settings,
                                         "tta_rotations": list(rotations)})
    modelfile.save_model(model, run_dir / runs.MODEL)
    # Averaging calibrated members gives an under-confident mean: the ensemble gets its own
    # temperature, fitted on the members' common validation set.
    splits = data.load_splits(**settings)
    modelfile.calibrate_saved_model(run_dir / runs.MODEL, splits)
    log.info("ensemble of %d members saved in %s; evaluating", len(members), run_dir)
    # Evaluating the saved file, not the in-memory model, proves the file loads and predicts.
    return run_dir, evaluate.evaluate_run(run_dir, splits=splits)

