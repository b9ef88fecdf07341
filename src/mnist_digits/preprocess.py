"""Any image of a digit -> a 28x28 MNIST-style array.

Models trained on MNIST only read digits that look like MNIST digits: white ink on black, the
digit scaled to fit a 20x20 box keeping its aspect ratio, its centre of mass at the centre of the
28x28 frame, strokes about an eighth of the box thick. Shrinking a whole photo or canvas to 28x28
gives none of that, which is why most demos fail on real handwriting. The steps here:

1. decode safely: known formats only, a pixel limit against decompression bombs, first frame of
   an animation, EXIF orientation applied;
2. to grayscale: transparency composited onto the background the ink is not, 16-bit rescaled,
   CMYK and palettes converted;
3. ink polarity: the paper touches the border, the ink departs most from it; dark ink is
   inverted;
4. background removal: a large-scale morphological opening estimates uneven lighting and is
   subtracted, then contrast is normalized;
5. ink mask by Otsu's threshold; ruled lines and specks much smaller than the digit are dropped;
   too little ink means "no digit";
6. strokes thickened or thinned towards MNIST's stroke width;
7. crop, fit into 20x20 keeping the aspect ratio (area-averaged, so edges are anti-aliased as in
   MNIST), pad to 28x28 and shift the centre of mass to the centre.

`reading` runs these steps for the CLI and the web server alike; the page sends the canvas as
a PNG rather than doing any of this in JavaScript.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from mnist_digits.data import IMAGE_SIZE
from mnist_digits.errors import MnistDigitsError

# Formats a digit image plausibly comes in. PIL opens many more (PSD, EPS, ICO, ...); refusing
# them keeps rarely exercised decoders away from untrusted input.
FORMATS = ("PNG", "JPEG", "MPO", "BMP", "DIB", "GIF", "WEBP", "TIFF")
DEFAULT_MAX_PIXELS = 50_000_000  # a 50-megapixel photo; 4000x3000 is 12
ANALYSIS_SIZE = 1024  # larger images are area-reduced to this many pixels squared, paper included
BOX = 20  # MNIST's digit box
FRAME = IMAGE_SIZE
CENTRE = 14.0  # MNIST's mean centre of mass, in pixel indices (measured on the test set)
STROKE_RATIO = 0.12  # MNIST's median stroke width / box side, with `stroke_width` below
MIN_CONTRAST = 0.12  # ink must differ from paper by this much of the full range to count
MIN_INK_FRACTION = 0.0005  # less ink than this share of the image is "no digit"
SPECK_RATIO = 0.08  # ink components under this share of the largest one are noise
PAD_RATIO = 0.2  # paper added around the image, as a share of its longer side


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
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(source, f"image is {width}x{height} pixels, over the limit "
                                 f"of {max_pixels:,}; scale it down first", "too_large")
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
    # The visible marks decide the background: dark marks go on white, light marks on black.
    marks_are_dark = not opaque.any() or float(np.median(gray[opaque])) < 0.5
    background = 1.0 if marks_are_dark else 0.0
    return (gray * alpha + background * (1 - alpha)).astype(np.float32)


def _reduce(gray: np.ndarray, longest: int) -> np.ndarray:
    """Area-averages an image down so its longer side is at most `longest`; never enlarges."""
    return gray if max(gray.shape) <= longest else _resize(gray, longest)


AMBIGUOUS_BORDER = 0.2  # the paper's side of the border is uncertain between these shares


def _border(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices, column indices and values of the border pixels (corners may repeat)."""
    h, w = gray.shape
    inner = np.arange(1, h - 1)
    rows = np.concatenate([np.zeros(w, int), np.full(w, h - 1), inner, inner])
    cols = np.concatenate([np.arange(w), np.arange(w), np.zeros(len(inner), int),
                           np.full(len(inner), w - 1)])
    return rows, cols, gray[rows, cols]


