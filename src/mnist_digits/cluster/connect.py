"""Connecting to Ray: a private instance on this machine, or an existing cluster.

Workers start with the driver's Keras backend and with their framework threads held to the
CPUs each job is given (`parallel.thread_env`), so jobs side by side do not fight over cores.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

from mnist_digits import backend
from mnist_digits.backend import parallel
from mnist_digits.errors import ConfigError, RunError

log = logging.getLogger(__name__)

LOCAL = "ray"  # `--cluster ray`: start a private Ray instance on this machine
INSTALL = "pip install 'mnist-digits[cluster]' (in a checkout: pip install -e '.[cluster]')"
_ADDRESS_RE = re.compile(r"^(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
# Ray resolves a loopback address to the machine's network address unless it believes it runs a
# single-node cluster; this variable (named for Windows and macOS, where that is the default) is
# how to say so. Only set for loopback addresses, which are single-machine clusters anyway.
_LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def check_address(address: str) -> str:
    """Returns `address` if it is `ray`, `HOST:PORT` or `ray://HOST:PORT`.

    Raises:
        ConfigError: anything else.
    """
    if address == LOCAL or _ADDRESS_RE.match(address):
        return address
    raise ConfigError(f"--cluster {address!r}: give 'ray' (a Ray instance on this machine), "
                      f"HOST:PORT (an existing cluster's head) or ray://HOST:PORT (Ray Client)")


def require_ray() -> None:
    """Raises ConfigError, in one line, when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f"--cluster and sweep need Ray, which is not installed; install it "
                          f"with {INSTALL}")


def _is_loopback(address: str) -> bool:
    host = _ADDRESS_RE.match(address).group(2).strip("[]")
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def worker_env(threads: int) -> dict[str, str]:
    """The environment every worker starts with: this process's backend and settings, and
    `threads` CPU threads per framework."""
    env = {"KERAS_BACKEND": backend.current(), "TF_CPP_MIN_LOG_LEVEL": "2",
           **parallel.thread_env(threads)}
    if backend.COMPILE_CACHE_ENV in os.environ:
        env[backend.COMPILE_CACHE_ENV] = os.environ[backend.COMPILE_CACHE_ENV]
    return env


@contextlib.contextmanager
def connect(address: str, *, env: dict[str, str] | None) -> Iterator[Any]:
    """Connects to Ray for the duration of the block; yields the `ray` module.

    Args:
        address: `ray` starts a private instance on this machine (stopped at the end);
            `HOST:PORT` or `ray://HOST:PORT` joins an existing cluster.
        env: environment every worker starts with (`worker_env`), or None when the tasks set
            it themselves.

    Raises:
        ConfigError: Ray is not installed, or the address is malformed.
        RunError: the cluster cannot be reached.
    """
    check_address(address)
    require_ray()
    # No usage reports: nothing here phones home, and many clusters cannot reach the internet.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == LOCAL or _is_loopback(address):
        os.environ.setdefault(_LOOPBACK_ONLY_ENV, "0")
    import ray

    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if env:
        options["runtime_env"] = {"env_vars": env}
    try:
        if address == LOCAL:
            # The private instance has token authentication on, as it should; Ray's notice
            # saying so is for people running clusters, not for this command's user.
            logging.getLogger("ray._private.authentication.authentication_token_setup"
                              ).setLevel(logging.ERROR)
            ray.init(include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"cannot reach the Ray cluster at {address}: {first}; start it with "
                       f"`ray start --head` there, or use --cluster ray") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_fits(ray: Any, cpus: float, gpus: float) -> None:
    """Raises ConfigError when no live node has `cpus` CPUs and `gpus` GPUs: such jobs would
    wait forever."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        largest = max((n.get("CPU", 0), n.get("GPU", 0)) for n in nodes)
        raise ConfigError(f"no node of the cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s) "
                          f"for one job (the largest has {largest[0]:g} and {largest[1]:g}); "
                          f"lower --cpus-per-job / --gpus-per-job")


def slots(ray: Any, cpus: float, gpus: float) -> int:
    """How many such jobs the live nodes can run at once."""
    total = 0
    for node in (n["Resources"] for n in ray.nodes() if n.get("Alive")):
        by_cpu = int(node.get("CPU", 0) // cpus) if cpus else 10**6
        by_gpu = int(node.get("GPU", 0) // gpus) if gpus else 10**6
        total += min(by_cpu, by_gpu)
    return total
