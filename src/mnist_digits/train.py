"""Training: `train(config, run_dir)` builds the model, fits it with callbacks, then evaluates.

Everything goes through `model.fit` and callbacks, in this order (three of Keras's, five of
`callbacks.py`):
- `EpochTimer` adds each epoch's seconds to its logs;
- `SwapEMAWeights` (when `ema_momentum` is set) swaps the averaged weights in for validation
  and for what the later callbacks see;
- `CSVLogger` writes `history.csv` (appending, so a resumed run keeps its earlier epochs);
- `BestModelSaver` keeps the best-on-validation-loss model as `model.keras` (atomically, with a
  manifest), or the last epoch's with `keep_epoch="last"`;
- `EarlyStopping` (when patience > 0) stops once validation loss stalls;
- `ScalarLogger` writes TensorBoard scalars to `tensorboard/`, on every backend;
- `BackupAndRestore` backs up every epoch to `backup/`, so `--resume` continues an interrupted
  run from its last completed epoch;
- `InterruptGuard`, last, makes a Ctrl-C stop training even where Python would drop it.
A run in mixed bfloat16 (`config.precision`, which `auto` resolves by the hardware before the
config is saved) builds its layers under that Keras dtype policy. A run with a teacher
(`config.teacher`) fits a training model that adds the teacher's loss (`distill`) and
checkpoints the student inside it.
After fitting, the best checkpoint is reloaded (in float32), a temperature is fitted on the
validation set and stored in it (`modelfile.calibrate_saved_model`), and that model is
evaluated, so the figures in `metrics.json` are those of the `model.keras` the run leaves
behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_digits import (
    augment,
    backend,
    data,
    distill,
    evaluate,
    modelfile,
    models,
    outliers,
    runs,
)
from mnist_digits.backend import parallel
from mnist_digits.callbacks import (
    BestModelSaver,
    EpochTimer,
    InterruptGuard,
    ScalarLogger,
    SwapEMAWeights,
)
from mnist_digits.config import TrainConfig
from mnist_digits.errors import ConfigError, RunError

log = logging.getLogger(__name__)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer with its learning-rate schedule, stepped per batch."""
    total = config.epochs * steps_per_epoch
    lr: Any = config.learning_rate
    if config.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total)
    elif config.lr_schedule == "warmup_cosine":
        warmup = round(config.warmup_epochs * steps_per_epoch)
        # CosineDecay warms up linearly from initial_learning_rate to warmup_target, then decays
        # over decay_steps; starting at 0 avoids the large early updates that upset batch norm.
        lr = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(total - warmup, 1), warmup_target=config.learning_rate,
            warmup_steps=warmup)
    # Keras updates the average after every step; SwapEMAWeights (in _fit) puts it in the model.
    ema: dict[str, Any] = {"use_ema": True, "ema_momentum": config.ema_momentum} \
        if config.ema_momentum else {}
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, **ema)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **ema)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **ema)
    return keras.optimizers.RMSprop(lr, **ema)


# A run folder holds model.keras (+ backups) of at most a few MB for the presets, plots, logs.
MIN_FREE_BYTES = 64 * 1024 * 1024


def check_free_space(run_dir: Path, need: int = MIN_FREE_BYTES) -> None:
    """Raises RunError before training if the disk cannot hold a run's files."""
    import shutil

    try:
        free = shutil.disk_usage(run_dir).free
    except OSError as err:
        raise RunError(f"cannot use run folder {run_dir}: {err.strerror}") from None
    if free < need:
        raise RunError(f"only {free / 2**20:.0f} MB free on the disk of {run_dir}; a run needs "
                       f"about {need / 2**20:.0f} MB. Free some space or choose another place "
                       f"with --results-dir")


def _prepare_resume(run_dir: Path, config: TrainConfig) -> None:
    """Checks that `run_dir` can be resumed (with the teacher it began with, if `config` has
    one) and drops history rows of an unfinished epoch.

    The backup is written after history.csv at the end of an epoch, so a kill between the two
    leaves one row more than the backup holds; that epoch is trained again and must not be
    counted twice.
    """
    if runs.read_status(run_dir).get("state") == "done":
        raise RunError(f"{run_dir} finished already; nothing to resume (start a new run with "
                       f"`mnist-digits train`)")
    if config.teacher:
        distill.check_unchanged(runs.read_config(run_dir).teacher, config.teacher)
    completed = runs.backed_up_epochs(run_dir)
    history_path = run_dir / runs.HISTORY
    if history_path.exists():
        lines = history_path.read_text().splitlines(keepends=True)
        if len(lines) > completed + 1:
            runs.atomic_write_text(history_path, "".join(lines[:completed + 1]))
    log.info("resuming %s after %d completed epoch(s)", run_dir, completed)


