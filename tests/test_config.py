"""Config precedence (defaults < model recipe < file < CLI) and validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mnist_digits import models
from mnist_digits.config import DEFAULT_MODEL, TrainConfig, read_config_file, resolve_config
from mnist_digits.errors import ConfigError


def test_defaults_then_recipe():
    config = resolve_config()
    assert config.model == DEFAULT_MODEL
    recipe = models.get_model_spec(DEFAULT_MODEL).recipe
    for key, value in recipe.items():
        assert getattr(config, key) == value


def test_the_default_split_is_50k_10k_10k():
    from mnist_digits import data

    splits = data.load_splits(**TrainConfig().split)
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (50_000, 10_000,
                                                                           10_000)


def test_file_beats_recipe_and_cli_beats_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": "mlp_classic", "epochs": 7, "batch_size": 64,
                                "model_options": {"dropout": 0.3, "hidden": [32]}}))
    config = resolve_config(read_config_file(path),
                            {"epochs": 3, "seed": None, "model_options": {"dropout": 0.1}})
    assert config.model == "mlp_classic"
    assert config.epochs == 3            # CLI over file
    assert config.batch_size == 64       # file over recipe/default
    assert config.seed == 0              # None means "flag not given"
    assert config.model_options == {"dropout": 0.1, "hidden": [32]}  # merged key by key


def test_cli_model_picks_that_models_recipe(tmp_path):
    config = resolve_config({}, {"model": "cnn_keras_io"})
    assert config.epochs == models.get_model_spec("cnn_keras_io").recipe["epochs"]


def test_run_config_json_is_accepted_as_config_file(tmp_path):
    config = resolve_config({}, {"model": "mlp_small", "epochs": 2})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"config": config.to_dict(), "environment": {"keras": "3"}}))
    assert resolve_config(read_config_file(path)) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"epochs": "ten"}, "'epochs' must be int"),
        ({"epochs": True}, "'epochs' must be int"),
        ({"optimizer": "adagrad"}, "unknown optimizer"),
        ({"lr_schedule": "step"}, "unknown lr_schedule"),
        ({"learning_rate": -1.0}, "learning_rate must be positive"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"val_size": 0}, "val_size"),
        ({"model": "resnet"}, "unknown model"),
        ({"model_options": {"nope": 1}}, "has no option"),
        ({"lr_schedule": "warmup_cosine", "epochs": 2, "warmup_epochs": 2.0}, "warmup_epochs"),
        ({"colour": "red"}, "unknown config key"),
    ],
)
def test_invalid_values_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(values)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_bad_config_file(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.json"):
        read_config_file(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "nope.json")


def test_a_saved_config_reads_back_equal():
    # What config.json stores must rebuild the same config (resume and repeat depend on it).
    config = resolve_config({}, {"model": "cnn_reader", "model_options": {"dropout": 0.3}})
    assert TrainConfig(**json.loads(json.dumps(config.to_dict()))) == config


def test_every_field_has_help_for_its_flag():
    for field in dataclasses.fields(TrainConfig):
        assert field.metadata.get("help"), field.name
