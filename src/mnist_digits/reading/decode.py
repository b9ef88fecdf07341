"""Any source -> a decoded image, safely: files, bytes, PIL images and NumPy arrays.

Decoding is where untrusted input meets C code, so it is strict: known formats only, a pixel
limit checked from the header before anything is decoded (decompression bombs), the first frame
of an animation, EXIF orientation applied. `to_gray` then turns any mode into luminance, with
transparency composited onto whichever side is paper.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_digits.errors import MnistDigitsError

# Formats a digit image plausibly comes in. PIL opens many more (PSD, EPS, ICO, ...); refusing
# them keeps rarely exercised decoders away from untrusted input.
FORMATS = ("PNG", "JPEG", "MPO", "BMP", "DIB", "GIF", "WEBP", "TIFF")
DEFAULT_MAX_PIXELS = 50_000_000  # a 50-megapixel photo; 4000x3000 is 12

# What `Reader.read` and `mnist_digits.read` take: a file path, file bytes, a decoded PIL image,
# or a NumPy array (H x W or H x W x C; uint8, or float in [0, 1]).
Source = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


class ImageError(MnistDigitsError):
    """An input that is not a readable image of a supported format and size.

    The message is `"<source>: <reason>"`; callers that show the source themselves (a line per
    file) use `reason` alone, so the path is not said twice.

    Attributes:
        reason: what was wrong and what to do, without the source.
        source: the file name or upload the input came from.
        kind: what was wrong, for callers that answer differently (the web API's status codes):
            `missing`, `unreadable`, `empty`, `not_image`, `unsupported`, `too_large`, `corrupt`.
    """

    def __init__(self, source: str | os.PathLike, reason: str, kind: str = "corrupt") -> None:
        super().__init__(f"{source}: {reason}")
        self.source, self.reason, self.kind = str(source), reason, kind


def check_size(source: str, width: int, height: int,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raises ImageError (`too_large`) for an image of more than `max_pixels` pixels."""
    if width * height > max_pixels:
        raise ImageError(source, f"image is {width}x{height} pixels, over the limit of "
                         f"{max_pixels:,}; scale it down first", "too_large")


def open_image(data: bytes, *, source: str = "<bytes>",
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decodes image bytes safely.

    Returns:
        The decoded image (first frame, EXIF orientation applied).

    Raises:
        ImageError: empty, not an image, an unsupported format, more than `max_pixels` pixels,
            or truncated/corrupt.
    """
    if not data:
        raise ImageError(source, "empty file", "empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns, then errors, on huge images; we check the size ourselves, before
            # decoding anything, so both must not fire first with their own wording.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            if fmt not in FORMATS:
                raise ImageError(source, f"unsupported image format {fmt}; use PNG, JPEG, BMP, "
                                 f"GIF, WebP or TIFF", "unsupported")
            check_size(source, *image.size, max_pixels)
            image.seek(0)  # first frame of an animated GIF/WebP/TIFF
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(source, "not an image (or a format that is not supported); use "
                         "PNG, JPEG, BMP, GIF, WebP or TIFF", "not_image") from None
    except Image.DecompressionBombError as err:
        # Pillow's own guard (at twice its default limit) can fire inside Image.open, before
        # our size check sees the header.
        raise ImageError(source, f"image is over the limit of {max_pixels:,} pixels ({err}); "
                         f"scale it down first", "too_large") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(source, f"truncated or corrupt image ({err})") from None
    return image


def to_gray(image: Image.Image) -> np.ndarray:
    """Luminance in [0, 1], float32 `(h, w)`, with transparency composited correctly.

    Transparent pixels become the colour the ink is *not*: a canvas export of black strokes on a
    transparent background becomes black on white, white strokes become white on black.
    """
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit data fills 0..65535; a 32-bit "I" image may hold 8- or 16-bit values.
        top = 65535.0 if mode != "I" or values.max(initial=0) > 255 else 255.0
        return np.clip(values / top, 0, 1).astype(np.float32)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = values.max(initial=0)
        return np.clip(values / (top if top > 1 else 1), 0, 1).astype(np.float32)
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "La"):
        image = image.convert("RGB" if mode != "1" else "L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA")
    has_alpha = image.mode in ("LA", "RGBA")
    values = np.asarray(image, dtype=np.float32) / 255.0
    if values.ndim == 2:
        return values
    color = values[..., :3] if values.shape[-1] >= 3 else values[..., :1]
    gray = color @ np.array([0.299, 0.587, 0.114], np.float32) if color.shape[-1] == 3 \
        else color[..., 0]
    if not has_alpha:
        return gray
    alpha = values[..., -1]
    opaque = alpha > 0.5
    if opaque.all():
        return gray
    background = 0.0 if opaque.any() and paper_is_dark(gray, opaque) else 1.0
    return (gray * alpha + background * (1 - alpha)).astype(np.float32)


KEYED_FADE = 0.15  # rim and cores of opaque marks differing this much: the rim fades to paper


def paper_is_dark(gray: np.ndarray, opaque: np.ndarray) -> bool:
    """Whether the transparent part of an image stands for dark paper, judged by its marks.

    Two kinds of image are transparent around their marks. A canvas export draws strokes in one
    colour and puts their anti-aliasing in the alpha channel: the paper is the colour the marks
    are not (black strokes on white, white strokes on black). A drawing whose paper was keyed
    out (a palette PNG or GIF with white as its transparent colour) keeps its anti-aliased rim
    opaque, in colours that fade from the ink towards the paper: there the paper is the side the
    rim fades to, whatever the ink's own colour. Deciding by all opaque pixels fails there,
    because the near-white rim of thin strokes outnumbers their dark cores, and the strokes
    turned into hollow outlines on black.
    """
    import cv2  # the reading's own dependency; decoding alone does not need it

    distance = cv2.distanceTransform(np.pad(opaque, 1).astype(np.uint8), cv2.DIST_L2, 3)
    distance = distance[1:-1, 1:-1]
    core = float(np.median(gray[opaque & (distance >= 0.5 * float(distance.max()))]))
    rim = float(np.median(gray[opaque & (distance <= 1.5)]))
    if abs(rim - core) > KEYED_FADE:
        return rim < core
    return core >= 0.5


def read_file(path: str | os.PathLike) -> bytes:
    """An image file's bytes.

    Raises:
        ImageError: the file is missing, a folder, or unreadable.
    """
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "no such file", "missing") from None
    except IsADirectoryError:
        raise ImageError(path, "a folder, not an image file", "unreadable") from None
    except PermissionError:
        raise ImageError(path, "permission denied", "unreadable") from None
    except OSError as err:
        raise ImageError(path, f"cannot read ({err.strerror})", "unreadable") from None


def from_array(array: Any, *, source: str = "<array>") -> Image.Image:
    """A NumPy array as an image: H x W (gray), H x W x 1, x 3 (RGB) or x 4 (RGBA).

    uint8 is taken as 0-255; floats must lie in [0, 1]; bool is ink-free white or black.

    Raises:
        ImageError: a shape, dtype or value that is not an image (NaN, out of range).
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) \
            or min(array.shape[:2], default=0) < 1:
        raise ImageError(source, f"an array of shape {array.shape} is not an image; give "
                         "H x W (gray) or H x W x 3/4 (RGB/RGBA)", "not_image")
    check_size(source, array.shape[1], array.shape[0])
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(source, "the array holds NaN or infinite values", "corrupt")
        if array.min() < 0 or array.max() > 1:
            raise ImageError(source, f"float values must lie in [0, 1], found "
                             f"[{array.min():.3g}, {array.max():.3g}]; divide uint8 data by "
                             "255", "corrupt")
        array = np.round(array * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageError(source, f"an array of dtype {array.dtype} is not an image; give uint8 "
                         "(0-255) or float in [0, 1]", "unsupported")
    mode = "L" if array.ndim == 2 else {3: "RGB", 4: "RGBA"}[array.shape[-1]]
    return Image.fromarray(np.ascontiguousarray(array), mode=mode)


def source_name(source: Any) -> str:
    """How a source is named in a reading and in its errors: a path as given, else its kind."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return "<image>"
    return "<array>"


def load(source: Source, *, name: str | None = None) -> Image.Image:
    """Any supported source, decoded (see the module docstring).

    Args:
        source: a path, image file bytes, a PIL image or a NumPy array.
        name: how errors name it (default: `source_name`).

    Raises:
        ImageError: the source is missing, unreadable or not an image; its message is one line.
    """
    name = name or source_name(source)
    if isinstance(source, (str, os.PathLike)):
        return open_image(read_file(source), source=name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return open_image(bytes(source), source=name)
    if isinstance(source, Image.Image):
        width, height = source.size
        check_size(name, width, height)
        if width * height == 0:
            raise ImageError(name, "the image has no pixels", "empty")
        # As a file is read: a photo whose EXIF says it was taken turned is turned upright.
        return ImageOps.exif_transpose(source)
    if isinstance(source, np.ndarray):
        return from_array(source, source=name)
    raise ImageError(name, f"cannot read a {type(source).__name__}; give a file path, bytes, a "
                     "PIL image or a NumPy array", "unsupported")
