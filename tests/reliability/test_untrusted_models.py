"""Untrusted model files: only `.keras` loads, in safe mode, without code or unknown classes, and
a file that no longer matches its manifest is flagged."""

from __future__ import annotations

import json
import logging
import re
import tomllib
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import one_line_error
from packaging.version import Version

from mnist_digits import modelfile, models, predict
from mnist_digits.cli import main
from mnist_digits.errors import RunError

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.keras"
    modelfile.save_model(models.build_model("mlp_small"), path)
    return path


def refused(capsys, model_path, *fragments) -> None:
    """`predict --model PATH` exits 2 with one line that explains the refusal."""
    image = Path(__file__).parents[2] / "docs"
    one_line_error(capsys, main(["predict", "--model", str(model_path), str(image)]), 2,
                   *fragments)


@pytest.mark.parametrize(("name", "fragment"), [
    ("model.h5", "HDF5"), ("model.hdf5", "HDF5"), ("model.pkl", "pickle"),
    ("model.pickle", "pickle"), ("model.joblib", "pickle"), ("model.pt", "PyTorch"),
    ("model.onnx", "only .keras model files"),
])
def test_other_formats_are_refused_with_the_reason(name, fragment, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    refused(capsys, path, fragment)


def test_a_savedmodel_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "exported"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    refused(capsys, folder, "SavedModel")


def test_a_lambda_layer_is_refused(tmp_path, capsys):
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    refused(capsys, path, "Lambda layer")


def test_a_model_from_a_newer_keras_is_refused(saved, tmp_path, capsys):
    path = tmp_path / "future.keras"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == "metadata.json":
                content = json.dumps({**json.loads(content), "keras_version": "9.0.0"}).encode()
            target.writestr(item, content)
    refused(capsys, path, "saved with Keras 9.0.0, newer than this Keras", "pip install -U keras")


def test_an_unregistered_class_is_refused(tmp_path, capsys):
    @keras.saving.register_keras_serializable(package="evil")
    class Exfiltrate(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((28, 28, 1))
    x = Exfiltrate()(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    path = tmp_path / "custom.keras"
    model.save(path)
    del keras.saving.get_custom_objects()["evil>Exfiltrate"]  # as on a machine without it
    refused(capsys, path, "neither a Keras class nor one of mnist-digits'")


def test_a_non_archive_with_the_keras_suffix_is_refused(tmp_path, capsys):
    path = tmp_path / "model.keras"
    path.write_text("not a zip")
    refused(capsys, path, "not a Keras model archive")


def test_saving_writes_a_manifest(saved):
    manifest = json.loads(modelfile.manifest_path(saved).read_text())
    assert manifest["sha256"] == modelfile.sha256_file(saved)
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert manifest["input_shape"] == [28, 28, 1]
    assert manifest["keras"] == keras.__version__ and manifest["backend_version"]


def test_a_model_that_no_longer_matches_its_manifest_loads_with_a_warning(saved, tmp_path,
                                                                          caplog):
    changed = tmp_path / "model.keras"
    models.build_model("mlp_small").save(changed)  # different weights, old manifest
    modelfile.manifest_path(changed).write_text(modelfile.manifest_path(saved).read_text())
    with caplog.at_level(logging.WARNING, logger="mnist_digits"):
        model = predict.load_model(changed)
    assert model is not None
    assert any("does NOT match its manifest" in r.getMessage() for r in caplog.records)


def test_a_matching_manifest_gives_no_warning(saved, caplog):
    with caplog.at_level(logging.WARNING, logger="mnist_digits"):
        predict.load_model(saved)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_trained_runs_and_ensembles_save_through_the_manifest_writer(tmp_path, tiny_splits):
    from mnist_digits import runs, train
    from mnist_digits.config import resolve_config

    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    train.train(resolve_config({}, {"model": "mlp_small", "epochs": 1}), run_dir,
                splits=tiny_splits)
    manifest = json.loads(modelfile.manifest_path(run_dir / runs.MODEL).read_text())
    assert manifest["sha256"] == modelfile.sha256_file(run_dir / runs.MODEL)
    x = np.zeros((1, 28, 28, 1), np.float32)
    assert predict.predict_proba(predict.load_model(run_dir), x).shape == (1, 10)


def test_the_dependency_floors_with_the_security_fixes():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def pinned(package: str) -> Version:
        (spec,) = [p for p in pins if re.match(rf"{package}\s*[=<>~!]", p)]
        return Version(re.split(r"[=<>~!]=?", spec, maxsplit=1)[1].split(",")[0].strip("= "))

    assert pinned("keras") >= Version("3.15.1")
    assert pinned("pillow") >= Version("12.3.0")
    assert Version(keras.__version__) >= Version("3.15.1")
    import PIL

    assert Version(PIL.__version__) >= Version("12.3.0")


def test_a_missing_model_is_a_one_line_error(tmp_path):
    with pytest.raises(RunError, match="not found"):
        predict.load_model(tmp_path / "nope.keras")
