"""The backend seam: TensorFlow's start-up notices filtered, everything else kept."""

from __future__ import annotations

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
