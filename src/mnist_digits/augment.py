"""On-the-fly data augmentation, as Keras layers that run inside the model during training only.

`RandomAffine` draws one rotation, shift, zoom and "squish" (a change of aspect ratio) per image
and applies them as a single affine warp, so each image is interpolated once rather than once per
transform (sharper digits, and a third of the work of chaining RandomRotation, RandomTranslation
and RandomZoom). `ElasticDistortion` is Simard et al.'s elastic warp, and Keras's own
`RandomErasing` the other optional extra.

The layers sit in front of the network (`with_augmentation`), so augmentation costs no Python
per batch, runs on whatever backend Keras uses, and is the identity at inference: the saved
`model.keras` predicts exactly as the bare network would.

`RandomScan` imitates what users' pens and scanners do that MNIST rarely shows: thick strokes
and low-resolution scans enlarged.

A policy is a plain mapping, stored in the run's config as `augment`:
    {"rotation": 10, "shift": 2, "zoom": 0.1, "squish": 0.1, "elastic": 0, "elastic_sigma": 4,
     "erasing": 0, "thicken": 0, "lowres": 0}
Missing keys mean "off". `config.AUGMENT_PARAMETERS` lists the keys and their ranges, and
`config.AUGMENT_POLICIES` names the common policies for `train --augment NAME`; `TrainConfig`
checks a policy once, and the layers here trust it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from mnist_digits.layers import warp

# Simard et al.'s smoothness of the elastic field, when a policy gives `elastic` alone.
ELASTIC_SIGMA = 4.0


@keras.saving.register_keras_serializable(package="mnist_digits")
class RandomAffine(layers.Layer):
    """Random rotation, shift, zoom and squish of (n, h, w, c) images, as one affine warp.

    Each image gets its own draw: angle uniform in +-`rotation` degrees, shift uniform in
    +-`shift` pixels per axis, scale uniform in 1+-`zoom`, and aspect ratio uniform in 1+-`squish`
    (width and height scaled in opposite directions). Pixels that come from outside the image are
    0, MNIST's background. At inference (`training=False`) it returns its input unchanged.

    Args:
        rotation, shift, zoom, squish: ranges, as in `PARAMETERS`.
        seed: seed of the layer's own random stream; with `keras.utils.set_random_seed` also set,
            the same seed gives the same augmented batches.
    """

    def __init__(self, rotation: float = 0.0, shift: float = 0.0, zoom: float = 0.0,
                 squish: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rotation, self.shift, self.zoom, self.squish = rotation, shift, zoom, squish
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, images, training=False):
        if not training or not (self.rotation or self.shift or self.zoom or self.squish):
            return images
        n = ops.shape(images)[0]
        height, width = ops.shape(images)[1], ops.shape(images)[2]

        def uniform(limit: float):
            return keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)

        angle = uniform(math.radians(self.rotation))
        scale = 1.0 + uniform(self.zoom)
        aspect = 1.0 + uniform(self.squish)
        sx, sy = scale * aspect, scale / aspect
        dx, dy = uniform(self.shift), uniform(self.shift)
        cos, sin = ops.cos(angle), ops.sin(angle)
        # affine_transform maps each *output* pixel (x, y) to the input point it samples:
        # in = A (out - c) + c - d with A = R(angle) diag(1/sx, 1/sy) about the centre c.
        a0, a1 = cos / sx, -sin / sy
        b0, b1 = sin / sx, cos / sy
        cx = (ops.cast(width, "float32") - 1.0) / 2.0
        cy = (ops.cast(height, "float32") - 1.0) / 2.0
        a2 = cx - a0 * cx - a1 * cy - dx
        b2 = cy - b0 * cx - b1 * cy - dy
        zeros = ops.zeros_like(a0)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return warp(images, transform)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rotation": self.rotation, "shift": self.shift,
                "zoom": self.zoom, "squish": self.squish, "seed": self.seed}


@keras.saving.register_keras_serializable(package="mnist_digits")
class ElasticDistortion(layers.Layer):
    """Simard et al.'s (2003) elastic distortion: each pixel moves along a smooth random field.

    Per image, a displacement field of uniform(-1, 1) noise per pixel and axis is smoothed by a
    Gaussian of standard deviation `sigma` pixels and scaled by `alpha`; the image is resampled
    along it (bilinear, background outside the frame). Simard et al. used alpha 34 and sigma 4 on
    MNIST, and elastic distortion took their 800-unit MLP from 98.9% (affine only) to 99.3%.

    Keras's own `RandomElasticTransform` derives the Gaussian's size from a random draw in
    Python, so it cannot be traced under JAX's jit, and it draws one strength per batch with a
    field smoothed over a pixel or so; this layer is plain `keras.ops` on every backend. The
    identity unless called with `training=True`.

    Args:
        alpha: scale of the smoothed field, pixels.
        sigma: smoothness of the field, pixels.
        seed: seed of the layer's own random stream.
    """

    def __init__(self, alpha: float = 34.0, sigma: float = ELASTIC_SIGMA,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha, self.sigma, self.seed = alpha, sigma, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        radius = max(1, math.ceil(3 * sigma))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        # One normalised 1-D Gaussian, as depthwise kernels along rows and along columns, for
        # both field channels.
        taps = np.tile((taps / taps.sum()).astype(np.float32)[:, None, None, None], (1, 1, 2, 1))
        self._kernels = (taps, taps.transpose(1, 0, 2, 3))

    def call(self, images, training=False):
        if not training or not self.alpha:
            return images
        n, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        field = keras.random.uniform((n, height, width, 2), -1.0, 1.0, seed=self.seed_generator)
        for kernel in self._kernels:
            field = ops.depthwise_conv(field, kernel, padding="same")
        field = self.alpha * field
        # Bilinear sampling by hand, as 4 gathers from all the images flattened, each image
        # with a background border: `map_coordinates` needs the batch size known when traced.
        # Coordinates are clipped into the border, so a sample that leaves its own frame reads
        # background, never the next image.
        rows = ops.reshape(ops.arange(height, dtype=field.dtype), (1, height, 1)) + field[..., 0]
        cols = ops.reshape(ops.arange(width, dtype=field.dtype), (1, 1, width)) + field[..., 1]
        rows = ops.clip(rows, -1.0, float(height))
        cols = ops.clip(cols, -1.0, float(width))
        top = ops.clip(ops.floor(rows), -1.0, height - 1.0)
        left = ops.clip(ops.floor(cols), -1.0, width - 1.0)
        down, right = rows - top, cols - left
        tall, wide = height + 2, width + 2
        flat = ops.reshape(ops.pad(images[..., 0], ((0, 0), (1, 1), (1, 1))), (-1,))
        # Integer arithmetic: as float32, indices past 2**24 (18,000 images) would be rounded.
        base = (ops.reshape(ops.arange(n, dtype="int32"), (-1, 1, 1)) * (tall * wide)
                + (ops.cast(top, "int32") + 1) * wide + ops.cast(left, "int32") + 1)

        def pixel(offset: int):
            return ops.take(flat, base + offset)

        out = ((1 - down) * ((1 - right) * pixel(0) + right * pixel(1))
               + down * ((1 - right) * pixel(wide) + right * pixel(wide + 1)))
        return ops.cast(out[..., None], images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma,
                "seed": self.seed}


# Keras's image preprocessing layers default to `training=True`, so a plain `model(x)` would
# distort the input at inference. These subclasses make inference the default, like RandomAffine.
@keras.saving.register_keras_serializable(package="mnist_digits")
class RandomElastic(layers.RandomElasticTransform):
    """Keras's `RandomElasticTransform`, the identity unless called with `training=True`.

    No policy builds it any more (`ElasticDistortion` replaced it); it stays registered so that
    models saved with it still load.
    """

    def call(self, data, training=False):
        return super().call(data, training=training)


@keras.saving.register_keras_serializable(package="mnist_digits")
class RandomErasing(layers.RandomErasing):
    """Keras's `RandomErasing`, the identity unless called with `training=True`."""

    def call(self, data, training=False):
        return super().call(data, training=training)


