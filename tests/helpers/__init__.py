"""What several test modules share. Product modules hold no test fixtures; these do."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy.ndimage

# A PNG whose header claims a huge image: the bench's load test sends it too, so it has one
# definition, in the bench package (test tooling, never imported by the product).
from mnist_digits.bench.loadtest import free_port, png_header_only

__all__ = ["free_port", "interrupt_when", "one_line_error", "png_header_only", "random_inner_ink",
           "run_cli", "turned"]

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


def interrupt_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float,
                   settle: float = 0.0) -> str:
    """Sends Ctrl-C (SIGINT) to `proc` once `ready()` holds, and `settle` seconds later; returns
    its stderr. The process is killed if it is still running when this returns or fails."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(settle)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()


def random_inner_ink(n: int, seed: int) -> np.ndarray:
    """n random 28x28 images with ink only 4 or more pixels from the border, where SciPy and
    Keras fill the outside of a turned image alike."""
    x = np.zeros((n, 28, 28, 1), np.float32)
    x[:, 4:24, 4:24] = np.random.default_rng(seed).random((n, 20, 20, 1))
    return x


def turned(x: np.ndarray, degrees: float) -> np.ndarray:
    """x turned counter-clockwise about its centre over a blank border, in SciPy."""
    return scipy.ndimage.rotate(x, degrees, axes=(1, 2), reshape=False, order=1)
