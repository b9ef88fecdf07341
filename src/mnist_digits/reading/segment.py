"""Finding the digits in an image of a number: ink -> one region per digit, left to right.

Handwritten digits are mostly one connected stroke each, so the connected components of the ink
mask are the starting point. Then:
1. specks (a component far smaller than the largest, in both size and area) are dropped: dots,
   dust, the full stop in "3.14";
2. components that share most of their horizontal extent are one digit: the separate top bar
   of a 5, a 4 drawn in two strokes, a stroke broken by a pen that skipped (see `_same_digit`).
   Neighbouring digits barely overlap in x, even on a slight slope or in a slanted hand, so
   the gap between them can be as small as a tenth of a digit's height;
3. what remains and is at least a quarter the height of the tallest is a digit, read in the
   order of its centre from left to right;
4. a region much wider than tall may be touching digits: `split_wide` proposes a cut at the
   thinnest column, and `pipeline` takes it only when the model reads the whole as unsure and
   both parts as sure digits (a wide 2 with a flourish stays one digit).

The cost is bounded: the labelling is linear in the pixels, and an image with more than
`MAX_COMPONENTS` marks is refused before any grouping.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from mnist_digits.errors import MnistDigitsError

MAX_DIGITS = 32
MAX_COMPONENTS = 2000  # more separate marks than this is noise or a texture, not a number
SPECK_SIZE = 0.2  # components under this share of the tallest one's size are specks ...
SPECK_AREA = 0.05  # ... when also under this share of the largest one's ink
MERGE_OVERLAP = 0.6  # x-overlap, as a share of the narrower, that makes two parts one digit
MIN_HEIGHT = 0.25  # regions lower than this share of the tallest are not digits
FRAGMENT = 0.5  # a piece under this share of its neighbour's height ...
FRAGMENT_GAP = 0.08  # ... and at most this share of that height away is part of it
WIDE = 1.5  # width / height above which a region is tried as two touching digits
MIN_PART = 0.5  # each part of a cut must be at least this share of the region's height


class SegmentError(MnistDigitsError):
    """An image that cannot be read as a number: too many digits or marks."""


@dataclasses.dataclass(frozen=True)
class Region:
    """One digit's place in the analysis image.

    Attributes:
        box: `(x0, y0, x1, y1)`, end-exclusive, in analysis pixels.
        mask: bool, the digit's ink inside `box` (its own components only).
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Overlap of two [start, end) intervals as a share of the shorter one."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    return max(0, inter) / max(1, min(a[1] - a[0], b[1] - b[0]))


