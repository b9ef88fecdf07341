"""Grouping the marks of a page into lines of writing, top to bottom.

A page of several lines read as one left-to-right row interleaves their digits. So the ink's
connected components are grouped into lines before they are cut into digits:

1. specks are set aside, and the components at least `ANCHOR` of the typical mark's height are
   the line's anchors;
2. two anchors are on one line when their vertical extents overlap by at least `SAME_LINE` of
   the lower one's height and they are at most `MAX_GAP` heights apart sideways. Lines are
   chains of such pairs, so a line that slopes a few degrees stays one line, however long,
   and lines need not start at the same place or have the same length or digit size;
3. groups whose bands overlap or nearly touch (`MIN_LINE_GAP`) are one line: pieces of one
   digit can stack, lines of writing are spaced apart;
4. smaller pieces (the bar of a 5, a broken stroke) join the line whose band they sit in.

A page with one line of writing is one `Line` holding the whole mask, so it reads exactly as a
single number always has. The cost is bounded: at most `segment.MAX_COMPONENTS` marks, and the
pairs of at most `MAX_ANCHORS` anchors.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from mnist_digits.reading.segment import MAX_COMPONENTS, MAX_DIGITS, SegmentError

MAX_LINES = 16
ANCHOR = 0.5  # marks at least this share of the typical mark's height anchor a line
SAME_LINE = 0.5  # vertical overlap, as a share of the lower mark, of two marks on one line
MIN_LINE_GAP = 0.25  # lines closer than this share of the higher one's height are one line
MAX_GAP = 3.0  # the most sideways gap between neighbours on a line, in mark heights
MAX_ANCHORS = 4 * MAX_LINES * MAX_DIGITS


@dataclasses.dataclass(frozen=True)
class Line:
    """One line of writing.

    Attributes:
        box: `(x0, y0, x1, y1)`, end-exclusive, in the mask's pixels.
        mask: bool, the line's own ink inside `box`.
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray


def find_lines(mask: np.ndarray, *, max_lines: int = MAX_LINES) -> list[Line]:
    """The lines of writing in an ink mask, top to bottom.

    Raises:
        SegmentError: more than `MAX_COMPONENTS` marks or `MAX_ANCHORS` digit-sized ones, or
            more than `max_lines` lines.
    """
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                               connectivity=8)
    count -= 1  # label 0 is the paper
    whole = Line((0, 0, mask.shape[1], mask.shape[0]), mask)
    if count <= 1:
        return [whole]
    if count > MAX_COMPONENTS:
        raise SegmentError(f"the image has {count:,} separate marks; that is not writing of at "
                           f"most {max_lines} lines (crop it to the digits)")
    x, y, w, h, area = (stats[1:, k] for k in range(5))
    size = np.maximum(w, h)
    speck = (size < 0.2 * size.max()) & (area < 0.05 * area.max())
    typical = np.percentile(h[~speck], 75)
    anchor = np.flatnonzero(~speck & (h >= ANCHOR * typical))
    if len(anchor) > MAX_ANCHORS:
        raise SegmentError(f"the image has {len(anchor):,} digit-sized marks; at most "
                           f"{max_lines} lines of {MAX_DIGITS} digits are read in one image "
                           f"(crop it to the digits)")
    top, bottom, left, right = y[anchor], y[anchor] + h[anchor], x[anchor], x[anchor] + w[anchor]
    overlap = np.minimum(bottom[:, None], bottom[None]) - np.maximum(top[:, None], top[None])
    lower = np.minimum(h[anchor][:, None], h[anchor][None])
    gap = np.maximum(left[:, None], left[None]) - np.minimum(right[:, None], right[None])
    tall = np.maximum(h[anchor][:, None], h[anchor][None])
    linked = (overlap >= SAME_LINE * lower) & (gap <= MAX_GAP * tall)
    groups = _merge_close(_chains(linked), top, bottom)
    if groups.max() == 0:
        return [whole]
    # Each line's band; every other mark joins the line whose band centre is nearest its own.
    bands = np.array([[top[groups == g].min(), bottom[groups == g].max()]
                      for g in range(groups.max() + 1)], float)
    line_of = np.full(count, -1)
    line_of[anchor] = groups
    others = np.flatnonzero(line_of < 0)
    if len(others):
        centre = y[others] + h[others] / 2
        line_of[others] = np.argmin(np.abs(centre[:, None] - bands.mean(axis=1)[None]), axis=1)
    order = np.argsort(bands.mean(axis=1), kind="stable")
    if len(order) > max_lines:
        raise SegmentError(f"found {len(order)} lines of writing; at most {max_lines} are read "
                           f"in one image (split it into several)")
    out = []
    for g in order:
        members = np.flatnonzero(line_of == g)
        x0, y0 = int(x[members].min()), int(y[members].min())
        x1, y1 = int((x + w)[members].max()), int((y + h)[members].max())
        own = np.isin(labels[y0:y1, x0:x1], members + 1)
        out.append(Line((x0, y0, x1, y1), own))
    return out


def _merge_close(groups: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """`groups` with the groups whose vertical bands overlap, or are less than `MIN_LINE_GAP`
    of the higher band apart, made one, renumbered from 0 top to bottom. Lines of writing are
    spaced apart; stacked pieces that close are one line's marks (the two loops of a broken 8,
    the halves of a 9 whose stroke fades)."""
    count = groups.max() + 1
    bands = np.array([[top[groups == g].min(), bottom[groups == g].max()] for g in range(count)])
    merged = np.zeros(count, int)
    order = np.argsort(bands[:, 0], kind="stable")
    low, high = bands[order[0]]
    for previous, g in itertools.pairwise(order):
        start, end = bands[g]
        if start - high >= MIN_LINE_GAP * max(end - start, high - low):
            merged[g] = merged[previous] + 1
            low, high = start, end
        else:
            merged[g] = merged[previous]
            high = max(high, end)
    return merged[groups]


def _chains(linked: np.ndarray) -> np.ndarray:
    """Connected groups of a symmetric boolean adjacency matrix: a group index per node."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    _, groups = connected_components(csr_matrix(linked), directed=False)
    return groups
