"""Hyperparameter sweeps with Ray Tune: `mnist-digits sweep`.

Each trial trains one config drawn from the search space (`space.py`) as an ordinary run, on a
cluster worker, and reports every epoch's metrics to Tune, so a scheduler such as ASHA can stop
weak trials early. A stopped trial still finishes its run folder: its best epoch so far is
calibrated and evaluated like any run's. Finished folders come back to the driver through a
small actor (no shared filesystem needed) and are written into the sweep folder, one per trial
even when a trial had to be run again after its node died.

The sweep folder (`results/<stamp>-sweep-<model>/`) holds the trials' run folders and:
`space.json`, `trials.csv` (one row per trial), `summary.md`, `best_config.json` (usable as
`train --config`) and `sweep.png` (the metric against each hyperparameter).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mnist_digits import runs
from mnist_digits.cluster import jobs, space
from mnist_digits.errors import MnistDigitsError

log = logging.getLogger(__name__)

METRICS = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
SCHEDULERS = ("fifo", "asha")
TRIALS_CSV = "trials.csv"
SUMMARY_MD = "summary.md"
BEST_CONFIG = "best_config.json"
SPACE_JSON = "space.json"
SWEEP_PLOT = "sweep.png"
_COLLECTOR_NAMESPACE = "mnist-digits"


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """What `mnist-digits sweep` was asked for."""

    model: str
    space: space.Space
    trials: int
    metric: str = "val_accuracy"
    scheduler: str = "fifo"
    file_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cli_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0

    @property
    def mode(self) -> str:
        return METRICS[self.metric]


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial as the sweep ended it."""

    number: int
    params: dict[str, Any]
    status: str  # completed, stopped early, failed
    run_dir: Path | None
    metric: float | None  # the best epoch's value of the sweep's metric
    epochs: int
    test_accuracy: float | None
    error: str | None = None
    restarts: int = 0  # times it was run again after its worker or node died


class _Collector:
    """Holds finished run folders until the driver takes them; the first one per trial wins,
    so a trial run again after its node died cannot give two folders."""

    def __init__(self) -> None:
        self._folders: dict[str, tuple[str, bytes]] = {}

    def put(self, trial_id: str, name: str, archive: bytes) -> None:
        self._folders.setdefault(trial_id, (name, archive))

    def take(self, trial_id: str) -> tuple[str, bytes] | None:
        return self._folders.pop(trial_id, None)

    def take_all(self) -> dict[str, tuple[str, bytes]]:
        folders, self._folders = self._folders, {}
        return folders


def _trainable_class() -> type:
    """The Tune trainable (defined on demand: it subclasses Ray's, and Ray is optional)."""
    import keras
    import ray
    from ray import tune

    class Gate(keras.callbacks.Callback):
        """Hands each epoch's metrics to Tune, and waits for Tune to ask for the next epoch
        (or to stop), so the scheduler decides with no epoch wasted."""

        def __init__(self, trial: Any) -> None:
            super().__init__()
            self.trial = trial

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            self.trial.events.put(("epoch", {**metrics, "epoch": epoch + 1}))
            self.trial.proceed.wait()
            self.trial.proceed.clear()
            if self.trial.stopping.is_set():
                self.model.stop_training = True

    class SweepTrial(tune.Trainable):
        """One trial: `model.fit` runs in a thread; each `step` is one of its epochs."""

        def setup(self, config: dict[str, Any]) -> None:
            job = config["_sweep"]
            sampled = {k: v for k, v in config.items() if k != "_sweep"}
            self.events: queue.Queue = queue.Queue()
            self.proceed = threading.Event()
            self.stopping = threading.Event()
            self.stepped = False
            self.last: dict[str, Any] = {}
            self.metric = job["metric"]
            job = {**job, "tag": f"t{trial_number(self.trial_id)}"}
            self.thread = threading.Thread(target=self._train, args=(job, sampled), daemon=True)
            self.thread.start()

        def _train(self, job: dict[str, Any], sampled: dict[str, Any]) -> None:
            try:
                config = space.trial_config(job["model"], sampled, job["file_values"],
                                            job["cli_values"])
                with tempfile.TemporaryDirectory(prefix="mnist-digits-trial-") as scratch:
                    run_dir, _ = jobs.execute(config, scratch, job["tag"], callbacks=[Gate(self)])
                    collector = ray.get_actor(job["collector"], namespace=_COLLECTOR_NAMESPACE)
                    ray.get(collector.put.remote(self.trial_id, run_dir.name,
                                                 runs.pack_run_dir(run_dir)))
                self.events.put(("done", {}))
            except MnistDigitsError as err:
                self.events.put(("user_error", str(err)))
            except BaseException as err:  # handed to Tune as the trial's error
                self.events.put(("crash", err))

        def step(self) -> dict[str, Any]:
            if self.stepped:
                self.proceed.set()
            self.stepped = True
            kind, value = self.events.get()
            if kind == "epoch":
                self.last = value
                return value
            if kind == "done":
                # The run folder is finished and sent; this last report repeats the last
                # epoch's metrics, which Tune expects in every result.
                return {**self.last, "finished": True, "done": True}
            if kind == "user_error":
                # Reported, not raised: Tune would retry an exception, and this would fail again.
                worst = -math.inf if METRICS[self.metric] == "max" else math.inf
                return {"user_error": value, self.metric: worst, "done": True}
            raise value

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            # Nothing to keep: a trial run again after its node died starts its training
            # over, in a new scratch folder (its first one died with the node).
            return None

        def load_checkpoint(self, checkpoint: Any) -> None:
            return None

        def cleanup(self) -> None:
            # Stopped (by the scheduler, or at the end): let fit end after this epoch, and the
            # run folder be finished and sent.
            self.stopping.set()
            self.proceed.set()
            self.thread.join()

    return SweepTrial