def _same_digit(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two parts (boxes x0, y0, x1, y1) are pieces of one digit.

    Most of one's columns under the other's: one digit (a 4 in two strokes). Some of them,
    when one part sits above the other or is much smaller: one digit (a 5's bar sticking out
    to the right). Side by side at the same height with a little overlap: two digits leaning
    into each other.
    """
    x_overlap = _overlap((a[0], a[2]), (b[0], b[2]))
    if x_overlap >= MERGE_OVERLAP:
        return True
    if x_overlap < MERGE_OVERLAP / 2:
        return False
    y_overlap = _overlap((a[1], a[3]), (b[1], b[3]))
    heights = sorted((a[3] - a[1], b[3] - b[1]))
    return y_overlap < 0.5 or heights[0] < 0.5 * heights[1]


def find_digits(mask: np.ndarray, *, max_digits: int = MAX_DIGITS,
                offset: tuple[int, int] = (0, 0)) -> list[Region]:
    """The digits in an ink mask, left to right.

    Args:
        mask: bool `(h, w)` ink.
        max_digits: more digits than this raises.
        offset: `(x, y)` added to every box: where `mask` lies in a larger image.

    Returns:
        The regions, ordered by their centre's x; empty when there is no ink.

    Raises:
        SegmentError: more than `MAX_COMPONENTS` separate marks, more than four times
            `max_digits` digit-like groups of them, or more than `max_digits` digits.
    """
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return []
    if count > MAX_COMPONENTS:
        raise SegmentError(f"the image has {count:,} separate marks; that is not a number of at "
                           f"most {max_digits} digits (crop it to the digits)")
    slices = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel())[1:]
    sizes = np.array([max(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in slices])
    keep = ~((sizes < SPECK_SIZE * sizes.max()) & (areas < SPECK_AREA * areas.max()))
    # Groups of component indices, merged while they share their horizontal extent.
    order = sorted(np.flatnonzero(keep), key=lambda i: slices[i][1].start)
    merged: list[list[int]] = []
    boxes: list[tuple[int, int, int, int]] = []  # x0, y0, x1, y1 of each merged group
    for i in order:
        rows, cols = slices[i]
        box = (cols.start, rows.start, cols.stop, rows.stop)
        for k in range(len(merged) - 1, max(-1, len(merged) - 4), -1):  # recent ones only
            if _same_digit(boxes[k], box):
                merged[k].append(i)
                boxes[k] = (min(boxes[k][0], box[0]), min(boxes[k][1], box[1]),
                            max(boxes[k][2], box[2]), max(boxes[k][3], box[3]))
                break
        else:
            merged.append([i])
            boxes.append(box)
    # Joining fragments compares neighbours until nothing changes: bounded here, since a number
    # of `max_digits` digits has at most a few pieces per digit.
    if len(merged) > 4 * max_digits:
        raise SegmentError(f"the image has {len(merged)} separate digit-like marks; at most "
                           f"{max_digits} digits are read in one image (crop it to the digits)")
    regions = [Region(box, np.isin(labels[box[1]:box[3], box[0]:box[2]], np.asarray(group) + 1))
               for group, box in zip(merged, boxes, strict=True)]
    regions = _absorb_fragments(regions)
    tallest = max(r.box[3] - r.box[1] for r in regions)
    regions = [r for r in regions if r.box[3] - r.box[1] >= MIN_HEIGHT * tallest]
    regions.sort(key=lambda r: (r.box[0] + r.box[2]) / 2)
    if len(regions) > max_digits:
        raise SegmentError(f"found {len(regions)} digits in a line; at most {max_digits} are "
                           f"read in one line (split it into several)")
    dx, dy = offset
    return [Region((x0 + dx, y0 + dy, x1 + dx, y1 + dy), r.mask)
            for r, (x0, y0, x1, y1) in ((r, r.box) for r in regions)]


def _union(a: Region, b: Region) -> Region:
    """One region holding the ink of both."""
    x0, y0 = min(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    x1, y1 = max(a.box[2], b.box[2]), max(a.box[3], b.box[3])
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for r in (a, b):
        mask[r.box[1] - y0:r.box[3] - y0, r.box[0] - x0:r.box[2] - x0] |= r.mask
    return Region((x0, y0, x1, y1), mask)


def _absorb_fragments(regions: list[Region]) -> list[Region]:
    """Joins a small piece to the neighbour it almost touches: a 2's tail or a 5's bar that the
    pen (or the threshold) cut off and that sticks out beyond the digit's columns.

    A piece is a fragment when it is under `FRAGMENT` of its neighbour's height and the gap
    between them is under `FRAGMENT_GAP` of that height; two digits side by side are of
    comparable height, so a small digit next to a large one is not taken for a fragment.
    """
    regions = sorted(regions, key=lambda r: r.box[0])
    changed = True
    while changed and len(regions) > 1:
        changed = False
        for i, piece in enumerate(regions):
            height = piece.box[3] - piece.box[1]
            for j in (i - 1, i + 1):
                if not 0 <= j < len(regions):
                    continue
                other = regions[j]
                other_height = other.box[3] - other.box[1]
                gap_x = max(other.box[0] - piece.box[2], piece.box[0] - other.box[2], 0)
                gap_y = max(other.box[1] - piece.box[3], piece.box[1] - other.box[3], 0)
                if height < FRAGMENT * other_height and \
                        max(gap_x, gap_y) <= FRAGMENT_GAP * other_height:
                    regions[min(i, j)] = _union(piece, other)
                    del regions[max(i, j)]
                    changed = True
                    break
            if changed:
                break
    return regions


def split_wide(region: Region) -> list[Region]:
    """Cuts a region much wider than tall into touching digits, at the thinnest columns.

    Each cut goes through the column with the least ink in the middle part of the region
    (never within 0.3 of its height from either side); the halves are cut again while
    they are still wide. A region that is wide but has no thin column (a long stroke, a wide 0)
    is left whole.
    """
    x0, y0, x1, y1 = region.box
    height, width = y1 - y0, x1 - x0
    if width <= WIDE * height or height < 4:
        return [region]
    profile = region.mask.sum(axis=0)
    lo, hi = max(1, int(0.3 * height)), min(width - 1, width - int(0.3 * height))
    if hi <= lo:
        return [region]
    cut = lo + int(np.argmin(profile[lo:hi]))
    typical = np.median(profile[profile > 0]) if (profile > 0).any() else 0
    # Where two digits touch, one stroke crosses the cut; most columns cross two or more.
    if profile[cut] > max(1.0, 0.6 * typical):  # no thin column: one wide shape
        return [region]
    parts = []
    for a, b in ((0, cut), (cut, width)):
        sub = region.mask[:, a:b]
        rows = np.flatnonzero(sub.any(axis=1))
        cols = np.flatnonzero(sub.any(axis=0))
        if not len(rows):
            continue
        sub = sub[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        if len(rows) < MIN_PART * height:  # a bar or a tail cut off one digit, not a digit
            return [region]
        box = (x0 + a + cols[0], y0 + rows[0], x0 + a + cols[-1] + 1, y0 + rows[-1] + 1)
        parts.extend(split_wide(Region(box, sub)))
    return parts if len(parts) > 1 else [region]
