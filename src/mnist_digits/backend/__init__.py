"""The seam for backend-specific code: everything that differs between Keras's backends.

Model, training and inference code use `keras.layers` and `keras.ops` only; what cannot be
written that way lives here, one function per need:

- choosing the backend (`choose`) before Keras is imported, with a one-line refusal when the
  backend is unknown or not installed;
- importing Keras without TensorFlow's start-up notices (`import_keras_quietly`): TensorFlow
  2.21 writes its absl and oneDNN notices straight to file descriptor 2 while it is imported,
  before any Python logging or environment variable can stop them, so the descriptor is captured
  around the import and every line that is not a known notice is passed on;
- the compiled inference-mode forward pass (`forward.compiled_forward`): a `tf.function`, a
  `jax.jit` over fixed batch shapes, or a torch call under `inference_mode`;
- training settings that depend on the backend (`steps_per_execution`, what precision `auto`
  trains in), and the form the training data takes (`fit_data`);
- JAX's persistent compilation cache (`configure_compile_cache`);
- holding a process to a number of CPU threads (`parallel.thread_env`);
- data-parallel training over several devices or processes (`parallel.prepare_devices`,
  `start_processes`, `data_parallel`), JAX only;
- the devices the backend sees (`devices`), and the versions that matter (`version`).

This package is the one seam: `forward` and `parallel` are its modules for inference and for
spreading work; this module holds the rest.
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

# JAX reports at INFO that a machine has no TPU, on every start; not news to anyone.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


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

    TensorFlow's C++ info and warning logs (oneDNN notices when the first op runs, a
    "rendezvous aborting" line at the end of each epoch's data) are turned off too, unless
    TF_CPP_MIN_LOG_LEVEL says otherwise: they bury the useful output, and its errors still show.

    Does nothing if Keras is imported already. Other output of the import goes to stderr as
    it would have, after the import; an exception propagates unchanged.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
    (docs/benchmarks-log.md, "One input stream"). The stream gathers each batch from a permutation
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
