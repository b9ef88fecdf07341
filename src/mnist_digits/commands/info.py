"""`mnist-digits info`: the backend, its devices, the compile cache, the data, the versions."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import sys

from mnist_digits import __version__, backend
from mnist_digits.commands import options
from mnist_digits.commands.data import verified_data
from mnist_digits.errors import MnistDigitsError


def add_parser(sub) -> None:
    p = options.command(
        sub, "info", "the backend, its devices, the compile cache, the data, the versions",
        "Prints the Keras backend and its version, the devices it sees (GPU names included), "
        "JAX's compile cache, the MNIST data check and the versions that matter. Exits 1 if the "
        "data check fails.",
        ["info", "--backend jax info"])
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import keras

    name = backend.current()
    print(f"mnist-digits {__version__}")
    print(f"backend: {name} {backend.version(name)} (Keras {keras.__version__})")
    print("devices: " + ", ".join(backend.devices()))
    print(f"precision auto: {backend.precision('auto')} (bfloat16 units on the CPU: "
          f"{'yes' if backend.cpu_has_bfloat16() else 'no'})")
    cache = backend.compile_cache_dir()
    if name != "jax":
        print("compile cache: not used (JAX only)")
    elif cache is None:
        print("compile cache: off")
    else:
        files = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
        size = sum(p.stat().st_size for p in files) / 2**20
        print(f"compile cache: {cache} ({len(files)} files, {size:.1f} MiB)")
    status = 0
    try:
        print(f"data: {verified_data()}")
    except MnistDigitsError as err:
        print(f"data: {err}")
        status = 1
    versions = {"python": sys.version.split()[0]}
    versions.update({b: backend.version(b) for b in backend.BACKENDS})
    for dist in ("numpy", "scipy", "pillow", "fastapi", "ray"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    print("versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items()))
    return status
