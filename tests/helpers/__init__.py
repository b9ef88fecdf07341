"""What several test modules share. Product modules hold no test fixtures; these do."""

from __future__ import annotations

import subprocess
import sys

# A PNG whose header claims a huge image: the bench's load test sends it too, so it has one
# definition, in the bench package (test tooling, never imported by the product).
from mnist_digits.bench.loadtest import free_port, png_header_only

__all__ = ["free_port", "one_line_error", "png_header_only", "run_cli"]

ERROR_PREFIX = "mnist-digits"


def one_line_error(capsys, code: int, expected_code: int, *fragments: str) -> str:
    """Checks a CLI failure: the exit code, and one line `mnist-digits COMMAND: error: ...` on
    stderr holding every fragment. Returns the line.

    `capsys` is pytest's fixture (after an in-process `main`), or a finished
    `subprocess.CompletedProcess` (a real process, where a traceback or a library's start-up
    noise would show).
    """
    if isinstance(capsys, subprocess.CompletedProcess):
        err = capsys.stderr
    else:
        err = capsys.readouterr().err
    assert code == expected_code, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX) and ": error: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def run_cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`mnist-digits ARGS...` in a child process, as a user runs it; output captured as text."""
    return subprocess.run([sys.executable, "-m", "mnist_digits", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)
