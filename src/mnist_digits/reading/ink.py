"""A decoded image -> its ink: which side is paper, uneven light removed, rules and specks gone.

The steps (the module docstring of `reading` has the whole pipeline):

1. to grayscale (`decode.to_gray`), reduced so the analysis costs at most `ANALYSIS_SIZE`
   squared pixels;
2. ink polarity: the paper touches the border, the ink departs most from it; dark ink is
   inverted;
3. paper is added around the image, so a tight crop looks like a digit on a sheet;
4. background removal: a large-scale morphological opening estimates uneven lighting and is
   subtracted (on a sheet flattened out of a photo, `light.ink_map` follows shadows closely);
5. the ink mask by Otsu's threshold; ruled lines and specks much smaller than the digit are
   dropped; too little ink means "no digit".
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_digits.reading import light, page
from mnist_digits.reading.decode import to_gray

ANALYSIS_SIZE = 1024  # larger images are area-reduced to this many pixels squared, paper included
MIN_CONTRAST = 0.12  # ink must differ from paper by this much of the full range to count
MIN_INK_FRACTION = 0.0005  # less ink than this share of the image is "no digit"
SPECK_RATIO = 0.08  # ink components under this share of the largest one are noise
PAD_RATIO = 0.2  # paper added around the image, as a share of its longer side
EDGE_NEAR = 0.02  # marks this close to a flattened sheet's edge (share of its side) are not ink


def _reduce(gray: np.ndarray, longest: int) -> np.ndarray:
    """Area-averages an image down so its longer side is at most `longest`; never enlarges."""
    return gray if max(gray.shape) <= longest else resize(gray, longest)


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

    That happens in tight crops with a thick pen; `pipeline.prepare` then tries both and keeps the
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
    varying background and drops the thin ink. A flattened sheet from a photo uses
    `light.ink_map` instead, which follows shadows more closely.
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


def digit_mask(ink: np.ndarray, inner: tuple[int, int, int, int] | None = None,
               hysteresis: float = 1.0) -> tuple[np.ndarray, float] | None:
    """The pixels that belong to the digit and the ink threshold, or None if there is no digit.

    Args:
        ink: the ink map.
        inner: `(top, left, bottom, right)` of the image inside the paper added by
            `pad_with_paper`: the ink's statistics are taken there, not over the added paper.
            The whole map if None.
        hysteresis: ink above this share of the threshold counts too, where it joins ink
            above the threshold; 1 takes only what is above it.

    Raises nothing: blank paper, uniform colour and faint noise all give None.
    """
    import cv2

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
    # Hysteresis: fainter ink joined to ink above the threshold is ink too, so a light pencil
    # stroke that fades in places is not broken into pieces.
    count, labels = cv2.connectedComponents((ink > hysteresis * threshold).astype(np.uint8),
                                            connectivity=8)
    strong = np.zeros(count, bool)
    strong[labels[mask]] = True
    strong[0] = False
    if strong.sum() > 1:
        areas = np.bincount(labels.ravel(), minlength=count)
        strong &= areas >= SPECK_RATIO * areas[strong].max()
    mask = strong[labels]
    # Ink covering almost all of the image is not a digit on paper (a photo of a wall, noise);
    # a thick pen in a tight crop can cover well over half.
    if mask.sum() > 0.85 * area:
        return None
    return mask, threshold


def resize(values: np.ndarray, longest: int, *, sharpen: bool = False) -> np.ndarray:
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
    sheet: page.Sheet | None = None

    def to_source(self, box: tuple[int, int, int, int]) -> list[int]:
        """An analysis-pixel box `(x0, y0, x1, y1)` (x1, y1 exclusive) in source pixels: on a
        flattened sheet, the box around the four corners mapped back into the photo."""
        width, height = self.source_size
        x0, y0, x1, y1 = (v - self.margin for v in box)
        if self.sheet is not None:
            corners = self.sheet.to_source(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
            (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        x0, y0, x1, y1 = (v * self.scale for v in (x0, y0, x1, y1))
        return [int(np.clip(np.floor(x0), 0, width)), int(np.clip(np.floor(y0), 0, height)),
                int(np.clip(np.ceil(x1), 0, width)), int(np.clip(np.ceil(y1), 0, height))]


def paper_margin(height: int, width: int) -> int:
    """How much paper `analyse` adds on each side: a share of the longer side, but never more
    than three times that share of the shorter one (a long strip of digits needs no more paper
    than its height calls for)."""
    return max(2, round(PAD_RATIO * min(max(height, width), 3 * min(height, width))))


def analyse(image: Image.Image, paper: str | None = None, *, find_sheet: bool = True,
            as_photo: bool = False) -> InkAnalysis | None:
    """Steps 2-5 of the module docstring: a decoded image -> its ink; None if there is none.

    A sheet found in a photo (`page.find_sheet`) is flattened and read; if no ink is found on
    it, the photo is read as it is, so a wrong outline cannot lose what the whole image shows.

    Args:
        image: the decoded image.
        paper: `"light"` or `"dark"` to force which side is paper; None decides (see
            `ink_is_dark`).
        find_sheet: look for a (light) sheet of paper lying on something; False, or paper
            forced `"dark"`, reads the image as it is.
        as_photo: read the whole image as a photographed sheet (`page.whole_frame`), with
            no search and no fallback.
    """
    gray = to_gray(image)
    # The analysis, paper included, costs its pixels: at most ANALYSIS_SIZE squared of them.
    height, width = gray.shape
    margin = paper_margin(height, width)
    scale = ANALYSIS_SIZE / np.sqrt((height + 2 * margin) * (width + 2 * margin))
    reduced = _reduce(gray, max(1, round(max(height, width) * scale)))
    source = (gray.shape[1], gray.shape[0], gray.shape[1] / reduced.shape[1])
    if as_photo:
        sheet = page.whole_frame(reduced)
        return _analyse_reduced(sheet.flatten(reduced), paper, source, sheet)
    sheet = page.find_sheet(reduced) if find_sheet and paper != "dark" else None
    if sheet is not None:
        found = _analyse_reduced(sheet.flatten(reduced), paper, source, sheet)
        if found is not None:
            return found
    return _analyse_reduced(reduced, paper, source, None)


def _analyse_reduced(reduced: np.ndarray, paper: str | None,
                     source: tuple[int, int, float], sheet: page.Sheet | None
                     ) -> InkAnalysis | None:
    """`analyse` on the reduced (or flattened) image; `source` is the source's width, height
    and source pixels per reduced pixel."""
    h, w = reduced.shape
    ambiguous = paper is None and paper_is_ambiguous(reduced)
    if paper is None:
        paper = "dark" if h * w >= 16 and not ink_is_dark(reduced) else "light"
    margin = paper_margin(h, w)
    padded = pad_with_paper(reduced, margin, paper)
    if sheet is None:
        ink = ink_map(padded, dark=paper == "light")
    else:
        ink = light.ink_map(padded, dark=paper == "light")
    hysteresis = 1.0 if sheet is None else light.HYSTERESIS
    inner = (margin, margin, margin + h, margin + w)
    if sheet is not None:
        # The sheet's edge band is cleared before the ink's level is measured: what is left
        # there of the desk, a shadow or a torn edge would set it above faint pencil.
        near = round(EDGE_NEAR * min(h, w))
        inner = (margin + near, margin + near, margin + h - near, margin + w - near)
        band = np.ones(ink.shape, bool)
        band[inner[0]:inner[2], inner[1]:inner[3]] = False
        ink[band] = 0
    found = digit_mask(ink, inner, hysteresis)
    if found is None:
        return None
    cleaned = remove_ruled_lines(ink, found[1], inner=inner)
    if cleaned is not ink:
        ink = cleaned
        found = digit_mask(ink, inner, hysteresis)
        if found is None:
            return None
    if sheet is not None:
        found = (light.off_the_edge(found[0], inner), found[1])
        if not found[0].any():
            return None
    return InkAnalysis(ink, found[0], found[1], source[2], margin, source[:2], paper,
                       ambiguous, sheet)
