"""Ink of one digit -> an MNIST-style 28x28 frame.

Models trained on MNIST only read digits that look like MNIST digits: white ink on black, the
digit scaled to fit a 20x20 box keeping its aspect ratio, its centre of mass at the centre of the
28x28 frame, strokes about an eighth of the box thick. Shrinking a whole photo or canvas to 28x28
gives none of that, which is why most demos fail on real handwriting. So each digit's ink is:

1. cleared of everything but its own strokes, their cores made full strength;
2. thickened or thinned towards MNIST's stroke width;
3. cropped, fitted into 20x20 keeping the aspect ratio (area-averaged, so edges are anti-aliased
   as in MNIST), padded to 28x28 and shifted so its centre of mass is at the centre.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_digits.data import IMAGE_SIZE
from mnist_digits.reading import decode, ink
from mnist_digits.reading.ink import resize, stroke_width

BOX = 20  # MNIST's digit box
FRAME = IMAGE_SIZE
CENTRE = 14.0  # MNIST's mean centre of mass, in pixel indices (measured on the test set)
STROKE_RATIO = 0.12  # MNIST's median stroke width / box side, with `ink.stroke_width`


def disk(radius: int) -> np.ndarray:
    """A round structuring element (a pen tip) of the given radius, bool."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2 + 0.5



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



def normalize_strokes(digit: np.ndarray) -> np.ndarray:
    """Brings clearly too thin or too thick strokes towards MNIST's stroke width.

    Works at four times MNIST's resolution, so a correction can be a fraction of a final pixel.
    Strokes within MNIST's own range of widths are left alone: the models know that range.

    Args:
        digit: cropped ink in [0, 1].

    Returns:
        The corrected ink, cropped again (longer side `4 * BOX`), or `digit` itself.
    """
    work = resize(digit, 4 * BOX)
    mask = work > 0.5
    if not mask.any():
        return digit
    width = stroke_width(mask)
    target = STROKE_RATIO * 4 * BOX
    # Below MNIST's 10th percentile of width (0.1 of the box): pen on paper, a thin brush.
    # OpenCV's flat morphology, with SciPy's mirrored border: the same result, many times
    # faster for a wide pen tip.
    import cv2

    if width < 0.7 * target:
        return crop_ink(cv2.dilate(work, disk(round((0.9 * target - width) / 2)).astype(np.uint8),
                                   borderType=cv2.BORDER_REFLECT))
    if width > 2.2 * target:
        eroded = cv2.erode(work, disk(round((width - 1.5 * target) / 2)).astype(np.uint8),
                           borderType=cv2.BORDER_REFLECT)
        if (eroded > 0.5).sum() > 0.3 * mask.sum():  # never erode a digit away
            return crop_ink(eroded)
    return digit  # untouched: resampling up and down again would only blur it


def mnist_frame(digit: np.ndarray) -> np.ndarray:
    """Fits cropped ink into 20x20 keeping its aspect, and centres it by mass in 28x28."""
    digit = resize(digit, BOX, sharpen=True)
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




def frame_region(ink: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """The 28x28 MNIST-style frame of the ink under `mask` (steps 6-7)."""
    return mnist_frame(normalize_strokes(digit_ink(ink, mask, threshold)))



def to_png(frame: np.ndarray) -> bytes:
    """A 28x28 array in [0, 1] as 8-bit grayscale PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8), mode="L").save(
        buffer, format="PNG")
    return buffer.getvalue()



def frame_image(source: decode.Source) -> np.ndarray | None:
    """All the ink of an image as one digit's 28x28 frame, for a classifier of your own.

    Args:
        source: a path, image bytes, a PIL image or a NumPy array (see `decode.load`).

    Returns:
        float32 `(28, 28)` in [0, 1], white digit on black; None if the image holds no ink.

    Raises:
        ImageError: the source is not a readable image.
    """
    analysis = ink.analyse(decode.load(source))
    if analysis is None:
        return None
    return frame_region(analysis.ink, analysis.mask, analysis.threshold)
