"""Bench section `cluster`: jobs on a real 2-node Ray cluster, and data-parallel training.

- Throughput: 4 `mlp_fast` trainings (seeds 0-3), each held to 1 thread, run one after another
  in one process (as `compare` without `--cluster` does), against the same 4 on a Ray cluster
  of 2 nodes of 1 CPU each on 127.0.0.1 (`raycluster.LoopbackRayCluster`). Goal: 1.6x. Beside
  it, the ceiling this machine allows: 2 such trainings run at once as plain processes, no Ray,
  against one alone.
- Overhead per job: everything that is not training: the worker's start and imports, loading
  and verifying the data, archiving the run folder, shipping it and unpacking it. Measured on
  the jobs that started at once (the first wave), as their time from submission to folder
  written minus their training time. Goal: 3 s.
- Faults: the 4 jobs again on a fresh cluster, the worker node SIGKILLed while it trains one.
  Goal: 100% of the jobs complete.
- Data-parallel: `mlp_fast` on JAX on 1 device, and on 2 CPU devices (`--data-parallel 2`).
  Goal: within 0.1 point of test accuracy.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mnist_digits.bench.context import Context, Section, environment

PRESET = "mlp_fast"
JOBS = 4
NODES = 2
THROUGHPUT_GOAL = 1.6
OVERHEAD_GOAL_SECONDS = 3.0
DATA_PARALLEL_GOAL_POINTS = 0.1


def _quick_flags(quick: bool) -> list[str]:
    return ["--limit", "600", "--val-size", "200", "--epochs", "1"] if quick else []


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mnist_digits", "-q", *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"mnist-digits {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def _fit_seconds(folder: Path) -> list[float]:
    from mnist_digits import runs

    return [runs.read_json(m)["train_seconds"] for m in sorted(folder.glob("*/metrics.json"))]


def _compare(ctx: Context, seeds: int, folder: str) -> Path:
    """`compare` of the preset over `seeds` seeds at 1 thread each, in a process of its own;
    returns its results folder."""
    _cli("compare", "--models", PRESET, "--seeds", str(seeds), "--cpus-per-job", "1",
         *_quick_flags(ctx.quick), "--results-dir", str(ctx.work_dir / folder))
    return ctx.work_dir / folder


def _sequential(ctx: Context) -> tuple[float, list[float]]:
    """Wall seconds of the jobs one after another in one process, 1 thread each; and each
    job's fit seconds."""
    start = time.perf_counter()
    folder = _compare(ctx, JOBS, "sequential")
    return time.perf_counter() - start, _fit_seconds(folder)


def _side_by_side(ctx: Context) -> list[float]:
    """Fit seconds of two such jobs run at once as two plain processes, no Ray: what sharing
    this machine's cores costs a job by itself."""
    with concurrent.futures.ThreadPoolExecutor(NODES) as pool:
        folders = list(pool.map(lambda i: _compare(ctx, 1, f"side-by-side-{i}"), range(NODES)))
    return [s for folder in folders for s in _fit_seconds(folder)]


def _on_cluster(quick: bool, results_dir: str, kill_worker: bool) -> dict[str, Any]:
    """The jobs on a fresh 2-node cluster, driven from this process; optionally with the
    worker node killed while it trains one. Run in a child process of its own (`_in_child`):
    a Ray driver is a process-wide thing."""
    import threading

    from mnist_digits import compare
    from mnist_digits.cluster import jobs
    from mnist_digits.cluster.loopback import LoopbackRayCluster

    overrides: dict[str, Any] = {"limit": 600, "val_size": 200, "epochs": 1} if quick else {}
    planned = compare.make_jobs([PRESET], range(JOBS), cli_values=overrides)
    with LoopbackRayCluster(nodes=NODES, cpus=1) as cluster, \
            environment(**cluster.driver_env()):
        killed: list[int] = []

        def kill_when_training() -> None:
            # Once a job on the worker node is training: its history.csv is open in the
            # scratch folder it trains in.
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if cluster.files(1, "mnist-digits-job-*/*/history.csv"):
                    killed.append(cluster.kill_node(1))
                    return
                time.sleep(0.2)

        killer = threading.Thread(target=kill_when_training, daemon=True)
        if kill_worker:
            killer.start()
        start = time.perf_counter()
        outcomes = jobs.run_jobs(planned, results_dir, cluster=cluster.address)
        wall = time.perf_counter() - start
        if kill_worker:
            killer.join(timeout=1)
    return {"wall_seconds": wall, "killed_processes": sum(killed),
            "outcomes": [{"ok": o.ok, "error": o.error, "timings": o.timings}
                         for o in outcomes]}


