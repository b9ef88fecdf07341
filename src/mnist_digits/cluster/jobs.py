"""Training jobs: one after another in this process, or side by side on a Ray cluster.

A job is one training config; it ends as one ordinary run folder under the results folder,
whichever way it ran. On a cluster:
- each job trains in a scratch folder on its worker, from the worker's own verified copy of the
  package data, and sends the finished folder back as one archive; the driver unpacks it under
  `results_dir`, whole or not at all. No shared filesystem is needed.
- a job whose worker or node dies is run again elsewhere, up to `retries` times (Ray's task
  retries); a job that fails for a reason the user can fix (`MnistDigitsError`) fails once, with
  its one-line message, and the other jobs go on.
- Ctrl-C cancels the jobs still running; only finished folders are ever written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnist_digits import runs
from mnist_digits.config import TrainConfig
from mnist_digits.errors import MnistDigitsError

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2
_SPLITS: dict[str, Any] = {}  # see `execute`


@dataclasses.dataclass(frozen=True)
class Job:
    """One training: its config and the suffix of its run folder's name."""

    config: TrainConfig
    tag: str | None = None

    @property
    def label(self) -> str:
        return f"{self.config.model} seed {self.config.seed}" + (
            f" ({self.tag})" if self.tag and self.tag != f"s{self.config.seed}" else "")


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one job gets: CPUs (its frameworks' threads are held to them) and GPUs."""

    cpus: float = 1.0
    gpus: float = 0.0


ONE_CPU = Resources()

@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a job ended: its run folder, or the one-line reason it failed.

    `timings` (seconds, cluster jobs only): `wall` from submission to the folder written here,
    `task` inside the worker, `data` loading and verifying the data there, `train` training and
    evaluating, `pack` archiving the folder, `unpack` writing it here; and the clock times
    (`time.time()`, comparable where the machines' clocks agree) it was `submitted_at`, its task
    `started_at` and its folder `written_at`.
    """

    job: Job
    run_dir: Path | None = None
    error: str | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


Progress = Callable[[int, int, str], None]


def execute(config: TrainConfig, parent: str | os.PathLike, tag: str | None = None,
            callbacks: Sequence[Any] = ()) -> tuple[Path, dict[str, float]]:
    """Trains `config` in a new run folder under `parent` (with extra Keras `callbacks`);
    returns it and the seconds spent loading the data (`data`) and training and evaluating
    (`train`)."""
    from mnist_digits import data, train

    start = time.perf_counter()
    settings = config.split
    key = json.dumps(settings, sort_keys=True)
    # The last split stays in memory (about 220 MB): the next job of a compare, or the next
    # job a cluster worker runs, is most often on the same split, and needs no second load.
    if key not in _SPLITS:
        _SPLITS.clear()
        _SPLITS[key] = data.load_splits(**settings)
    splits = _SPLITS[key]
    loaded = time.perf_counter()
    run_dir = runs.new_run_dir(parent, config.model, tag)
    train.train(config, run_dir, splits=splits, callbacks=callbacks)
    return run_dir, {"data": loaded - start, "train": time.perf_counter() - loaded}


def remote_job(config: dict[str, Any], tag: str | None, env: dict[str, str]) -> dict[str, Any]:
    """A job as a cluster worker runs it: trains in a scratch folder and returns the folder
    archived, or `{"error": message}` for a mistake the user can fix (not worth a retry).

    `env` (the backend, the thread limits) is set before the worker's first job imports Keras;
    set here rather than as Ray's runtime environment, so the jobs start on the workers Ray
    keeps ready, not on new ones started for that environment.
    """
    started_at = time.time()
    start = time.perf_counter()
    if "keras" not in sys.modules:
        os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="mnist-digits-job-") as scratch:
        try:
            run_dir, timings = execute(TrainConfig(**config), scratch, tag)
        except MnistDigitsError as err:
            return {"error": str(err)}
        packing = time.perf_counter()
        archive = runs.pack_run_dir(run_dir)
        done = time.perf_counter()
    return {"name": run_dir.name, "archive": archive,
            "timings": {**timings, "pack": done - packing, "task": done - start,
                        "started_at": started_at}}


def one_line(err: BaseException) -> str:
    """A failure as one line: the underlying exception's type and first line."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else 'no message'}"


def run_jobs(
    jobs: Sequence[Job],
    results_dir: str | os.PathLike,
    *,
    cluster: str | None = None,
    resources: Resources = ONE_CPU,
    retries: int = DEFAULT_RETRIES,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Runs every job; returns their outcomes, in the jobs' order.

    Args:
        jobs: the trainings.
        results_dir: where the run folders go.
        cluster: None runs the jobs one after another in this process; `ray` or an address
            runs them side by side on Ray (see `connect.connect`).
        resources: what each cluster job gets.
        retries: how often a cluster job whose worker died is run again.
        progress: called with (jobs finished, jobs, a status line) as jobs finish.

    Raises:
        KeyboardInterrupt: after cancelling the jobs still running.
    """
    report = progress or (lambda done, total, line: None)
    if cluster is None:
        return _run_here(jobs, Path(results_dir), report)
    from mnist_digits.cluster import connect

    env = connect.worker_env(max(1, int(resources.cpus)))
    with connect.connect(cluster, env=None) as ray:
        connect.check_fits(ray, resources.cpus, resources.gpus)
        return _run_on_ray(ray, jobs, Path(results_dir), resources, retries, report, env)


def _status(done: int, running: int, failed: int) -> str:
    return f"{done} done, {running} running, {failed} failed"


def _run_here(jobs: Sequence[Job], results_dir: Path, report: Progress) -> list[Outcome]:
    outcomes: list[Outcome] = []
    failed = 0
    for i, job in enumerate(jobs):
        report(i, len(jobs), _status(i - failed, 1, failed))
        log.info("job %d of %d: %s", i + 1, len(jobs), job.label)
        # Trained in a hidden folder and renamed when done, as a cluster job's folder appears:
        # an interrupted or failed job leaves nothing behind.
        scratch = Path(tempfile.mkdtemp(dir=_made(results_dir), prefix=".job-"))
        try:
            run_dir, timings = execute(job.config, scratch, job.tag)
            outcomes.append(Outcome(job, runs.move_run_dir(run_dir, results_dir, run_dir.name),
                                    timings=timings))
        except MnistDigitsError as err:
            failed += 1
            outcomes.append(Outcome(job, error=str(err)))
            log.error("job %s failed: %s", job.label, err)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    report(len(jobs), len(jobs), _status(len(jobs) - failed, 0, failed))
    return outcomes


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run_on_ray(ray: Any, jobs: Sequence[Job], results_dir: Path, resources: Resources,
                retries: int, report: Progress, env: dict[str, str]) -> list[Outcome]:
    from mnist_digits.cluster import connect

    # A worker that dies (killed, out of memory, its node gone) is retried by Ray on any live
    # node; an exception inside the job is not: it is a bug or the user's mistake, and would
    # fail again.
    task = ray.remote(remote_job).options(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                          max_retries=retries, retry_exceptions=False)
    submitted = {}
    for index, job in enumerate(jobs):
        submitted[task.remote(job.config.to_dict(), job.tag, env)] = (
            index, time.perf_counter(), time.time())
    outcomes: dict[int, Outcome] = {}
    pending = list(submitted)
    failed = 0
    slots, counted_at = 0, -math.inf
    try:
        while pending:
            # The live nodes' capacity, asked of the cluster every 10 s, not every second.
            if time.monotonic() - counted_at > 10:
                slots = connect.slots(ray, resources.cpus, resources.gpus)
                counted_at = time.monotonic()
            running = min(len(pending), slots)
            report(len(outcomes), len(jobs), _status(len(outcomes) - failed, running, failed))
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                index, submitted_at, submitted_clock = submitted[ref]
                job = jobs[index]
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:
                    result = {"error": one_line(err)}
                if "error" in result:
                    failed += 1
                    outcomes[index] = Outcome(job, error=result["error"])
                    log.error("job %s failed: %s", job.label, result["error"])
                    continue
                unpacking = time.perf_counter()
                run_dir = runs.unpack_run_dir(result["archive"], results_dir, result["name"])
                done = time.perf_counter()
                timings = {**result["timings"], "unpack": done - unpacking,
                           "wall": done - submitted_at, "submitted_at": submitted_clock,
                           "written_at": time.time()}
                outcomes[index] = Outcome(job, run_dir, timings=timings)
                log.info("job %s done: %s", job.label, run_dir)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    report(len(jobs), len(jobs), _status(len(jobs) - failed, 0, failed))
    return [outcomes[i] for i in range(len(jobs))]


def summary(outcomes: Sequence[Outcome]) -> str:
    """The failed jobs, one line each (empty when none failed)."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return ""
    lines = [f"{len(failed)} of {len(outcomes)} job(s) failed:"]
    lines += [f"  {o.job.label}: {o.error}" for o in failed]
    return "\n".join(lines)
