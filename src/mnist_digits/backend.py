"""The seam for backend-specific code: everything that differs between Keras's backends.

Model, training and inference code use `keras.layers` and `keras.ops` only; what cannot be
written that way lives here, one function per need:

- choosing the backend (`choose`) before Keras is imported, with a one-line refusal when the
  backend is unknown or not installed;
- importing Keras without TensorFlow's start-up notices (`import_keras_quietly`): TensorFlow
  2.21 writes its absl and oneDNN notices straight to file descriptor 2 while it is imported,
  before any Python logging or environment variable can stop them, so the descriptor is captured
  around the import and every line that is not a known notice is passed on;
- the compiled inference-mode forward pass (`compiled_forward`): a `tf.function`, a `jax.jit`
  over fixed batch shapes, or a torch call under `inference_mode`;
- training settings that depend on the backend (`steps_per_execution`, what precision `auto`
  trains in), and the form the training data takes (`fit_data`);
- JAX's persistent compilation cache (`configure_compile_cache`);
- holding a process to a number of CPU threads (`thread_env`);
- data-parallel training over several devices or processes (`prepare_devices`,
  `start_processes`, `data_parallel`), JAX only;
- the devices the backend sees, and the versions that matter (`describe`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_digits.errors import ConfigError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"  # measured fastest on the 2-core CPU this project is developed on

# The module each backend imports, the distributions that provide it, and how to install it.
_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",),
                  "torch": ("torch",)}
_INSTALL = {"tensorflow": "pip install tensorflow-cpu (or tensorflow[and-cuda] for a GPU)",
            "jax": "pip install 'mnist-digits[jax]' (in a checkout: pip install -e '.[jax]')",
            "torch": "pip install 'mnist-digits[torch]' (in a checkout: pip install -e "
                     "'.[torch]')"}

# Where JAX keeps compiled programs between processes, unless told otherwise.
COMPILE_CACHE_ENV = "MNIST_DIGITS_COMPILE_CACHE"


def choose(name: str | None = None) -> str:
    """Sets the Keras backend for this process; call it before Keras is imported.

    Args:
        name: `tensorflow`, `jax` or `torch`; None means `KERAS_BACKEND` if set, else the
            default.

    Returns:
        The backend chosen.

    Raises:
        ConfigError: an unknown backend, one that is not installed, or a different backend
            than the one Keras was already imported with.
    """
    name = name or os.environ.get("KERAS_BACKEND") or DEFAULT
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise ConfigError(f"Keras is already running on {current} in this process; start "
                              f"a new one to use {name}")
    if importlib.util.find_spec(_MODULE[name]) is None:
        raise ConfigError(f"the {name} backend is not installed; install it with "
                          f"{_INSTALL[name]}")
    os.environ["KERAS_BACKEND"] = name
    return name


def version(backend: str) -> str | None:
    """The installed version of a backend's library (None if it is not installed); importing
    nothing."""
    for distribution in _DISTRIBUTIONS[backend]:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(distribution)
    return None


def require_tensorflow(feature: str) -> None:
    """Raises ConfigError, in one line, when `feature` needs TensorFlow and it is missing."""
    if importlib.util.find_spec("tensorflow") is None:
        raise ConfigError(f"{feature} needs TensorFlow, which is not installed; install it "
                          f"with {_INSTALL['tensorflow']}")


# Notices TensorFlow prints on every start; anything else written during the import (a real
# error, a warning about the installation) still reaches stderr.
_START_UP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|cuda_(executor|driver)\.cc:\d+\] .*(could not find cuda drivers|failed call to cuInit)"
)


def filter_start_up_notices(text: str) -> str:
    """`text` without the lines that are TensorFlow's start-up notices."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not _START_UP_NOTICES.search(line))


def import_keras_quietly() -> None:
    """Imports Keras (and so its backend) with the backend's start-up notices filtered out.

    Does nothing if Keras is imported already. Other output of the import goes to stderr as
    it would have, after the import; an exception propagates unchanged.
    """
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(filter_start_up_notices(capture.read().decode(errors="replace")))
            sys.stderr.flush()


