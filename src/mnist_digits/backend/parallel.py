"""Spreading work over CPU threads, devices and processes: a thread limit for jobs, and
data-parallel training over several devices or processes with Keras's distribution API (JAX
only)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from mnist_digits import backend
from mnist_digits.errors import ConfigError


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that hold a new process's frameworks to `threads` CPU threads.

    They must be in place before the framework starts, so they are for processes yet to start
    (a cluster's workers), or for this one before Keras is imported. TensorFlow reads its two,
    torch and NumPy's BLAS read the OpenMP/MKL/OpenBLAS ones, and XLA's CPU client (JAX) reads
    `XLA_FLAGS`.
    """
    n = str(threads)
    env = {var: n for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                              "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
    flags = os.environ.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = (f"{flags} --xla_cpu_multi_thread_eigen=false "
                        f"intra_op_parallelism_threads={n}").strip()
    return env


_HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def prepare_devices(devices: int | None) -> None:
    """Splits the CPU into `devices` XLA devices (all cores when None), for data-parallel
    training where there is no GPU; call it before Keras is imported.

    Harmless where there are GPUs: JAX then trains on them, and the CPU devices go unused.
    An `XLA_FLAGS` that already sets the count wins.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _HOST_DEVICES_FLAG not in flags:
        count = devices or os.cpu_count() or 1
        os.environ["XLA_FLAGS"] = f"{flags} {_HOST_DEVICES_FLAG}={count}".strip()


def start_processes(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins this process to a multi-process (multi-host) JAX computation via
    `jax.distributed`; every process calls it with the same coordinator, before training.

    Raises:
        ConfigError: the backend is not JAX.
    """
    _require_jax("training over several processes")
    import keras

    # Keras's wrapper of jax.distributed.initialize: the coordinator is process 0's address.
    keras.distribution.initialize(job_addresses=coordinator, num_processes=num_processes,
                                  process_id=process_id)


@dataclasses.dataclass(frozen=True)
class DataParallelPlan:
    """Data-parallel training over `devices` devices in `processes` processes (this one is
    number `process_index`): a Keras distribution to train under, and what to record."""

    distribution: Any
    devices: int
    processes: int
    process_index: int

    def record(self) -> dict[str, Any]:
        """What `config.json` records."""
        return {"kind": "data_parallel", "devices": self.devices, "processes": self.processes}


def data_parallel(devices: int | None) -> DataParallelPlan:
    """A plan to train data-parallel over `devices` local devices per process: GPUs, else CPU
    devices (`prepare_devices`); all of them when None.

    Each device holds a full copy of the weights and gets an equal slice of every batch;
    gradients are averaged across devices before each update, so the copies stay identical.
    Across processes, each one feeds its own share of the data (`train` shards it).

    Raises:
        ConfigError: the backend is not JAX, or fewer devices are there than asked for.
    """
    _require_jax("data-parallel training")
    import jax
    import keras

    local = jax.local_devices()
    if devices is not None and devices > len(local):
        raise ConfigError(f"--data-parallel {devices}: this process has only {len(local)} "
                          f"device(s) ({', '.join(str(d) for d in local)}); ask for fewer, or "
                          f"for 'all'")
    count = len(local) if devices is None else devices
    # Every process's first `count` local devices, named as Keras names devices.
    ranks: dict[int, int] = {}
    chosen = []
    for device in jax.devices():
        ranks[device.process_index] = ranks.get(device.process_index, 0) + 1
        if ranks[device.process_index] <= count:
            chosen.append(f"{device.platform}:{device.id}")
    # auto_shard_dataset off: it shards only tf.data datasets; `train` gives each process its
    # own share of the arrays instead.
    distribution = keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False)
    return DataParallelPlan(distribution, len(chosen), jax.process_count(), jax.process_index())


def _require_jax(feature: str) -> None:
    if backend.current() != "jax":
        raise ConfigError(f"{feature} needs the JAX backend (Keras's distribution API); run "
                          f"`mnist-digits --backend jax train ...`")
