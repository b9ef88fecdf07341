"""The backend seam: TensorFlow's start-up notices filtered, everything else kept; the form of
the training data."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_digits import backend

NOTICES = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795761132.043090    3674 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1795761132.103084    3674 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
"""  # noqa: E501


def test_start_up_notices_are_dropped():
    assert backend.filter_start_up_notices(NOTICES) == ""


def test_other_lines_written_during_the_import_are_kept():
    real = ("E0000 00:00:1795761132.1 3674 cuda_blas.cc:12] failed to load libcublas\n"
            "Traceback (most recent call last):\n")
    assert backend.filter_start_up_notices(NOTICES + real) == real


def stream_batches(data, count):
    """The first `count` batches of a dataset, as NumPy (x, y) pairs."""
    return [tuple(np.asarray(part) for part in batch) for batch in data.take(count)]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's input stream")
def test_the_tensorflow_stream_passes_over_every_image_once_an_epoch():
    keras.utils.set_random_seed(0)
    x = np.arange(100, dtype="float32").reshape(100, 1)
    validation = (x[:30], x[:30] + 1)
    # 100 images in batches of 12: 8 full batches and one of 4, and 9 batches a call.
    fed = backend.fit_data(x, x + 1, validation, batch_size=12)
    assert fed.steps_per_execution == 9 and fed.fit_kwargs["steps_per_epoch"] == 9
    batches = stream_batches(fed.fit_kwargs["x"], 18)
    assert [len(xb) for xb, _ in batches] == [12] * 8 + [4] + [12] * 8 + [4]
    assert all(np.array_equal(yb, xb + 1) for xb, yb in batches)
    epochs = [np.concatenate([xb for xb, _ in batches[i:i + 9]]).ravel() for i in (0, 9)]
    for order in epochs:
        assert sorted(order) == list(range(100))
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
    checked = stream_batches(fed.fit_kwargs["validation_data"], 10)
    assert np.array_equal(np.concatenate([xb for xb, _ in checked]), validation[0])


def test_without_a_whole_number_of_calls_an_epoch_keras_gets_the_arrays():
    x = np.zeros((96, 1), "float32")
    fed = backend.fit_data(x, x, (x, x), batch_size=32)  # 3 batches: no 8 to 32 divides them
    assert fed.fit_kwargs["x"] is x and fed.fit_kwargs["batch_size"] == 32
    assert fed.steps_per_execution == backend.steps_per_execution()


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse2 avx512f avx512_bf16 avx512_vnni", True), ("fpu sse2 amx_bf16 amx_tile", True),
    ("fpu sse2 avx2 avx512f avx512_vnni", False)])
def test_bfloat16_units_are_read_from_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n"
                       f"processor\t: 1\nflags\t\t: {flags}\n")
    assert backend.cpu_has_bfloat16(cpuinfo) is expected
    assert backend.cpu_has_bfloat16(tmp_path / "missing") is False


@pytest.mark.parametrize(("name", "devices", "units", "expected"), [
    ("tensorflow", ["CPU:0"], True, "mixed_bfloat16"),
    ("torch", ["CPU:0"], True, "mixed_bfloat16"),
    ("tensorflow", ["CPU:0"], False, "float32"),
    ("jax", ["CPU:0 cpu"], True, "float32"),
    ("tensorflow", ["CPU:0", "GPU:0 NVIDIA H200"], True, "float32")])
def test_auto_precision_is_bfloat16_only_where_it_was_measured_faster(monkeypatch, name, devices,
                                                                       units, expected):
    monkeypatch.setattr(backend, "current", lambda: name)
    monkeypatch.setattr(backend, "devices", lambda: devices)
    monkeypatch.setattr(backend, "cpu_has_bfloat16", lambda: units)
    assert backend.precision("auto") == expected
    # A precision named outright is taken as it is, whatever the hardware.
    assert backend.precision("mixed_bfloat16") == "mixed_bfloat16"
    assert backend.precision("float32") == "float32"