def with_outliers(config: TrainConfig, x_train: np.ndarray, y_train: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The training set with `config.outliers` of synthetic non-digits added (uniform targets).

    The validation and test sets stay pure MNIST: model selection, calibration and the reported
    accuracy are about digits.
    """
    count = round(config.outliers * len(x_train))
    if count == 0:
        return x_train, y_train
    rng = np.random.default_rng([config.seed, 7919])  # its own stream: weights' seed unchanged
    digits = (np.round(x_train[..., 0] * 255).astype(np.uint8), y_train.argmax(axis=1))
    extra = outliers.make_outliers(count, rng, digits)
    uniform = np.full((count, y_train.shape[1]), 1.0 / y_train.shape[1], np.float32)
    log.info("outlier exposure: %d synthetic non-digits added to %d training images", count,
             len(x_train))
    return np.concatenate([x_train, extra]), np.concatenate([y_train, uniform])


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Layers built inside compute in `name`'s precision (Keras's global dtype policy)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def keras_verbosity() -> int | str:
    """Keras's progress bar on a terminal, one line per epoch otherwise (logs, CI)."""
    return "auto" if sys.stdout.isatty() else 2


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    splits: data.Splits | None = None,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    jit_compile: bool | str | None = None,
    data_parallel: parallel.DataParallelPlan | None = None,
) -> dict[str, Any]:
    """Trains a model as `config` says, in `run_dir`, and writes the full evaluation report.

    Args:
        config: the resolved training config.
        run_dir: an existing, empty folder (see `runs.new_run_dir`), or, with `resume=True`, the
            folder of an interrupted run.
        splits: data to use instead of loading MNIST (tests pass tiny synthetic data).
        resume: continue an interrupted run from its last completed epoch.
        callbacks: extra Keras callbacks, run after the built-in ones.
        jit_compile: Keras's `jit_compile` for the train step; None means the backend's
            measured choice (`backend.jit_compile`). The bench measures the alternatives.
        data_parallel: train over several devices and processes (`parallel.data_parallel`).
            `config.batch_size` is the global batch, split evenly over the devices, so the
            learning rate needs no change; calibration and evaluation run in each process
            on its own, on the whole sets.

    Returns:
        The metrics written to `metrics.json`.

    Raises:
        RunError: the folder is not writable or, when resuming, not an interrupted run.
        DataError: the MNIST files are missing or corrupt.
    """
    run_dir = Path(run_dir)
    # Resolved here, where the run trains, so config.json says what it trained in.
    config = dataclasses.replace(config, precision=backend.precision(config.precision))
    if resume:
        _prepare_resume(run_dir, config)
    else:
        check_free_space(run_dir)
        # Saved before anything else, so even a run that dies at once says what it was.
        runs.write_config(run_dir, config=config,
                          distribution=data_parallel.record() if data_parallel else None,
                          teacher=distill.identify(config.teacher) if config.teacher else None)
    backend.set_random_seed(config.seed)
    if splits is None:
        splits = data.load_splits(**config.split)
    x_train, y_train = with_outliers(config, splits.x_train, splits.y_train)
    x_val, y_val, batch_size = splits.x_val, splits.y_val, config.batch_size
    scope: Any = contextlib.nullcontext()
    if data_parallel:
        (x_train, y_train), (x_val, y_val), batch_size = _shard(
            data_parallel, config.batch_size, (x_train, y_train), (x_val, y_val))
        scope = data_parallel.distribution.scope()
    with scope:
        _fit(config, run_dir, x_train, y_train, x_val, y_val, batch_size, resume=resume,
             callbacks=callbacks, jit_compile=jit_compile)
    runs.write_json(run_dir / runs.STATUS, {"state": "trained"})
    modelfile.calibrate_saved_model(run_dir / runs.MODEL, splits)
    metrics = evaluate.evaluate_run(run_dir, splits=splits)
    runs.write_json(run_dir / runs.STATUS, {"state": "done"})
    return metrics


