"""Run folders: the only module that knows their layout and file names.

A run lives in `results/<YYYYmmdd-HHMMSS>-<model>[-tag]/` and is never overwritten by another run;
`results/latest` points at the newest. Every file is written to a temporary name in the same
folder and renamed into place, so a crash mid-write leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        raise RunError(f"{path} has no {need}; is it a finished run folder? (`mnist-digits "
                       f"train --resume {path}` finishes an interrupted run)")
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
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
