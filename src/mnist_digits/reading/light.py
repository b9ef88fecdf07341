"""Ink on a photographed sheet: the paper's brightness estimated locally and taken out.

A scan or a canvas has even light, and `ink.ink_map` removes what little gradient it has with
one wide opening. A sheet flattened out of a photo (`page.Sheet.flatten`) has hard shadow
edges, vignetting, a flash spot and faint pencil on grey paper; `ink_map` here follows them
more closely, and `HYSTERESIS` keeps a pencil stroke whole where it fades. Only sheets found
in photos take this path, so images that are all paper read exactly as before.
"""

from __future__ import annotations

import numpy as np

BACKGROUND_SIZE = 512  # the paper's brightness is estimated at this longer side ...
BACKGROUND_SCALE = 0.25  # ... with an opening this share of the shorter side wide ...
STROKES_IN_BACKGROUND = 3.0  # ... or this many stroke widths, where that is narrower
MIN_PAPER = 0.25  # dark ink is divided by the paper's brightness, never by less than this
HYSTERESIS = 0.6  # ink above this share of the threshold counts where it joins stronger ink


def ink_map(gray: np.ndarray, dark: bool) -> np.ndarray:
    """Ink strength in [0, 1] (1 = ink) of a photographed sheet, its local light taken out.

    Dark ink is inverted first. The background is a grey opening wider than a stroke, which
    drops the thin ink and keeps what varies more slowly: a lighting gradient, vignetting, a
    flash spot, and the step of a hard shadow's edge, which an opening keeps sharp where a
    smoothing filter would spread it into false ink. The opening is as narrow as the strokes
    allow (`STROKES_IN_BACKGROUND` widths), so it follows a shadow into a corner. Dark ink on
    paper is then divided by the paper's local brightness: a shadow darkens ink and paper
    alike, so the ratio is what the pen left.
    """
    import cv2

    h, w = gray.shape
    ink = (1.0 - gray if dark else gray).astype(np.float32)
    # The background at a fixed working size: its cost does not grow with the image.
    factor = min(1.0, BACKGROUND_SIZE / max(h, w))
    small = cv2.resize(ink, (max(1, round(w * factor)), max(1, round(h * factor))),
                       interpolation=cv2.INTER_AREA) if factor < 1 else ink
    size = max(3, round(BACKGROUND_SCALE * min(small.shape)))
    background = cv2.morphologyEx(small, cv2.MORPH_OPEN, np.ones((size, size), np.uint8))
    first = small - background
    top = max(float(first.max()), 1e-6)
    level, _ = cv2.threshold(np.uint8(np.clip(first / top, 0, 1) * 255), 0, 255,
                             cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    strokes = first > level / 255 * top
    narrow = round(STROKES_IN_BACKGROUND * _stroke_width(strokes)) | 1
    if strokes.any() and 3 <= narrow < size:
        background = cv2.morphologyEx(small, cv2.MORPH_OPEN, np.ones((narrow, narrow), np.uint8))
    background = cv2.blur(background, (3, 3))
    if factor < 1:
        background = cv2.resize(background, (w, h), interpolation=cv2.INTER_LINEAR)
    out = ink - background
    if dark:
        out = out / np.maximum(1.0 - background, MIN_PAPER)
    return np.clip(out, 0, 1).astype(np.float32)


def _stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width of a binary mask: twice the distance to the paper along the
    strokes' ridges."""
    import cv2

    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ridge = (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8))) & mask
    return 2.0 * float(np.median(distance[ridge])) if ridge.any() else 0.0


def off_the_edge(mask: np.ndarray, inner: tuple[int, int, int, int]) -> np.ndarray:
    """`mask` without the marks that reach the edge band of a flattened sheet (`inner` is
    inside it): what is left of the desk, a shadow or a torn edge. Writing on a note keeps
    off its edges."""
    import cv2

    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                           connectivity=8)
    top, left, bottom, right = inner
    x, y, w, h = (stats[1:, k] for k in range(4))
    touching = (x <= left) | (y <= top) | (x + w >= right) | (y + h >= bottom)
    return np.isin(labels, np.flatnonzero(~touching) + 1)