def _shard(plan: parallel.DataParallelPlan, batch_size: int, *sets: tuple[np.ndarray, np.ndarray]
           ) -> tuple[Any, ...]:
    """This process's share of each (x, y) set, and its share of the global batch.

    Each process feeds every step its own slice of the global batch (Keras joins them), so it
    trains on its own interleaved share of the images, and every share holds a whole number
    of images per device (at most `devices - 1` images a set are left out).

    Raises:
        ConfigError: the batch does not split evenly over the devices.
    """
    if batch_size % plan.devices:
        raise ConfigError(f"--batch-size {batch_size} does not split evenly over "
                          f"{plan.devices} devices; use a multiple of {plan.devices}")
    per_process = plan.devices // plan.processes
    shared = []
    for x, y in sets:
        share = len(x) // plan.devices * per_process
        start = plan.process_index
        shared.append((x[start::plan.processes][:share], y[start::plan.processes][:share]))
    return (*shared, batch_size // plan.processes)


def _fit(config: TrainConfig, run_dir: Path, x_train: np.ndarray, y_train: np.ndarray,
         x_val: np.ndarray, y_val: np.ndarray, batch_size: int, *, resume: bool,
         callbacks: Sequence[keras.callbacks.Callback], jit_compile: bool | str | None) -> None:
    """Builds, compiles and fits the model, with the run folder's callbacks."""
    with dtype_policy(config.precision):
        model, images = augment.augmented(
            models.build_model(config.model, **config.model_options), config.augment,
            seed=config.seed)
    # What trains: the model, or with a teacher the model and the teacher's loss; `model` alone
    # is checkpointed either way.
    trainer = model
    if config.teacher:
        trainer = distill.with_teacher(model, images, distill.load_teacher(config),
                                       weight=config.distill_weight,
                                       temperature=config.distill_temperature)
    fit_data = backend.fit_data(x_train, y_train, (x_val, y_val), batch_size)
    trainer.compile(
        optimizer=make_optimizer(config, fit_data.steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=fit_data.steps_per_execution,
        jit_compile=backend.jit_compile() if jit_compile is None else jit_compile,
    )
    history_path = run_dir / runs.HISTORY
    previous = runs.read_history(run_dir) if resume else {}
    best_so_far = min(previous["val_loss"]) if previous.get("val_loss") else None
    guard = InterruptGuard()
    all_callbacks: list[keras.callbacks.Callback] = [
        EpochTimer(),
        # Swaps the averaged weights in for validation and at each epoch's end, before the
        # checkpoint, backup and early stopping see the model, and leaves them in after the last
        # epoch. Batch-norm statistics stay those of the raw weights, which is close enough once
        # the learning rate has decayed.
        *([SwapEMAWeights()] if config.ema_momentum else []),
        keras.callbacks.CSVLogger(str(history_path), append=resume),
        # On resume the checkpoint must not forget the best loss so far, or the first resumed
        # epoch would overwrite a better model.keras.
        BestModelSaver(run_dir / runs.MODEL, best=best_so_far, model=model,
                       every_epoch=config.keep_epoch == "last"),
        *([keras.callbacks.EarlyStopping(monitor="val_loss",
                                         patience=config.early_stopping_patience,
                                         restore_best_weights=True)]
          if config.early_stopping_patience else []),
        ScalarLogger(run_dir / runs.TENSORBOARD),
        # double_checkpoint keeps the previous backup too, for a kill during the backup itself.
        keras.callbacks.BackupAndRestore(str(run_dir / runs.BACKUP), delete_checkpoint=True,
                                         double_checkpoint=True),
        *callbacks,
        # Last, so an epoch that ends after a Ctrl-C is still logged and backed up.
        guard,
    ]
    runs.write_json(run_dir / runs.STATUS, {"state": "training", "resume_with":
                                            f"mnist-digits train --resume {run_dir}"})
    log.info("training %s (%d trainable parameters) for up to %d epochs in %s", config.model,
             models.count_params(model), config.epochs, run_dir)
    try:
        with guard:
            trainer.fit(
                **fit_data.fit_kwargs,
                epochs=config.epochs,
                callbacks=all_callbacks,
                verbose=keras_verbosity(),
            )
    except KeyboardInterrupt:
        runs.write_json(run_dir / runs.STATUS, {
            "state": "interrupted",
            "message": "training was interrupted; the last completed epoch is backed up",
            "resume_with": f"mnist-digits train --resume {run_dir}"})
        raise