def _overheads(outcomes: list[Any]) -> dict[str, Any]:
    """Per job, the time from its task's start on a worker to its folder written here, less
    its training; and, for the jobs that started at once, the wait from submission to start."""
    timings = [o["timings"] for o in outcomes if o["ok"]]
    per_job = [t["written_at"] - t["started_at"] - t["train"] for t in timings]
    first_wave = sorted(timings, key=lambda t: t["started_at"])[:NODES]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    return {
        "overhead_seconds": per_job,
        "overhead_seconds_mean": mean(per_job),
        "dispatch_seconds_first_wave": [t["started_at"] - t["submitted_at"] for t in first_wave],
        "start_seconds": [t["task"] - t["data"] - t["train"] - t["pack"] for t in timings],
        "data_seconds_mean": mean([t["data"] for t in timings]),
        "pack_seconds_mean": mean([t["pack"] for t in timings]),
        "unpack_seconds_mean": mean([t["unpack"] for t in timings]),
        "train_seconds_mean": mean([t["train"] for t in timings]),
    }


def _data_parallel(ctx: Context) -> dict[str, Any]:
    from mnist_digits import runs

    result = {}
    for devices in (1, 2):
        flags = ["--data-parallel", "2"] if devices == 2 else []
        start = time.perf_counter()
        proc = _cli("--backend", "jax", "train", "--model", PRESET, *flags,
                    *_quick_flags(ctx.quick), "--results-dir", str(ctx.work_dir / f"dp{devices}"))
        run_dir = Path(proc.stdout.strip().splitlines()[-1])
        metrics = runs.read_json(run_dir / runs.METRICS)
        result[f"devices_{devices}"] = {"test_accuracy": metrics["test"]["accuracy"],
                                        "train_seconds": metrics["train_seconds"],
                                        "wall_seconds": time.perf_counter() - start,
                                        "run_dir": str(run_dir)}
    result["difference_points"] = 100 * abs(result["devices_2"]["test_accuracy"] -
                                            result["devices_1"]["test_accuracy"])
    return result


def section_cluster(ctx: Context) -> dict[str, Any]:
    """Throughput, per-job overhead and fault tolerance on 2 Ray nodes; data-parallel JAX."""
    sequential, alone = _sequential(ctx)
    together = _side_by_side(ctx)
    from mnist_digits.bench.training import _in_child

    parallel = _in_child(_on_cluster, ctx.quick, str(ctx.work_dir / "cluster"), False)
    faulty = _in_child(_on_cluster, ctx.quick, str(ctx.work_dir / "cluster-killed"), True)
    return {
        "preset": PRESET, "jobs": JOBS, "nodes": NODES,
        "sequential_seconds": sequential,
        # The speed-up two nodes could give if nothing but sharing the cores slowed the jobs.
        "contention": {"fit_seconds_alone": alone, "fit_seconds_side_by_side": together,
                       "ceiling": NODES * statistics.mean(alone) / statistics.mean(together)},
        "cluster_seconds": parallel["wall_seconds"],
        "throughput_ratio": sequential / parallel["wall_seconds"],
        "throughput_goal": THROUGHPUT_GOAL,
        "overhead": _overheads(parallel["outcomes"]),
        "overhead_goal_seconds": OVERHEAD_GOAL_SECONDS,
        "node_killed": {"killed_processes": faulty["killed_processes"],
                        "completed": sum(o["ok"] for o in faulty["outcomes"]),
                        "jobs": len(faulty["outcomes"]),
                        "errors": [o["error"] for o in faulty["outcomes"] if not o["ok"]],
                        "wall_seconds": faulty["wall_seconds"]},
        "data_parallel": _data_parallel(ctx),
        "data_parallel_goal_points": DATA_PARALLEL_GOAL_POINTS,
    }


