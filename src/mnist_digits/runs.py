"""Run folders: the only module that knows their layout, file names and what their files hold.

A run lives in `results/<YYYYmmdd-HHMMSS>-<model>[-tag]/` and is never overwritten by another run;
`results/latest` points at the newest. Every file is written to a temporary name in the same
folder and renamed into place, so a crash mid-write leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import importlib.metadata
import io
import json
import math
import os
import platform
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_digits import __version__, backend, data
from mnist_digits.config import TrainConfig
from mnist_digits.errors import RunError

CONFIG = "config.json"
HISTORY = "history.csv"
MODEL = "model.keras"
METRICS = "metrics.json"
ERRORS = "errors.csv"
CURVES_PLOT = "training_curves.png"
CONFUSION_PLOT = "confusion_matrix.png"
MISCLASSIFIED_PLOT = "misclassified.png"
CALIBRATION_PLOT = "calibration.png"
TENSORBOARD = "tensorboard"
BACKUP = "backup"
STATUS = "status.json"

COMPARISON_MD = "comparison.md"
COMPARISON_CSV = "comparison.csv"
COMPARISON_PLOT = "comparison.png"

LATEST = "latest"

# What config.json can describe: a trained model (its TrainConfig) or an ensemble of runs.
TRAINED = "trained"
ENSEMBLE = "ensemble"
# Keras's BackupAndRestore writes this beside its checkpoint; it counts the completed epochs.
_BACKUP_METADATA = "training_metadata.json"

_TAG_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def new_run_dir(results_dir: str | os.PathLike, name: str, tag: str | None = None,
                *, now: datetime.datetime | None = None) -> Path:
    """Creates and returns a fresh run folder `<results_dir>/<YYYYmmdd-HHMMSS>-<name>[-tag]`.

    Two runs started in the same second get `-2`, `-3`, ... suffixes rather than sharing a folder.

    Raises:
        RunError: the tag has characters unsafe in a folder name, or the folder cannot be made.
    """
    if tag is not None and not _TAG_RE.match(tag):
        raise RunError(f"tag {tag!r} may contain only letters, digits, '.', '_' and '-'")
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{name}" + (f"-{tag}" if tag else "")
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = results_dir / (base if n == 1 else f"{base}-{n}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as err:
        raise RunError(f"cannot create a run folder in {results_dir}: {err.strerror}; choose "
                       f"another place with --results-dir") from None
    raise RunError(f"too many runs named {base} in {results_dir}")


def pack_run_dir(run_dir: str | os.PathLike) -> bytes:
    """A finished run folder as one gzipped tar archive, for shipping to another machine.

    The training backup is left out: a finished run no longer needs it.
    """
    run_dir = Path(run_dir)
    buffer = io.BytesIO()
    # Level 1: model.keras is a zip already; the rest (CSV, JSON, PNG) is small.
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for path in sorted(run_dir.rglob("*")):
            relative = path.relative_to(run_dir)
            if relative.parts[0] != BACKUP:
                archive.add(path, arcname=str(relative), recursive=False)
    return buffer.getvalue()


def unpack_run_dir(archive: bytes, results_dir: str | os.PathLike, name: str) -> Path:
    """Writes a `pack_run_dir` archive as the run folder `<results_dir>/<name>` (`-2`, `-3`,
    ... when taken); returns it. The folder appears whole or not at all.

    Raises:
        RunError: the folder cannot be written.
    """
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=results_dir, prefix=f".{name}."))
        try:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                # "data": no absolute paths, links or devices, whatever the sender put in.
                tar.extractall(staging, filter="data")
            staging.chmod(0o777 & ~_umask())
            return move_run_dir(staging, results_dir, name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as err:
        raise RunError(f"cannot write a run folder in {results_dir}: {err.strerror}; choose "
                       f"another place with --results-dir") from None


def move_run_dir(folder: str | os.PathLike, results_dir: str | os.PathLike, name: str) -> Path:
    """Renames a finished run folder to `<results_dir>/<name>` (`-2`, `-3`, ... when taken), on
    the same filesystem, so it appears in one step; returns the new path.

    Raises:
        RunError: a thousand folders of that name exist.
    """
    results_dir = Path(results_dir)
    for n in range(1, 1000):
        target = results_dir / (name if n == 1 else f"{name}-{n}")
        if not target.exists():
            # A rename onto an existing folder fails (or, for an empty one, replaces it): the
            # check above is the common case, the exception the rare race.
            with contextlib.suppress(FileExistsError):
                Path(folder).rename(target)
                return target
    raise RunError(f"too many runs named {name} in {results_dir}")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def point_latest(results_dir: str | os.PathLike, run_dir: str | os.PathLike) -> None:
    """Points `<results_dir>/latest` at `run_dir` (a relative symlink, replaced atomically)."""
    results_dir = Path(results_dir)
    link = results_dir / LATEST
    target = os.path.relpath(Path(run_dir).resolve(), results_dir.resolve())
    tmp = results_dir / f".{LATEST}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        # No symlinks on this file system (some Windows set-ups): record the name instead.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if not link.is_symlink() and not link.is_dir():
            atomic_write_text(link, target + "\n")


def resolve_run_dir(path: str | os.PathLike, *, need: str = MODEL) -> Path:
    """Resolves a run folder given by the user (following `latest`) and checks it holds `need`.

    Raises:
        RunError: the folder or the needed file is missing.
    """
    path = Path(path)
    if path.is_file() and path.name == LATEST:  # the no-symlink fallback of point_latest
        path = path.parent / path.read_text().strip()
    if not path.is_dir():
        raise RunError(f"run folder {path} not found; train one with `mnist-digits train` or "
                       f"pass an existing folder under results/")
    path = path.resolve()
    if need and not (path / need).exists():
        if (path / CONFIG).exists():  # a run that started: it may be finished by resuming
            raise RunError(f"{path} has no {need}; is it a finished run folder? (`mnist-digits "
                           f"train --resume {path}` finishes an interrupted run)")
        raise RunError(f"{path} is not a run folder (it has no {CONFIG}); pass a finished run "
                       f"folder or a .keras file")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    The temporary name keeps `path`'s suffix, because some writers (Keras, matplotlib) choose the
    format from it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes text to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file written by this package.

    Raises:
        RunError: the file is missing or not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path} not found") from None
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is not readable JSON ({err}); the run folder may be damaged") \
            from None


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """Saves a matplotlib figure atomically and closes it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


