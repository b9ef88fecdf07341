"""Finding the sheet in a photo and flattening it: a note on a desk -> an upright page.

A photo of a note lying on a desk is mostly desk. Read as it is, the sheet's own outline is the
largest mark in it. So before the ink is looked for, `find_sheet` looks for a sheet of paper:

1. the photo is reduced to `SEARCH_SIZE` pixels and its ink is closed away (a grey closing wider
   than a pen stroke), so a written-on sheet becomes one bright, even region;
2. Otsu's threshold splits bright from dark; the largest bright region is the candidate;
3. its outline is fitted with a polygon: a quadrilateral is the sheet's corners (a note,
   a card, a whiteboard); anything else (a torn note, a curled page, a hand over an edge) is
   taken as its smallest enclosing rotated rectangle;
4. the candidate must look like paper lying on something: between `MIN_FILL` and `MAX_FILL`
   of the photo, running off it on at most two sides, nearly solid, with corners near enough
   to square (`CORNER_ANGLES`), brighter than what surrounds it, bounded by a sharp edge on at
   least two sides inside the photo, and written on. A shadow's edge, a lighting gradient, a
   digit on a scan or the thick stroke of a tight crop fails that; then there is no sheet, and
   the image is read as it is.

`Sheet.flatten` maps the sheet's quadrilateral to an upright rectangle (a perspective transform)
a little inside its edges, and `Sheet.to_source` maps boxes on the flat page back into the
photo's pixels. Everything here is OpenCV's C++ on a few hundred thousand pixels at most, so it
costs a few milliseconds whatever the photo's size.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SEARCH_SIZE = 400  # the sheet is searched for on a copy with this longer side
MIN_FILL = 0.08  # a sheet covers at least this share of the photo ...
MAX_FILL = 0.97  # ... and at most this: beyond, the paper is the photo
MIN_SOLIDITY = 0.9  # a sheet fills this much of its outline's convex hull
MIN_STEP = 0.05  # the sheet is brighter than what lies beyond its edge by this much ...
STEP_SHARE = 0.7  # ... at this share of the points along an edge, ...
MIN_EDGES = 2  # ... on at least this many of its sides that lie inside the photo
INSET = 0.02  # the flat page leaves out this share of each side: the paper's own edge
RIM = 0.015  # and paints over this share of it inside the outline, as paper
MIN_WRITING = 0.002  # marks cover at least this share of a sheet's inside
LEVELS = 5  # brightness levels tried besides Otsu's, evenly between dark and bright
FRAME_CONTACT = 0.1  # a sheet running off the photo covers this share of a side of the frame ...
MAX_OFF_SIDES = 2  # ... on at most this many sides: beyond, the paper fills the frame
CORNER_ANGLES = (50, 130)  # a sheet's corners in perspective, in degrees (our photos: 57-131)


@dataclasses.dataclass(frozen=True)
class Sheet:
    """A sheet of paper found in a photo.

    Attributes:
        corners: float32 `(4, 2)`, x and y of its top-left, top-right, bottom-right and
            bottom-left corners, in the pixels of the image it was found in.
        size: `(width, height)` of the flat page.
        matrix: the 3x3 perspective transform from the image to the flat page.
        quad: whether the outline was a quadrilateral (False: a rotated rectangle around an
            irregular outline).
        region: uint8, 1 where the sheet's paper is, at `search_scale` of the image.
        search_scale: the size of `region` against the image's.
        found: False for `whole_frame`: the image read as a photo, with no sheet found in it.
    """

    corners: np.ndarray
    size: tuple[int, int]
    matrix: np.ndarray
    quad: bool
    region: np.ndarray = dataclasses.field(repr=False)
    search_scale: float = 1.0
    found: bool = True

    def flatten(self, gray: np.ndarray) -> np.ndarray:
        """The sheet cut out of `gray` (the image it was found in) as an upright page.

        What lies inside the outline but is not paper (the desk beyond a rounded corner or a
        torn edge, a finger over the edge) is painted over with the paper's brightness, so it
        is not taken for ink.
        """
        import cv2

        page = cv2.warpPerspective(gray, self.matrix, self.size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
        to_search = np.diag([1 / self.search_scale, 1 / self.search_scale, 1.0])
        paper = cv2.warpPerspective(self.region, self.matrix @ to_search, self.size,
                                    flags=cv2.INTER_NEAREST)
        # The outline is found at a few hundred pixels: its last pixels may be the desk.
        rim = max(1, round(RIM * min(self.size))) * 2 + 1
        paper = cv2.erode(paper, np.ones((rim, rim), np.uint8), borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).astype(bool)
        if paper.any() and not paper.all():
            page[~paper] = float(np.median(page[paper]))
        return page

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Points `(n, 2)` (x, y) on the flat page -> the same points in the image."""
        import cv2

        inverse = np.linalg.inv(self.matrix)
        return cv2.perspectiveTransform(np.asarray(points, np.float64)[None], inverse)[0]

    def outline(self, scale: float = 1.0) -> list[list[float]]:
        """The corners as a list of `[x, y]`, for JSON, times `scale` (the source image's
        pixels per pixel of the image the sheet was found in)."""
        return [[round(float(x) * scale, 1), round(float(y) * scale, 1)] for x, y in self.corners]


