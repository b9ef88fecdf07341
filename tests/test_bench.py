"""`mnist-digits bench --quick` as a smoke test (its numbers mean nothing), and the test-image
generator it measures with."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_digits import bench, predict, preprocess, userimages
from mnist_digits.cli import main


def test_bench_quick_runs_every_section_and_writes_json_and_markdown(capsys, tmp_path):
    assert main(["bench", "--quick", "--out", str(tmp_path), "--results-dir",
                 str(tmp_path / "results")]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads(path.read_text())
    assert result["quick"] is True and result["machine"]["cores"] >= 1
    assert list(result["sections"]) == list(bench.SECTIONS)

    training = result["sections"]["training"]
    assert set(training["baselines"]) == set(bench.BASELINES)
    assert set(training["presets"]) == set(bench.TRAINING_PRESETS)
    for row in [*training["baselines"].values(), *training["presets"].values()]:
        assert row["seeds"] == 1 and 0 <= row["test_accuracy_mean"] <= 1
        assert row["train_seconds_mean"] > 0 and row["peak_rss_mb"] > 100
    assert training["presets"]["cnn_fast"]["speedup"] > 0
    assert training["augmentation"]["mlp_aug"]["images_per_second"] > 0
    ablation = result["sections"]["ablation"]
    assert ablation["cnn_fast/no-label-smoothing"]["overrides"] == {"label_smoothing": 0.0}
    load = result["sections"]["load"]
    assert load["requests"] == 100 and load["server_errors_5xx"] == 0
    assert load["wrong_answers"] == 0 and load["server_rss_mb_after"] > 0
    best = result["sections"]["best"]
    assert best["seeds"] == 2 and 0 <= best["ensemble"]["test_accuracy"] <= 1
    # With no --model, the reading sections measure the packaged model, as predict uses it.
    assert result["sections"]["inference"]["model"] == str(predict.packaged_model_path())

    calibration = result["sections"]["calibration"]
    assert set(calibration) - {"seconds"} == {"mlp_small", "cnn_fast"}
    assert all(0 <= r["test_ece"] <= 1 and r["temperature"] > 0
               for name, r in calibration.items() if name != "seconds")
    realworld = result["sections"]["realworld"]
    for family, kinds in (("user_style", userimages.KINDS),
                          ("tight_crops", userimages.TIGHT_KINDS)):
        assert realworld[family]["images"] == 50
        assert 0 <= realworld[family]["accuracy"] <= realworld[family]["argmax_accuracy"] + 0.02
        assert set(realworld[family]["per_kind"]) <= set(kinds)
    numbers = result["sections"]["numbers"]
    assert numbers["images"] == 20 and 0 <= numbers["exact"] <= numbers["digit_count_right"]
    rejection = result["sections"]["rejection"]
    assert rejection["nondigit_images"] == 40 and len(rejection["curve"]) == 20
    # The curve only rises: a higher threshold rejects at least as much of everything.
    for key in ("nondigits_rejected", "mnist_test_rejected", "user_style_rejected"):
        values = [c[key] for c in rejection["curve"]]
        assert values == sorted(values)
    with Image.open(path.with_name(path.stem + "-rejection.png")) as figure:
        assert figure.size[0] > 300
    assert result["sections"]["inference"]["batched_images_per_second"] > 0
    markdown = path.with_suffix(".md").read_text()
    assert "## Not a digit (`rejection`)" in markdown and "## Handwritten numbers" in markdown
    assert "| user-style (50) |" in markdown and "## Calibration" in markdown
    assert "`keras_io_convnet`" in markdown and "ensemble of those 2" in markdown
    assert "## Web server under load" in markdown and "cnn_fast/no-label-smoothing" in markdown


def test_bench_baselines_are_the_published_architectures():
    # keras-io's summary: 34,826 parameters; the classic FFNN: 784-512-512-10.
    assert bench.build_baseline("keras_io_convnet").count_params() == 34826
    assert bench.build_baseline("classic_ffnn").count_params() == \
        784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10


def test_bench_unknown_section_is_a_usage_error(capsys, tmp_path):
    assert main(["bench", "--only", "training,speed", "--out", str(tmp_path)]) == 2
    assert "unknown bench section(s) speed" in capsys.readouterr().err


def test_bench_only_one_section(capsys, mnist_run, tmp_path):
    assert main(["bench", "--quick", "--only", "inference", "--model", str(mnist_run),
                 "--out", str(tmp_path), "--results-dir", str(tmp_path / "results")]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(json.loads(path.read_text())["sections"]) == ["inference"]


@pytest.mark.parametrize("kind", userimages.TIGHT_KINDS)
def test_every_tight_kind_touches_the_edges(kind, mnist_test_set):
    images, labels = mnist_test_set
    image = userimages.tight_crop(images[0], int(labels[0]), np.random.default_rng(0), kind)
    assert image.kind == kind and image.label == 7
    with Image.open(io.BytesIO(image.data)) as decoded:
        gray = np.asarray(decoded.convert("L"), np.float32)
    # Ink reaches the outer tenth of the image (a tight crop), even when blurred or enlarged.
    ink = np.abs(gray - np.median(gray))
    h, w = ink.shape
    band = np.ones_like(ink, bool)
    band[h // 10:h - h // 10, w // 10:w - w // 10] = False
    assert ink[band].max() > 0.5 * ink.max()


@pytest.mark.parametrize("kind", userimages.NONDIGIT_KINDS)
def test_every_nondigit_kind_renders_something(kind):
    image = userimages.nondigit_image(np.random.default_rng(1), kind)
    assert image.kind == kind and image.label == -1
    assert preprocess.preprocess_bytes(image.data) is not None


def test_number_images_say_their_digits(mnist_test_set):
    images, labels = mnist_test_set
    number = userimages.number_image(images[:5], labels[:5], np.random.default_rng(0), "ruled")
    assert number.text == "72104" and number.paper == "ruled"
    with Image.open(io.BytesIO(number.data)) as decoded:
        assert decoded.size[0] > decoded.size[1]


@pytest.mark.parametrize("kind", userimages.KINDS)
def test_every_kind_renders_a_decodable_image_with_a_digit(kind, mnist_test_set):
    images, labels = mnist_test_set
    image = userimages.render(images[0], int(labels[0]), np.random.default_rng(0), kind)
    assert image.kind == kind and image.label == 7
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert max(decoded.size) >= 160
    assert preprocess.preprocess_bytes(image.data) is not None
