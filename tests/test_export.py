"""`export`: each format reloaded with its own runtime and compared with the Keras model."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from helpers import one_line_error

from mnist_digits import data, export
from mnist_digits.cli import main


@pytest.fixture(scope="module")
def digits(mnist_test_set):
    return data.normalize_images(mnist_test_set[0][:300])


@pytest.mark.parametrize(("fmt", "name"), [("savedmodel", "saved"), ("litert", "m.tflite"),
                                           ("onnx", "m.onnx")])
def test_export_matches_keras(fmt, name, mnist_model, digits, tmp_path):
    report = export.export_and_verify(mnist_model, fmt, tmp_path / name, images=digits)
    assert report["images"] == 300
    assert report["argmax_agreement"] == 1.0
    assert report["max_abs_diff"] <= export.TOLERANCE
    assert (tmp_path / name).exists()


def test_missing_runtime_fails_clearly_and_leaves_nothing(mnist_model, digits, tmp_path,
                                                          monkeypatch):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(export.ExportError,
                       match=r"onnx export needs the export extra.*onnxruntime.*\[export\]"):
        export.export_and_verify(mnist_model, "onnx", tmp_path / "m.onnx", images=digits)
    assert not (tmp_path / "m.onnx").exists()


def test_disagreement_is_refused(mnist_model, digits, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "_runner", lambda fmt, path: lambda x: np.full(
        (len(x), 10), 0.1, np.float32))
    with pytest.raises(export.ExportError, match="disagrees with the Keras model"):
        export.export_and_verify(mnist_model, "litert", tmp_path / "m.tflite", images=digits)
    assert not (tmp_path / "m.tflite").exists()


def test_export_cli_refuses_an_unknown_format(capsys, mnist_run, tmp_path):
    code = main(["export", "--model", str(mnist_run), "--format", "coreml", "--out",
                 str(tmp_path / "m.mlmodel")])
    one_line_error(capsys, code, 2, "invalid choice")


@pytest.mark.parametrize(("fmt", "name"), [("savedmodel", "saved"), ("litert", "m.tflite"),
                                           ("onnx", "m.onnx")])
def test_every_format_exports_the_freshly_loaded_packaged_model(fmt, name, capsys, tmp_path):
    # The CLI loads the file anew: a model that has never been called (ONNX refused those), and
    # one whose calibration layer must go into the export.

    out = tmp_path / name
    assert main(["export", "--model", "packaged", "--format", fmt,
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "argmax agreement 100.00%" in lines[0] and lines[-1] == str(out)


def test_a_missing_export_extra_is_refused_before_anything_is_written(capsys, tmp_path,
                                                                     monkeypatch):
    # As in a wheel installed without [export]: the converter's module cannot be found.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else real(name, *a))
    out = tmp_path / "m.tflite"
    code = main(["export", "--model", "packaged", "--format", "litert", "--out", str(out)])
    one_line_error(capsys, code, 1, "needs the export extra", "ai_edge_litert",
                   "pip install 'mnist-digits[export]'")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_runtime_that_fails_to_import_is_one_line_saying_how_to_install_it(capsys, mnist_run,
                                                                     tmp_path, monkeypatch):
    from mnist_digits import export

    def runner_without_the_extra(fmt, out):
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr(export, "_runner", runner_without_the_extra)
    code = main(["export", "--model", str(mnist_run), "--format", "onnx", "--out",
                 str(tmp_path / "m.onnx")])
    one_line_error(capsys, code, 1, "needs the export extra", "pip install", "[export]")
    assert not (tmp_path / "m.onnx").exists()
