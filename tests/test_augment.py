"""Augmentation layers: shapes and ranges, identity at inference, determinism, policy parsing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_digits import augment, config
from mnist_digits.config import resolve_config
from mnist_digits.errors import ConfigError


@pytest.fixture(scope="module")
def digits(mnist_test_set) -> np.ndarray:
    images, _ = mnist_test_set
    return (images[:32, :, :, np.newaxis] / 255.0).astype(np.float32)


def run_policy(policy, images, seed=1, training=True) -> np.ndarray:
    x = images
    for layer in augment.augmentation_layers(policy, seed=seed):
        x = layer(x, training=training)
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("name", [n for n in config.AUGMENT_POLICIES if n != "none"])
def test_policies_keep_shape_dtype_and_range_and_change_the_images(name, digits):
    out = run_policy(config.AUGMENT_POLICIES[name], digits)
    assert out.shape == digits.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    changed = np.abs(out - digits).reshape(len(digits), -1).max(axis=1) > 0.1
    assert changed.mean() > 0.9
    # A digit stays a digit: most of its ink survives (nothing is warped off the frame).
    assert out.sum() == pytest.approx(digits.sum(), rel=0.25)


@pytest.mark.parametrize("policy", [{"rotation": 10.0}, {"shift": 2.0}, {"zoom": 0.1},
                                    {"squish": 0.1}, {"elastic": 34.0}, {"erasing": 1.0},
                                    {"thicken": 1.0}, {"lowres": 1.0}])
def test_every_transform_is_the_identity_at_inference(policy, digits):
    np.testing.assert_array_equal(run_policy(policy, digits, training=False), digits)
    # Called without a `training` argument, as a plain `model(x)` does, too.
    x = digits
    for layer in augment.augmentation_layers(policy, seed=0):
        x = layer(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(x), digits)


def test_thicker_pens_add_ink_and_low_resolution_blurs(digits):
    thick = run_policy({"thicken": 1.0}, digits)
    assert (thick >= digits - 1e-6).all() and thick.sum() > 1.3 * digits.sum()
    blurred = run_policy({"lowres": 1.0}, digits)
    assert blurred.shape == digits.shape and blurred.max() <= 1.0 + 1e-6
    # Every image keeps a full-strength peak, as preprocessed frames do, but has lost detail:
    # fewer pixels at the extremes.
    np.testing.assert_allclose(blurred.reshape(len(digits), -1).max(axis=1), 1.0, atol=1e-5)
    extremes = ((blurred < 0.05) | (blurred > 0.95)).mean()
    assert extremes < ((digits < 0.05) | (digits > 0.95)).mean()
    half = run_policy({"thicken": 0.5}, digits, seed=2)
    changed = np.abs(half - digits).reshape(len(digits), -1).max(axis=1) > 0.1
    assert 0.2 < changed.mean() < 0.8  # about half the images, each all or nothing


def test_elastic_distortion_moves_ink_smoothly_and_keeps_the_digit(digits):
    out = run_policy({"elastic": 34.0}, digits)
    assert out.shape == digits.shape and out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    changed = np.abs(out - digits).reshape(len(digits), -1).max(axis=1) > 0.1
    assert changed.all()
    assert out.sum() == pytest.approx(digits.sum(), rel=0.1)
    # Bilinear weights sum to one: a uniform page stays uniform wherever no sample leaves the
    # frame, which holds well inside it (the smoothed field moves pixels a few at most).
    page = keras.ops.convert_to_numpy(augment.ElasticDistortion(34.0, 4.0, seed=0)(
        np.ones((8, 28, 28, 1), np.float32), training=True))
    np.testing.assert_allclose(page[:, 10:18, 10:18], 1.0, atol=1e-5)
    # A smoother field (larger sigma) at the same alpha moves pixels less, as in Simard et al.
    rough = run_policy({"elastic": 34.0, "elastic_sigma": 2.0}, digits)
    smooth = run_policy({"elastic": 34.0, "elastic_sigma": 8.0}, digits)
    assert np.abs(smooth - digits).mean() < np.abs(out - digits).mean() < np.abs(
        rough - digits).mean()


def test_elastic_distortion_indexes_every_image_of_a_large_batch(mnist_test_set):
    # Past 2**24 flat pixels (18,000 images) float32 indices would read the wrong pixels; a
    # near-zero field must give back every image, the last ones too.
    images = np.concatenate([mnist_test_set[0]] * 2)[..., np.newaxis].astype(np.float32) / 255.0
    layer = augment.ElasticDistortion(alpha=1e-3, sigma=4.0, seed=0)
    out = keras.ops.convert_to_numpy(layer(images, training=True))
    np.testing.assert_allclose(out[-100:], images[-100:], atol=1e-2)


def test_zero_ranges_are_the_identity_even_in_training(digits):
    layer = augment.RandomAffine(rotation=0, shift=0, zoom=0, squish=0, seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(digits, training=True)),
                                  digits)


def test_a_pure_shift_moves_the_centre_of_mass_by_at_most_the_range(digits):
    out = run_policy({"shift": 3.0}, digits)
    rows = np.arange(28)[None, :, None]
    com_in = (digits[..., 0] * rows).sum((1, 2)) / digits[..., 0].sum((1, 2))
    com_out = (out[..., 0] * rows).sum((1, 2)) / out[..., 0].sum((1, 2))
    assert np.abs(com_out - com_in).max() <= 3.0 + 0.5
    assert np.abs(com_out - com_in).max() > 0.5


def test_the_same_seed_gives_the_same_augmentation(digits):
    policy = config.AUGMENT_POLICIES["strong"]
    keras.utils.set_random_seed(7)
    first = run_policy(policy, digits, seed=3)
    keras.utils.set_random_seed(7)
    again = run_policy(policy, digits, seed=3)
    other = run_policy(policy, digits, seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_augmented_model_saves_and_reloads_in_safe_mode(tmp_path, digits):
    from mnist_digits import models, predict

    bare = models.build_model("mlp_small")
    model = augment.with_augmentation(bare, config.AUGMENT_POLICIES["strong"] | {
        "elastic": 34.0, "thicken": 0.2, "lowres": 0.2}, seed=0)
    assert model.name == bare.name
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = predict.load_model(path)
    np.testing.assert_allclose(predict.predict_proba(loaded, digits),
                               predict.predict_proba(bare, digits), atol=1e-6)


def test_parse_policy_names_and_pairs():
    assert config.parse_augment_policy("none") == {}
    assert config.parse_augment_policy("standard") == config.AUGMENT_POLICIES["standard"]
    assert config.parse_augment_policy("rotation=12, shift=2") == {"rotation": 12.0, "shift": 2.0}


@pytest.mark.parametrize("text, message", [
    ("wobbly", "unknown augmentation policy"),
    ("rotation=ten", "not key=number"),
    ("spin=3", "unknown augmentation parameter"),
    ("rotation=400", "must be a number in [0, 45]"),
])
def test_bad_policies_are_refused_clearly(text, message):
    # The parser checks the syntax and the config the keys and ranges: the user sees either.
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.TrainConfig(augment=config.parse_augment_policy(text))


def test_config_takes_the_policy_from_the_recipe_file_or_flag():
    assert resolve_config({}, {"model": "mlp_small"}).augment == {}
    from_file = resolve_config({"augment": {"shift": 2}}, {"model": "mlp_small"})
    assert from_file.augment == {"shift": 2.0}
    flag = resolve_config({"augment": {"shift": 2}}, {"model": "mlp_small",
                                                       "augment": {"rotation": 5.0}})
    assert flag.augment == {"rotation": 5.0}
    with pytest.raises(ConfigError, match="augmentation"):
        resolve_config({"augment": {"rotation": "lots"}}, {})


def test_training_with_augmentation_writes_a_normal_run(tmp_path, tiny_splits):
    from mnist_digits import runs, train

    standard = config.AUGMENT_POLICIES["standard"]
    resolved = resolve_config({}, {"model": "mlp_small", "epochs": 1, "batch_size": 32,
                                   "augment": standard})
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    metrics = train.train(resolved, run_dir, splits=tiny_splits)
    assert 0 <= metrics["test"]["accuracy"] <= 1
    assert runs.read_config(run_dir).config.augment == standard
