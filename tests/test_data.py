"""The MNIST loader: strict IDX parsing, checksums, splits."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest

from mnist_digits import data
from mnist_digits.errors import DataError


def idx_images(n: int = 3, rows: int = 28, cols: int = 28, magic: int = 0x803) -> bytes:
    pixels = (np.arange(n * rows * cols) % 256).astype(np.uint8)
    return struct.pack(">IIII", magic, n, rows, cols) + pixels.tobytes()


def idx_labels(labels=(0, 5, 9), magic: int = 0x801) -> bytes:
    return struct.pack(">II", magic, len(labels)) + bytes(labels)


def test_parse_good_images_and_labels():
    images = data.parse_idx(idx_images(3), expect="images")
    labels = data.parse_idx(idx_labels((0, 5, 9)), expect="labels")
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    assert images[0, 0, 5] == 5
    assert labels.tolist() == [0, 5, 9] and labels.dtype == np.uint8


@pytest.mark.parametrize(
    ("raw", "expect", "message"),
    [
        (idx_labels(), "images", "images and labels swapped"),
        (idx_images(), "labels", "images and labels swapped"),
        (b"\x00\x00\x08\x07" + bytes(40), "images", "bad IDX magic"),
        (idx_images(rows=32), "images", "expected 28x28"),
        (idx_images()[:-1], "images", "truncated payload"),
        (idx_images() + b"\x00\x00", "images", "2 trailing bytes"),
        (idx_labels()[:6], "labels", "truncated IDX header"),
        (idx_labels((1, 10, 2)), "labels", "label 10 at index 1 is outside 0..9"),
        (b"", "labels", "too short"),
    ],
)
def test_parse_rejects_bad_idx_with_file_name(raw, expect, message):
    with pytest.raises(DataError, match=message) as info:
        data.parse_idx(raw, expect=expect, source="some/file-ubyte")
    assert "some/file-ubyte" in str(info.value)


def write_gz(path, raw: bytes) -> str:
    path.write_bytes(gzip.compress(raw))
    return hashlib.sha256(raw).hexdigest()


def test_read_idx_gz_verifies_checksum(tmp_path):
    path = tmp_path / "labels.gz"
    good = write_gz(path, idx_labels())
    assert data.read_idx_gz(path, expect="labels", sha256=good).tolist() == [0, 5, 9]
    with pytest.raises(DataError, match="checksum mismatch") as info:
        data.read_idx_gz(path, expect="labels", sha256="0" * 64)
    assert str(path) in str(info.value) and good in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "empty"),
        (b"this is not gzip", "not a valid gzip"),
        (gzip.compress(idx_labels())[:-12], "not a valid gzip"),
    ],
    ids=["missing", "empty", "not-gzip", "truncated-gzip"],
)
def test_read_idx_gz_rejects_broken_files(tmp_path, content, message):
    path = tmp_path / "labels.gz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        data.read_idx_gz(path, expect="labels")
    assert str(path) in str(info.value)


def test_count_mismatch_is_reported():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        data.check_counts(np.zeros((3, 28, 28)), np.zeros(2), source="x")


def test_load_mnist_real_data_matches_published_counts():
    (x_train, y_train), (x_test, y_test) = data.load_mnist()
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    # Class counts published with the data set (data/mnist/README.md).
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                             5851, 5949]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                            1009]


def test_load_mnist_rejects_a_tampered_copy(tmp_path):
    import shutil

    for name in data.MNIST_SHA256:
        shutil.copy(data.default_data_dir() / f"{name}.gz", tmp_path)
    raw = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    tampered = raw[:-1] + bytes([(raw[-1] + 1) % 10])  # still valid IDX, different content
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(tampered))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch"):
        data.load_mnist(tmp_path)


def test_default_split_sizes_and_normalization():
    splits = data.make_splits(*data.load_mnist())
    assert len(splits.x_train) == 50000 and len(splits.x_val) == 10000
    assert len(splits.x_test) == 10000
    assert splits.x_train.shape[1:] == (28, 28, 1) and splits.x_train.dtype == np.float32
    assert splits.x_train.min() == 0.0 and splits.x_train.max() == 1.0
    assert splits.y_train.shape == (50000, 10)
    np.testing.assert_array_equal(splits.y_train.sum(axis=1), 1.0)


def test_split_is_disjoint_and_covers_training_set():
    n = 1000
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    ids = np.arange(n)
    images[:, 0, 0], images[:, 0, 1] = ids // 256, ids % 256  # each image carries its index
    labels = (ids % 10).astype(np.uint8)
    splits = data.make_splits((images, labels), (images[:10], labels[:10]), val_size=300)

    def ids_of(x):
        pixels = np.rint(x[:, 0, :2, 0] * 255).astype(int)
        return set(pixels[:, 0] * 256 + pixels[:, 1])

    train_ids, val_ids = ids_of(splits.x_train), ids_of(splits.x_val)
    assert len(train_ids) == 700 and len(val_ids) == 300
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(range(n))
    assert splits.y_val.argmax(axis=1).tolist() == labels[700:].tolist()


@pytest.mark.parametrize("val_size", [0, 1000, -5])
def test_invalid_validation_size(val_size):
    images, labels = np.zeros((1000, 28, 28), np.uint8), np.zeros(1000, np.uint8)
    with pytest.raises(DataError, match="val_size"):
        data.make_splits((images, labels), (images, labels), val_size=val_size)
