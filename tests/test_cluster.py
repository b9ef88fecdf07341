"""Scale-out on a real Ray cluster: two nodes on 127.0.0.1 (a head and a worker, each started
with `ray start` in its own temporary folder, no dashboard, no usage reports), always stopped.

Jobs and sweeps run through the real command line, on `--limit` data.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import interrupt_when, one_line_error, run_cli, wait_for

from mnist_digits import runs
from mnist_digits.cluster import space
from mnist_digits.config import resolve_config
from mnist_digits.errors import ConfigError

ray = pytest.importorskip("ray")
from mnist_digits.cluster.loopback import LoopbackRayCluster  # noqa: E402

TINY = ("--limit", "600", "--val-size", "200", "--epochs", "1")
# A job's history.csv in its scratch folder on a worker: its training has begun.
JOB_HISTORY = "mnist-digits-job-*/*/history.csv"
# The files every finished training run holds, however it ran.
RUN_FILES = {runs.CONFIG, runs.HISTORY, runs.MODEL, runs.METRICS, runs.ERRORS, runs.STATUS,
             runs.CURVES_PLOT, runs.CONFUSION_PLOT, runs.MISCLASSIFIED_PLOT}


@pytest.fixture(scope="module")
def cluster():
    with LoopbackRayCluster(nodes=2, cpus=1) as running:
        yield running


def run_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / runs.CONFIG).exists())


def hidden_entries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name != ".keep"]


def assert_complete(run_dir: Path) -> None:
    assert {p.name for p in run_dir.iterdir()} >= RUN_FILES, sorted(run_dir.iterdir())
    assert runs.read_status(run_dir)["state"] == "done"
    assert not (run_dir / runs.BACKUP).exists()


def test_compare_on_a_two_node_cluster(cluster, tmp_path):
    proc = run_cli("-q", "compare", "--models", "mlp_fast", "--seeds", "2", *TINY,
                   "--cluster", cluster.address, "--results-dir", str(tmp_path),
                   env=cluster.env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = [p for p in run_folders(tmp_path) if "-mlp_fast-s" in p.name]
    assert sorted(p.name[-2:] for p in trained) == ["s0", "s1"]
    for run_dir in trained:
        assert_complete(run_dir)
        assert runs.read_config(run_dir).config.limit == 600
    assert "| mlp_fast |" in proc.stdout and "| 2 |" in proc.stdout
    assert hidden_entries(tmp_path) == []


# Drives `jobs.run_jobs` from a process of its own (pytest's socket guard would stall Ray's
# client here): a job with a missing data folder, and a good one.
_MIXED_JOBS = """
import json, sys
from mnist_digits.cluster import jobs
from mnist_digits.config import resolve_config
address, out = sys.argv[1:]
good = resolve_config({}, {"model": "mlp_fast", "epochs": 1, "limit": 600, "val_size": 200})
bad = resolve_config({}, {**good.to_dict(), "data_dir": out + "/no-such-folder"})
outcomes = jobs.run_jobs([jobs.Job(bad, "bad"), jobs.Job(good, "good")], out + "/runs",
                         cluster=address)
print(json.dumps({"outcomes": [[o.ok, o.error, o.run_dir and str(o.run_dir), o.timings]
                               for o in outcomes], "summary": jobs.summary(outcomes)}))
