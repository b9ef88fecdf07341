"""Every Keras backend: training, resume, determinism, the report, compiled inference and
test-time views, model files that cross backends, and no TensorFlow where it is not the backend.

Keras picks its backend once per process, so each backend runs `helpers/backend_probe.py` in a
process of its own (once, for the whole module) and the tests read what it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error, run_cli

from mnist_digits import backend, runs

PROBE = Path(__file__).parent / "helpers" / "backend_probe.py"


def _start_probe(name: str, out: Path, *files: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(PROBE), name, str(out), *files],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _probe(name: str, out: Path, *files: str) -> None:
    proc = _start_probe(name, out, *files)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> dict[str, dict]:
    # The three run side by side: most of a probe's time is single-threaded (imports,
    # tracing, compiling), so two cores take them faster together than one after another.
    folders = {name: tmp_path_factory.mktemp(name) for name in backend.BACKENDS}
    started = {name: _start_probe(name, folder) for name, folder in folders.items()}
    try:
        for name, proc in started.items():
            _, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, f"{name}: {err[-3000:]}"
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.kill()
    return {name: json.loads((folder / "probe.json").read_text())
            for name, folder in folders.items()}


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_each_backend_trains_resumes_and_reports(probes, name):
    probe = probes[name]
    assert probe["backend"] == name
    assert probe["status_after_interrupt"] == "interrupted"
    assert probe["resumed_epochs"] == [0.0, 1.0]  # epoch 0 kept, epoch 1 trained after resume
    run_dir = Path(probe["run_dir"])
    for name_ in (runs.CONFIG, runs.HISTORY, runs.MODEL, runs.METRICS, runs.ERRORS,
                  runs.CONFUSION_PLOT, runs.CURVES_PLOT, runs.CALIBRATION_PLOT):
        assert (run_dir / name_).is_file(), name_
    assert runs.read_config(run_dir).environment["backend"] == name
    assert json.loads((run_dir / runs.METRICS).read_text())["backend"] == name
    manifest = json.loads((run_dir / "model.manifest.json").read_text())
    assert manifest["backend"] == name and manifest["backend_version"]
    assert 0.5 < probe["resumed_metrics"]["test"]["accuracy"] <= 1
    # Trained with every augmentation layer (Keras's elastic transform and "area" resizing
    # could not be traced on JAX or torch): better than chance.
    assert probe["augmented_accuracy"] > 0.2


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_the_python_api_reads_on_each_backend(probes, name):
    assert probes[name]["read"] == ["4021", "7"]


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_each_backend_trains_in_mixed_bfloat16_and_saves_a_float32_model(probes, name):
    mixed = probes[name]["mixed"]
    # The convolutions computed in bfloat16, the dense head (classifier, hidden layer and its
    # batch norm) in float32.
    assert mixed["trained_in"] == {"BatchNormalization": ["float32"], "Conv2D": ["bfloat16"],
                                   "Dense": ["float32"]}
    assert mixed["saved_in"] == ["float32"]
    assert mixed["accuracy"] > 0.5


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_each_backend_distills_a_teacher_into_a_student_saved_alone(probes, name):
    from mnist_digits import models

    distilled = probes[name]["distilled"]
    # Its labels all say 0 (a tenth of the test digits): the rest came from the teacher.
    assert distilled["accuracy"] >= 0.3 and distilled["teacher_accuracy"] > 0.5
    assert distilled["saved_params"] == models.build_model("mlp_small").count_params()


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_each_backend_writes_tensorboard_scalars(probes, name):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = Path(probes[name]["run_dir"]) / runs.TENSORBOARD
    train = EventAccumulator(str(board / "train"))
    train.Reload()
    validation = EventAccumulator(str(board / "validation"))
    validation.Reload()
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(
        train.Tags()["scalars"])
    # Two epochs, one event file from before the interruption and one after.
    assert [e.step for e in validation.Scalars("epoch_loss")] == [0, 1]


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_each_backend_is_deterministic(probes, name):
    first_test, second_test, first_val, second_val = probes[name]["determinism"]
    assert first_test == second_test and first_val == second_val


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_compiled_inference_matches_the_eager_call(probes, name):
    assert probes[name]["compiled_vs_eager"] <= 1e-5


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_test_time_views_turn_the_image_on_every_backend(probes, name):
    assert probes[name]["tta_vs_scipy"] <= 1e-5


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_other_backends_never_import_tensorflow(probes, name):
    assert probes[name]["tensorflow_imported"] is False


def test_model_files_cross_backends(probes, tmp_path):
    files = [probes[name]["model_file"] for name in backend.BACKENDS]
    for loader in backend.BACKENDS:
        folder = tmp_path / loader
        folder.mkdir()
        _probe(loader, folder, *files)
        loaded = json.loads((folder / "loaded.json").read_text())
        assert loaded["backend"] == loader
        for saver in backend.BACKENDS:
            reference = np.array(probes[saver]["predictions"])
            got = np.array(loaded["predictions"][probes[saver]["model_file"]])
            assert np.max(np.abs(got - reference)) <= 1e-5, (saver, loader)


def test_an_unknown_backend_is_one_line(capsys):
    from mnist_digits.cli import main

    one_line_error(capsys, main(["--backend", "mxnet", "info"]), 2, "invalid choice")


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_a_missing_backend_says_how_to_install_it(monkeypatch, name):
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    with pytest.raises(backend.ConfigError,
                       match=rf"{name} backend is not installed.*'mnist-digits\[{name}\]'"):
        backend.choose(name)


def test_keras_backend_environment_variable_is_respected(tmp_path):
    proc = run_cli("info", env={**os.environ, "KERAS_BACKEND": "jax",
                                "MNIST_DIGITS_COMPILE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert "backend: jax" in proc.stdout and str(tmp_path / "cache") in proc.stdout
    # JAX trains in float32 even where the CPU has bfloat16 units (slower there in bfloat16).
    assert "precision auto: float32 (bfloat16 units on the CPU: " in proc.stdout
