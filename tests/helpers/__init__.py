"""What several test modules share, and nothing else does: the product and its bench hold no
test fixtures, and the tests take none from them."""

from __future__ import annotations

import io
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable

import numpy as np
import scipy.ndimage
from PIL import Image

__all__ = ["free_port", "interrupt_when", "one_line_error", "png", "png_header_only",
           "random_inner_ink", "run_cli", "turned", "wait_for"]


def png(array: np.ndarray) -> bytes:
    """A uint8 array as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_header_only(width: int, height: int) -> bytes:
    """A one-pixel PNG whose header claims width x height pixels: a decompression bomb's
    calling card, refused before anything is decoded."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # The IHDR chunk follows the 8-byte signature: length, b"IHDR", width, height, ..., CRC.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def wait_for(ready: Callable[[], bool], timeout: float, what: str,
             alive: Callable[[], bool] = lambda: True) -> None:
    """Polls `ready()` until it holds; fails after `timeout` seconds, or as soon as `alive()`
    no longer holds (the process that should bring the event about has died)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert alive(), f"gave up waiting for {what}: the process ended"
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {timeout} s"
        time.sleep(0.05)

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


def interrupt_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float) -> str:
    """Sends Ctrl-C (SIGINT) to `proc` once `ready()` holds; returns its stderr. The process is
    killed if it is still running when this returns or fails."""
    try:
        wait_for(ready, timeout, "the moment to interrupt", alive=lambda: proc.poll() is None)
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
