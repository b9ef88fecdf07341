"""Synthetic non-digits for training: outlier exposure (Hendrycks et al. 2019).

A classifier trained on digits alone has never been told that anything else exists, so it reads
a star or a letter X as some digit, often with high confidence. Outlier exposure adds drawings
that are not digits to the training set with a *uniform* target (0.1 for every class): the
network learns to spread its probability on them, and the calibrated confidence then separates
"a digit" from "something else".

The drawings are made here, pen strokes on a small canvas, then framed by the same
`reading.frame` steps as a user's image, so they look to the model exactly as a real non-digit
would after preprocessing. Families:
- scribbles: smooth random curves through a few random points, some self-crossing;
- letters and signs drawn as strokes that resemble no digit (A, E, F, H, K, M, N, R, V, W, X,
  Y, e, h, k, m, n, r, u, w, t, f, #, *, +, =, %, arrows);
- shapes: triangles, squares, stars, spirals, check marks, hatching and filled blobs, closed
  outlines with strong harmonics (never a plain ellipse, which is a 0), outlines with marks in
  or across them, and a few straight sticks;
- overlays: two different MNIST digits drawn over each other (a crossed-out or overwritten
  digit).

The test images that measure rejection (`bench.userimages.nondigit_image`) are drawn by different
code (font glyphs and other shapes), so the figure is not measured on the training generator.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mnist_digits import data
from mnist_digits.reading import frame

CANVAS = 96  # drawn at this size, then framed to 28x28 like any image

# Letters and signs as strokes in a unit box (x right, y down): polylines, each a list of points.
GLYPHS: dict[str, list[list[tuple[float, float]]]] = {
    "A": [[(0.1, 1), (0.5, 0), (0.9, 1)], [(0.28, 0.6), (0.72, 0.6)]],
    "E": [[(0.8, 0), (0.2, 0), (0.2, 1), (0.8, 1)], [(0.2, 0.5), (0.65, 0.5)]],
    "F": [[(0.8, 0), (0.2, 0), (0.2, 1)], [(0.2, 0.5), (0.65, 0.5)]],
    "H": [[(0.2, 0), (0.2, 1)], [(0.8, 0), (0.8, 1)], [(0.2, 0.5), (0.8, 0.5)]],
    "K": [[(0.2, 0), (0.2, 1)], [(0.8, 0), (0.2, 0.55)], [(0.35, 0.45), (0.8, 1)]],
    "M": [[(0.1, 1), (0.15, 0), (0.5, 0.6), (0.85, 0), (0.9, 1)]],
    "N": [[(0.2, 1), (0.2, 0), (0.8, 1), (0.8, 0)]],
    "R": [[(0.2, 1), (0.2, 0), (0.7, 0.05), (0.8, 0.25), (0.7, 0.45), (0.2, 0.5)],
          [(0.45, 0.5), (0.8, 1)]],
    "V": [[(0.1, 0), (0.5, 1), (0.9, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0.15, 0), (0.85, 1)], [(0.85, 0), (0.15, 1)]],
    "Y": [[(0.1, 0), (0.5, 0.5), (0.9, 0)], [(0.5, 0.5), (0.5, 1)]],
    "#": [[(0.35, 0), (0.3, 1)], [(0.7, 0), (0.65, 1)], [(0, 0.35), (1, 0.35)],
          [(0, 0.68), (1, 0.68)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0.08, 0.25), (0.92, 0.75)], [(0.92, 0.25), (0.08, 0.75)]],
    "+": [[(0.5, 0.05), (0.5, 0.95)], [(0.05, 0.5), (0.95, 0.5)]],
    "arrow": [[(0, 0.5), (1, 0.5)], [(0.65, 0.2), (1, 0.5), (0.65, 0.8)]],
    "check": [[(0, 0.55), (0.35, 1), (1, 0)]],
    "triangle": [[(0.5, 0), (1, 1), (0, 1), (0.5, 0)]],
    "square": [[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]],
    "star": [[(0.5, 0), (0.79, 0.9), (0.02, 0.35), (0.98, 0.35), (0.21, 0.9), (0.5, 0)]],
    # Round capitals: open where a 0 is closed, or a bowl on a stem.
    "C": [[(0.85, 0.15), (0.6, 0.02), (0.3, 0.05), (0.12, 0.3), (0.12, 0.7), (0.3, 0.95),
           (0.6, 0.98), (0.85, 0.85)]],
    "U": [[(0.15, 0), (0.15, 0.7), (0.3, 0.95), (0.7, 0.95), (0.85, 0.7), (0.85, 0)]],
    "P": [[(0.2, 1), (0.2, 0), (0.65, 0.02), (0.82, 0.15), (0.82, 0.35), (0.65, 0.5),
           (0.2, 0.52)]],
    "D": [[(0.2, 0), (0.2, 1), (0.55, 0.97), (0.82, 0.75), (0.82, 0.25), (0.55, 0.03),
           (0.2, 0)]],
    # Lower case, as a hand writes them.
    "e": [[(0.2, 0.6), (0.8, 0.6), (0.75, 0.4), (0.5, 0.3), (0.25, 0.45), (0.25, 0.8),
           (0.5, 0.95), (0.8, 0.85)]],
    "h": [[(0.25, 0), (0.25, 1)], [(0.25, 0.55), (0.5, 0.4), (0.75, 0.5), (0.75, 1)]],
    "k": [[(0.25, 0), (0.25, 1)], [(0.75, 0.4), (0.25, 0.7), (0.75, 1)]],
    "m": [[(0.05, 1), (0.05, 0.4)], [(0.05, 0.5), (0.25, 0.35), (0.5, 0.5), (0.5, 1)],
          [(0.5, 0.5), (0.75, 0.35), (0.95, 0.5), (0.95, 1)]],
    "n": [[(0.2, 1), (0.2, 0.35)], [(0.2, 0.5), (0.5, 0.35), (0.8, 0.5), (0.8, 1)]],
    "r": [[(0.3, 1), (0.3, 0.35)], [(0.3, 0.55), (0.5, 0.38), (0.8, 0.38)]],
    "u": [[(0.2, 0.35), (0.2, 0.85), (0.5, 1), (0.8, 0.85)], [(0.8, 0.35), (0.8, 1)]],
    "w": [[(0, 0.35), (0.25, 1), (0.5, 0.55), (0.75, 1), (1, 0.35)]],
    "t": [[(0.5, 0), (0.5, 0.9), (0.7, 1)], [(0.2, 0.35), (0.8, 0.35)]],
    "f": [[(0.8, 0.1), (0.55, 0), (0.4, 0.15), (0.4, 1)], [(0.15, 0.4), (0.7, 0.4)]],
    "=": [[(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)]],
    "%": [[(0.9, 0), (0.1, 1)], [(0.15, 0.05), (0.35, 0.05), (0.35, 0.3), (0.15, 0.3),
                                (0.15, 0.05)],
          [(0.65, 0.7), (0.85, 0.7), (0.85, 0.95), (0.65, 0.95), (0.65, 0.7)]],
}
FAMILIES = ("scribble", "glyph", "glyph", "spiral", "hatch", "blob", "outline", "composite",
            "sticks", "overlay")


def _smooth(points: np.ndarray, samples: int = 12) -> np.ndarray:
    """A Catmull-Rom curve through `points` `(k, 2)`, `samples` points per segment."""
    padded = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    out = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1:i + 3]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(points[-1:])
    return np.vstack(out)


def _jitter(stroke: list[tuple[float, float]], rng: np.random.Generator,
            amount: float) -> np.ndarray:
    points = np.asarray(stroke, np.float64)
    return points + rng.normal(0, amount, points.shape)


def _strokes(family: str, rng: np.random.Generator) -> tuple[list[np.ndarray], bool]:
    """Strokes in the unit box for one drawing of `family`, and whether to fill them."""
    if family == "scribble":
        count = int(rng.integers(6, 11))
        return [_smooth(rng.uniform(0, 1, (count, 2)))], False
    if family == "glyph":
        name = list(GLYPHS)[int(rng.integers(len(GLYPHS)))]
        return [_jitter(s, rng, 0.04) for s in GLYPHS[name]], False
    if family == "spiral":
        turns = rng.uniform(2.5, 4.0)  # fewer turns look like a 6 or a 0
        t = np.linspace(0, 1, 120)
        angle = 2 * np.pi * turns * t + rng.uniform(0, 2 * np.pi)
        radius = 0.05 + 0.45 * t
        return [np.column_stack([0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle)])], \
            False
    if family == "hatch":
        # A zig-zag crossing-out, as when a word is scribbled over.
        count = int(rng.integers(7, 13))
        xs = np.linspace(0, 1, count) + rng.normal(0, 0.03, count)
        ys = np.where(np.arange(count) % 2, rng.uniform(0.75, 1, count), rng.uniform(0, 0.25,
                                                                                      count))
        if rng.random() < 0.5:
            xs, ys = ys, xs
        return [np.column_stack([xs, ys])], False
    if family == "outline":
        return [_outline(rng)], False
    if family == "composite":
        # A closed outline with marks inside or across it: faces, crossed circles, targets.
        strokes = [_outline(rng, lumpy=False)]
        for _ in range(int(rng.integers(2, 5))):
            start = rng.uniform(0.25, 0.75, 2)
            end = start + rng.normal(0, 0.2, 2)
            strokes.append(np.vstack([start, end]))
        return strokes, False
    if family == "sticks":
        # A few straight strokes every which way: crossings, asterisks, tally marks.
        return [rng.uniform(0, 1, (2, 2)) for _ in range(int(rng.integers(3, 6)))], False
    # "blob": an irregular filled shape.
    count = int(rng.integers(5, 9))
    angle = np.sort(rng.uniform(0, 2 * np.pi, count))
    radius = rng.uniform(0.35, 0.5, count)  # never so thin that it reads as a 1
    ring = np.column_stack([0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle)])
    return [_smooth(np.vstack([ring, ring[:1]]))], True


def _outline(rng: np.random.Generator, lumpy: bool = True) -> np.ndarray:
    """A closed curve r(angle) = 1 + a few random harmonics: stars, hearts, clouds, and lumps.

    With `lumpy`, at least one harmonic above the first is strong, so the outline is never
    the plain ellipse of a 0.
    """
    angle = np.linspace(0, 2 * np.pi, 160)
    radius = np.ones_like(angle)
    for k in range(2, 8):
        radius += rng.uniform(0, 0.15) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    if lumpy:
        k = int(rng.integers(2, 8))
        radius += rng.uniform(0.3, 0.5) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    radius = np.clip(radius, 0.2, None)
    points = np.column_stack([np.cos(angle) * radius, np.sin(angle) * radius])
    points -= points.min(axis=0)
    return points / points.max()


def _draw(strokes: list[np.ndarray], fill: bool, rng: np.random.Generator) -> np.ndarray:
    """Renders unit-box strokes onto a `CANVAS` square with a random affine pose and pen."""
    angle = rng.uniform(-0.35, 0.35)
    sx, sy = rng.uniform(0.55, 0.85, 2) * CANVAS
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    width = int(rng.integers(4, 12))
    for stroke in strokes:
        xy = ((stroke - 0.5) * [sx, sy]) @ rotation.T + CANVAS / 2
        points = [tuple(p) for p in xy]
        if fill:
            draw.polygon(points, fill=255)
        else:
            draw.line(points, fill=255, width=width, joint="curve")
            r = width / 2  # round pen ends
            for x, y in (points[0], points[-1]):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(image, np.float32) / 255


def _frame(ink: np.ndarray) -> np.ndarray | None:
    """Ink in [0, 1] -> the 28x28 frame the model would see, via the same steps as any image."""
    mask = ink > 0.5
    if mask.sum() < 8:
        return None
    return frame.mnist_frame(frame.normalize_strokes(frame.crop_ink(ink)))


def _overlay(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two different MNIST digits drawn over each other, slightly offset."""
    while True:
        i, j = rng.integers(len(digits), size=2)
        if labels[i] != labels[j]:
            break
    shift = rng.integers(-4, 5, size=2)
    second = np.roll(digits[j].astype(np.float32) / 255, tuple(shift), axis=(0, 1))
    return np.maximum(digits[i].astype(np.float32) / 255, second)


def make_outliers(count: int, rng: np.random.Generator,
                  digits: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Non-digit training images, framed as the model sees user images.

    Args:
        count: how many to make.
        rng: the random generator (seeded by the caller, so a run is reproducible).
        digits: `(images, labels)` uint8 MNIST digits for the overlay family; without them the
            other families share its share.

    Returns:
        float32 `(count, 28, 28, 1)` in [0, 1], white on black.
    """
    families = FAMILIES if digits is not None else FAMILIES[:-1]
    out = np.zeros((count, *data.IMAGE_SHAPE), np.float32)
    made = 0
    while made < count:
        family = families[int(rng.integers(len(families)))]
        if family == "overlay":
            frame = _frame(_overlay(*digits, rng))  # type: ignore[misc]
        else:
            frame = _frame(_draw(*_strokes(family, rng), rng))
        if frame is not None:
            out[made, ..., 0] = frame
            made += 1
    return out
