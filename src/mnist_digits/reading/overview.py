"""A picture of what the reader did with one image: the page it read, upright, with the sheet's
outline, a box around each line of writing and each digit, and what each digit was read as.

`predict --save-preprocessed DIR` writes it beside the 28x28 frames. It is drawn from the
`Reading` alone (boxes and the sheet's corners are in source pixels), so it shows exactly what
a caller of the library gets back.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mnist_digits.reading.decode import to_gray
from mnist_digits.reading.results import Reading

LONGEST = 1200  # the picture's longer side at most, in pixels
SHEET_COLOUR = (0, 160, 0)
LINE_COLOUR = (40, 90, 230)
DIGIT_COLOUR = (230, 120, 0)
UNSURE_COLOUR = (220, 0, 0)


def _page_transform(width: int, height: int, sheet: list[list[float]] | None
                    ) -> tuple[np.ndarray, tuple[int, int]]:
    """The 3x3 transform from source pixels to the picture, and the picture's size: the sheet
    flattened upright, or the whole image, no larger than `LONGEST`."""
    import cv2

    if sheet is None:
        scale = min(1.0, LONGEST / max(width, height))
        return np.diag([scale, scale, 1.0]), (max(1, round(width * scale)),
                                              max(1, round(height * scale)))
    corners = np.float32(sheet)
    sides = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
    page_w, page_h = max(sides[0], sides[2]), max(sides[1], sides[3])
    scale = min(1.0, LONGEST / max(page_w, page_h))
    size = (max(8, round(page_w * scale)), max(8, round(page_h * scale)))
    target = np.float32([[0, 0], [size[0], 0], [size[0], size[1]], [0, size[1]]])
    return cv2.getPerspectiveTransform(corners, target), size


def _quad(matrix: np.ndarray, box: list[int]) -> list[tuple[float, float]]:
    """A source-pixel box `[x0, y0, x1, y1]` as the quadrilateral it covers in the picture."""
    import cv2

    x0, y0, x1, y1 = box
    points = np.float64([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]])
    return [(float(x), float(y)) for x, y in cv2.perspectiveTransform(points, matrix)[0]]


def page_picture(image: Image.Image, result: Reading) -> Image.Image:
    """The page `result` was read from (`image`, decoded), upright, with what was found drawn
    on it: the sheet's edge (green), each line (blue) and each digit (orange, red if unsure)
    with the digit it was read as."""
    import cv2

    gray = to_gray(image)
    height, width = gray.shape
    matrix, size = _page_transform(width, height, result.sheet)
    flat = cv2.warpPerspective(gray, matrix, size, flags=cv2.INTER_AREA,
                               borderMode=cv2.BORDER_REPLICATE)
    picture = Image.fromarray(np.uint8(np.clip(flat, 0, 1) * 255), "L").convert("RGB")
    draw = ImageDraw.Draw(picture)
    pen = max(1, round(max(size) / 400))
    if result.sheet is not None:
        draw.rectangle((0, 0, size[0] - 1, size[1] - 1), outline=SHEET_COLOUR, width=2 * pen)
    for line in result.lines:
        draw.polygon(_quad(matrix, line.box), outline=LINE_COLOUR, width=pen)
    for digit in result.digits:
        quad = _quad(matrix, digit.box)
        colour = UNSURE_COLOUR if digit.unsure else DIGIT_COLOUR
        draw.polygon(quad, outline=colour, width=pen)
        left, top = min(x for x, _ in quad), min(y for _, y in quad)
        draw.text((left, max(0, top - 12 * pen)), str(digit.digit), fill=colour,
                  font_size=11 * pen)
    return picture