"""


def test_a_job_failing_for_a_user_reason_fails_once_and_the_others_finish(cluster, tmp_path):
    proc = subprocess.run([sys.executable, "-c", _MIXED_JOBS, cluster.address, str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=cluster.env(),
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    (bad_ok, bad_error, bad_dir, _), (good_ok, _, good_dir, timings) = report["outcomes"]
    assert (bad_ok, good_ok) == (False, True) and bad_dir is None
    # Its own one-line message, returned rather than raised, so Ray did not retry it.
    assert "no-such-folder" in bad_error and "MNIST file not found" in bad_error
    assert "\n" not in bad_error
    assert_complete(Path(good_dir))
    assert 0 < timings["train"] < timings["task"] < timings["wall"]
    assert [p.name for p in run_folders(tmp_path / "runs")] == [Path(good_dir).name]
    assert "1 of 2 job(s) failed" in report["summary"]


def test_compare_with_a_failing_job_says_so_and_exits_1(cluster, tmp_path):
    proc = run_cli("-q", "compare", "--models", "mlp_fast", "--seeds", "1", *TINY,
                   "--data-dir", str(tmp_path / "missing"), "--cluster", cluster.address,
                   "--results-dir", str(tmp_path), env=cluster.env(), timeout=600)
    assert proc.returncode == 1
    assert "1 of 1 job(s) failed" in proc.stderr and "missing" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert run_folders(tmp_path) == []


def test_ctrl_c_cancels_the_jobs_and_leaves_no_partial_folder(cluster, tmp_path):
    compare = subprocess.Popen(
        [sys.executable, "-m", "mnist_digits", "-q", "compare", "--models", "mlp_fast",
         "--seeds", "2", "--limit", "5000", "--val-size", "500", "--epochs", "5", "--cluster",
         cluster.address, "--results-dir", str(tmp_path)],
        env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    # Once a job's training has begun (its history.csv is open in its scratch folder).
    err = interrupt_when(
        compare, lambda: any(cluster.files(i, JOB_HISTORY) for i in range(2)), timeout=120)
    assert compare.returncode == 130, err[-3000:]
    assert "interrupted" in err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == [] or (run_folders(tmp_path) == [] and
                                             hidden_entries(tmp_path) == [])
    # Cancelled, not left running: the workers give their CPUs back.
    wait_for(lambda: not any(cluster.processes_titled(i, "remote_job") for i in range(2)), 30,
             "the cancelled jobs to end")


SPACE = {"learning_rate": {"loguniform": [3e-4, 3e-3]}, "dropout": {"uniform": [0.1, 0.4]},
         "batch_size": {"choice": [64, 128]}}


def test_a_tiny_sweep_with_asha(cluster, tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    proc = run_cli("-q", "sweep", "--model", "mlp_fast", "--space", str(space_file),
                   "--trials", "3", "--scheduler", "asha", "--limit", "600", "--val-size", "200",
                   "--epochs", "2", "--cluster", cluster.address,
                   "--results-dir", str(tmp_path / "results"), env=cluster.env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(proc.stdout.strip().splitlines()[-1])
    with (folder / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["trial"]) for r in rows) == [1, 2, 3]
    for row in rows:
        assert row["status"] in ("completed", "stopped early")
        assert 3e-4 <= float(row["learning_rate"]) <= 3e-3 and row["batch_size"] in ("64", "128")
        assert_complete(folder / row["run_dir"])
        assert int(row["epochs"]) == len(runs.read_history(folder / row["run_dir"])["epoch"])
    best = json.loads((folder / "best_config.json").read_text())
    top = max(rows, key=lambda r: float(r["val_accuracy"]))
    assert best["learning_rate"] == pytest.approx(float(top["learning_rate"]))
    # The best config is a config `train --config` takes.
    assert resolve_config(best, {}).model_options["dropout"] == pytest.approx(
        float(top["dropout"]))
    assert (folder / "sweep.png").stat().st_size > 0 and "Best: trial" in \
        (folder / "summary.md").read_text()
    assert len(run_folders(folder)) == 3 and hidden_entries(folder) == []


def test_a_sweep_survives_its_worker_node_being_killed(tmp_path):
    """The worker node is SIGKILLed while it trains a trial: every trial still completes, on
    the head, each with one complete run folder."""
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps({"learning_rate": {"loguniform": [5e-4, 2e-3]}}))
    with LoopbackRayCluster(nodes=2, cpus=1) as doomed:
        sweep = subprocess.Popen(
            [sys.executable, "-m", "mnist_digits", "-q", "sweep", "--model", "mlp_fast",
             "--space", str(space_file), "--trials", "3", "--limit", "5000", "--val-size",
             "500", "--epochs", "5", "--cluster", doomed.address, "--results-dir",
             str(tmp_path / "results")],
            env=doomed.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL)
        try:
            # Killed once a trial is training on the worker node (its history.csv is open).
            wait_for(lambda: doomed.files(1, "mnist-digits-trial-*/*/history.csv"), 240,
                     "a trial training on the worker node", alive=lambda: sweep.poll() is None)
            assert doomed.kill_node(1) > 0
            out, err = sweep.communicate(timeout=600)
        finally:
            if sweep.poll() is None:
                sweep.kill()
    assert sweep.returncode == 0, err[-3000:]
    folder = Path(out.strip().splitlines()[-1])
    with (folder / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["trial"]) for r in rows) == [1, 2, 3]
    assert all(r["status"] == "completed" for r in rows), rows
    assert sum(int(r["restarts"]) for r in rows) >= 1  # the killed trial was run again
    folders = run_folders(folder)
    assert len(folders) == 3 and {f.name.rsplit("-", 1)[-1] for f in folders} == \
        {"t1", "t2", "t3"}
    for run_dir in folders:
        assert_complete(run_dir)
    assert hidden_entries(folder) == []


def test_space_is_checked_before_anything_runs():
    good = space.parse_space(json.dumps(SPACE))
    space.check_space(good, "mlp_fast")
    with pytest.raises(ConfigError, match="has no option"):
        space.check_space(space.parse_space('{"filters": {"choice": [8, 16]}}'), "mlp_fast")
    with pytest.raises(ConfigError, match=r"dropout=1\.5 gives an invalid trial"):
        space.check_space(space.parse_space('{"dropout": {"uniform": [0.1, 1.5]}}'),
                          "mlp_fast")
    with pytest.raises(ConfigError, match="learning_rate"):
        space.check_space(space.parse_space('{"learning_rate": {"uniform": [-1, 1]}}'),
                          "mlp_fast")
    for bad in ('{"lr": 3}', '{"dropout": {"normal": [0, 1]}}', '{"epochs": {"randint": [5, 2]}}',
                '{"learning_rate": {"loguniform": [0, 1]}}', "[]", "{"):
        with pytest.raises(ConfigError):
            space.parse_space(bad)


def test_sweep_refuses_a_bad_space_in_one_line(tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text('{"dropout": {"uniform": [0.1, 1.5]}}')
    proc = run_cli("sweep", "--model", "mlp_fast", "--space", str(space_file), "--trials", "2",
                   "--results-dir", str(tmp_path))
    one_line_error(proc, proc.returncode, 2, "dropout=1.5")
    assert not any(tmp_path.glob("*sweep*"))


def test_cluster_flag_checks_its_address(capsys):
    from mnist_digits.cli import main

    code = main(["compare", "--models", "mlp_fast", "--cluster", "not an address"])
    one_line_error(capsys, code, 2, "--cluster", "HOST:PORT")
