"""Synthetic photos of notes on desks and pages of several lines, to measure the reader on them.

Two generators, written apart so the reader is not tuned to one way of drawing:

- `warp` (OpenCV): a sheet of a given kind (sticky note, sheet, index card, whiteboard) with
  MNIST test digits on it, warped in perspective onto a textured background (wood, cloth, dark
  and light desks, a floor), then lit unevenly (hard and soft shadows, vignetting, a flash
  spot), with a hand at the edge, blur, noise and JPEG compression;
- `paint` (Pillow): a sheet pasted through Pillow's perspective transform onto smooth random
  colour fields, with rounded or torn edges, blue or pencil ink, a soft shadow polygon, and PNG,
  WebP or JPEG files.

Both put the paper at 40-95% of the frame, tilt it by up to about 30 degrees and turn it by up
to 25. The digits are MNIST test digits: writers the models never saw.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mnist_digits.bench.userimages import compose_line

GENERATORS = ("warp", "paint")
PAPERS = ("note", "sheet", "card", "whiteboard")
BACKGROUNDS = ("wood", "cloth", "dark-desk", "light-desk", "floor")
# Paper size (width, height) in pixels before the warp, per kind.
PAPER_SIZES = {"note": (300, 300), "sheet": (424, 600), "card": (500, 300),
               "whiteboard": (640, 420)}


@dataclass(frozen=True)
class Photo:
    """One synthetic photo: its encoded bytes, suffix, what was drawn, and the true text
    (lines joined by a newline)."""

    data: bytes
    suffix: str
    text: str
    generator: str
    paper: str
    background: str
    effects: tuple[str, ...]

    @property
    def kind(self) -> str:
        return f"{self.generator}/{self.background}"


def _layout(lines: list[np.ndarray], size: tuple[int, int], rng: np.random.Generator,
            line_height: int) -> np.ndarray:
    """Ink of `lines` (each a `compose_line` canvas) on a page of `size`, top to bottom, each
    line shifted left or right at random (lines need not be left-aligned)."""
    width, height = size
    page = np.zeros((height, width), np.float32)
    strips = []
    for line in lines:
        rows = np.flatnonzero(line.max(axis=1) > 0.2)
        cols = np.flatnonzero(line.max(axis=0) > 0.2)
        strips.append(line[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    gap = int(line_height * rng.uniform(0.5, 0.9))
    total = sum(s.shape[0] for s in strips) + gap * (len(strips) - 1)
    # Everything written stays on the page: lines too tall or too wide for it are shrunk.
    fit = min(1.0, 0.9 * height / total, *(0.9 * width / s.shape[1] for s in strips))
    if fit < 1:
        import cv2

        strips = [cv2.resize(s, (max(1, round(s.shape[1] * fit)), max(1, round(s.shape[0] * fit))),
                             interpolation=cv2.INTER_AREA) for s in strips]
        gap = int(gap * fit)
        total = sum(s.shape[0] for s in strips) + gap * (len(strips) - 1)
    spare = max(0, (height - total) // 2)  # at least 5% of the height, as `fit` leaves
    shift = min(spare - int(0.05 * height), height // 12)
    y = spare + int(rng.integers(-max(0, shift), max(0, shift) + 1))
    margin = rng.uniform(0.08, 0.3) * width  # the page's left margin, which lines stray from
    for strip in strips:
        h, w = strip.shape
        # Writing keeps a little off the paper's edges (5% of its width, at least).
        x = int(np.clip(margin + rng.uniform(-0.08, 0.12) * width, 0.05 * width,
                        max(0.05 * width, 0.95 * width - w)))
        region = page[y:y + h, x:x + w]
        np.maximum(region, strip[:region.shape[0], :region.shape[1]], out=region)
        y += h + gap
    return page


def _written(digit_lines: list[np.ndarray], paper: str, rng: np.random.Generator) -> np.ndarray:
    """Ink of MNIST digits (one uint8 `(k, 28, 28)` array per line) on a page of `paper`'s size:
    one digit fills 40-70% of a note's height; a line's digits share that height on wider
    pages."""
    width, height = PAPER_SIZES[paper]
    count = len(digit_lines)
    widest = max(len(d) for d in digit_lines)
    # Digits fit the page's height (with room between lines) and its width (each about 0.9 of
    # its height, with gaps).
    line = min(height * rng.uniform(0.4, 0.7) / count ** 0.85,
               0.75 * width / (1.05 * widest + 0.6))
    line = max(24, int(line))
    lines = [compose_line(d, rng, line) for d in digit_lines]
    return _layout(lines, (width, height), rng, line)


def _perspective(size: tuple[int, int], frame: tuple[int, int], rng: np.random.Generator
                 ) -> np.ndarray:
    """Where the corners of a `size` sheet land in a `frame` photo: tilted by up to about 30
    degrees away from the camera, turned by up to 25, filling 40-95% of the frame."""
    width, height = size
    fw, fh = frame
    tilt = np.radians(rng.uniform(0, 30))
    turn = np.radians(rng.uniform(-25, 25))
    # Tilting one edge (any of the four) away from the camera foreshortens the sheet across
    # that edge and narrows the edge itself; the corners stay in order, so nothing is mirrored.
    corners = np.array([[-width / 2, -height / 2], [width / 2, -height / 2],
                        [width / 2, height / 2], [-width / 2, height / 2]])
    far = int(rng.integers(4))
    a, b = corners[far], corners[(far + 1) % 4]
    normal = (a + b) / np.linalg.norm(a + b)
    corners = corners - (1 - np.cos(tilt)) * (corners @ normal)[:, None] * normal
    middle = (corners[far] + corners[(far + 1) % 4]) / 2
    for k in (far, (far + 1) % 4):
        corners[k] = middle + (1 - 0.5 * np.sin(tilt)) * (corners[k] - middle)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    corners = corners @ rotation.T
    fill = rng.uniform(0.4, 0.95)
    x, y = corners[:, 0], corners[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    scale = np.sqrt(fill * fw * fh / area)
    # Never larger than fits the frame (with a 1% rim), so a full frame is still one sheet.
    scale = min(scale, 0.98 * fw / np.ptp(x), 0.98 * fh / np.ptp(y))
    corners = corners * scale
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    offset = [rng.uniform(-lo[0], fw - hi[0]), rng.uniform(-lo[1], fh - hi[1])]
    return (corners + offset).astype(np.float32)


def _texture(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A background (`BACKGROUNDS`) as float RGB in [0, 1]."""
    import cv2

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "wood":
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        grain = np.sin(u / rng.uniform(4, 12) + 3 * np.sin(v / rng.uniform(60, 200)))
        base = np.array(rng.choice([[0.55, 0.36, 0.2], [0.35, 0.22, 0.12], [0.7, 0.52, 0.32]]))
        tone = 1 + 0.15 * grain[..., None]
    elif kind == "cloth":
        period = rng.uniform(3, 7)
        weave = np.sin(xx / period) * np.sin(yy / period)
        base = rng.uniform(0.15, 0.7, 3)
        tone = 1 + 0.12 * weave[..., None]
    elif kind == "floor":
        tile = int(rng.integers(80, 200))
        grout = ((xx % tile) < 4) | ((yy % tile) < 4)
        base = np.full(3, rng.uniform(0.3, 0.65)) * rng.uniform(0.85, 1.15, 3)
        tone = np.where(grout[..., None], 0.6, 1.0)
    else:
        level = rng.uniform(0.05, 0.3) if kind == "dark-desk" else rng.uniform(0.62, 0.85)
        base = np.full(3, level) * rng.uniform(0.9, 1.1, 3)
        tone = np.ones((h, w, 1), np.float32)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2)
    return np.clip(base * tone + 0.03 * noise[..., None], 0, 1).astype(np.float32)