def cluster_markdown(r: dict[str, Any]) -> list[str]:
    """The `cluster` section as Markdown."""
    o, k, dp, c = r["overhead"], r["node_killed"], r["data_parallel"], r["contention"]
    each = ", ".join(f"{s:.1f}" for s in o["overhead_seconds"])
    starts = ", ".join(f"{s:.1f}" for s in o["start_seconds"])
    dispatch = ", ".join(f"{s:.2f}" for s in o["dispatch_seconds_first_wave"])
    return [
        "## Cluster (`cluster`)", "",
        f"{r['jobs']} `{r['preset']}` trainings (seeds 0-{r['jobs'] - 1}), each held to 1 "
        f"thread: one after another in one process, against a Ray cluster of {r['nodes']} "
        f"nodes of 1 CPU each on 127.0.0.1.", "",
        "| figure | measured | goal |", "|---|--:|--:|",
        f"| one after another | {r['sequential_seconds']:.1f} s | |",
        f"| on {r['nodes']} nodes | {r['cluster_seconds']:.1f} s | |",
        f"| throughput | {r['throughput_ratio']:.2f}x | ≥ {r['throughput_goal']:.1f}x |",
        f"| ceiling from sharing the cores alone (no Ray) | {c['ceiling']:.2f}x | |",
        f"| overhead per job ({each} s) | {o['overhead_seconds_mean']:.1f} s | "
        f"≤ {r['overhead_goal_seconds']:.0f} s |",
        f"| jobs completed with the worker node killed mid-job | {k['completed']}/{k['jobs']} "
        f"| 100% |",
        f"| data-parallel, 2 CPU devices vs 1 (JAX) | "
        f"{100 * dp['devices_2']['test_accuracy']:.2f}% vs "
        f"{100 * dp['devices_1']['test_accuracy']:.2f}% ({dp['difference_points']:.2f} pt) | "
        f"≤ {r['data_parallel_goal_points']:.1f} pt |", "",
        f"Overhead is a job's time from its start on a worker to its folder written here, less "
        f"training and evaluating ({o['train_seconds_mean']:.1f} s on average): the imports "
        f"of a worker's first job and Keras's start ({starts} s), data "
        f"{o['data_seconds_mean']:.1f} s, archiving {o['pack_seconds_mean']:.2f} s, unpacking "
        f"here {o['unpack_seconds_mean']:.2f} s (means). The first jobs waited {dispatch} s "
        f"from submission to start. With the node killed: {k['wall_seconds']:.1f} s "
        f"for all {k['jobs']} ({k['killed_processes']} processes killed). Data-parallel "
        f"training: {dp['devices_1']['train_seconds']:.1f} s on 1 device, "
        f"{dp['devices_2']['train_seconds']:.1f} s on 2 (one machine's 2 cores either way).", "",
        f"The ceiling: a job's fit took "
        f"{', '.join(f'{s:.1f}' for s in c['fit_seconds_alone'])} s alone (the one-after-another "
        f"run) and {', '.join(f'{s:.1f}' for s in c['fit_seconds_side_by_side'])} s with two "
        f"run at once as plain processes, so {r['nodes']} nodes on these cores can give at "
        f"most {c['ceiling']:.2f}x before any overhead.",
        ""]


SECTIONS = (Section("cluster", section_cluster, cluster_markdown),)
