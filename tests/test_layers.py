"""`layers.Deskew`: a slanted stroke comes out upright and centred; `layers.Shift` moves whole
pixels over a blank border; `layers.Rotate` turns like SciPy's rotate; all save and reload."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import random_inner_ink, turned

from mnist_digits import modelfile, predict
from mnist_digits.layers import Deskew, Rotate, Shift


def slanted_bar(lean: float, shift: int = 0) -> np.ndarray:
    """A 2-pixel-wide vertical bar, sheared by `lean` pixels per row, moved `shift` right."""
    image = np.zeros((1, 28, 28, 1), np.float32)
    for row in range(4, 24):
        col = round(14 + shift + lean * (row - 14))
        image[0, row, col:col + 2, 0] = 1.0
    return image


def moments(image: np.ndarray) -> tuple[float, float, float]:
    """Centre column, centre row, and the slant cov(x, y) / var(y)."""
    ink = image[0, ..., 0]
    rows, cols = np.mgrid[:28, :28]
    mass = ink.sum()
    cy, cx = (ink * rows).sum() / mass, (ink * cols).sum() / mass
    slant = (ink * (cols - cx) * (rows - cy)).sum() / (ink * (rows - cy) ** 2).sum()
    return cx, cy, slant


def test_a_slanted_stroke_comes_out_upright_and_centred():
    image = slanted_bar(0.4, shift=3)
    assert abs(moments(image)[2]) > 0.3
    out = keras.ops.convert_to_numpy(Deskew()(image))
    cx, cy, slant = moments(out)
    assert abs(slant) < 0.05
    assert abs(cx - 13.5) < 0.6 and abs(cy - 13.5) < 0.6
    assert out.shape == image.shape and abs(out.sum() - image.sum()) / image.sum() < 0.1


def test_an_upright_centred_digit_is_left_alone():
    image = slanted_bar(0.0)
    image = np.roll(image, -1, axis=2)  # the bar's centre on the frame's centre, 13.5
    out = keras.ops.convert_to_numpy(Deskew()(image))
    np.testing.assert_allclose(out, image, atol=0.05)


def test_an_empty_image_stays_empty():
    out = keras.ops.convert_to_numpy(Deskew()(np.zeros((2, 28, 28, 1), np.float32)))
    assert np.all(np.isfinite(out)) and not out.any()


def saved_and_reloaded(features, tmp_path) -> keras.Model:
    """A softmax model over `features(inputs)`, saved and reloaded in safe mode; it predicts
    what the model in memory predicts."""
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(
        keras.layers.Flatten()(features(inputs))))
    path = tmp_path / "model.keras"
    modelfile.save_model(model, path)
    loaded = predict.load_model(path)
    image = slanted_bar(0.3)
    np.testing.assert_allclose(predict.predict_proba(loaded, image),
                               predict.predict_proba(model, image), atol=1e-6)
    return loaded


def test_a_model_with_deskew_saves_and_reloads_in_safe_mode(tmp_path):
    loaded = saved_and_reloaded(Deskew(), tmp_path)
    assert any(isinstance(layer, Deskew) for layer in loaded.layers)


@pytest.mark.parametrize("dy, dx", [(1, 0), (-1, 0), (0, 1), (0, -1), (2, -3)])
def test_shift_moves_every_pixel_and_blanks_the_border_it_uncovers(dy, dx):
    image = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32) + 0.5
    out = keras.ops.convert_to_numpy(Shift(dy, dx)(image))
    assert out.shape == image.shape
    # Pixel (r, c) came from (r - dy, c - dx) where that is inside the frame; elsewhere blank.
    rows, cols = np.mgrid[:28, :28]
    inside = (rows - dy >= 0) & (rows - dy < 28) & (cols - dx >= 0) & (cols - dx < 28)
    source = image[:, np.clip(rows - dy, 0, 27), np.clip(cols - dx, 0, 27)]
    np.testing.assert_array_equal(out[:, inside], source[:, inside])
    assert not out[:, ~inside].any()
    assert inside.sum() == (28 - abs(dy)) * (28 - abs(dx))


def test_a_model_with_shifts_saves_and_reloads_in_safe_mode(tmp_path):
    loaded = saved_and_reloaded(
        lambda x: keras.layers.Average()([Shift(-1, 0)(x), Shift(0, 2)(x)]), tmp_path)
    assert [(s.dy, s.dx) for s in loaded.layers if isinstance(s, Shift)] == [(-1, 0), (0, 2)]


@pytest.mark.parametrize("degrees", [4.0, -4.0, 17.0, 90.0])
def test_rotate_turns_counter_clockwise_as_scipy_does(degrees):
    image = random_inner_ink(2, seed=0)
    out = keras.ops.convert_to_numpy(Rotate(degrees)(image))
    np.testing.assert_allclose(out, turned(image, degrees), atol=1e-5)
    # A dot right of the centre goes up (smaller row) for a counter-clockwise quarter turn.
    dot = np.zeros((1, 29, 29, 1), np.float32)
    dot[0, 14, 24] = 1.0
    quarter = keras.ops.convert_to_numpy(Rotate(90.0)(dot))[0, ..., 0]
    assert np.unravel_index(quarter.argmax(), quarter.shape) == (4, 14)


def test_a_model_with_rotations_saves_and_reloads_in_safe_mode(tmp_path):
    loaded = saved_and_reloaded(
        lambda x: keras.layers.Average()([Rotate(-4.0)(x), Rotate(6.5)(x)]), tmp_path)
    assert [r.degrees for r in loaded.layers if isinstance(r, Rotate)] == [-4.0, 6.5]