def _order(corners: np.ndarray) -> np.ndarray:
    """Four corners in the order top-left, top-right, bottom-right, bottom-left: clockwise
    around their centre, starting from the one nearest the image's top-left."""
    centre = corners.mean(axis=0)
    angles = np.arctan2(corners[:, 1] - centre[1], corners[:, 0] - centre[0])
    clockwise = corners[np.argsort(angles)]  # y points down: increasing angle is clockwise
    start = int(np.argmin(clockwise.sum(axis=1)))
    return np.roll(clockwise, -start, axis=0).astype(np.float32)


def _outline(region: np.ndarray) -> tuple[np.ndarray, bool, float, np.ndarray] | None:
    """The four corners of a bright region's outline, whether they are a real quadrilateral,
    the region's solidity, and the region with its holes filled (marks too dark for the
    closing to take away are on the paper, not beside it); None when it has no outline."""
    import cv2

    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(contour)
    hull_area = cv2.contourArea(hull)
    if hull_area <= 0:
        return None
    solidity = float(cv2.contourArea(contour)) / hull_area
    filled = cv2.drawContours(np.zeros_like(region), [contour], -1, 1, thickness=cv2.FILLED)
    perimeter = cv2.arcLength(hull, True)
    for epsilon in (0.02, 0.04):
        polygon = cv2.approxPolyDP(hull, epsilon * perimeter, True)
        if len(polygon) == 4:
            return polygon[:, 0, :].astype(np.float32), True, solidity, filled
    return cv2.boxPoints(cv2.minAreaRect(contour)).astype(np.float32), False, solidity, filled


def _square_enough(corners: np.ndarray) -> bool:
    """Whether every corner of an ordered quadrilateral lies within `CORNER_ANGLES`: a sheet
    seen in perspective, not the skewed outline of a thick stroke in a tight crop."""
    before = np.roll(corners, 1, axis=0) - corners
    after = np.roll(corners, -1, axis=0) - corners
    cosine = (before * after).sum(axis=1) / np.maximum(
        np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1), 1e-6)
    angles = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    return bool(((angles >= CORNER_ANGLES[0]) & (angles <= CORNER_ANGLES[1])).all())


def _sharp_edges(closed: np.ndarray, corners: np.ndarray) -> int:
    """How many of the quadrilateral's sides run inside the image with a sharp step from
    brighter (inside) to darker (outside) along most of their length."""
    h, w = closed.shape
    centre = corners.mean(axis=0)
    reach = max(2.0, 0.012 * max(h, w))
    count = 0
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        t = np.linspace(0.1, 0.9, 24)[:, None]
        points = a + t * (b - a)
        direction = b - a
        normal = np.array([direction[1], -direction[0]]) / max(np.linalg.norm(direction), 1e-6)
        if np.dot(normal, (a + b) / 2 - centre) < 0:
            normal = -normal  # pointing out of the sheet
        inside = points - 2 * reach * normal
        outside = points + 2 * reach * normal
        valid = ((outside >= 0) & (outside <= [w - 1, h - 1])).all(axis=1) & \
                ((inside >= 0) & (inside <= [w - 1, h - 1])).all(axis=1)
        if valid.sum() < len(points) // 2:  # the side runs along (or out of) the image's edge
            continue
        i, o = inside[valid].round().astype(int), outside[valid].round().astype(int)
        step = closed[i[:, 1], i[:, 0]] - closed[o[:, 1], o[:, 0]]
        if np.mean(step > MIN_STEP) >= STEP_SHARE:
            count += 1
    return count


