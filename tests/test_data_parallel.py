"""Data-parallel training of one model on JAX (Keras's distribution API): two CPU devices in one
process, two processes on loopback, resume, and the refusal on other backends.

Each training runs as `mnist-digits` in a process of its own: JAX's CPU devices are fixed when
it starts, and Keras picks its backend once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port, interrupt_when, one_line_error, run_cli

from mnist_digits import predict, runs
from mnist_digits.cli import main

pytest.importorskip("jax")

TRAIN = ("--backend", "jax", "-q", "train", "--model", "mlp_fast", "--limit", "3000",
         "--val-size", "500")


def finished_run(proc: subprocess.CompletedProcess) -> Path:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_two_cpu_devices_match_one_device(tmp_path):
    one = finished_run(run_cli(*TRAIN, "--epochs", "2", "--results-dir", str(tmp_path / "1")))
    two = finished_run(run_cli(*TRAIN, "--epochs", "2", "--data-parallel", "2",
                               "--results-dir", str(tmp_path / "2")))
    assert runs.read_config(two).distribution == {"kind": "data_parallel", "devices": 2,
                                                  "processes": 1}
    assert runs.read_config(one).distribution is None
    accuracy = [runs.read_json(d / runs.METRICS)["test"]["accuracy"] for d in (one, two)]
    # Same seed, same global batch: the two differ only in the order of the gradient sums.
    assert abs(accuracy[0] - accuracy[1]) <= 0.01, accuracy
    assert accuracy[1] > 0.8


def test_a_distilled_run_trains_over_two_devices_as_on_one(tmp_path):
    # The teacher is loaded inside the distribution's scope, so its weights are laid out over
    # the devices like the student's, and each device's teacher reads that device's images.
    # The packaged teacher held out the standard 10k validation images, so the run does too.
    distilled = (*TRAIN, "--val-size", "10000", "--epochs", "2", "--teacher", "packaged",
                 "--distill-temperature", "4")
    one = finished_run(run_cli(*distilled, "--results-dir", str(tmp_path / "1")))
    two = finished_run(run_cli(*distilled, "--data-parallel", "2",
                               "--results-dir", str(tmp_path / "2")))
    saved = runs.read_config(two)
    assert saved.distribution["devices"] == 2
    assert saved.teacher["sha256"] == runs.read_config(one).teacher["sha256"]
    accuracy = [runs.read_json(d / runs.METRICS)["test"]["accuracy"] for d in (one, two)]
    assert abs(accuracy[0] - accuracy[1]) <= 0.01, accuracy
    assert accuracy[1] > 0.8


def test_two_processes_end_with_identical_weights(tmp_path):
    coordinator = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "mnist_digits", *TRAIN, "--epochs", "2", "--data-parallel", "1",
         "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i),
         "--results-dir", str(tmp_path / f"p{i}")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        for i in range(2)]
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    folders = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        folders.append(Path(out.strip().splitlines()[-1]))
    for folder in folders:
        assert runs.read_config(folder).distribution == {"kind": "data_parallel",
                                                         "devices": 2, "processes": 2}
    weights = [predict.load_model(f / runs.MODEL).get_weights() for f in folders]
    assert len(weights[0]) == len(weights[1]) > 0
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    histories = [runs.read_history(f) for f in folders]
    assert histories[0]["val_loss"] == histories[1]["val_loss"]


def test_an_interrupted_data_parallel_run_resumes_on_its_devices(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_digits", *TRAIN, "--epochs", "8", "--data-parallel", "2",
         "--results-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def one_epoch_logged() -> bool:
        history = list(tmp_path.glob("*/history.csv"))
        return bool(history) and len(history[0].read_text().splitlines()) >= 2

    err = interrupt_when(proc, one_epoch_logged, timeout=300)
    history = list(tmp_path.glob("*/history.csv"))
    assert proc.returncode == 130, err[-3000:]
    run_dir = history[0].parent
    assert runs.read_status(run_dir)["state"] == "interrupted"
    resumed = run_cli("--backend", "jax", "-q", "train", "--resume", str(run_dir))
    assert finished_run(resumed) == run_dir
    assert runs.read_history(run_dir)["epoch"] == [float(e) for e in range(8)]
    assert runs.read_config(run_dir).distribution["devices"] == 2
    assert runs.read_json(run_dir / runs.METRICS)["test"]["accuracy"] > 0.8


def test_data_parallel_needs_jax(capsys, tmp_path):
    code = main(["--backend", "tensorflow", "train", "--data-parallel", "2", "--results-dir",
                 str(tmp_path)])
    one_line_error(capsys, code, 2, "needs the JAX backend", "--backend jax")


def test_several_processes_need_a_coordinator(tmp_path):
    proc = run_cli(*TRAIN, "--num-processes", "2", "--results-dir", str(tmp_path))
    one_line_error(proc, proc.returncode, 2, "--coordinator")