def _paper_colour(paper: str, rng: np.random.Generator, pencil: bool) -> np.ndarray:
    if paper == "note":
        return np.array(rng.choice([[0.98, 0.93, 0.45], [0.95, 0.95, 0.92], [0.99, 0.8, 0.85],
                                    [0.75, 0.93, 0.98]]))
    grey = rng.uniform(0.72, 0.82) if pencil else rng.uniform(0.88, 1.0)
    return np.full(3, grey) * rng.uniform(0.97, 1.03, 3)


def _lighting(rgb: np.ndarray, rng: np.random.Generator, effects: list[str]) -> np.ndarray:
    """Hard or soft shadows, vignetting and a flash spot, each at random."""
    import cv2

    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = np.ones((h, w), np.float32)
    if rng.random() < 0.5:
        # A shadow: the part of the frame beyond a random line (a phone or a head in the light).
        angle = rng.uniform(0, 2 * np.pi)
        offset = rng.uniform(0.2, 0.6) * max(h, w)
        side = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle) > offset - max(h, w) / 2
        shadow = side.astype(np.float32)
        soft = rng.random() < 0.5
        if soft:
            shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(0.03, 0.1) * max(h, w))
        light *= 1 - rng.uniform(0.3, 0.55) * shadow
        effects.append("soft-shadow" if soft else "hard-shadow")
    if rng.random() < 0.4:
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.25 * (h * h + w * w))
        light *= 1 - rng.uniform(0.2, 0.45) * r2
        effects.append("vignetting")
    out = rgb * light[..., None]
    if rng.random() < 0.25:
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        spot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (rng.uniform(0.05, 0.15) *
                                                                   max(h, w)) ** 2))
        out = out + rng.uniform(0.25, 0.5) * spot[..., None]
        effects.append("flash")
    return np.clip(out, 0, 1)


