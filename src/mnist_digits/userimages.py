"""Synthetic "user-style" images of real MNIST test digits, to measure the `predict` path.

Each MNIST test digit is enlarged and drawn onto a large canvas at a random position and size,
as dark ink on light paper or light ink on dark, with some of: uneven lighting, paper noise,
thinner or thicker strokes, JPEG compression, a transparent background, a tinted colour. This is
what a photo, a scan or a canvas export looks like to the preprocessor, with a known label.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

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
    return UserImage(buffer.getvalue(), suffix, kind, int(label))


def naive_frame(data: bytes) -> np.ndarray:
    """What most demos do: shrink the whole image to 28x28 (inverting light paper).

    Used only to show, side by side, why proper preprocessing matters.
    """
    image = Image.open(io.BytesIO(data))
    image.seek(0)
    gray = np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BILINEAR),
                      dtype=np.float32) / 255
    return 1 - gray if np.median(gray) > 0.5 else gray
