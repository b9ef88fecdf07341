"""MNIST loading: strict IDX parsing, checksums, the train/validation/test split.

The four original IDX files are vendored gzipped in `data/mnist/`, and installed with the package
(`mnist_digits/mnist_data`, a link to that folder in a checkout, a copy in the wheel), so
training works offline wherever the package is installed. Their SHA-256 is pinned here
(of the *decompressed* content, so recompressing the files does not break verification) rather
than read from a file next to the data: a copy pointed to with `--data-dir` cannot vouch for
itself.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from mnist_digits.errors import DataError

# The one place that says what an example is: the other modules take these from here.
NUM_CLASSES = 10
IMAGE_SIZE = 28
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # what models take: height, width, one channel

# name -> SHA-256 of the decompressed IDX bytes (from data/mnist/SHA256SUMS).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), and the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

_RESTORE_HINT = (
    "restore it with `git checkout -- data/mnist` (or reinstall mnist-digits) or "
    "`mnist-digits data download`, or point --data-dir at a good copy"
)


def default_data_dir() -> Path:
    """Returns where the MNIST files are looked for when no folder is given.

    `MNIST_DIGITS_DATA_DIR` wins; otherwise the copy installed with the package: in a source
    checkout that is the repository's `data/mnist/` (the package's `mnist_data` links there),
    from any working directory.
    """
    env = os.environ.get("MNIST_DIGITS_DATA_DIR")
    if env:
        return Path(env)
    return (Path(__file__).parent / "mnist_data").resolve()


def parse_idx(raw: bytes, *, expect: str, source: str = "<bytes>") -> np.ndarray:
    """Parses IDX bytes strictly.

    Args:
        raw: the decompressed IDX content.
        expect: `"images"` (3-D, 28x28) or `"labels"` (1-D, values 0..9).
        source: the file name, used in error messages.

    Returns:
        A uint8 array: `(n, 28, 28)` for images, `(n,)` for labels.

    Raises:
        DataError: for a wrong magic number, wrong dimensions, a length that does not match the
            header exactly, or a label outside 0..9.
    """
    if expect not in ("images", "labels"):
        raise ValueError(f"expect must be 'images' or 'labels', got {expect!r}")
    want_magic, other_magic, ndim = (
        (IMAGES_MAGIC, LABELS_MAGIC, 3) if expect == "images" else (LABELS_MAGIC, IMAGES_MAGIC, 1)
    )
    if len(raw) < 4:
        raise DataError(f"{source}: file is {len(raw)} bytes, too short for an IDX header; "
                        f"{_RESTORE_HINT}")
    magic = int.from_bytes(raw[:4], "big")
    if magic != want_magic:
        hint = (f" (that is the magic of an IDX {'labels' if expect == 'images' else 'images'} "
                f"file: are images and labels swapped?)") if magic == other_magic else ""
        raise DataError(f"{source}: bad IDX magic number 0x{magic:08x}, expected "
                        f"0x{want_magic:08x} for {expect}{hint}; {_RESTORE_HINT}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{source}: truncated IDX header ({len(raw)} of {header_len} bytes); "
                        f"{_RESTORE_HINT}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if expect == "images" and dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{source}: images are {dims[1]}x{dims[2]}, expected "
                        f"{IMAGE_SIZE}x{IMAGE_SIZE}; {_RESTORE_HINT}")
    payload = len(raw) - header_len
    expected_payload = int(np.prod(dims, dtype=np.int64))
    if payload < expected_payload:
        raise DataError(f"{source}: truncated payload: header promises {expected_payload} bytes "
                        f"for shape {dims}, file has {payload}; {_RESTORE_HINT}")
    if payload > expected_payload:
        raise DataError(f"{source}: {payload - expected_payload} trailing bytes after the "
                        f"{expected_payload}-byte payload for shape {dims}; {_RESTORE_HINT}")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)
    if expect == "labels" and array.size and int(array.max()) >= NUM_CLASSES:
        bad = int(np.argmax(array >= NUM_CLASSES))
        raise DataError(f"{source}: label {int(array[bad])} at index {bad} is outside 0..9; "
                        f"{_RESTORE_HINT}")
    return array


def read_gz(path: str | os.PathLike) -> bytes:
    """The decompressed content of a gzipped file.

    Raises:
        DataError: the file is missing, a folder, unreadable, empty or not valid gzip.
    """
    path = Path(path)
    try:
        compressed = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: MNIST file not found; {_RESTORE_HINT}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a gzipped IDX file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied; check the file's permissions") from None
    if not compressed:
        raise DataError(f"{path}: file is empty; {_RESTORE_HINT}")
    try:
        return gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as err:
        # gzip raises BadGzipFile (an OSError) for a bad header, EOFError for a truncated stream
        # and zlib.error for corrupt deflate data.
        raise DataError(f"{path}: not a valid gzip file ({err}); {_RESTORE_HINT}") from None


def check_sha256(raw: bytes, sha256: str, *, source: str) -> None:
    """Raises DataError unless `raw` has the given SHA-256."""
    actual = hashlib.sha256(raw).hexdigest()
    if actual != sha256:
        raise DataError(f"{source}: checksum mismatch: expected SHA-256 {sha256}, got "
                        f"{actual}; {_RESTORE_HINT}")


def read_idx_gz(path: str | os.PathLike, *, expect: str, sha256: str | None = None) -> \
        np.ndarray:
    """Reads a gzipped IDX file, parses it and verifies its checksum.

    Args:
        path: the `.gz` file.
        expect: `"images"` or `"labels"`, see `parse_idx`.
        sha256: the expected SHA-256 of the decompressed content, or None to skip the check.

    Returns:
        The parsed uint8 array, see `parse_idx`.

    Raises:
        DataError: the file is missing, empty, not valid gzip, not valid IDX or fails the
            checksum.
    """
    raw = read_gz(path)
    # Structure first, so a damaged file gets a specific diagnosis ("truncated payload") rather
    # than a bare checksum mismatch; the checksum then catches any change that still parses.
    array = parse_idx(raw, expect=expect, source=str(path))
    if sha256 is not None:
        check_sha256(raw, sha256, source=str(path))
    return array


def load_mnist(
    data_dir: str | os.PathLike | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads the original MNIST training and test sets, verified.

    Each file is checked in order of diagnosis: readable gzip, valid IDX, one label per image,
    then the pinned SHA-256 of its content.

    Args:
        data_dir: folder holding the four `*-ubyte.gz` files; `default_data_dir()` if None.

    Returns:
        `((x_train, y_train), (x_test, y_test))`:
        - `x_train`: uint8 `(60000, 28, 28)`, values 0..255, white digit on black;
        - `y_train`: uint8 `(60000,)`, values 0..9;
        - `x_test`: uint8 `(10000, 28, 28)`; `y_test`: uint8 `(10000,)`.

    Raises:
        DataError: any file is missing, corrupt or fails its checksum, or image and label
            counts differ.
    """
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    arrays, contents = [], []
    for prefix in ("train", "t10k"):
        pair = []
        for kind, ndim in (("images", 3), ("labels", 1)):
            name = f"{prefix}-{kind}-idx{ndim}-ubyte"
            path = folder / f"{name}.gz"
            raw = read_gz(path)
            pair.append(parse_idx(raw, expect=kind, source=str(path)))
            contents.append((raw, name, path))
        check_counts(*pair, source=str(folder / f"{prefix}-*"))
        arrays.append(tuple(pair))
    for raw, name, path in contents:
        check_sha256(raw, MNIST_SHA256[name], source=str(path))
    return arrays[0], arrays[1]