def _hand(rgb: np.ndarray, corners: np.ndarray, rng: np.random.Generator) -> None:
    """Skin-coloured fingers and a thumb over one edge of the sheet, in place."""
    import cv2

    h, w = rgb.shape[:2]
    k = int(rng.integers(4))
    a, b = corners[k], corners[(k + 1) % 4]
    t = rng.uniform(0.25, 0.75)
    centre = a + t * (b - a)
    edge = np.linalg.norm(b - a)
    outward = centre - corners.mean(axis=0)
    outward = outward / max(np.linalg.norm(outward), 1e-6)
    skin = np.array(rng.choice([[0.87, 0.67, 0.55], [0.6, 0.42, 0.3], [0.95, 0.78, 0.68]]))
    mask = np.zeros((h, w), np.uint8)
    along = (b - a) / max(edge, 1e-6)
    for finger in range(int(rng.integers(1, 4))):
        tip = centre + along * (finger - 1) * 0.09 * edge - outward * 0.06 * edge
        end = tip + outward * max(h, w)
        cv2.line(mask, tuple(int(v) for v in tip), tuple(int(v) for v in end), 255,
                 max(6, int(0.07 * edge)))
    mask = cv2.GaussianBlur(mask, (0, 0), 2).astype(np.float32)[..., None] / 255
    rgb[:] = rgb * (1 - mask) + skin * mask


def _encode_rgb(rgb: np.ndarray, rng: np.random.Generator, formats: tuple[str, ...]
                ) -> tuple[bytes, str]:
    fmt = formats[int(rng.integers(len(formats)))]
    image = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=int(rng.integers(35, 92)))
        return buffer.getvalue(), ".jpg"
    if fmt == "WEBP":
        image.save(buffer, format="WEBP", quality=int(rng.integers(60, 90)))
        return buffer.getvalue(), ".webp"
    image.save(buffer, format="PNG")
    return buffer.getvalue(), ".png"


