"""A bounded load test of `mnist-digits serve`: concurrent clients, good and bad images, loopback.

`run_load_test` starts the real server (`python -m mnist_digits serve`) as a child process on
127.0.0.1, sends a fixed number of requests from several client threads, checks every answer
(each good image read as its digit, each bad one refused with a 4xx, never a 5xx), measures the
server's resident memory before and after, and stops the server. It never runs longer than its
request count allows and contacts nothing but the loopback address.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_digits.cluster.loopback import free_port
from mnist_digits.errors import RunError


@dataclass(frozen=True)
class Sample:
    """One request's upload: its bytes, and the digit expected (None: a 4xx is expected)."""

    name: str
    data: bytes
    digit: int | None


def make_samples(model: Any, good: int, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """User-style images of MNIST test digits that the model reads right in process, and bad
    uploads (text, truncated, empty, a PDF, a decompression bomb header)."""
    from mnist_digits import data
    from mnist_digits.bench import userimages
    from mnist_digits.reading import Reader

    (_, _), (x_test, y_test) = data.load_mnist()
    rng = np.random.default_rng(seed)
    samples = []
    reader = Reader(model)
    for i in rng.permutation(len(x_test)):
        image = userimages.render(x_test[i], int(y_test[i]), rng)
        if reader.read(image.data).digit == image.label:
            samples.append(Sample(f"{i}{image.suffix}", image.data, image.label))
        if len(samples) == good:
            break
    first = samples[0].data
    bad = [Sample("notes.png", b"just text, not an image\n", None),
           Sample("half.png", first[: len(first) // 2], None),
           Sample("empty.png", b"", None),
           Sample("doc.pdf", b"%PDF-1.4\n%%EOF\n", None),
           Sample("bomb.png", png_header_only(100_000, 100_000), None)]
    return samples, bad


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no data: a decompression
    bomb's calling card, which the server must refuse before decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) \
        + chunk(b"IEND", b"")




def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _post(port: int, sample: Sample, timeout: float) -> tuple[int, dict[str, Any]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{sample.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + sample.data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/api/predict", body=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        payload = response.read()
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = {}
        return response.status, parsed
    finally:
        connection.close()


class Server:
    """`mnist-digits serve` in a child process on a free loopback port."""

    def __init__(self, model_path: str | os.PathLike, startup_timeout: float = 120) -> None:
        self.port = free_port()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mnist_digits", "-q", "serve", "--model", str(model_path),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RunError("the server exited at start: "
                               + self.process.stderr.read().decode()[-500:])
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/api/health")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RunError(f"the server did not answer within {startup_timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_load_test(model_path: str | os.PathLike, good: Sequence[Sample], bad: Sequence[Sample],
                  *, requests: int = 2000, clients: int = 8, bad_every: int = 5,
                  timeout: float = 30.0) -> dict[str, Any]:
    """Sends `requests` uploads from `clients` threads; every `bad_every`-th one is bad.

    Returns:
        Counts by status, 5xx count, wrong answers, latency percentiles (ms), throughput
        (requests/s), and the server's RSS (MiB) after a warm-up and after the load.
    """
    plan = [bad[i // bad_every % len(bad)] if i % bad_every == 0 else good[i % len(good)]
            for i in range(requests)]
    with Server(model_path) as server:
        for sample in good[:10]:  # warm-up: first calls trace the model and fill caches
            _post(server.port, sample, timeout)
        rss_before = rss_mb(server.process.pid)
        latencies = np.zeros(requests)
        statuses: list[int] = [0] * requests
        wrong: list[str] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            sample = plan[i]
            start = time.perf_counter()
            try:
                status, body = _post(server.port, sample, timeout)
            except OSError as err:
                status, body = -1, {"error": str(err)}
            latencies[i] = time.perf_counter() - start
            statuses[i] = status
            ok = (status == 200 and body.get("digit") == sample.digit) if sample.digit is not None \
                else 400 <= status < 500
            if not ok:
                with lock:
                    wrong.append(f"{sample.name}: HTTP {status} {str(body)[:120]}")

        # RSS after each tenth of the requests: growth that levels off is the allocator and
        # caches warming up; growth that goes on is a leak.
        checkpoints = {requests * k // 10 for k in range(1, 11)}
        done = [0]
        rss_curve: list[float] = []

        def counted(i: int) -> None:
            one(i)
            with lock:
                done[0] += 1
                if done[0] in checkpoints:
                    rss_curve.append(rss_mb(server.process.pid))

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(counted, range(requests)))
        seconds = time.perf_counter() - start
        rss_after = rss_mb(server.process.pid)
    ms = latencies * 1000
    by_status = Counter(statuses)
    return {
        "requests": requests, "clients": clients,
        "good_requests": sum(s.digit is not None for s in plan),
        "bad_requests": sum(s.digit is None for s in plan),
        "status_counts": {str(k): v for k, v in sorted(by_status.items())},
        "server_errors_5xx": sum(v for k, v in by_status.items() if k >= 500),
        "connection_errors": by_status.get(-1, 0),
        "wrong_answers": len(wrong), "wrong_examples": wrong[:5],
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p95": float(np.percentile(ms, 95)),
        "latency_ms_p99": float(np.percentile(ms, 99)),
        "throughput_rps": requests / seconds, "seconds": seconds,
        "server_rss_mb_before": rss_before, "server_rss_mb_after": rss_after,
        "server_rss_mb_per_tenth": rss_curve,
    }