@keras.saving.register_keras_serializable(package="mnist_digits")
class RandomScan(layers.Layer):
    """What pens and scanners do to a digit: thicker strokes, or a low-resolution scan enlarged.

    Each image is thickened (a 3x3 grey dilation) with probability `thicken`, and independently
    brought down to 10x10 or 14x14 pixels and back up with probability `lowres`, then scaled so
    its brightest pixel is 1 again, as `reading.frame` scales every frame. Real users' thick felt
    pens and 16-pixel scans give frames that MNIST itself has few of. The identity unless called
    with `training=True`.

    Args:
        thicken, lowres: probabilities, as in `PARAMETERS`.
        seed: seed of the layer's own random stream.
    """

    def __init__(self, thicken: float = 0.0, lowres: float = 0.0, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.thicken, self.lowres, self.seed = thicken, lowres, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or not (self.thicken or self.lowres):
            return images
        n = ops.shape(images)[0]
        height, width = ops.shape(images)[1], ops.shape(images)[2]

        def chosen(probability: float):
            draw = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator)
            return ops.cast(draw < probability, images.dtype)

        out = images
        if self.thicken:
            thick = ops.max_pool(out, pool_size=3, strides=1, padding="same")
            out = out + chosen(self.thicken) * (thick - out)
        if self.lowres:
            coarse = chosen(0.5)
            # Antialiased bilinear, not "area": only TensorFlow has area resizing, and this
            # gives the same pixels on every backend (to 1e-7).
            small = [ops.image.resize(ops.image.resize(out, (side, side), antialias=True),
                                      (height, width), interpolation="bilinear")
                     for side in (10, 14)]
            blurred = coarse * small[0] + (1 - coarse) * small[1]
            peak = ops.maximum(ops.max(blurred, axis=(1, 2, 3), keepdims=True), 1e-6)
            out = out + chosen(self.lowres) * (blurred / peak - out)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thicken": self.thicken, "lowres": self.lowres,
                "seed": self.seed}