def _frame_size(rng: np.random.Generator) -> tuple[int, int]:
    """A phone photo's size, landscape or portrait: 640x480 up to 1600x1200."""
    width = int(rng.choice([640, 800, 1024, 1280, 1600]))
    size = (width, width * 3 // 4)
    return size if rng.random() < 0.6 else size[::-1]


def _warp_photo(ink: np.ndarray, paper: str, background: str, rng: np.random.Generator,
                effects: list[str], frame: tuple[int, int] | None) -> tuple[bytes, str]:
    """The `warp` generator: see the module docstring."""
    import cv2

    pencil = rng.random() < 0.25
    colour = _paper_colour(paper, rng, pencil)
    pen = np.full(3, rng.uniform(0.35, 0.55)) if pencil else \
        np.array(rng.choice([[0.05, 0.05, 0.08], [0.1, 0.15, 0.5], [0.1, 0.1, 0.1]]))
    if pencil:
        effects.append("pencil")
        ink = cv2.erode(ink, np.ones((2, 2), np.uint8)) * rng.uniform(0.7, 1.0)
    sheet = colour * (1 - ink[..., None]) + pen * ink[..., None]
    if paper == "whiteboard":  # a grey frame around the board
        rim = max(6, int(0.03 * min(ink.shape)))
        sheet[:rim], sheet[-rim:], sheet[:, :rim], sheet[:, -rim:] = 0.55, 0.55, 0.55, 0.55
    fw, fh = frame or _frame_size(rng)
    h, w = ink.shape
    corners = _perspective((w, h), (fw, fh), rng)
    matrix = cv2.getPerspectiveTransform(
        np.float32([[0, 0], [w, 0], [w, h], [0, h]]), corners)
    warped = cv2.warpPerspective(sheet.astype(np.float32), matrix, (fw, fh),
                                 flags=cv2.INTER_AREA)
    cover = cv2.warpPerspective(np.ones((h, w), np.float32), matrix, (fw, fh))[..., None]
    rgb = _texture(background, (fh, fw), rng) * (1 - cover) + warped * cover
    if rng.random() < 0.25:
        _hand(rgb, corners, rng)
        effects.append("hand")
    rgb = _lighting(rgb, rng, effects)
    if rng.random() < 0.4:
        rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.6, 2.0))
        effects.append("blur")
    rgb = rgb + rng.normal(0, rng.uniform(0.005, 0.03), rgb.shape)
    return _encode_rgb(rgb, rng, ("JPEG", "JPEG", "PNG"))


def _field(rng: np.random.Generator, size: tuple[int, int], colour: np.ndarray) -> Image.Image:
    """A smooth random colour field around `colour`: coarse noise enlarged, plus grain."""
    w, h = size
    coarse = rng.uniform(-0.12, 0.12, (6, 8, 3)) + colour
    field = Image.fromarray(np.uint8(np.clip(coarse, 0, 1) * 255), "RGB").resize(
        (w, h), Image.Resampling.BICUBIC)
    grain = Image.effect_noise((w, h), float(rng.uniform(4, 14))).convert("RGB")
    return Image.blend(field, grain, 0.08)


