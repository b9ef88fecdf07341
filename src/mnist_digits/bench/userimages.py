"""Synthetic "user-style" images of real MNIST test digits, to measure the `predict` path.

Each MNIST test digit is enlarged and drawn onto a large canvas at a random position and size,
as dark ink on light paper or light ink on dark, with some of: uneven lighting, paper noise,
thinner or thicker strokes, JPEG compression, a transparent background, a tinted colour. This is
what a photo, a scan or a canvas export looks like to the reader, with a known label.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_digits.reading import frame

KINDS = ("png-dark-on-light", "png-light-on-dark", "jpeg-photo", "transparent-png",
         "color-png", "webp")


@dataclass(frozen=True)
class UserImage:
    """One synthetic image: its encoded bytes, file suffix, kind, and the true digit."""

    data: bytes
    suffix: str
    kind: str
    label: int


def render(digit: np.ndarray, label: int, rng: np.random.Generator,
           kind: str | None = None) -> UserImage:
    """Draws one MNIST digit (uint8 `(28, 28)`, white on black) as a user-style image.

    Args:
        digit: the MNIST image.
        label: its true class.
        rng: the random generator deciding canvas size, position, scale and effects.
        kind: one of `KINDS`, or None to pick one at random.
    """
    kind = kind or KINDS[rng.integers(len(KINDS))]
    width, height = int(rng.integers(160, 1200)), int(rng.integers(160, 1200))
    scale = rng.uniform(0.25, 0.8) * min(width, height) / 28
    size = max(28, int(28 * scale))
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC),
                     dtype=np.float32) / 255
    ink = np.clip(ink, 0, 1)
    stroke = rng.choice(["normal", "thin", "thick"], p=[0.6, 0.2, 0.2])
    # A finer or a broader pen: about one MNIST pixel thinner or thicker. (More closes the loops
    # of small digits or breaks strokes apart, which no pen does.)
    if stroke == "thin":
        ink = ndimage.grey_erosion(ink, size=max(1, size // 40))
    elif stroke == "thick":
        ink = ndimage.grey_dilation(ink, size=max(2, size // 28))
    canvas = np.zeros((height, width), np.float32)
    top = int(rng.integers(0, max(1, height - size)))
    left = int(rng.integers(0, max(1, width - size)))
    h, w = min(size, height - top), min(size, width - left)
    canvas[top:top + h, left:left + w] = ink[:h, :w]

    return encode(canvas, kind, int(label), rng)


def encode(canvas: np.ndarray, kind: str, label: int, rng: np.random.Generator,
           light_paper: bool | None = None) -> UserImage:
    """Ink `canvas` (float `(h, w)` in [0, 1], 1 = ink) as an image file of `kind`.

    The kind decides the paper and pen colours, uneven lighting and paper grain, and the file
    format, as described in the module docstring.
    """
    height, width = canvas.shape
    if light_paper is None:
        light_paper = kind != "png-light-on-dark" and not (kind == "webp" and rng.random() < 0.5)
    paper, pen = (rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.3)) if light_paper else \
        (rng.uniform(0.0, 0.2), rng.uniform(0.75, 1.0))
    gray = paper + (pen - paper) * canvas
    if kind in ("jpeg-photo", "color-png", "webp"):
        # Uneven lighting: a gradient across the page, and paper grain.
        yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
        gradient = rng.uniform(-0.25, 0.25) * (xx * np.cos(rng.uniform(0, 6.3)) +
                                               yy * np.sin(rng.uniform(0, 6.3)))
        gray = gray + gradient + rng.normal(0, 0.03, gray.shape)
    gray = np.clip(gray, 0, 1)

    buffer = io.BytesIO()
    if kind == "transparent-png":
        # A canvas export: black (or white) strokes, transparent background.
        color = 0 if light_paper else 255
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[..., :3] = color
        rgba[..., 3] = np.round(canvas * 255).astype(np.uint8)
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
        suffix = ".png"
    elif kind == "color-png":
        tint = rng.uniform(0.6, 1.0, size=3)  # blue ink on cream paper, and the like
        rgb = np.clip(gray[..., None] * tint[None, None, :] * 255, 0, 255).astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
        suffix = ".png"
    else:
        image = Image.fromarray(np.round(gray * 255).astype(np.uint8), "L")
        if kind == "jpeg-photo":
            image.convert("RGB").save(buffer, format="JPEG", quality=int(rng.integers(50, 95)))
            suffix = ".jpg"
        elif kind == "webp":
            image.save(buffer, format="WEBP", quality=80)
            suffix = ".webp"
        else:
            image.save(buffer, format="PNG")
            suffix = ".png"
    return UserImage(buffer.getvalue(), suffix, kind, label)


def naive_frame(data: bytes) -> np.ndarray:
    """What most demos do: shrink the whole image to 28x28 (inverting light paper).

    Used only to show, side by side, why proper preprocessing matters.
    """
    image = Image.open(io.BytesIO(data))
    image.seek(0)
    gray = np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BILINEAR),
                      dtype=np.float32) / 255
    return 1 - gray if np.median(gray) > 0.5 else gray


# --- tight crops: real handwriting from other writers, cut to the digit ------------------------
# MNIST's test digits were written by people who wrote none of the training digits, so they stand
# in for "other writers". Scans and camera crops of single digits are often cut to the digit,
# with strokes touching the edges, a thicker pen, blur, or a tiny scan enlarged.

TIGHT_KINDS = ("tight-crop", "tight-thick", "tight-blurred", "lowres-8", "lowres-16")


def tight_crop(digit: np.ndarray, label: int, rng: np.random.Generator,
               kind: str | None = None) -> UserImage:
    """One MNIST digit (uint8 `(28, 28)`) as a tightly cropped scan of `kind` (`TIGHT_KINDS`).

    The crop leaves 0-2 source pixels of margin; the result is 40-320 pixels tall, dark on
    light or light on dark at random, PNG or JPEG.
    """
    kind = kind or TIGHT_KINDS[rng.integers(len(TIGHT_KINDS))]
    ink = digit.astype(np.float32) / 255
    rows, cols = np.nonzero(ink > 0.2)
    margin = int(rng.integers(0, 3))
    ink = ink[max(0, rows.min() - margin):rows.max() + 1 + margin,
              max(0, cols.min() - margin):cols.max() + 1 + margin]
    height = int(rng.integers(40, 320))
    if kind.startswith("lowres"):
        # A tiny scan (8 or 16 pixels tall) enlarged by the user's viewer: blocky or soft.
        small = int(kind.split("-")[1])
        ink = _resize_to(ink, small, Image.Resampling.BOX)
        method = Image.Resampling.NEAREST if rng.random() < 0.5 else Image.Resampling.BILINEAR
        ink = _resize_to(ink, height, method)
    else:
        ink = _resize_to(ink, height, Image.Resampling.BICUBIC)
    if kind == "tight-thick":
        # A felt pen: strokes 1.5-2.5 times MNIST's, which then touch and fill the edges.
        ink = ndimage.grey_dilation(ink, footprint=frame.disk(max(1, round(
            rng.uniform(0.03, 0.06) * height))))
    elif kind == "tight-blurred":
        ink = ndimage.gaussian_filter(ink, rng.uniform(0.02, 0.05) * height)
        ink = ink / max(float(ink.max()), 1e-6)
    ink = np.clip(ink, 0, 1)
    image = encode(ink, "jpeg-photo" if rng.random() < 0.3 else "png-dark-on-light", label, rng,
                   light_paper=bool(rng.random() < 0.7))
    return UserImage(image.data, image.suffix, kind, label)


def _resize_to(values: np.ndarray, height: int, method: Image.Resampling) -> np.ndarray:
    h, w = values.shape
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(values.astype(np.float32), mode="F").resize(
        (width, height), method), np.float32)


# --- numbers: several MNIST test digits written in a row ----------------------------------------

NUMBER_PAPERS = ("plain", "ruled", "squared")


@dataclass(frozen=True)
class NumberImage:
    """A handwritten number: the encoded image, its true digits as text, and the paper."""

    data: bytes
    suffix: str
    text: str
    paper: str


def compose_line(digits: np.ndarray, rng: np.random.Generator, line: int) -> np.ndarray:
    """Ink (float, 1 = ink) of MNIST digits (uint8 `(k, 28, 28)`) written left to right, `line`
    pixels tall: each digit 0.75-1.25 of that, gaps of 0.1-0.6 of it, a slope of up to 6
    degrees, and `line` pixels of paper left and right."""
    pieces, x = [], 0
    for digit in digits:
        size = max(16, int(line * rng.uniform(0.75, 1.25)))
        ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC),
                         np.float32) / 255
        cols = np.flatnonzero(ink.max(axis=0) > 0.2)
        ink = ink[:, cols.min():cols.max() + 1]
        pieces.append((x, ink))
        x += ink.shape[1] + int(rng.uniform(0.1, 0.6) * line)
    width = x + 2 * line
    slope = np.tan(np.radians(rng.uniform(-6, 6)))
    height = int(2.5 * line + abs(slope) * width)
    canvas = np.zeros((height, width), np.float32)
    base = height / 2 - slope * width / 2
    for left, ink in pieces:
        h, w = ink.shape
        top = int(base + slope * (left + line) - h / 2)
        region = canvas[top:top + h, line + left:line + left + w]
        np.maximum(region, ink[:region.shape[0], :region.shape[1]], out=region)
    return canvas


def number_image(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                 paper: str | None = None) -> NumberImage:
    """MNIST test digits (uint8 `(k, 28, 28)`) written left to right as one number.

    Each digit gets its own size (0.75-1.25 of the line's), a gap of 0.1-0.6 of the digit height
    from its neighbour, the whole line a slope of up to 6 degrees, a few specks; the paper is
    plain, ruled or squared.
    """
    paper = paper or NUMBER_PAPERS[rng.integers(len(NUMBER_PAPERS))]
    line = int(rng.integers(60, 140))  # digit height in pixels
    canvas = compose_line(digits, rng, line)
    height, width = canvas.shape
    if paper != "plain":
        spacing = int(line * (0.55 if paper == "squared" else 1.1))
        rules = np.zeros_like(canvas)
        rules[int(rng.integers(0, spacing))::spacing, :] = 0.45
        if paper == "squared":
            rules[:, int(rng.integers(0, spacing))::spacing] = 0.45
        canvas = np.maximum(canvas, rules)
    for _ in range(int(rng.integers(0, 6))):  # specks and dust
        y, x0 = int(rng.integers(0, height - 3)), int(rng.integers(0, width - 3))
        canvas[y:y + int(rng.integers(1, 4)), x0:x0 + int(rng.integers(1, 4))] = 1.0
    kind = ("png-dark-on-light", "jpeg-photo", "color-png")[int(rng.integers(3))]
    image = encode(canvas, kind, 0, rng, light_paper=True)
    return NumberImage(image.data, image.suffix, "".join(str(int(v)) for v in labels), paper)


# --- things that are not digits -------------------------------------------------------------------
# Drawn by other code than the training outliers (`outliers`): font glyphs from the fonts that
# matplotlib ships, pushed around by an elastic warp so they look hand-made, and shapes drawn
# with PIL's own primitives. Letters and signs that look like a digit (O, I, l, Z, S, B, G, b, g,
# q, and ? which is a 2 or a 7 without its foot) are left out: a person would accept either
# reading.

NONDIGIT_LETTERS = "ACEFHKMNPRUVWXYaefhkmnrtuvwxy#@&%*+"
NONDIGIT_KINDS = ("letter", "shape", "scribble", "crossed-out")


def _font_paths() -> list[str]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return sorted(str(p) for p in folder.glob("DejaVu*.ttf")) + \
        sorted(str(p) for p in folder.glob("STIXGeneral*.ttf"))


def _letter(rng: np.random.Generator, size: int) -> np.ndarray:
    from PIL import ImageDraw, ImageFont

    fonts = _font_paths()
    font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], int(size * 0.7))
    char = NONDIGIT_LETTERS[int(rng.integers(len(NONDIGIT_LETTERS)))]
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).text((size / 2, size / 2), char, fill=255, font=font, anchor="mm")
    return np.asarray(image, np.float32) / 255


def _shape(rng: np.random.Generator, size: int) -> np.ndarray:
    from PIL import ImageDraw

    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    width = max(2, int(size * rng.uniform(0.03, 0.08)))
    c, r = size / 2, size * 0.38
    which = int(rng.integers(6))
    if which == 0:  # a star with 5 to 8 points
        n = int(rng.integers(5, 9))
        angles = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        radii = np.where(np.arange(2 * n) % 2, r * 0.45, r)
        points = [(c + q * np.sin(a), c - q * np.cos(a))
                  for q, a in zip(radii, angles, strict=True)]
        draw.line([*points, points[0]], fill=255, width=width, joint="curve")
    elif which == 1:  # a heart
        t = np.linspace(0, 2 * np.pi, 80)
        xs = 16 * np.sin(t) ** 3
        ys = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        draw.line([(c + r * x / 17, c - r * y / 17) for x, y in zip(xs, ys, strict=True)], fill=255,
                  width=width, joint="curve")
    elif which == 2:  # a smiley
        draw.ellipse((c - r, c - r, c + r, c + r), outline=255, width=width)
        for dx in (-0.35, 0.35):
            draw.ellipse((c + dx * r - width, c - 0.3 * r - width, c + dx * r + width,
                          c - 0.3 * r + width), fill=255)
        draw.arc((c - 0.55 * r, c - 0.4 * r, c + 0.55 * r, c + 0.55 * r), 20, 160, fill=255,
                 width=width)
    elif which == 3:  # a house
        draw.line([(c - r, c + r), (c - r, c - 0.1 * r), (c, c - r), (c + r, c - 0.1 * r),
                   (c + r, c + r), (c - r, c + r)], fill=255, width=width, joint="curve")
    elif which == 4:  # a filled ellipse blob with a tail
        draw.ellipse((c - r, c - 0.6 * r, c + r * 0.8, c + 0.6 * r), fill=255)
        draw.line([(c + 0.6 * r, c), (c + r, c + r)], fill=255, width=width)
    else:  # an X in a box
        draw.rectangle((c - r, c - r, c + r, c + r), outline=255, width=width)
        draw.line([(c - r, c - r), (c + r, c + r)], fill=255, width=width)
        draw.line([(c + r, c - r), (c - r, c + r)], fill=255, width=width)
    return np.asarray(image, np.float32) / 255


def _scribble(rng: np.random.Generator, size: int, loops: int | None = None) -> np.ndarray:
    from PIL import ImageDraw

    image = Image.new("L", (size, size), 0)
    t = np.linspace(0, 1, 200)
    loops = loops or int(rng.integers(3, 7))
    # A sum of random sinusoids: a tangled loop, unlike the training scribbles' splines.
    xs = sum(rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * (k + 1) * t + rng.uniform(0, 6.3))
             for k in range(loops))
    ys = sum(rng.uniform(0.1, 0.3) * np.cos(2 * np.pi * (k + 1) * t + rng.uniform(0, 6.3))
             for k in range(loops))
    xs = (xs - xs.min()) / max(np.ptp(xs), 1e-6) * 0.8 + 0.1
    ys = (ys - ys.min()) / max(np.ptp(ys), 1e-6) * 0.8 + 0.1
    points = [(x * size, y * size) for x, y in zip(xs, ys, strict=True)]
    ImageDraw.Draw(image).line(points, fill=255, width=max(2, int(size * 0.04)), joint="curve")
    return np.asarray(image, np.float32) / 255


def _crossed_out(rng: np.random.Generator, size: int) -> np.ndarray:
    from PIL import ImageDraw

    base = _letter(rng, size)
    image = Image.fromarray((base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        y0, y1 = rng.uniform(0.2, 0.8, 2) * size
        draw.line([(0.1 * size, y0), (0.9 * size, y1)], fill=255, width=max(2, size // 25))
    return np.asarray(image, np.float32) / 255


def _elastic(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth random warp, so font glyphs and ruler-straight shapes look drawn by hand."""
    h, w = ink.shape
    sigma, alpha = 0.08 * h, rng.uniform(0.02, 0.05) * h
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma) * alpha / 0.05
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma) * alpha / 0.05
    rows, cols = np.mgrid[0:h, 0:w]
    return ndimage.map_coordinates(ink, [rows + dy, cols + dx], order=1, mode="constant")


def nondigit_image(rng: np.random.Generator, kind: str | None = None) -> UserImage:
    """One drawing that is not a digit (`NONDIGIT_KINDS`), as a user-style image; label -1."""
    kind = kind or NONDIGIT_KINDS[rng.integers(len(NONDIGIT_KINDS))]
    size = int(rng.integers(120, 400))
    draw = {"letter": _letter, "shape": _shape, "scribble": _scribble,
            "crossed-out": _crossed_out}[kind]
    ink = np.clip(_elastic(draw(rng, size), rng), 0, 1)
    canvas = np.zeros((int(size * rng.uniform(1.1, 1.8)), int(size * rng.uniform(1.1, 1.8))),
                      np.float32)
    top = int(rng.integers(0, canvas.shape[0] - size + 1))
    left = int(rng.integers(0, canvas.shape[1] - size + 1))
    canvas[top:top + size, left:left + size] = ink
    file_kind = KINDS[int(rng.integers(len(KINDS)))]
    image = encode(canvas, file_kind, -1, rng)
    return UserImage(image.data, image.suffix, kind, -1)
