"""Every registered model, through the registry: shape, probabilities, save and safe reload."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_digits import models, predict
from mnist_digits.errors import ConfigError

ALL_MODELS = models.list_models()


def test_registry_has_the_required_presets():
    assert {"mlp_classic", "cnn_keras_io", "cnn_bn", "cnn_fast", "mlp_fast", "mlp_aug",
            "cnn_best"} <= set(ALL_MODELS)
    assert len(models.list_models("mlp")) >= 3
    assert len(models.list_models("cnn")) >= 2


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_save_and_safe_reload(name, tmp_path):
    model = models.build_model(name)
    assert model.name == name
    images = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    probabilities = predict.predict_proba(model, images)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(predict.predict_proba(reloaded, images), probabilities)
    assert models.count_params(reloaded) == models.count_params(model) > 0


def test_classic_ffnn_matches_the_original_architecture():
    model = models.build_model("mlp_classic")
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [512, 512, 10]
    dropout = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropout == [0.2, 0.2]
    assert models.count_params(model) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10


def test_keras_io_convnet_parameter_count():
    # The keras-io "simple MNIST convnet" summary reports 34,826 trainable parameters.
    assert models.count_params(models.build_model("cnn_keras_io")) == 34826


def test_options_override_the_preset():
    model = models.build_model("mlp_classic", dropout=0.4, hidden=[64])
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [64, 10]
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] \
        == [0.4]


def test_a_deskewed_cnn_sees_the_same_digit_whatever_its_slant():
    from mnist_digits.layers import Deskew

    model = models.build_model("cnn_best", deskew=True)
    assert isinstance(model.layers[1], Deskew)
    # The deskewed input of a slanted stroke and of the upright one are nearly the same image.
    upright = np.zeros((1, 28, 28, 1), np.float32)
    upright[0, 6:22, 13:15] = 1.0
    slanted = np.zeros_like(upright)
    for row in range(6, 22):
        col = 13 + (row - 14) // 3
        slanted[0, row, col:col + 2] = 1.0
    deskew = keras.Model(model.input, model.layers[1].output)
    a, b = (keras.ops.convert_to_numpy(deskew(x)) for x in (upright, slanted))
    assert np.abs(a - b).sum() < 0.3 * np.abs(upright - slanted).sum()


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match=r"unknown model 'cnn_b'.*did you mean cnn_bn"):
        models.get_model_spec("cnn_b")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"no option.*filters.*its options are hidden"):
        models.build_model("mlp_small", filters=3)


def test_bad_option_value_is_a_config_error():
    with pytest.raises(ConfigError, match="head"):
        models.build_model("cnn_bn", head="pyramid")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_recipe_is_a_valid_config(name):
    from mnist_digits.config import resolve_config

    config = resolve_config({}, {"model": name})
    assert config.model == name
    for key, value in models.get_model_spec(name).recipe.items():
        assert getattr(config, key) == value


def test_train_without_a_model_uses_the_fast_cnn_and_its_recipe():
    from mnist_digits.config import resolve_config

    config = resolve_config({}, {})
    assert config.model == "cnn_fast"
    assert config.epochs == models.get_model_spec("cnn_fast").recipe["epochs"]