def _candidate(closed: np.ndarray, marks: np.ndarray, level: float
               ) -> tuple[float, np.ndarray, np.ndarray, bool] | None:
    """The largest region brighter than `level`, if it looks like a sheet (see the module
    docstring): its area, mask, ordered corners and whether they are a true quadrilateral.
    `marks` is where the closing took ink away."""
    import cv2

    sh, sw = closed.shape
    bright = (closed > level).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = float(stats[largest, cv2.CC_STAT_AREA])
    if not MIN_FILL <= area / (sh * sw) <= MAX_FILL:
        return None
    found = _outline((labels == largest).astype(np.uint8))
    if found is None:
        return None
    corners, quad, solidity, region = found
    corners = _order(corners)
    sides = (region[0].mean(), region[-1].mean(), region[:, 0].mean(), region[:, -1].mean())
    if sum(share > FRAME_CONTACT for share in sides) > MAX_OFF_SIDES:
        return None
    if solidity < MIN_SOLIDITY or region.sum() < MIN_SOLIDITY * cv2.contourArea(corners) or \
            not _square_enough(corners) or _sharp_edges(closed, corners) < MIN_EDGES:
        return None
    # Written on: a bright region with no marks inside it is a thick stroke of a tight crop,
    # or blank paper, and not worth flattening.
    rim = max(3, round(RIM * 2 * max(sh, sw))) | 1
    inside = cv2.erode(region, np.ones((rim, rim), np.uint8)).astype(bool)
    if np.count_nonzero(marks[inside]) < MIN_WRITING * max(1, np.count_nonzero(inside)):
        return None
    return area, region, corners, quad


def find_sheet(gray: np.ndarray) -> Sheet | None:
    """The sheet of paper in a photo, or None when the image is not paper lying on something.

    A shadow across a sheet on a dark desk leaves no one threshold that Otsu's method would
    pick for the whole sheet, so several levels between the dark and the bright side are tried
    and the largest region that passes the checks wins: the whole sheet, not its lit part.

    Args:
        gray: float32 luminance in [0, 1], `(h, w)`.

    Returns:
        The sheet, in `gray`'s pixels; None for scans, canvases, crops, paper that fills the
        frame or runs off three of its sides, and anything the checks of the module docstring
        refuse. Of several sheets, the largest that passes is read.
    """
    import cv2

    h, w = gray.shape
    if min(h, w) < 32:
        return None
    scale = min(1.0, SEARCH_SIZE / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else gray
    sh, sw = small.shape
    # Close the ink away: a grey closing wider than a pen stroke. (Blurring it would spread
    # the sheet's edge outwards at the darker levels.)
    size = max(3, round(0.04 * max(sh, sw))) | 1
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE,
                              cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    otsu, _ = cv2.threshold(np.round(closed * 255).astype(np.uint8), 0, 255,
                            cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    low, high = np.percentile(closed, [5, 95])
    if high - low < 2 * MIN_STEP:
        return None
    levels = [otsu / 255, *np.linspace(low, high, LEVELS + 2)[1:-1]]
    marks = closed - small > MIN_STEP
    found = [c for c in (_candidate(closed, marks, level) for level in levels) if c is not None]
    if not found:
        return None
    _, region, corners, quad = max(found, key=lambda c: c[0])
    corners = corners / scale
    top, right = np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[2] - corners[1])
    bottom, left = np.linalg.norm(corners[3] - corners[2]), np.linalg.norm(corners[0] - corners[3])
    width, height = max(8, round(max(top, bottom))), max(8, round(max(left, right)))
    inset_x, inset_y = INSET * width, INSET * height
    target = np.float32([[-inset_x, -inset_y], [width + inset_x, -inset_y],
                         [width + inset_x, height + inset_y], [-inset_x, height + inset_y]])
    matrix = cv2.getPerspectiveTransform(corners, target)
    return Sheet(corners, (width, height), matrix, quad, region, scale)


def whole_frame(gray: np.ndarray) -> Sheet:
    """The whole image as the sheet, for a photo in which no sheet was found: its light is
    then taken out locally and the marks along its edges (the desk, a shadow) are dropped,
    as on a sheet that was found."""
    h, w = gray.shape
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    return Sheet(corners, (w, h), np.eye(3), True, np.ones((h, w), np.uint8), found=False)
