"""Layers of our own that are part of a network (not augmentation): `Deskew`, and `Rotate`, the
fixed turn behind test-time views (`ensemble --tta`). `Shift`, the whole-pixel move that earlier
test-time views used, stays so that ensembles saved with it still load.

Registered with Keras, so a `.keras` file holding them reloads in safe mode.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops


def warp(images, transform):
    """`images` resampled through one affine `transform` row per image (Keras's 8-number form,
    mapping each output pixel to the input point it reads), bilinearly, with background (0)
    wherever that point falls outside the frame."""
    return ops.image.affine_transform(images, transform, interpolation="bilinear",
                                      fill_mode="constant", fill_value=0.0)


@keras.saving.register_keras_serializable(package="mnist_digits")
class Deskew(layers.Layer):
    """Straightens each digit's slant and centres its mass, as the MNIST literature does for
    feedforward nets and k-NN (LeCun et al. 1998 list deskewed inputs among their best).

    From the image's intensity moments: the slant is alpha = cov(x, y) / var(y), and the image
    is sheared by -alpha about its centre of mass, which moves to the centre of the frame. A
    feedforward net sees every pixel as a separate input, so a digit that leans differently is
    a different input to it; a convolution shares weights across positions and gains less.

    Input and output: float `(batch, height, width, 1)`, ink high on a dark background. An
    empty image passes through unchanged.
    """

    def call(self, images):
        height, width = images.shape[1], images.shape[2]
        ink = images[..., 0]
        rows = ops.reshape(ops.arange(height, dtype=images.dtype), (1, height, 1))
        cols = ops.reshape(ops.arange(width, dtype=images.dtype), (1, 1, width))
        mass = ops.sum(ink, axis=(1, 2)) + 1e-6
        cy = ops.sum(ink * rows, axis=(1, 2)) / mass
        cx = ops.sum(ink * cols, axis=(1, 2)) / mass
        dy = rows - cy[:, None, None]
        dx = cols - cx[:, None, None]
        var_y = ops.sum(ink * dy * dy, axis=(1, 2)) / mass + 1e-6
        alpha = ops.sum(ink * dx * dy, axis=(1, 2)) / mass / var_y
        one, zero = ops.ones_like(alpha), ops.zeros_like(alpha)
        # Output pixel (x, y) reads input (x + alpha * (y - h/2) + cx - w/2, y + cy - h/2):
        # the shear, and the centre of mass moved to the centre.
        transform = ops.stack([one, alpha, cx - alpha * (height - 1) / 2 - (width - 1) / 2,
                               zero, one, cy - (height - 1) / 2, zero, zero], axis=1)
        return warp(images, transform)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="mnist_digits")
class Shift(layers.Layer):
    """Moves images `dy` pixels down and `dx` right (negative: up, left), filling the uncovered
    border with background (0). Pixels moved out of the frame are lost.

    One test-time view: MNIST centres each digit by its centre of mass and rounds to a whole
    pixel, so a digit one pixel off is as plausible as the one given.
    """

    def __init__(self, dy: int = 0, dx: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dy, self.dx = int(dy), int(dx)

    def call(self, images):
        height, width = images.shape[1], images.shape[2]
        pad = max(abs(self.dy), abs(self.dx))
        padded = ops.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
        # Output row r reads input row r - dy, which sits at r - dy + pad in `padded`.
        top, left = pad - self.dy, pad - self.dx
        return padded[:, top:top + height, left:left + width, :]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dy": self.dy, "dx": self.dx}


@keras.saving.register_keras_serializable(package="mnist_digits")
class Rotate(layers.Layer):
    """Turns images `degrees` counter-clockwise about their centre, with bilinear interpolation;
    pixels that come from outside the frame are background (0).

    One test-time view: writers slant their digits by a few degrees either way, and the
    training augmentation turns digits by up to 10 degrees, so a digit turned a little is as
    plausible as the one given.
    """

    def __init__(self, degrees: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.degrees = float(degrees)

    def call(self, images):
        height, width = images.shape[1], images.shape[2]
        angle = math.radians(self.degrees)
        cos, sin = math.cos(angle), math.sin(angle)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        # Output pixel (x, y) reads the input at R (out - c) + c, R turning by +angle; with y
        # pointing down, that turns the picture counter-clockwise on screen, as scipy's rotate.
        row = ops.convert_to_tensor(
            [[cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0]],
            dtype=images.dtype)
        # One row per image, in memory of its own: torch's affine_transform writes into it, and
        # refuses a repeated or broadcast view.
        transform = ops.ones((ops.shape(images)[0], 1), dtype=images.dtype) * row
        return warp(images, transform)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "degrees": self.degrees}