@dataclasses.dataclass(frozen=True)
class SavedConfig:
    """What a run folder's `config.json` says: the kind of run and what made it.

    Attributes:
        kind: `TRAINED` (a model trained from `config`) or `ENSEMBLE` (an average of runs).
        config: the training config for a trained run; None for an ensemble.
        ensemble: the ensemble's spec (`name`, `members`, `data`) for an ensemble; else None.
        environment: versions and machine details recorded when the run started.
        distribution: how a trained run was spread over devices (`{"kind": "data_parallel",
            "devices": N, "processes": P}`), or None for one device.
        teacher: a distilled run's teacher (`distill.identify`: its name, model file and the
            file's SHA-256), or None.
    """

    kind: str
    config: TrainConfig | None
    ensemble: dict[str, Any] | None
    environment: dict[str, Any]
    distribution: dict[str, Any] | None = None
    teacher: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The model's name in reports: the preset, or the ensemble's name."""
        return self.config.model if self.config else self.ensemble["name"]

    @property
    def split(self) -> dict[str, Any]:
        """The settings that decide the data split (`TrainConfig.split`)."""
        return self.config.split if self.config else self.ensemble["data"]


def write_config(run_dir: str | os.PathLike, *, config: TrainConfig | None = None,
                 ensemble: dict[str, Any] | None = None,
                 distribution: dict[str, Any] | None = None,
                 teacher: dict[str, Any] | None = None) -> None:
    """Writes `config.json` for a trained run (`config`, its `distribution` if it is spread
    over devices and its `teacher` if it is distilled) or an ensemble (`ensemble`).

    Raises:
        RunError: the folder cannot be written.
    """
    body: dict[str, Any] = {"config": config.to_dict()} if config else {"ensemble": ensemble}
    if distribution:
        body["distribution"] = distribution
    if teacher:
        body["teacher"] = teacher
    try:
        write_json(Path(run_dir) / CONFIG, {**body, "environment": environment()})
    except OSError as err:
        raise RunError(f"cannot write to run folder {run_dir}: {err.strerror}; choose "
                       f"another place with --results-dir") from None


def read_config(run_dir: str | os.PathLike) -> SavedConfig:
    """Reads a run folder's `config.json`.

    Raises:
        RunError: the file is missing, unreadable or describes no known kind of run.
        ConfigError: the saved training config is no longer valid.
    """
    path = Path(run_dir) / CONFIG
    saved = read_json(path)
    environment_ = saved.get("environment") or {}
    if isinstance(saved.get("ensemble"), dict):
        return SavedConfig(ENSEMBLE, None, saved["ensemble"], environment_)
    if isinstance(saved.get("config"), dict):
        return SavedConfig(TRAINED, TrainConfig(**saved["config"]), None, environment_,
                           saved.get("distribution"), saved.get("teacher"))
    raise RunError(f"{path} describes neither a training run nor an ensemble; the run folder "
                   f"may be damaged")


def environment() -> dict[str, Any]:
    """Versions and machine details recorded with every run.

    Keras is imported for its own version (a run has it loaded already); the backends'
    versions come from the installed distributions, so no other framework is imported.
    """
    import keras

    name = backend.current()
    return {
        "mnist_digits": __version__,
        "keras": keras.__version__,
        "backend": name,
        name: backend.version(name),
        "numpy": importlib.metadata.version("numpy"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "data": data.data_fingerprint(),
    }


def read_history(run_dir: str | os.PathLike) -> dict[str, list[float]]:
    """Reads a run's `history.csv` into column -> list of floats, one per completed epoch.

    Returns {} when the run has no history (an ensemble, or a run killed before its first epoch).
    """
    path = Path(run_dir) / HISTORY
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            number = float(value) if value not in ("", None) else math.nan
            columns.setdefault(key, []).append(number)
    return columns


def backed_up_epochs(run_dir: str | os.PathLike) -> int:
    """How many epochs the run's training backup holds (0 when there is none)."""
    path = Path(run_dir) / BACKUP / _BACKUP_METADATA
    return int(read_json(path)["epoch"]) if path.exists() else 0


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's `status.json` ({} when there is none)."""
    path = Path(run_dir) / STATUS
    return read_json(path) if path.exists() else {}
