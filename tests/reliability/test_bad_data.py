"""Broken MNIST files: each is refused with one line naming the file and the problem, and random
bytes never get past the parser as anything but valid arrays or the project's own error."""

from __future__ import annotations

import gzip
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_digits import data
from mnist_digits.cli import main
from mnist_digits.errors import DataError

IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"


def rewrite(name: str, change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """A fault: the file's decompressed IDX content changed, then gzipped again."""
    def apply(folder: Path) -> None:
        raw = gzip.decompress((folder / name).read_bytes())
        (folder / name).write_bytes(gzip.compress(change(raw), compresslevel=1))
    return apply


def replace(name: str, content: bytes | None) -> Callable[[Path], None]:
    """A fault: the file's bytes replaced (or the file deleted, for None)."""
    def apply(folder: Path) -> None:
        if content is None:
            (folder / name).unlink()
        else:
            (folder / name).write_bytes(content)
    return apply


def swap_files(folder: Path) -> None:
    images, labels = (folder / IMAGES).read_bytes(), (folder / LABELS).read_bytes()
    (folder / IMAGES).write_bytes(labels)
    (folder / LABELS).write_bytes(images)


def corrupt_middle(folder: Path) -> None:
    raw = bytearray((folder / IMAGES).read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    (folder / IMAGES).write_bytes(bytes(raw))


def truncate_gzip(folder: Path) -> None:
    raw = (folder / IMAGES).read_bytes()
    (folder / IMAGES).write_bytes(raw[: len(raw) // 3])


FAULTS = {
    "images-and-labels-swapped": (swap_files, IMAGES, "images and labels swapped"),
    "wrong-dimensions": (rewrite(IMAGES, lambda r: r[:8] + struct.pack(">II", 32, 32) + r[16:]),
                         IMAGES, "images are 32x32, expected 28x28"),
    "truncated-payload": (rewrite(IMAGES, lambda r: r[:-784]), IMAGES, "truncated payload"),
    "trailing-bytes": (rewrite(LABELS, lambda r: r + b"\x00\x01\x02"), LABELS,
                       "3 trailing bytes"),
    "count-mismatch": (rewrite(LABELS, lambda r: r[:4] + struct.pack(">I", 9999) + r[8:-1]),
                       "t10k-*", "10000 images but 9999 labels"),
    "label-out-of-range": (rewrite(LABELS, lambda r: r[:8] + b"\x0c" + r[9:]), LABELS,
                           "label 12 at index 0 is outside 0..9"),
    "truncated-gzip": (truncate_gzip, IMAGES, "not a valid gzip file"),
    "corrupt-gzip": (corrupt_middle, IMAGES, "not a valid gzip file"),
    "empty-file": (replace(LABELS, b""), LABELS, "file is empty"),
    "missing-file": (replace(LABELS, None), LABELS, "MNIST file not found"),
    "sha256-mismatch": (rewrite(LABELS, lambda r: r[:-1] + bytes([(r[-1] + 1) % 10])), LABELS,
                        "checksum mismatch"),
    "folder-instead-of-file": (lambda f: ((f / LABELS).unlink(), (f / LABELS).mkdir()), LABELS,
                               "is a folder"),
}


@pytest.fixture
def data_copy(tmp_path) -> Path:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in data.MNIST_SHA256:
        shutil.copy(data.default_data_dir() / f"{name}.gz", folder)
    return folder


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_data_file_is_one_clear_error(fault, data_copy, capsys):
    apply, culprit, problem = FAULTS[fault]
    apply(data_copy)
    one_line_error(capsys, main(["data", "verify", "--data-dir", str(data_copy)]), 1,
                   str(data_copy / culprit), problem)
    # Training on it fails the same way, before a run folder gets any model.
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        data.load_mnist(data_copy)


def test_the_vendored_data_verifies(capsys):
    assert main(["data", "verify"]) == 0
    assert "SHA-256 verified" in capsys.readouterr().out


def idx_header(magic: int, dims: list[int]) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096), st.sampled_from(["images", "labels"]))
def test_random_bytes_give_valid_arrays_or_data_error(raw, expect):
    check_parse(raw, expect)


@settings(max_examples=300, deadline=None)
@given(magic=st.sampled_from([0x801, 0x803, 0x802, 0x0803_0000, 0]),
       dims=st.lists(st.integers(0, 40), min_size=0, max_size=4),
       payload=st.binary(max_size=3000), expect=st.sampled_from(["images", "labels"]))
def test_random_headers_give_valid_arrays_or_data_error(magic, dims, payload, expect):
    check_parse(idx_header(magic, dims) + payload, expect)


def check_parse(raw: bytes, expect: str) -> None:
    try:
        array = data.parse_idx(raw, expect=expect, source="fuzz")
    except DataError as err:
        assert "fuzz" in str(err)
        return
    assert array.dtype == np.uint8
    if expect == "images":
        assert array.ndim == 3 and array.shape[1:] == (28, 28)
    else:
        assert array.ndim == 1 and (array.size == 0 or array.max() <= 9)
    assert len(raw) == (16 if expect == "images" else 8) + array.size