def check_counts(images: np.ndarray, labels: np.ndarray, *, source: str) -> None:
    """Raises DataError unless there is exactly one label per image."""
    if len(images) != len(labels):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels; the image and "
                        f"label files do not belong together; {_RESTORE_HINT}")


@dataclasses.dataclass(frozen=True)
class Splits:
    """MNIST ready for training.

    Images are float32 `(n, 28, 28, 1)` in [0, 1]; labels are one-hot float32 `(n, 10)`.
    The validation set is the *last* `val_size` training images, so it is the same for every
    seed and every model (the classic 50,000/10,000 split); the test set is the official 10,000.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def test_labels(self) -> np.ndarray:
        """Integer test labels, int64 `(n,)`."""
        return self.y_test.argmax(axis=1)


def normalize_images(images: np.ndarray) -> np.ndarray:
    """uint8 `(n, 28, 28)` in 0..255 -> float32 `(n, 28, 28, 1)` in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels `(n,)` -> float32 one-hot `(n, num_classes)`."""
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def make_splits(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    val_size: int = 10_000,
    limit: int | None = None,
) -> Splits:
    """Splits the training set into train and validation, and normalizes everything.

    Args:
        train: `(images, labels)` uint8, as returned by `load_mnist`.
        test: `(images, labels)` uint8.
        val_size: how many of the last training images to hold out for validation (model
            selection and early stopping). The test set is never used for either.
        limit: if set, keep only the first `limit` images of each of train, validation and test
            (for smoke tests and quick experiments).

    Returns:
        The normalized `Splits`.

    Raises:
        DataError: `val_size` is not between 1 and the number of training images minus 1.
    """
    x, y = train
    if not 0 < val_size < len(x):
        raise DataError(f"val_size must be between 1 and {len(x) - 1}, got {val_size}")
    parts = {
        "train": (x[:-val_size], y[:-val_size]),
        "val": (x[-val_size:], y[-val_size:]),
        "test": test,
    }
    if limit is not None:
        parts = {k: (a[:limit], b[:limit]) for k, (a, b) in parts.items()}
    out = {}
    for key, (images, labels) in parts.items():
        out[f"x_{key}"] = normalize_images(images)
        out[f"y_{key}"] = one_hot(labels)
    return Splits(**out)


def data_fingerprint() -> str:
    """A short identifier of the data every run uses.

    The loader refuses anything but the pinned content, so the pinned hashes identify it exactly.
    """
    digest = hashlib.sha256("".join(sorted(MNIST_SHA256.values())).encode()).hexdigest()
    return f"mnist-sha256:{digest[:16]}"


def load_splits(data_dir: str | os.PathLike | None = None, *, val_size: int = 10_000,
                limit: int | None = None) -> Splits:
    """`make_splits` of the MNIST files in `data_dir` (the vendored copy if None).

    The keyword names are those of `TrainConfig.split`, so `load_splits(**config.split)` works.
    """
    return make_splits(*load_mnist(data_dir), val_size=val_size, limit=limit)
