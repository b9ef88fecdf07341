"""Training callbacks of our own: epoch timing, the atomic best-model checkpoint, TensorBoard
scalars written without TensorFlow, a Ctrl-C that cannot be lost, and weight averaging that
survives a resume.

Keras's TensorBoard callback writes through `tf.summary`, so it needs TensorFlow whatever the
backend; `ScalarLogger` writes the same event files (`train/` and `validation/` folders, tags
`epoch_loss`, `epoch_accuracy`, `epoch_learning_rate`) with the `tensorboard` package's record
writer and protocol buffers, which import no framework.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from pathlib import Path

import keras

from mnist_digits import modelfile


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to each epoch's logs, so history.csv records the training time.

    It must come before CSVLogger in the callback list, which then writes the new column. Summing
    the column gives the training time even for a run that was interrupted and resumed.
    """

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class BestModelSaver(keras.callbacks.Callback):
    """Saves the model whenever validation loss improves (or every epoch), atomically and with
    its manifest.

    Keras's ModelCheckpoint writes in place, so a crash mid-save would leave a broken
    `model.keras`; this one writes a temporary file and renames it (`modelfile.save_model`).

    Args:
        path: the `.keras` file.
        best: the best validation loss so far, when resuming, so that a worse epoch after the
            resume cannot overwrite a better model.
        model: the model to save, if not the one being fitted: a part of it that shares its
            weights (a distilled student without its teacher, `distill.with_teacher`).
        every_epoch: save after every epoch instead, so the last one is kept
            (`TrainConfig.keep_epoch`).
    """

    def __init__(self, path: Path, best: float | None = None,
                 model: keras.Model | None = None, every_epoch: bool = False) -> None:
        super().__init__()
        self.path = path
        self.best = best
        self.saved = model
        self.every_epoch = every_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        current = (logs or {}).get("val_loss")
        if current is None or math.isnan(current):
            return
        if self.every_epoch or self.best is None or current < self.best:
            self.best = float(current)
            modelfile.save_model(self.model if self.saved is None else self.saved, self.path)


class ScalarLogger(keras.callbacks.Callback):
    """Writes each epoch's metrics as TensorBoard scalars, on any backend.

    Metrics named `val_*` go to `<log_dir>/validation/` without the prefix, the others to
    `<log_dir>/train/`, as Keras's TensorBoard callback lays them out; the learning rate goes
    with the training metrics. A resumed run appends a new event file beside the old ones.
    """

    def __init__(self, log_dir: str | os.PathLike) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self._files: dict[str, object] = {}

    def _write(self, split: str, **event_fields) -> None:
        """Appends one event to the split's file, opening it (with its header) on first use."""
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        if split not in self._files:
            folder = self.log_dir / split
            folder.mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
            handle = open(folder / name, "ab")  # noqa: SIM115  (closed in on_train_end)
            self._files[split] = (handle, RecordWriter(handle))
            self._write(split, file_version="brain.Event:2")
        handle, writer = self._files[split]
        writer.write(event_pb2.Event(wall_time=time.time(), **event_fields).SerializeToString())
        handle.flush()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from tensorboard.compat.proto import summary_pb2

        scalars: dict[str, dict[str, float]] = {"train": {}, "validation": {}}
        for key, value in (logs or {}).items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            if name != "epoch_seconds":
                scalars[split][f"epoch_{name}"] = float(value)
        rate = getattr(self.model.optimizer, "learning_rate", None)
        if rate is not None:
            scalars["train"]["epoch_learning_rate"] = float(keras.ops.convert_to_numpy(rate))
        for split, values in scalars.items():
            if values:
                self._write(split, step=epoch, summary=summary_pb2.Summary(value=[
                    summary_pb2.Summary.Value(tag=tag, simple_value=value)
                    for tag, value in values.items()]))

    def on_train_end(self, logs: dict | None = None) -> None:
        for handle, _ in self._files.values():
            handle.close()
        self._files = {}


class SwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras's swap of the averaged weights (`use_ema`) in for validation and at each epoch's end,
    made right for a resumed run.

    A backup taken at an epoch's end holds the averaged weights in the model and the raw ones in
    the optimizer's average slots. Keras's callback assumes a fresh start, so a resumed run would
    train on from the average, with the raw weights as its average. Here, a run whose optimizer
    has already taken steps when its first epoch begins was restored from such a backup, and the
    two are swapped back first.
    """

    def __init__(self) -> None:
        super().__init__(swap_on_epoch=True)

    def on_train_begin(self, logs=None) -> None:
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None) -> None:
        # Not in on_train_begin: BackupAndRestore restores there, after this callback's turn.
        # `_ema_weights_in_model` is the parent's record of which weights the model holds.
        if self._first_epoch:
            self._first_epoch = False
            self._ema_weights_in_model = int(self.model.optimizer.iterations) > 0
        super().on_epoch_begin(epoch, logs)


class InterruptGuard(keras.callbacks.Callback):
    """Makes Ctrl-C stop training even when Python drops its KeyboardInterrupt.

    A KeyboardInterrupt raised while the interpreter runs a garbage-collection callback (JAX
    registers one) is printed as "Exception ignored" and dropped, and training went on to the
    end. While the guard is entered, SIGINT also sets a flag, and the next batch or epoch end
    raises KeyboardInterrupt again. Used as a context manager around `fit`; it changes nothing
    outside the main thread (signals go there only) or where SIGINT is ignored.
    """

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False
        self._previous = None

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: object) -> None:
        self.interrupted = True
        self._previous(signum, frame)

    def _check(self, *args: object, **kwargs: object) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check