def current() -> str:
    """The backend Keras runs on."""
    import keras

    return keras.backend.backend()


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed` (Python, NumPy, the backend, Keras's generators), without
    importing TensorFlow on the other backends.

    Keras seeds TensorFlow whenever it is installed, for `tf.data` pipelines; off TensorFlow this
    project feeds NumPy arrays (`fit_data`), so there that import would only cost seconds and
    memory. For the call, `import tensorflow` is made to fail, which Keras takes as "not
    installed" (and remembers, so nothing later in the process imports it either).
    """
    import keras

    if current() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del sys.modules["tensorflow"]


def jit_compile() -> bool | str:
    """Keras's `jit_compile` for training on this backend.

    TensorFlow and JAX: Keras's "auto" (XLA where every layer supports it). torch: off:
    torch.compile of the train step made `cnn_fast`'s first epoch 74.8 s instead of 12.8 s and
    the later ones no faster on 2 CPU cores (the bench's `backends` section).
    """
    return False if current() == "torch" else "auto"


def steps_per_execution() -> int:
    """Batches per call into the compiled train step.

    Several batches per call means less Python per batch, which matters for small models
    (measured on TensorFlow: 5.2 -> 4.4 s per `cnn_fast` epoch at 16). Keras's torch trainer
    runs one batch per call and refuses anything else.
    """
    return 1 if current() == "torch" else 16


# The CPU flags (as Linux's /proc/cpuinfo names them) of units that do bfloat16 arithmetic.
_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache  # `info` and every `auto` run ask; the flags do not change while we run
def cpu_has_bfloat16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 units; False where its flags cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags")
             for flag in line.partition(":")[2].split()}
    return any(flag in flags for flag in _BFLOAT16_FLAGS)


def precision(name: str) -> str:
    """The precision a run trains in: `name` itself, or for `auto` mixed_bfloat16 where that
    was measured faster and float32 elsewhere.

    Measured faster: TensorFlow and torch on a CPU with bfloat16 units and no GPU (`cnn_fast`
    on this project's 2-core CPU, 3 epochs: 10.6 s against 14.5 s, and 28.4 against 34.1 s).
    JAX on that CPU was slower (87.7 against 72.6 s), and no GPU has been measured, so those get
    float32. Without bfloat16 units the arithmetic is emulated, which is slower still.
    """
    if name != "auto":
        return name
    on_cpu = all(device.startswith("CPU") for device in devices())
    faster = current() in ("tensorflow", "torch") and on_cpu and cpu_has_bfloat16()
    return "mixed_bfloat16" if faster else "float32"


@dataclasses.dataclass(frozen=True)
class FitData:
    """What `model.fit` is given on this backend: its data arguments, the batches per call, and
    the batches an epoch (for the learning-rate schedule)."""

    fit_kwargs: dict[str, Any]
    steps_per_execution: int
    steps_per_epoch: int


def fit_data(x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray],
             batch_size: int) -> FitData:
    """The training and validation data in the form `model.fit` takes fastest on this backend.

    TensorFlow: one shuffled stream of batches that runs through all epochs. Given arrays, Keras
    makes a new `tf.data` iterator over them at each epoch's start, and on this project's 2-core
    CPU the first batch then waited 0.6-5 s in 22 of 46 later epochs of `cnn_fast` timed (up to
    a quarter of a 3-epoch run); with one iterator over a repeated stream no such wait came in 38
    (docs/benchmarks.md, "One input stream"). The stream gathers each batch from a permutation
    drawn per epoch, as Keras does, so every epoch is still one pass over the images with a
    smaller last batch. Keras runs whole calls of `steps_per_execution` batches on a repeated
    stream, so the stream is used when some count of batches per call from 8 to 32 divides an
    epoch's batches (the one nearest 16); otherwise, and on the other backends, the arrays go to
    Keras as they are.
    """
    steps = -(-len(x) // batch_size)
    default = steps_per_execution()
    divisors = [n for n in range(8, 33) if steps % n == 0]
    if current() != "tensorflow" or not divisors:
        return FitData({"x": x, "y": y, "batch_size": batch_size, "validation_data": validation},
                       default, steps)
    import tensorflow as tf

    full = len(x) // batch_size
    images, labels = tf.constant(x), tf.constant(y)

    def epoch_batches(_: Any) -> Any:
        order = tf.random.shuffle(tf.range(len(x), dtype=tf.int64))
        batches = tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[:full * batch_size], (full, batch_size)))
        if full < steps:
            batches = batches.concatenate(
                tf.data.Dataset.from_tensors(order[full * batch_size:]))
        return batches

    stream = (tf.data.Dataset.from_tensors(0).repeat().flat_map(epoch_batches)
              .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)),
                   num_parallel_calls=tf.data.AUTOTUNE)
              .prefetch(tf.data.AUTOTUNE))
    # Validation as a dataset too: from arrays Keras's evaluation took about 0.4 s an epoch
    # beside the stream, against 0.2 s from this.
    checked = tf.data.Dataset.from_tensor_slices(validation).batch(batch_size).prefetch(2)
    return FitData({"x": stream, "steps_per_epoch": steps, "validation_data": checked,
                    "shuffle": False},
                   min(divisors, key=lambda n: abs(n - default)), steps)


# Each model gets its own tf.function, traced once. TensorFlow counts the traces of all of them
# as "retracing" of one function and warns after a few models (compare, ensembles, tests); the
# warning is wrong here. (Getting the logger does not import TensorFlow.)
logging.getLogger("tensorflow").addFilter(
    lambda record: "triggered tf.function retracing" not in record.getMessage())

# JAX reports at INFO that a machine has no TPU, on every start; not news to anyone.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)

# Batch sizes the compiled forward passes are built for (JAX always, torch once it pays); a batch
# is padded up to the next one, so a server answering one image at a time, and `predict` over any
# number of files, compile a handful of programs once instead of one per batch size.
BATCH_SIZES = (1, 8, 64, 256, 1024)


def _bucket(n: int) -> int:
    return next((size for size in BATCH_SIZES if size >= n), n)


def _padded(x: np.ndarray, size: int) -> np.ndarray:
    if size == len(x):
        return x
    return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])


def compiled_forward(model: Any) -> Callable[[np.ndarray], Any]:
    """The model's inference-mode forward pass, compiled where the backend allows.

    - TensorFlow: a `tf.function` with a fixed input signature, so one graph serves every batch
      size. (XLA, `jit_compile=True`, compiles per batch shape and measured slower on a CPU for
      small convnets.) The eager call it replaced measured 10.8 ms for one image.
    - JAX: `jax.jit` of `model.stateless_call` with the weights passed in, on batches padded to
      `BATCH_SIZES` so each size compiles once (a few hundred ms each, kept by the persistent
      cache; the direct call re-traces every layer and measured 12.9 ms for one image on a GPU).
    - torch: `TorchForward`: eager under `torch.inference_mode()`, then `torch.compile` for a
      batch size once the eager calls of that size have cost what a compile costs.

    The returned function takes float32 `(n, *input_shape)` and returns the outputs for those
    `n` images (a backend tensor; `keras.ops.convert_to_numpy` reads it). The weights are read
    when the function is called (JAX) or frozen into the compiled program (torch, which is only
    compiled for models that are used, not trained).
    """
    backend = current()
    if backend == "tensorflow":
        import tensorflow as tf

        def call(x):
            return model(x, training=False)

        # No AutoGraph: the forward pass has no Python control flow to convert.
        return tf.function(call, autograph=False, input_signature=[
            tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    if backend == "jax":
        import jax

        @jax.jit
        def run(trainable, non_trainable, x):
            outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return outputs

        def forward(x: np.ndarray) -> Any:
            n = len(x)
            # The weights' current values, read on every call: a model trained further after
            # the first call must not answer with its old weights.
            return run([v.value for v in model.trainable_variables],
                       [v.value for v in model.non_trainable_variables],
                       _padded(x, _bucket(n)))[:n]

        return forward
    return TorchForward(model)


class TorchForward:
    """The torch forward pass: eager first, compiled for a batch size once that pays.

    Keras's torch layers run channels-last convolutions and pooling as separate, unfused ops
    (measured on 2 CPU cores: 4,900 images/s and 3.0 ms for one image, against TensorFlow's
    22,000/s and 1.0 ms). `torch.compile` with Inductor's freezing (weights folded in as
    constants, convolutions pre-packed) measured 13,700 images/s and 0.5 ms, but costs 5-10 s to
    compile each batch size. So a size is compiled once its eager calls have taken
    `COMPILE_AFTER_SECONDS` (the ski-rental rule: never more than twice the best choice made in
    hindsight): a one-shot `predict` never compiles, a server or a long evaluation does.
    `compile(size)` compiles ahead, for a server that wants its first answers fast.
    """

    COMPILE_AFTER_SECONDS = 10.0

    def __init__(self, model: Any) -> None:
        self.model = model
        self.eager_seconds: dict[int, float] = {}
        self.compiled_sizes: set[int] = set()
        self._compiled: Any = None

    def _eager(self, x: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model(x, training=False)

    def compile(self, size: int) -> None:
        """Compiles the forward pass for batches of `size` (one of `BATCH_SIZES`)."""
        import torch

        if self._compiled is None:
            # A fixed shape per size: dynamic shapes measured slower and recompiled anyway.
            self._compiled = torch.compile(lambda x: self.model(x, training=False),
                                           dynamic=False, options={"freezing": True})
        # Compiled on the kind of tensor later calls pass (one made from a NumPy array), or the
        # first real call would compile again.
        with torch.inference_mode():
            self._compiled(torch.as_tensor(
                np.zeros((size, *self.model.input_shape[1:]), np.float32)))
        self.compiled_sizes.add(size)

    def __call__(self, x: np.ndarray) -> Any:
        import torch

        n = len(x)
        size = _bucket(n)
        if size in self.compiled_sizes:
            # A fresh copy has the standard strides the program was compiled for (an array
            # given a channel axis by indexing has stride 0 there, and would compile again).
            batch = np.array(_padded(x, size), np.float32, order="C", copy=True)
            with torch.inference_mode():
                return self._compiled(torch.as_tensor(batch))[:n]
        start = time.perf_counter()
        out = self._eager(x)
        self.eager_seconds[size] = self.eager_seconds.get(size, 0.0) + time.perf_counter() - start
        if size in BATCH_SIZES and self.eager_seconds[size] > self.COMPILE_AFTER_SECONDS:
            self.compile(size)
        return out


def warm_up(forward: Callable[[np.ndarray], Any], input_shape: tuple[int, ...],
            sizes: tuple[int, ...] = (1,)) -> None:
    """Compiles `forward` (from `compiled_forward`) for these batch sizes now rather than on
    demand: for a server, whose first answers should be as fast as the rest."""
    for size in sizes:
        if isinstance(forward, TorchForward):
            forward.compile(_bucket(size))
        else:
            forward(np.zeros((size, *input_shape), np.float32))


def default_compile_cache() -> Path:
    """`$XDG_CACHE_HOME/mnist-digits/jax` (`~/.cache/...` when XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-digits" / "jax"


def compile_cache_dir() -> Path | None:
    """JAX's persistent compilation cache folder: `MNIST_DIGITS_COMPILE_CACHE` if set (`off`
    turns the cache off), else `default_compile_cache()`."""
    setting = os.environ.get(COMPILE_CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    return Path(setting) if setting else default_compile_cache()


def configure_compile_cache() -> Path | None:
    """Turns on JAX's persistent compilation cache (train and predict share it); returns its
    folder, or None when it is off or the backend is not JAX.

    Every compiled program is kept, however small or quick to compile: this project's programs
    are all small, and their compile time is most of a short run.
    """
    folder = compile_cache_dir()
    if folder is None or current() != "jax":
        return None
    import jax

    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def devices() -> list[str]:
    """The devices the backend sees, as `KIND:INDEX name` strings (GPU names included)."""
    backend = current()
    if backend == "tensorflow":
        import tensorflow as tf

        found = []
        for device in tf.config.list_physical_devices():
            name = device.name.replace("/physical_device:", "")
            if device.device_type == "GPU":
                details = tf.config.experimental.get_device_details(device)
                name += f" {details.get('device_name', '')}".rstrip()
            found.append(name)
        return found
    if backend == "jax":
        import jax

        return [f"{d.platform.upper()}:{d.id} {d.device_kind}" for d in jax.devices()]
    import torch

    found = ["CPU:0"]
    found += [f"GPU:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return found


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
    if current() != "jax":
        raise ConfigError(f"{feature} needs the JAX backend (Keras's distribution API); run "
                          f"`mnist-digits --backend jax train ...`")