def _paint_photo(ink: np.ndarray, paper: str, background: str, rng: np.random.Generator,
                 effects: list[str], frame: tuple[int, int] | None) -> tuple[bytes, str]:
    """The `paint` generator: see the module docstring."""
    h, w = ink.shape
    pencil = rng.random() < 0.25
    grey = rng.uniform(0.7, 0.8) if pencil else rng.uniform(0.9, 1.0)
    sheet_colour = (0.99, 0.92, 0.5) if paper == "note" and rng.random() < 0.6 else (grey,) * 3
    pen = (0.45, 0.45, 0.45) if pencil else ((0.1, 0.1, 0.45) if rng.random() < 0.5 else
                                             (0.08, 0.08, 0.08))
    if pencil:
        effects.append("pencil")
    ink_image = Image.fromarray(np.uint8(np.clip(ink, 0, 1) * 255), "L")
    sheet = Image.composite(Image.new("RGB", (w, h), tuple(int(255 * c) for c in pen)),
                            Image.new("RGB", (w, h), tuple(int(255 * c) for c in sheet_colour)),
                            ink_image)
    shape = Image.new("L", (w, h), 0)
    if rng.random() < 0.3:  # a torn note: a jagged top edge
        xs = np.linspace(0, w, 24)
        ys = rng.uniform(0, 0.06 * h, 24)
        ImageDraw.Draw(shape).polygon([*zip(xs, ys, strict=True), (w, h), (0, h)], fill=255)
        effects.append("torn")
    else:
        ImageDraw.Draw(shape).rounded_rectangle((0, 0, w - 1, h - 1),
                                                radius=int(rng.uniform(0, 0.05) * w), fill=255)
    fw, fh = frame or _frame_size(rng)
    corners = _perspective((w, h), (fw, fh), rng)
    # Pillow maps output pixels back to input ones: solve for the transform from the corners.
    source = [(0, 0), (w, 0), (w, h), (0, h)]
    rows = []
    for (x, y), (u, v) in zip(corners, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(rows), np.array(source, float).ravel())
    sheet = sheet.transform((fw, fh), Image.Transform.PERSPECTIVE, tuple(coeffs),
                            Image.Resampling.BICUBIC)
    cover = shape.transform((fw, fh), Image.Transform.PERSPECTIVE, tuple(coeffs),
                            Image.Resampling.BILINEAR)
    level = {"dark-desk": 0.18, "light-desk": 0.72, "wood": 0.45, "cloth": 0.4, "floor": 0.5}
    tint = {"wood": (1.2, 0.85, 0.55), "cloth": tuple(rng.uniform(0.6, 1.3, 3))}
    colour = level[background] * np.array(tint.get(background, (1.0, 1.0, 1.0)))
    photo = Image.composite(sheet, _field(rng, (fw, fh), colour), cover)
    if rng.random() < 0.5:  # a soft shadow across a corner
        shadow = Image.new("L", (fw, fh), 0)
        x0 = rng.uniform(0, fw)
        ImageDraw.Draw(shadow).polygon([(x0, 0), (fw, 0), (fw, fh * rng.uniform(0.3, 1))],
                                       fill=int(rng.uniform(60, 130)))
        shadow = shadow.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 30))))
        photo = Image.composite(Image.new("RGB", (fw, fh), 0), photo, shadow)
        effects.append("shadow")
    if rng.random() < 0.3:
        photo = photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
        effects.append("blur")
    return _encode_rgb(np.asarray(photo, np.float32) / 255, rng, ("PNG", "WEBP", "JPEG"))


def photo(digit_lines: list[np.ndarray], text: str, rng: np.random.Generator,
          generator: str | None = None, paper: str | None = None,
          background: str | None = None, frame: tuple[int, int] | None = None) -> Photo:
    """A photo of MNIST test digits (one uint8 `(k, 28, 28)` array per line of writing) on a
    sheet lying on a background; `text` is their true reading. `frame` is the photo's
    `(width, height)` (default: a phone photo's, 640x480 to 1600x1200, either way up)."""
    generator = generator or GENERATORS[int(rng.integers(len(GENERATORS)))]
    paper = paper or PAPERS[int(rng.integers(len(PAPERS)))]
    background = background or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    effects: list[str] = []
    ink = _written(digit_lines, paper, rng)
    make = _warp_photo if generator == "warp" else _paint_photo
    data, suffix = make(ink, paper, background, rng, effects, frame)
    return Photo(data, suffix, text, generator, paper, background, tuple(effects))


def page_scan(digit_lines: list[np.ndarray], text: str, rng: np.random.Generator) -> Photo:
    """A scan of a page of several lines of numbers (the paper is the whole image): white or
    ruled paper, dark ink, PNG or JPEG."""
    ink = _written(digit_lines, "sheet", rng)
    ruled = rng.random() < 0.4
    if ruled:
        spacing = int(rng.integers(24, 48))
        ink = np.maximum(ink, np.where(np.arange(ink.shape[0])[:, None] % spacing == 0, 0.35, 0))
    paper = rng.uniform(0.85, 1.0)
    rgb = np.repeat((paper - (paper - rng.uniform(0, 0.25)) * ink)[..., None], 3, axis=2)
    data, suffix = _encode_rgb(rgb + rng.normal(0, 0.01, rgb.shape), rng, ("PNG", "JPEG"))
    return Photo(data, suffix, text, "scan", "ruled" if ruled else "plain", "none", ())
