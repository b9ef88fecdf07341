"""Training faults: SIGKILL and Ctrl-C mid-epoch then `--resume`, determinism, crashes during a
save, and a results folder that cannot be written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import matplotlib.figure
import pytest
from helpers import one_line_error, wait_for

from mnist_digits import evaluate, modelfile, predict, runs, train
from mnist_digits.cli import main
from mnist_digits.config import resolve_config

# Slow enough per epoch (about 2 s) to be killed in the middle of one, fast enough for CI.
TRAIN_ARGS = ["--model", "mlp_small", "--epochs", "3", "--batch-size", "16", "--limit", "12000",
              "--val-size", "2000"]


def start_training(results: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # A job started in the background (CI runners, nohup) inherits SIGINT as *ignored*, and
    # Python then installs no KeyboardInterrupt handler; a user's terminal gives the default.
    return subprocess.Popen([sys.executable, "-m", "mnist_digits", "train", *TRAIN_ARGS,
                             "--results-dir", str(results)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_epochs(results: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> Path:
    """Waits until a run folder's history.csv holds `n` completed epochs; returns the folder."""
    def done() -> list[Path]:
        return [h.parent for h in results.glob("*/history.csv")
                if len(h.read_text().splitlines()) >= n + 1]

    try:
        wait_for(lambda: bool(done()), timeout, f"epoch {n}", alive=lambda: proc.poll() is None)
    except AssertionError as err:
        proc.kill()
        raise AssertionError(f"{err}: {proc.communicate()[1][-2000:]}") from None
    return done()[0]


def backed_up_epoch(run_dir: Path) -> int:
    """The last epoch Keras's BackupAndRestore has finished backing up (-1 for none yet).

    Its metadata file is written after the epoch's weights, so once it names an epoch, that
    epoch is logged and backed up in full, and training has moved on to the next one.
    """
    try:
        return json.loads((run_dir / runs.BACKUP / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):  # not there yet, or caught half-written
        return -1


def into_the_second_epoch(tmp_path: Path, proc: subprocess.Popen) -> Path:
    """Waits until the first epoch is logged and backed up; returns the run folder."""
    run_dir = wait_for_epochs(tmp_path, 1, proc)
    wait_for(lambda: backed_up_epoch(run_dir) >= 0, 120, "the first epoch's backup",
             alive=lambda: proc.poll() is None)
    return run_dir


def finish_with_resume(run_dir: Path, capsys) -> dict:
    assert main(["train", "--resume", str(run_dir)]) == 0
    history = runs.read_history(run_dir)
    assert history["epoch"] == [0.0, 1.0, 2.0]  # the same 3 epochs, each once
    metrics = json.loads((run_dir / runs.METRICS).read_text())
    assert metrics["epochs_run"] == 3 and 0.8 < metrics["test"]["accuracy"] <= 1
    for name in (runs.MODEL, runs.ERRORS, runs.CURVES_PLOT, runs.CONFUSION_PLOT,
                 runs.MISCLASSIFIED_PLOT):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / runs.STATUS).read_text())["state"] == "done"
    predict.load_model(run_dir)  # the model file is whole
    return metrics


def test_sigkill_mid_epoch_then_resume_finishes_the_same_run(tmp_path, capsys):
    proc = start_training(tmp_path)
    run_dir = into_the_second_epoch(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert len(runs.read_history(run_dir)["epoch"]) == 1
    assert not (run_dir / runs.METRICS).exists()
    finish_with_resume(run_dir, capsys)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, capsys):
    proc = start_training(tmp_path)
    run_dir = into_the_second_epoch(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert f"continue with: mnist-digits train --resume {run_dir}" in err
    status = json.loads((run_dir / runs.STATUS).read_text())
    assert status["state"] == "interrupted"
    assert status["resume_with"] == f"mnist-digits train --resume {run_dir}"
    finish_with_resume(run_dir, capsys)


def test_resuming_a_finished_run_is_refused(tmp_path, tiny_splits, capsys):
    config = resolve_config({}, {"model": "mlp_small", "epochs": 1})
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    train.train(config, run_dir, splits=tiny_splits)
    one_line_error(capsys, main(["train", "--resume", str(run_dir)]), 1, "finished already")


@pytest.mark.parametrize("model", ["mlp_small", "cnn_fast"])
def test_same_seed_same_machine_gives_identical_test_figures(model, tmp_path):
    config = resolve_config({}, {"model": model, "epochs": 1, "limit": 4000, "val_size": 1000,
                                 "seed": 3, "warmup_epochs": 0.5})
    first, second = (train.train(config, runs.new_run_dir(tmp_path, model, tag))
                     for tag in ("a", "b"))
    assert first["test"] == second["test"] and first["val"] == second["val"]
    assert first["confusion_matrix"] == second["confusion_matrix"]


@pytest.fixture
def finished_run(tmp_path, tiny_splits):
    config = resolve_config({}, {"model": "mlp_small", "epochs": 1})
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    train.train(config, run_dir, splits=tiny_splits)
    return run_dir


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


def crash_after_partial_write():
    """A stand-in writer that writes part of its file, then fails like a full disk."""
    def writer(self, target, *args, **kwargs):
        Path(target).write_bytes(b"partial")
        raise OSError(28, "No space left on device")
    return writer


@pytest.mark.parametrize("what", ["metrics.json", "errors.csv", "plots", "model.keras"])
def test_a_crash_while_saving_leaves_the_previous_file_intact(what, finished_run, tiny_splits,
                                                             monkeypatch):
    before = snapshot(finished_run)
    if what == "metrics.json":
        monkeypatch.setattr(Path, "write_text", _partial_text(Path.write_text, ".metrics."))
    elif what == "errors.csv":
        monkeypatch.setattr(Path, "write_text", _partial_text(Path.write_text, ".errors."))
    elif what == "plots":
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                            crash_after_partial_write())
    if what == "model.keras":
        monkeypatch.setattr(keras.Model, "save", crash_after_partial_write())
        with pytest.raises(OSError, match="No space left"):
            modelfile.save_model(predict.load_model(finished_run), finished_run / runs.MODEL)
    else:
        with pytest.raises(OSError, match="No space left"):
            evaluate.evaluate_run(finished_run, splits=tiny_splits)
    after = snapshot(finished_run)
    # No file was half-replaced and no temporary file was left behind.
    assert set(after) == set(before)
    changed = [name for name in after if after[name] != before[name]]
    assert all(name.endswith((".json", ".csv", ".png")) for name in changed)
    for name in changed:  # rewritten whole before the crash: parseable, not "partial"
        assert after[name] != b"partial"
    monkeypatch.undo()
    predict.load_model(finished_run)
    json.loads((finished_run / runs.METRICS).read_text())


def _partial_text(original, marker: str):
    """Path.write_text that writes half of a file whose name has `marker`, then fails."""
    def write_text(self, text, *args, **kwargs):
        if marker in self.name:
            original(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(28, "No space left on device")
        return original(self, text, *args, **kwargs)
    return write_text


def test_an_unwritable_results_folder_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    one_line_error(capsys, main(["train", "--model", "mlp_small", "--results-dir", str(blocker)]),
                   1, "cannot create a run folder", "--results-dir")


def test_a_full_disk_fails_before_training(tmp_path, capsys, monkeypatch):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    one_line_error(capsys, main(["train", "--model", "mlp_small", "--results-dir", str(tmp_path)]),
                   1, "MB free", "--results-dir")
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert not (run_dir / runs.HISTORY).exists()  # nothing was trained
