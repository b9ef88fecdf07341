"""A real multi-node Ray cluster on this machine's loopback interface, to try the cluster
commands on one machine (the tests and the bench's `cluster` section use it): a head and
worker nodes, each started with `ray start` in its own temporary folder, no dashboard, no usage
reports, stopped (and its folders removed) at the end.

Each node is its own set of processes (GCS or raylet, object store, workers), as on separate
machines; `kill_node` SIGKILLs every process of one node, as when a machine dies.

Ray turns a loopback address into the machine's network address; the head keeps 127.0.0.1 by
being told it is a single-machine cluster (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`), and a worker,
which `ray start` refuses to start under that setting, by running `ray start` with the
loopback-to-network translation turned off. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `ray start`, with 127.0.0.1 kept as 127.0.0.1 (for a worker node; see the module's docstring).
_RAY_START = ("import sys\n"
              "import ray._private.services as services\n"
              "services.resolve_ip_for_localhost = lambda host: host\n"
              "from ray.scripts.scripts import main\n"
              "sys.argv = ['ray', *sys.argv[1:]]\n"
              "main()\n")
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_IMPORT_WARNING": "1"}


class LoopbackRayCluster:
    """`nodes` Ray nodes of `cpus` CPUs each on 127.0.0.1; a context manager.

    Attributes:
        address: the head's `HOST:PORT`, for `--cluster`.
    """

    def __init__(self, nodes: int = 2, cpus: int = 1, *, timeout: float = 120) -> None:
        self.nodes, self.cpus, self.timeout = nodes, cpus, timeout
        self.root = Path(tempfile.mkdtemp(prefix="mnist-digits-ray-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.node_dirs: list[Path] = []
        # Token authentication, with a token of its own: every node and driver is given it.
        self._auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

    def __enter__(self) -> LoopbackRayCluster:
        try:
            self._start_node(head=True)
            for _ in range(self.nodes - 1):
                self._start_node(head=False)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def driver_env(self) -> dict[str, str]:
        """What a driver of this cluster needs in its environment: its token, loopback kept as
        loopback, no usage reports."""
        return {**_QUIET, **self._auth, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

    def env(self) -> dict[str, str]:
        """This process's environment with `driver_env`, for a driver started from here."""
        return {**os.environ, **self.driver_env()}

    def _start_node(self, *, head: bool) -> None:
        # Short paths: Ray's socket paths must fit in 107 bytes.
        folder = Path(tempfile.mkdtemp(prefix="n", dir=self.root))
        self.node_dirs.append(folder)
        # The node's workers keep their temporary files (a job's scratch run folder) in its
        # own folder, as on a separate machine: `files` finds them there.
        (folder / "tmp").mkdir()
        common = [f"--num-cpus={self.cpus}", "--num-gpus=0", f"--temp-dir={folder}",
                  "--disable-usage-stats"]
        # Ray's fixed default ports (its client server's 10001, the dashboard agent's 52365)
        # are taken from the free ones, so clusters can run side by side on one machine.
        common.append(f"--dashboard-agent-listen-port={free_port()}")
        if head:
            args = ["start", "--head", f"--port={self.port}", "--include-dashboard=false",
                    f"--ray-client-server-port={free_port()}", *common]
            env = self.env()
        else:
            args = ["start", f"--address={self.address}", *common]
            env = {**os.environ, **_QUIET, **self._auth}
        proc = subprocess.run([sys.executable, "-c", _RAY_START, *args],
                              env={**env, "TMPDIR": str(folder / "tmp")},
                              capture_output=True, text=True, timeout=self.timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-2000:]}")

    def node_pids(self, index: int) -> list[int]:
        """The processes of node `index` (0 is the head): those whose command line names its
        folder, and their descendants (workers retitle themselves `ray::...`)."""
        marker = str(self.node_dirs[index]).encode()
        parents: dict[int, int] = {}
        roots = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                pid = int(entry.name)
                # The parent is the 4th field, after "(command)", which may hold spaces.
                parents[pid] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if marker in (entry / "cmdline").read_bytes():
                    roots.add(pid)
        found = set(roots)
        grew = True
        while grew:
            children = {pid for pid, parent in parents.items() if parent in found}
            grew = not children <= found
            found |= children
        return sorted(found)

    def processes_titled(self, index: int, text: str) -> list[int]:
        """Node `index`'s processes whose command line (a worker's title) contains `text`."""
        found = []
        for pid in self.node_pids(index):
            with contextlib.suppress(OSError):
                if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        return found

    def files(self, index: int, pattern: str) -> list[Path]:
        """The files node `index`'s workers made in their temporary folder that match `pattern`
        (a glob: `mnist-digits-job-*/*/history.csv` once a job's training has begun)."""
        return sorted((self.node_dirs[index] / "tmp").glob(pattern))

    def kill_node(self, index: int) -> int:
        """SIGKILLs every process of node `index`, as if its machine died; returns how many."""
        pids = self.node_pids(index)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        """Stops every node (SIGTERM, then SIGKILL after 10 s) and removes the folders."""
        for signum, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = [pid for i in range(len(self.node_dirs)) for pid in self.node_pids(i)]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            deadline = time.monotonic() + wait
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
                time.sleep(0.2)
            if not pids:
                break
        shutil.rmtree(self.root, ignore_errors=True)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    return True
