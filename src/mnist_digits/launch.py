"""Planning a training run before Keras starts: fresh or resumed, on one device or
data-parallel over several devices and processes.

It must come first because JAX fixes its CPU devices when it starts: a resumed data-parallel
run's device count is read from its `config.json` (through `runs`) before any framework loads.
Imports no framework.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mnist_digits import runs
from mnist_digits.backend import parallel
from mnist_digits.config import TrainConfig
from mnist_digits.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Launch:
    """What a `train` call will do.

    Attributes:
        config: the resolved config (a resumed run's saved one).
        resume_dir: the interrupted run to continue, or None for a new run.
        results_dir: where the run folder is (or goes); `latest` points there afterwards.
        distribution: a resumed run's recorded distribution, or None.
        devices_per_process: the devices each process trains over: a count, `"all"`, or None
            for one device.
    """

    config: TrainConfig
    resume_dir: Path | None
    results_dir: Path
    distribution: dict[str, Any] | None
    devices_per_process: int | str | None


def plan_resume(run_dir: str | Path, *, given: Iterable[str] = ()) -> tuple[Path, runs.SavedConfig]:
    """The interrupted run to continue, and its saved config.

    Args:
        run_dir: the run folder (`latest` is followed).
        given: the names of the flags given beside `--resume`; a resumed run keeps its config.

    Raises:
        ConfigError: flags given beside a resume, or the folder holds an ensemble.
        RunError: the folder or its config is missing.
    """
    given = list(given)
    if given:
        raise ConfigError(f"--resume continues a run with its saved config; drop "
                          f"{', '.join(given)}")
    run_dir = runs.resolve_run_dir(run_dir, need=runs.CONFIG)
    saved = runs.read_config(run_dir)
    if saved.config is None:
        raise ConfigError(f"{run_dir} is an ensemble, not a training run; nothing to resume")
    return run_dir, saved


def plan(config: TrainConfig | None, results_dir: Path, *, resume: Path | None = None,
         given: Iterable[str] = (), data_parallel: int | str | None = None,
         num_processes: int = 1) -> Launch:
    """Plans a run: a new one from `config`, or `resume`'s from its saved config.

    Args:
        config: the resolved config of a new run (ignored when resuming).
        results_dir: where a new run's folder goes.
        resume: an interrupted run folder to continue.
        given: flags given beside `resume` (refused).
        data_parallel: devices per process asked for (`--data-parallel`); None takes a resumed
            run's, or "all" over several processes, else one device.
        num_processes: processes taking part.
    """
    distribution = None
    if resume is not None:
        resume, saved = plan_resume(resume, given=given)
        config, distribution, results_dir = saved.config, saved.distribution, resume.parent
    if data_parallel is None and distribution:
        data_parallel = distribution["devices"] // distribution["processes"]
    if data_parallel is None and num_processes > 1:
        data_parallel = "all"
    return Launch(config, resume, Path(results_dir), distribution, data_parallel)


def prepare_devices(launch: Launch, backend_name: str) -> None:
    """Before Keras starts: splits the CPU into the devices data-parallel training asks for.

    Raises:
        ConfigError: data-parallel training on a backend other than JAX.
    """
    if launch.devices_per_process is None:
        return
    if backend_name != "jax":
        raise ConfigError("data-parallel training needs the JAX backend (Keras's distribution "
                          "API); run `mnist-digits --backend jax train ...`")
    parallel.prepare_devices(None if launch.devices_per_process == "all"
                            else launch.devices_per_process)


def join_processes(launch: Launch, *, coordinator: str | None, num_processes: int,
                   process_id: int) -> parallel.DataParallelPlan | None:
    """Joins the other processes (if any) and plans data-parallel training; None for one
    device.

    Raises:
        ConfigError: a resumed run trained by another number of processes, several processes
            without a coordinator, or a process id out of range.
    """
    saved = launch.distribution
    if saved and saved["processes"] != num_processes:
        raise ConfigError(f"this run was trained by {saved['processes']} process(es); resume it "
                          f"with --num-processes {saved['processes']} and the same coordinator")
    if num_processes > 1:
        if not coordinator:
            raise ConfigError("--num-processes needs --coordinator HOST:PORT: process 0's "
                              "address, the same in every process")
        if process_id >= num_processes:
            raise ConfigError(f"--process-id must be below --num-processes ({num_processes}), "
                              f"got {process_id}")
        parallel.start_processes(coordinator, num_processes, process_id)
    if launch.devices_per_process is None:
        return None
    request = launch.devices_per_process
    return parallel.data_parallel(None if request == "all" else request)
