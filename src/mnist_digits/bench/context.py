"""What every bench section shares: `Context` (options, work folder, the model under test), the
`Section` record, and the machine description written at the top of each result."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables set for the block (and the processes started inside it)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def machine() -> dict[str, Any]:
    """CPU model, core count and library versions."""
    import keras

    from mnist_digits.backend import version

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    backend = keras.backend.backend()
    return {"host": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "backend": backend,
            backend: version(backend), "keras": keras.__version__,
            "numpy": np.__version__}


@dataclasses.dataclass
class Context:
    """The options and the model every section gets.

    Sections share nothing else: each computes what it needs, so any one can run alone
    (`bench --only NAME`) and give the figures it gives in a full run.

    `model_path` is `--model`; if None, the packaged reading model is measured, which is what
    `predict` and `serve` use by default.
    """

    quick: bool
    work_dir: Path
    model_path: str | None = None
    _model: Any = None

    def model(self) -> tuple[Any, str]:
        """The model under test (loaded once) and its path."""
        from mnist_digits import predict, pretrained

        if self._model is None:
            self._model = predict.load_model(self.model_path)
        return self._model, self.model_path or str(pretrained.model_path())


@dataclasses.dataclass(frozen=True)
class Section:
    """One bench section.

    Attributes:
        name: its name for `--only` and in the result file.
        measure: runs it; returns a JSON-ready dict.
        markdown: that dict as Markdown lines (a `##` heading, tables, a blank line).
        figures: optional; that dict as matplotlib figures, by file-name suffix.
    """

    name: str
    measure: Callable[[Context], dict[str, Any]]
    markdown: Callable[[dict[str, Any]], list[str]]
    figures: Callable[[dict[str, Any]], dict[str, Any]] | None = None