def _plane_values(plane: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The plane `a*row + b*col + c` on the grid of `rows` x `cols`, by broadcasting."""
    return plane[0] * rows[:, None] + plane[1] * cols[None, :] + plane[2]


def _border_split(gray: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The border pixels' design matrix and values, a first plane, and the lighter side.

    Returns:
        `(design, values, plane, upper)`: `upper` marks border pixels on the lighter side of an
        Otsu split of the residuals, or is None when the border is all paper (grain and
        lighting only).
    """
    rows, cols, values = _border(gray)
    design = np.column_stack([rows, cols, np.ones(len(rows))]).astype(np.float64)
    values = values.astype(np.float64)
    plane, *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = values - design @ plane
    low, high = np.percentile(residual, [2, 98])
    if high - low < 2 * MIN_CONTRAST:
        return design, values, plane, None
    split = low + _otsu((residual - low) / (high - low)) * (high - low)
    return design, values, plane, residual >= split


def paper_is_ambiguous(gray: np.ndarray) -> bool:
    """Whether ink covers so much of the border that either side could be the paper.

    That happens in tight crops with a thick pen; `reading` then tries both and keeps the
    reading the model is surer of.
    """
    if gray.size < 16:
        return False
    upper = _border_split(gray)[3]
    return upper is not None and AMBIGUOUS_BORDER <= upper.mean() <= 1 - AMBIGUOUS_BORDER


def paper_plane(gray: np.ndarray, paper: str | None = None) -> np.ndarray:
    """The paper's brightness as a plane `a*row + b*col + c`, fitted to the border pixels.

    The border is usually paper, but in a tight crop strokes run into it, and a thick pen can
    cover half of it. So a first plane takes out the lighting gradient, the residuals are split
    in two by Otsu's method, and the plane is fitted again to the paper's side: the side that
    holds most of the border, or the one `paper` names.

    Args:
        gray: luminance in [0, 1].
        paper: `"light"` or `"dark"` to say which side is paper; None decides by the border.

    Returns:
        float64 `(3,)`: a, b, c.
    """
    design, values, plane, upper = _border_split(gray)
    if upper is None:
        return plane
    if paper is None:
        paper = "light" if upper.mean() >= 0.5 else "dark"
    side = upper if paper == "light" else ~upper
    if side.sum() >= 3:
        plane, *_ = np.linalg.lstsq(design[side], values[side], rcond=None)
    return plane


def ink_is_dark(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper.

    The paper is what touches the border. A plane fitted to the border pixels models the
    lighting (a gradient across a photo); the ink is the strongest departure from it, so the
    sign of the most extreme residuals says which way the ink goes. Absolute brightness would
    not do: tinted or dim paper can be darker than mid-grey.
    """
    h, w = gray.shape
    if h * w < 16:  # too few pixels to tell paper from ink: most images are on light paper
        return float(np.median(gray)) > 0.5
    plane = paper_plane(gray)
    residual = (gray - _plane_values(plane, np.arange(h), np.arange(w))).ravel()
    k = max(4, residual.size // 1000)  # the most extreme 0.1%: a thin digit has at least that
    extremes = np.partition(residual, (k, residual.size - k))
    darkest, lightest = -extremes[:k].mean(), extremes[-k:].mean()
    if abs(darkest - lightest) < 1e-3:  # no clear ink either way: fall back on the paper
        return float(np.median(_border(gray)[2])) > 0.5
    return bool(darkest > lightest)


def pad_with_paper(gray: np.ndarray, margin: int, paper: str | None = None) -> np.ndarray:
    """`gray` with `margin` pixels of paper added on every side.

    A tight crop (strokes touching the edges, the digit filling the image) then looks like a
    digit on a sheet: the background estimate no longer mistakes thick strokes for paper, and a
    bar along the edge is not taken for a ruled line. The paper is the border plane (see
    `paper_plane`) carried on outwards, so a lighting gradient continues without a step.
    """
    h, w = gray.shape
    plane = paper_plane(gray, paper) if h * w >= 16 else np.array([0, 0, np.median(gray)])
    out = _plane_values(plane, np.arange(-margin, h + margin), np.arange(-margin, w + margin))
    out = np.clip(out, 0, 1).astype(np.float32)
    out[margin:margin + h, margin:margin + w] = gray
    return out


def ink_map(gray: np.ndarray, dark: bool | None = None) -> np.ndarray:
    """Ink strength in [0, 1] (1 = ink), background removed.

    Dark ink (see `ink_is_dark`, or `dark` when given) is inverted first. Uneven lighting is
    removed by subtracting a grey opening much larger than a stroke, which keeps the slowly
    varying background and drops the thin ink.
    """
    h, w = gray.shape
    if dark is None:
        dark = ink_is_dark(gray)
    ink = 1.0 - gray if dark else gray.copy()
    # Background estimate on a small copy: an opening wider than any stroke, then smoothed.
    small = _reduce(ink, 96)
    size = max(3, min(small.shape) // 4)
    background = ndimage.grey_opening(small, size=(size, size))
    background = ndimage.uniform_filter(background, size=size)
    zoom = (h / small.shape[0], w / small.shape[1])
    background = ndimage.zoom(background, zoom, order=1, grid_mode=True, mode="nearest")
    background = background[:h, :w]
    if background.shape != ink.shape:  # zoom can be a pixel short
        background = np.pad(background, ((0, h - background.shape[0]),
                                         (0, w - background.shape[1])), mode="edge")
    return np.clip(ink - background, 0, 1).astype(np.float32)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1]."""
    hist, edges = np.histogram(values, bins=128, range=(0, 1))
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centres[int(np.argmax(between))])


def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width of a binary mask: twice the distance-to-edge along the ridges."""
    distance = ndimage.distance_transform_edt(mask)
    ridge = (distance == ndimage.maximum_filter(distance, size=3)) & mask
    return 2.0 * float(np.median(distance[ridge])) if ridge.any() else 0.0


def disk(radius: int) -> np.ndarray:
    """A round structuring element (a pen tip) of the given radius, bool."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2 + 0.5


def remove_ruled_lines(ink: np.ndarray, threshold: float,
                       inner: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Ink with ruled or grid lines (thin bands inked edge to edge) painted out.

    A band of rows inked across at least 90% of the image's width (at half the ink threshold:
    printed rules are often fainter than the pen), and at most 2% of its height thick, is a
    rule, not a stroke; it is repainted with the lesser of the rows just above and below it, so
    digit strokes that cross the rule continue and the rule itself disappears. Columns likewise
    (margins, grids). Not a rule: a band as thick as the pen's strokes that is the outermost ink
    on its side with almost no paper beyond it: that is the top bar of a 7 or the foot of a 2
    in a tightly cropped digit. Images under 100 pixels are left alone: there one pixel is
    already a thick band. If nothing but rules would remain, the ink is returned unchanged.

    Args:
        ink: the ink map.
        threshold: the ink threshold.
        inner: `(top, left, bottom, right)` of the original image inside padding added by
            `pad_with_paper`; widths and margins are measured inside it. The whole image if None.
    """
    top, left, bottom, right = inner or (0, 0, *ink.shape)
    out = ink.copy()
    changed = False
    pen = None  # the strokes' width, measured only if a band at the edge needs it
    for axis in (0, 1):
        # Rows of `view` are rows, then columns, of `out`, limited to the original image.
        view = out[top:bottom, left:right] if axis == 0 else out[top:bottom, left:right].T
        n, length = view.shape
        if n < 100 or length < 100:
            continue
        inked = (view > threshold / 2).mean(axis=1) >= 0.9
        has_ink = (view > threshold).any(axis=1)
        band_limit = max(1, int(0.02 * n))
        margin = max(2, int(0.05 * n))
        row = 0
        while row < n:
            if not inked[row]:
                row += 1
                continue
            end = row
            while end < n and inked[end]:
                end += 1
            outermost = (not has_ink[:row].any() and row < margin) or \
                        (not has_ink[end:].any() and n - end < margin)
            if outermost and pen is None:
                pen = stroke_width(ink[top:bottom, left:right] > threshold)
            stroke_like = outermost and end - row >= 0.6 * pen
            if end - row <= band_limit and not stroke_like:
                above = view[row - 1] if row > 0 else np.zeros(length, view.dtype)
                below = view[end] if end < n else np.zeros(length, view.dtype)
                view[row:end] = np.minimum(above, below)
                changed = True
            row = end
    return out if changed and (out > threshold).any() else ink


def digit_mask(ink: np.ndarray, inner: tuple[int, int, int, int] | None = None
               ) -> tuple[np.ndarray, float] | None:
    """The pixels that belong to the digit and the ink threshold, or None if there is no digit.

    Args:
        ink: the ink map.
        inner: `(top, left, bottom, right)` of the image inside the paper added by
            `pad_with_paper`: the ink's statistics are taken there, not over the added paper.
            The whole map if None.

    Raises nothing: blank paper, uniform colour and faint noise all give None.
    """
    top_, left, bottom, right = inner or (0, 0, *ink.shape)
    original = ink[top_:bottom, left:right]
    area = original.size
    top = float(np.percentile(original, 99.9))
    if top < MIN_CONTRAST:
        return None
    threshold = max(_otsu(np.clip(original / top, 0, 1)) * top, MIN_CONTRAST / 2)
    mask = ink > threshold
    if mask.sum() < max(4.0, MIN_INK_FRACTION * area):
        return None
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count > 1:
        areas = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(areas >= SPECK_RATIO * areas.max()) + 1
        mask = np.isin(labels, keep)
    # Ink covering almost all of the image is not a digit on paper (a photo of a wall, noise);
    # a thick pen in a tight crop can cover well over half.
    if mask.sum() > 0.85 * area:
        return None
    return mask, threshold


def digit_ink(ink: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """The digit's ink in [0, 1], cropped to its bounding box, everything else cleared.

    Stroke cores become full-strength ink (pencil, dim photos), and the faint anti-aliased edge
    around the mask is kept, because MNIST digits have one; specks dropped from the mask go, and
    so does paper grain below a floor well under the ink threshold.
    """
    rows, cols = np.nonzero(mask)
    side = max(np.ptp(rows), np.ptp(cols)) + 1
    floor = 0.3 * threshold
    core = max(float(np.percentile(ink[mask], 90)), floor + 1e-6)
    soft = np.clip((ink - floor) / (core - floor), 0, 1)
    support = ndimage.binary_dilation(mask, iterations=max(2, round(0.05 * side)))
    soft = soft * support
    return crop_ink(soft)


def crop_ink(values: np.ndarray) -> np.ndarray:
    """Crops to the box of ink above 0.1: MNIST's 20-pixel box is measured that way (faint
    anti-aliasing may spill past it)."""
    rows, cols = np.nonzero(values > 0.1)
    if not len(rows):
        return values
    return values[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _resize(values: np.ndarray, longest: int, *, sharpen: bool = False) -> np.ndarray:
    """Resizes so the longer side is `longest`, keeping the aspect ratio.

    Area averaging when shrinking gives MNIST-like anti-aliased edges; Lanczos when enlarging
    avoids blocky pixels. With `sharpen`, a tiny source enlarged 2x or more gets its contrast
    stretched: enlarged strokes are soft grey ramps where MNIST's have saturated cores. On 8x8
    MNIST digits this took accuracy from 60% (bilinear) to 81%.
    """
    h, w = values.shape
    scale = longest / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.LANCZOS
    resized = np.asarray(Image.fromarray(values.astype(np.float32), mode="F").resize(size, method))
    if sharpen and scale >= 2:
        resized = (resized - 0.15) / 0.55
    return np.clip(resized, 0, 1)


def normalize_strokes(digit: np.ndarray) -> np.ndarray:
    """Brings clearly too thin or too thick strokes towards MNIST's stroke width.

    Works at four times MNIST's resolution, so a correction can be a fraction of a final pixel.
    Strokes within MNIST's own range of widths are left alone: the models know that range.

    Args:
        digit: cropped ink in [0, 1].

    Returns:
        The corrected ink, cropped again (longer side `4 * BOX`), or `digit` itself.
    """
    work = _resize(digit, 4 * BOX)
    mask = work > 0.5
    if not mask.any():
        return digit
    width = stroke_width(mask)
    target = STROKE_RATIO * 4 * BOX
    # Below MNIST's 10th percentile of width (0.1 of the box): pen on paper, a thin brush.
    if width < 0.7 * target:
        return crop_ink(ndimage.grey_dilation(
            work, footprint=disk(round((0.9 * target - width) / 2))))
    if width > 2.2 * target:
        eroded = ndimage.grey_erosion(work, footprint=disk(round((width - 1.5 * target) / 2)))
        if (eroded > 0.5).sum() > 0.3 * mask.sum():  # never erode a digit away
            return crop_ink(eroded)
    return digit  # untouched: resampling up and down again would only blur it


def mnist_frame(digit: np.ndarray) -> np.ndarray:
    """Fits cropped ink into 20x20 keeping its aspect, and centres it by mass in 28x28."""
    digit = _resize(digit, BOX, sharpen=True)
    h, w = digit.shape
    frame = np.zeros((FRAME, FRAME), np.float32)
    top, left = (FRAME - h) // 2, (FRAME - w) // 2
    frame[top:top + h, left:left + w] = digit
    if frame.sum() <= 0:
        return frame
    cy, cx = ndimage.center_of_mass(frame)
    # Shift by whole pixels as MNIST did, and never push ink out of the frame.
    dy = int(np.clip(round(CENTRE - cy), -top, FRAME - top - h))
    dx = int(np.clip(round(CENTRE - cx), -left, FRAME - left - w))
    frame = np.roll(frame, (dy, dx), axis=(0, 1))
    peak = float(frame.max())
    return (frame / peak if peak > 0 else frame).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class InkAnalysis:
    """An image reduced to its ink, ready to be cut into digits.

    Attributes:
        ink: float32 `(h, w)` ink strength in [0, 1] at analysis resolution, with `margin`
            pixels of added paper on every side.
        mask: bool `(h, w)`, the pixels that are ink (rules and specks removed).
        threshold: the ink threshold `mask` was cut at.
        scale: source pixels per analysis pixel (1 unless the image was reduced).
        margin: the paper added on each side, in analysis pixels.
        source_size: `(width, height)` of the source image.
        paper: `"light"` or `"dark"`: which the paper was taken to be.
        ambiguous: the border did not say clearly which side is paper (see
            `paper_is_ambiguous`); `analyse(image, paper=...)` gives the other reading.
    """

    ink: np.ndarray
    mask: np.ndarray
    threshold: float
    scale: float
    margin: int
    source_size: tuple[int, int]
    paper: str = "light"
    ambiguous: bool = False

    def to_source(self, box: tuple[int, int, int, int]) -> list[int]:
        """An analysis-pixel box `(x0, y0, x1, y1)` (x1, y1 exclusive) in source pixels."""
        width, height = self.source_size
        x0, y0, x1, y1 = ((v - self.margin) * self.scale for v in box)
        return [int(np.clip(np.floor(x0), 0, width)), int(np.clip(np.floor(y0), 0, height)),
                int(np.clip(np.ceil(x1), 0, width)), int(np.clip(np.ceil(y1), 0, height))]


def paper_margin(height: int, width: int) -> int:
    """How much paper `analyse` adds on each side: a share of the longer side, but never more
    than three times that share of the shorter one (a long strip of digits needs no more paper
    than its height calls for)."""
    return max(2, round(PAD_RATIO * min(max(height, width), 3 * min(height, width))))


def analyse(image: Image.Image, paper: str | None = None) -> InkAnalysis | None:
    """Steps 2-5 of the module docstring: a decoded image -> its ink; None if there is none.

    Args:
        image: the decoded image.
        paper: `"light"` or `"dark"` to force which side is paper; None decides (see
            `ink_is_dark`).
    """
    gray = to_gray(image)
    # The analysis, paper included, costs its pixels: at most ANALYSIS_SIZE squared of them.
    height, width = gray.shape
    margin = paper_margin(height, width)
    scale = ANALYSIS_SIZE / np.sqrt((height + 2 * margin) * (width + 2 * margin))
    reduced = _reduce(gray, max(1, round(max(height, width) * scale)))
    h, w = reduced.shape
    ambiguous = paper is None and paper_is_ambiguous(reduced)
    if paper is None:
        paper = "dark" if h * w >= 16 and not ink_is_dark(reduced) else "light"
    margin = paper_margin(h, w)
    ink = ink_map(pad_with_paper(reduced, margin, paper), dark=paper == "light")
    inner = (margin, margin, margin + h, margin + w)
    found = digit_mask(ink, inner)
    if found is None:
        return None
    cleaned = remove_ruled_lines(ink, found[1], inner=inner)
    if cleaned is not ink:
        ink = cleaned
        found = digit_mask(ink, inner)
        if found is None:
            return None
    return InkAnalysis(ink, found[0], found[1], gray.shape[1] / w, margin,
                       (gray.shape[1], gray.shape[0]), paper, ambiguous)


def frame_region(ink: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """The 28x28 MNIST-style frame of the ink under `mask` (steps 6-7)."""
    return mnist_frame(normalize_strokes(digit_ink(ink, mask, threshold)))


def preprocess_image(image: Image.Image) -> np.ndarray | None:
    """A decoded image -> float32 `(28, 28)` in [0, 1], white digit on black; None if no digit.

    All the ink is taken as one digit; `segment.find_digits` cuts an image into several.
    """
    analysis = analyse(image)
    if analysis is None:
        return None
    return frame_region(analysis.ink, analysis.mask, analysis.threshold)


def preprocess_bytes(data: bytes, *, source: str = "<bytes>") -> np.ndarray | None:
    """Image file bytes -> MNIST-style `(28, 28)` float32, or None if the image holds no digit.

    Raises:
        ImageError: the bytes are not a readable image of a supported format and size.
    """
    return preprocess_image(open_image(data, source=source))


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


def to_png(frame: np.ndarray) -> bytes:
    """A 28x28 array in [0, 1] as 8-bit grayscale PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8), mode="L").save(
        buffer, format="PNG")
    return buffer.getvalue()
