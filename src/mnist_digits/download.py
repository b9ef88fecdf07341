"""`mnist-digits data download`: the explicit fallback for a checkout whose `data/mnist` is gone.

Nothing else in the package touches the network. The files come from the public mirrors, tried
in order; each download is verified twice (the SHA-256 of the `.gz` as published, then the
SHA-256 of its decompressed content, which also proves the gzip is whole) before it is renamed
into place, so an interrupted or corrupt download never leaves a file behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from mnist_digits import data
from mnist_digits.errors import DataError

log = logging.getLogger(__name__)

MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)

# SHA-256 of the original .gz files as the mirrors serve them (published by tensorflow-datasets;
# also in data/mnist/SHA256SUMS).
PUBLISHED_GZ_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

# The largest original file is 9.9 MB; a mirror that sends more is not sending MNIST.
MAX_BYTES = 20 * 1024 * 1024
_CHUNK = 1 << 16


class _Rejected(Exception):
    """A downloaded file failed verification; the message says how."""


def _fetch(url: str, tmp: Path, *, timeout: float) -> str:
    """Streams `url` into `tmp`; returns the SHA-256 of what arrived."""
    digest = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as out:
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > MAX_BYTES:
                raise _Rejected(f"more than {MAX_BYTES} bytes")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _check_content(tmp: Path, name: str) -> None:
    """Decompresses the download and checks the IDX content's pinned SHA-256."""
    digest = hashlib.sha256()
    with gzip.open(tmp, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != data.MNIST_SHA256[name.removesuffix(".gz")]:
        raise _Rejected("decompressed content has the wrong SHA-256")


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"cannot connect ({err.reason})"
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, http.client.IncompleteRead):
        return f"connection closed after {len(err.partial)} bytes"
    if isinstance(err, (EOFError, zlib.error, gzip.BadGzipFile)):
        return f"not a whole gzip file ({err or type(err).__name__})"
    return str(err) or type(err).__name__


def download_file(name: str, dest_dir: Path, *, mirrors: Sequence[str], sha256: str,
                  timeout: float) -> tuple[Path, str]:
    """Downloads one file from the first mirror that gives a verified copy.

    Returns:
        The file's path and the mirror it came from.

    Raises:
        DataError: every mirror failed; the message lists each attempt and why.
    """
    attempts = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            got = _fetch(url, tmp, timeout=timeout)
            if got != sha256:
                raise _Rejected(f"SHA-256 {got[:12]}... is not the published {sha256[:12]}...")
            _check_content(tmp, name)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest_dir / name)
            return dest_dir / name, mirror
        # Any failure means "try the next mirror": HTTP errors, refused connections, timeouts,
        # wrong bytes, broken gzip, a full disk.
        except (OSError, http.client.HTTPException, _Rejected, EOFError, zlib.error) as err:
            attempts.append(f"{url}: {_describe(err)}")
            log.warning("download: %s: %s", url, _describe(err))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    raise DataError(f"could not download {name} (tried {'; '.join(attempts)}); check the "
                    f"network, or copy the four MNIST .gz files into {dest_dir} by hand")


def download_mnist(
    dest_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] = MIRRORS,
    sha256: Mapping[str, str] = PUBLISHED_GZ_SHA256,
    timeout: float = 30.0,
    force: bool = False,
) -> dict[str, str]:
    """Fetches whichever of the four MNIST files are missing or corrupt in `dest_dir`.

    Args:
        dest_dir: target folder; the default data folder if None.
        mirrors: base URLs, tried in order for each file.
        sha256: expected SHA-256 of each `.gz` as served.
        timeout: seconds to wait on a connection or read before moving on.
        force: download even files that already verify.

    Returns:
        file name -> where it came from (`"present"` for a file that already verified).

    Raises:
        DataError: some file could not be fetched from any mirror, or the folder is not
            writable.
    """
    dest = Path(dest_dir) if dest_dir is not None else data.default_data_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create {dest}: {err.strerror}") from None
    if not os.access(dest, os.W_OK):
        raise DataError(f"{dest} is not writable; choose another folder with --dest")
    outcome = {}
    for name in sha256:
        path = dest / name
        if not force and path.exists():
            try:
                data.read_idx_gz(path, expect="labels" if "labels" in name else "images",
                                 sha256=data.MNIST_SHA256[name.removesuffix(".gz")])
                outcome[name] = "present"
                continue
            except DataError as err:
                log.info("download: replacing %s: %s", path, err)
        _, mirror = download_file(name, dest, mirrors=mirrors, sha256=sha256[name],
                                  timeout=timeout)
        outcome[name] = mirror
    return outcome