def trial_number(trial_id: str) -> int:
    """A trial's number, from 1, in the order Tune created the trials (its id ends `_NNNNN`)."""
    return int(trial_id.rsplit("_", 1)[-1]) + 1


class _Delivery:
    """Takes finished folders from the collector and writes them into the sweep folder."""

    def __init__(self, ray: Any, collector: Any, folder: Path) -> None:
        self.ray, self.collector, self.folder = ray, collector, folder
        self.run_dirs: dict[str, Path] = {}

    def take(self, trial_id: str) -> None:
        if trial_id in self.run_dirs:
            return
        found = self.ray.get(self.collector.take.remote(trial_id))
        if found:
            self.run_dirs[trial_id] = runs.unpack_run_dir(found[1], self.folder, found[0])

    def take_all(self) -> None:
        for trial_id, (name, archive) in self.ray.get(self.collector.take_all.remote()).items():
            if trial_id not in self.run_dirs:
                self.run_dirs[trial_id] = runs.unpack_run_dir(archive, self.folder, name)


def _progress_callback(total: int, delivery: _Delivery,
                       report: Callable[[int, int, str], None]) -> Any:
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self) -> None:
            self.started: set[str] = set()
            self.ended: set[str] = set()
            self.failed: set[str] = set()
            self.restarts: dict[str, int] = {}

        def _report(self) -> None:
            done = len(self.ended)
            report(done, total, jobs._status(done - len(self.failed),
                                             len(self.started - self.ended), len(self.failed)))

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.started.add(trial.trial_id)
            self._report()

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if "user_error" in result:
                self.failed.add(trial.trial_id)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.ended.add(trial.trial_id)
            self.restarts[trial.trial_id] = max(self.restarts.get(trial.trial_id, 0),
                                                getattr(trial, "num_failures", 0))
            delivery.take(trial.trial_id)
            self._report()

        def on_trial_recover(self, iteration, trials, trial, **info) -> None:
            # Its worker or node died; Tune runs it again (FailureConfig).
            self.restarts[trial.trial_id] = self.restarts.get(trial.trial_id, 0) + 1

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.ended.add(trial.trial_id)
            self.failed.add(trial.trial_id)
            self._report()

    return Progress()


