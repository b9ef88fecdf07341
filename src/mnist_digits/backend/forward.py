"""The compiled inference-mode forward pass of a Keras model, on each backend.

A `tf.function` on TensorFlow, a `jax.jit` over fixed batch shapes, a torch call under
`inference_mode` (compiled once it pays). `predict.forward_function` keeps one per model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mnist_digits import backend

# Each model gets its own tf.function, traced once. TensorFlow counts the traces of all of them
# as "retracing" of one function and warns after a few models (compare, ensembles, tests); the
# warning is wrong here. (Getting the logger does not import TensorFlow.)
logging.getLogger("tensorflow").addFilter(
    lambda record: "triggered tf.function retracing" not in record.getMessage())

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
    name = backend.current()
    if name == "tensorflow":
        import tensorflow as tf

        def call(x):
            return model(x, training=False)

        # No AutoGraph: the forward pass has no Python control flow to convert.
        return tf.function(call, autograph=False, input_signature=[
            tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    if name == "jax":
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