def augmentation_layers(policy: Mapping[str, float], seed: int | None = None) -> list:
    """The layers a policy asks for, in order: affine warp, pen and scan, elastic distortion,
    erasing.

    Args:
        policy: a policy checked by `config.check_augment_policy` (a `TrainConfig`'s `augment`).
        seed: seed of the layers' random draws.
    """
    stack: list[layers.Layer] = []
    affine = {k: policy[k] for k in ("rotation", "shift", "zoom", "squish") if k in policy}
    if affine:
        stack.append(RandomAffine(**affine, seed=seed, name="random_affine"))
    scan = {k: policy[k] for k in ("thicken", "lowres") if k in policy}
    if scan:
        stack.append(RandomScan(**scan, seed=seed, name="random_scan"))
    if "elastic" in policy:
        stack.append(ElasticDistortion(alpha=policy["elastic"],
                                       sigma=policy.get("elastic_sigma", ELASTIC_SIGMA),
                                       seed=seed, name="elastic_distortion"))
    if "erasing" in policy:
        # Erased rectangles become background (0), like a gap in a stroke.
        stack.append(RandomErasing(
            factor=policy["erasing"], scale=(0.02, 0.15), fill_value=0.0,
            value_range=(0.0, 1.0), seed=seed, name="random_erasing"))
    return stack


def with_augmentation(model: keras.Model, policy: Mapping[str, float],
                      seed: int | None = None) -> keras.Model:
    """`model` with the policy's augmentation layers in front (`model` itself for an empty one).

    The result keeps the network's name, input and output, so it trains, saves and predicts like
    the bare network. The augmentation layers are active only when called with `training=True`.
    """
    return augmented(model, policy, seed)[0]


def augmented(model: keras.Model, policy: Mapping[str, float], seed: int | None = None
              ) -> tuple[keras.Model, keras.KerasTensor]:
    """`with_augmentation`'s model, and the symbolic augmented images that its network reads.

    A training model that needs those images too (`distill.with_teacher`, whose teacher reads
    the same distorted digits as the student) builds on the second value.
    """
    stack = augmentation_layers(policy, seed)
    if not stack:
        return model, model.input
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, model(x), name=model.name), x