def run_sweep(
    settings: SweepSettings,
    results_dir: str | os.PathLike,
    *,
    cluster: str | None = None,
    resources: jobs.Resources = jobs.ONE_CPU,
    retries: int = jobs.DEFAULT_RETRIES,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[Path, list[Trial]]:
    """Runs the sweep; returns its folder and its trials (best first).

    Args:
        settings: the model, space, number of trials, metric and scheduler.
        results_dir: where the sweep folder goes.
        cluster: None runs one trial at a time on a private Ray instance here (Tune needs Ray);
            `ray` runs them side by side on that instance; an address uses that cluster.
        resources: what each trial gets.
        retries: how often a trial whose worker died is run again.
        progress: called with (trials ended, trials, a status line).

    Raises:
        ConfigError: the space does not fit the model (checked before anything runs).
    """
    from mnist_digits.cluster import connect

    space.check_space(settings.space, settings.model, settings.file_values, settings.cli_values)
    report = progress or (lambda done, total, line: None)
    # Tune's own Ctrl-C handling would wait for the trials; here Ctrl-C stops them at once.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    folder = runs.new_run_dir(results_dir, f"sweep-{settings.model}")
    runs.write_json(folder / SPACE_JSON, {k: {kind: args} for k, (kind, args) in
                                          settings.space.items()})
    # Trials are actors whose class imports Keras as it arrives: their environment is set when
    # their workers start.
    env = connect.worker_env(max(1, int(resources.cpus)))
    with connect.connect(cluster or connect.LOCAL, env=env) as ray, \
            tempfile.TemporaryDirectory(prefix="mnist-digits-tune-") as tune_dir:
        connect.check_fits(ray, resources.cpus, resources.gpus)
        trials = _tune(ray, settings, folder, Path(tune_dir), one_at_a_time=cluster is None,
                       resources=resources, retries=retries, report=report)
    write_reports(folder, settings, trials)
    return folder, trials


def _tune(ray: Any, settings: SweepSettings, folder: Path, tune_dir: Path, *,
          one_at_a_time: bool, resources: jobs.Resources, retries: int,
          report: Callable[[int, int, str], None]) -> list[Trial]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # The collector lives on the head node: without it there is no cluster, so it outlives
    # any worker node.
    head = next(n["NodeID"] for n in ray.nodes()
                if n.get("Alive") and "node:__internal_head__" in n["Resources"])
    collector_name = f"sweep-{uuid.uuid4().hex[:12]}"
    collector = ray.remote(_Collector).options(
        name=collector_name, namespace=_COLLECTOR_NAMESPACE, num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
    delivery = _Delivery(ray, collector, folder)
    base = space.trial_config(settings.model, {}, settings.file_values, settings.cli_values)
    param_space = {**space.to_tune(settings.space), "_sweep": {
        "model": settings.model, "file_values": dict(settings.file_values),
        "cli_values": dict(settings.cli_values), "collector": collector_name,
        "metric": settings.metric, "tag": None}}
    # ASHA's rungs are epochs, up to the longest a trial can train.
    max_epochs = base.epochs
    if "epochs" in settings.space:
        max_epochs = max(settings.space["epochs"][1])
    scheduler = FIFOScheduler() if settings.scheduler == "fifo" else ASHAScheduler(
        max_t=max_epochs, grace_period=1, reduction_factor=2)
    progress = _progress_callback(settings.trials, delivery, report)
    trainable = tune.with_resources(_trainable_class(),
                                    {"cpu": resources.cpus, "gpu": resources.gpus})
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=settings.metric, mode=settings.mode, num_samples=settings.trials,
            scheduler=scheduler, max_concurrent_trials=1 if one_at_a_time else None,
            search_alg=_searcher(settings.seed),
            # Named by id alone, so a result (which may hold no metrics) leads back to its id.
            trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=tune.RunConfig(
            name="sweep", storage_path=str(tune_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=retries),
            callbacks=[progress]))
    grid = tuner.fit()
    delivery.take_all()
    trials = [_trial(result, delivery.run_dirs, settings, progress.restarts) for result in grid]
    return sorted(trials, key=lambda t: _sort_key(t, settings.mode))


def _searcher(seed: int) -> Any:
    """Random search, seeded: the same sweep draws the same trials."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def _trial(result: Any, run_dirs: Mapping[str, Path], settings: SweepSettings,
           restarts: Mapping[str, int]) -> Trial:
    params = {k: v for k, v in result.config.items() if k != "_sweep"}
    last = result.metrics or {}
    trial_id = Path(result.path).name  # see trial_dirname_creator
    run_dir = run_dirs.get(trial_id)
    error = last.get("user_error") or (jobs.one_line(result.error) if result.error else None)
    metric, epochs, test_accuracy = None, 0, None
    if run_dir is not None:
        history = runs.read_history(run_dir)
        values = [v for v in history.get(settings.metric, []) if not math.isnan(v)]
        if values:
            metric = max(values) if settings.mode == "max" else min(values)
        epochs = len(history.get(settings.metric, []))
        if (run_dir / runs.METRICS).exists():
            test_accuracy = runs.read_json(run_dir / runs.METRICS)["test"]["accuracy"]
    if error:
        status = "failed"
    elif last.get("finished") or (run_dir is not None and
                                  epochs >= runs.read_config(run_dir).config.epochs):
        status = "completed"
    else:
        status = "stopped early"
    # Numbered in the order they were drawn; the run folder's name carries the number too.
    return Trial(trial_number(trial_id), params, status, run_dir, metric, epochs, test_accuracy,
                 error, restarts.get(trial_id, 0))


def _sort_key(trial: Trial, mode: str) -> tuple[int, float]:
    if trial.metric is None:
        return (1, 0.0)
    return (0, -trial.metric if mode == "max" else trial.metric)


def write_reports(folder: Path, settings: SweepSettings, trials: Sequence[Trial]) -> None:
    """Writes `trials.csv`, `summary.md`, `best_config.json` and `sweep.png` into `folder`."""
    from mnist_digits import plots

    keys = list(settings.space)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", "status", *keys, settings.metric, "epochs", "test_accuracy",
                     "run_dir", "restarts", "error"])
    for t in trials:
        writer.writerow([t.number, t.status, *(t.params.get(k) for k in keys),
                         "" if t.metric is None else t.metric, t.epochs,
                         "" if t.test_accuracy is None else t.test_accuracy,
                         t.run_dir.name if t.run_dir else "", t.restarts, t.error or ""])
    runs.atomic_write_text(folder / TRIALS_CSV, out.getvalue())
    best = next((t for t in trials if t.metric is not None and t.status != "failed"), None)
    if best is not None:
        config = runs.read_config(best.run_dir).config
        runs.write_json(folder / BEST_CONFIG, config.to_dict())
        scored = [t for t in trials if t.metric is not None]
        log_keys = [k for k in keys if space.is_log_scale(settings.space, k)]
        runs.save_figure(plots.sweep_scatter(
            {k: [t.params[k] for t in scored] for k in keys}, [t.metric for t in scored],
            metric=settings.metric, maximize=settings.mode == "max", log_keys=log_keys,
            title=f"{settings.model}: {len(scored)} trials"), folder / SWEEP_PLOT)
    runs.atomic_write_text(folder / SUMMARY_MD, summary_markdown(settings, trials, best))


def summary_markdown(settings: SweepSettings, trials: Sequence[Trial], best: Trial | None
                     ) -> str:
    """The sweep's summary: settings, counts, the best trial and every trial, best first."""
    counts = {s: sum(t.status == s for t in trials) for s in ("completed", "stopped early",
                                                            "failed")}
    lines = [f"# Sweep of {settings.model}", "",
             f"{len(trials)} trials, {settings.scheduler} scheduler, {settings.metric} "
             f"({settings.mode}): " + ", ".join(f"{n} {s}" for s, n in counts.items()), ""]
    if best is not None:
        lines += [f"Best: trial {best.number}, {settings.metric} {best.metric:.4f}"
                  + (f", test accuracy {best.test_accuracy:.2%}" if best.test_accuracy else "")
                  + f" (`{best.run_dir.name}`); its config is `{BEST_CONFIG}` "
                    f"(`mnist-digits train --config {BEST_CONFIG}`).", ""]
    keys = list(settings.space)
    lines += ["| trial | status | " + " | ".join(keys) + f" | {settings.metric} | epochs | "
              "test acc. (%) |", "|" + "---|" * (len(keys) + 5)]
    for t in trials:
        values = " | ".join(_short(t.params.get(k)) for k in keys)
        metric = "" if t.metric is None else f"{t.metric:.4f}"
        test = "" if t.test_accuracy is None else f"{100 * t.test_accuracy:.2f}"
        lines.append(f"| {t.number} | {t.status} | {values} | {metric} | {t.epochs} | {test} |")
    failed = [t for t in trials if t.error]
    if failed:
        lines += ["", "Failed trials:"] + [f"- trial {t.number}: {t.error}" for t in failed]
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if not isinstance(value, str) else value
