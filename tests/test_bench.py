"""`mnist-digits bench --quick` as a smoke test (its numbers mean nothing), and the test-image
generator it measures with."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error
from PIL import Image

from mnist_digits import backend, pretrained
from mnist_digits.bench import runner, userimages
from mnist_digits.bench import training as training_bench
from mnist_digits.cli import main
from mnist_digits.defaults import BENCH_SECTIONS
from mnist_digits.reading import Reader
from mnist_digits.reading.frame import frame_image


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One `bench --quick` run of every section: (result, JSON path, Markdown)."""
    out = tmp_path_factory.mktemp("bench")
    _, path = runner.run_bench(quick=True, out_dir=out, results_dir=out / "results")
    return json.loads(path.read_text()), path, path.with_suffix(".md").read_text()


def test_quick_bench_runs_every_section_in_order(quick):
    result, _, markdown = quick
    assert result["quick"] is True and result["machine"]["cores"] >= 1
    assert list(result["sections"]) == list(BENCH_SECTIONS)
    # Each section renders its own part of the Markdown, in run order.
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert [h[h.index("(`") + 2:h.index("`", h.index("(`") + 2)] for h in headings] == \
        list(runner.SECTIONS)


def test_training_section_compares_baselines_with_presets(quick):
    training = quick[0]["sections"]["training"]
    assert set(training["baselines"]) == set(training_bench.BASELINES)
    assert set(training["presets"]) == {*training_bench.TRAINING_PRESETS,
                                        *training_bench.TRAINING_VARIANTS}
    for row in [*training["baselines"].values(), *training["presets"].values()]:
        assert row["seeds"] == 1 and 0 <= row["test_accuracy_mean"] <= 1
        assert row["train_seconds_mean"] > 0 and row["peak_rss_mb"] > 100
    assert training["presets"]["cnn_fast"]["speedup"] > 0
    variant = training["presets"]["cnn_fast/float32"]
    assert variant["speedup"] > 0 and variant["overrides"] == {"precision": "float32"}
    assert ("`cnn_fast/float32`: `cnn_fast` in float32 (`--precision float32`) | ours | "
            "float32 |") in quick[2]
    # The default's "auto" is recorded as what it resolved to on this machine.
    assert training["presets"]["cnn_fast"]["precision"] == backend.precision("auto")
    assert training["augmentation"]["mlp_aug"]["images_per_second"] > 0
    assert "`keras_io_convnet`" in quick[2]


def test_ablation_best_and_calibration_sections(quick):
    sections = quick[0]["sections"]
    ablation = sections["ablation"]
    assert ablation["cnn_fast/no-label-smoothing"]["overrides"] == {"label_smoothing": 0.0}
    best = sections["best"]
    assert list(best["presets"]) == list(training_bench.BEST_PRESETS) == ["cnn_wide", "cnn_best"]
    for name, p in best["presets"].items():
        assert p["seeds"] == 2 and 0 <= p["ensemble"]["test_accuracy"] <= 1
        # The same runs, averaged over test-time views: one model each, then all together.
        assert [t["members"] for t in p["tta"]["runs"]] == [1, 1]
        assert p["tta"]["views"] == p["ensemble_tta"]["views"] == 3
        assert p["ensemble_tta"]["members"] == 2 and p["ensemble"]["views"] == 1
        assert 0 <= p["tta"]["test_accuracy_mean"] <= 1
        assert p["precision"] == backend.precision("auto")
        assert f"| `{name}` | 2 |" in quick[2]
    # Then every run of both presets in one model.
    assert best["ensemble"]["members"] == best["ensemble_tta"]["members"] == 4
    assert best["ensemble_tta"]["views"] == 3 and best["ensemble"]["views"] == 1
    assert quick[2].count("ensemble of those 2") == 2
    assert quick[2].count("the ensemble with test-time views") == 2
    assert quick[2].count("First 2 seeds: ") == 2
    assert "All 4 runs of `cnn_wide` and `cnn_best` averaged" in quick[2]
    feedforward = sections["feedforward"]
    assert feedforward["preset"] == training_bench.FEEDFORWARD_PRESET == "mlp_distill"
    assert feedforward["seeds"] == 1 and 0 <= feedforward["test_accuracy_mean"] <= 1
    assert "| `mlp_distill` | 1 |" in quick[2]
    calibration = {k: v for k, v in sections["calibration"].items() if k != "seconds"}
    assert set(calibration) == {"mlp_small", "cnn_fast"}
    assert all(0 <= r["test_ece"] <= 1 and r["temperature"] > 0 for r in calibration.values())


def test_reading_sections_measure_the_packaged_model(quick):
    sections = quick[0]["sections"]
    realworld = sections["realworld"]
    for family, kinds in (("user_style", userimages.KINDS),
                          ("tight_crops", userimages.TIGHT_KINDS)):
        assert realworld[family]["images"] == 50
        assert 0 <= realworld[family]["accuracy"] <= realworld[family]["argmax_accuracy"] + 0.02
        assert set(realworld[family]["per_kind"]) <= set(kinds)
    assert realworld["model"] == str(pretrained.model_path())
    numbers = sections["numbers"]
    assert numbers["images"] == 20 and 0 <= numbers["exact"] <= numbers["digit_count_right"]
    assert "| user-style (50) |" in quick[2]
    notes = realworld["note_photos"]
    assert notes["images"] == 6 and 0 <= notes["accuracy"] <= 1
    assert {k.split(":")[0] for k in notes["per_kind"]} == {
        "generator", "paper", "background", "effect"}
    assert realworld["photo_one_core"]["cpu_cores"] == 1
    assert realworld["photo_one_core"]["median_ms"] > 0
    for pages in numbers["pages"].values():
        assert pages["images"] == 6 and set(pages["per_line_count"]) <= {"2", "3", "4", "5", "6"}
    assert "### Notes photographed on desks" in quick[2] and "### Pages of 2-6 lines" in quick[2]


def test_rejection_section_and_its_figure(quick):
    result, path, markdown = quick
    rejection = result["sections"]["rejection"]
    assert rejection["nondigit_images"] == 40 and len(rejection["curve"]) == 20
    # Its user-style digits are the realworld section's, read again: the same confidences.
    assert rejection["user_style_images"] == result["sections"]["realworld"]["user_style"][
        "images"]
    # The curve only rises: a higher threshold rejects at least as much of everything.
    for key in ("nondigits_rejected", "mnist_test_rejected", "user_style_rejected"):
        values = [c[key] for c in rejection["curve"]]
        assert values == sorted(values)
    with Image.open(path.with_name(path.stem + "-rejection.png")) as figure:
        assert figure.size[0] > 300
    assert "## Not a digit (`rejection`)" in markdown


def test_serving_sections(quick):
    sections = quick[0]["sections"]
    assert sections["inference"]["batched_images_per_second"] > 0
    assert sections["inference"]["model"] == str(pretrained.model_path())
    load = sections["load"]
    assert load["requests"] == 100 and load["server_errors_5xx"] == 0
    assert load["wrong_answers"] == 0 and load["server_rss_mb_after"] > 0


def test_bench_baselines_are_the_published_architectures():
    # keras-io's summary: 34,826 parameters; the classic FFNN: 784-512-512-10.
    assert training_bench.build_baseline("keras_io_convnet").count_params() == 34826
    assert training_bench.build_baseline("classic_ffnn").count_params() == \
        784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10


def test_bench_unknown_section_is_a_usage_error(capsys, tmp_path):
    one_line_error(capsys, main(["bench", "--only", "training,speed", "--out", str(tmp_path)]),
                   2, "unknown bench section(s) speed")


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
    assert frame_image(image.data) is not None


def test_the_numbers_drawn_on_ruled_and_squared_paper_read_right(mnist_test_set):
    images, labels = mnist_test_set
    rng = np.random.default_rng(7)
    reader = Reader()
    texts = []
    for paper in userimages.NUMBER_PAPERS:
        chosen = rng.choice(200, 4, replace=False)
        number = userimages.number_image(images[chosen], labels[chosen], rng, paper)
        texts.append((number.text, reader.read(number.data).text))
    assert all(want == got for want, got in texts), texts


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
    assert frame_image(image.data) is not None


def test_backends_section_trains_and_infers_on_every_backend(quick):
    from mnist_digits import backend

    section = quick[0]["sections"]["backends"]
    assert set(section["backends"]) == set(backend.BACKENDS)
    for name, entry in section["backends"].items():
        assert entry["version"] == backend.version(name)
        assert len(entry["runs"]) == 1 and entry["runs"][0]["train_seconds"] > 0
        assert entry["inference"]["batched_images_per_second"] > 0
        assert entry["inference"]["single_image_ms_p95"] >= \
            entry["inference"]["single_image_ms_median"] > 0
        # cnn_fast's "auto", as each backend resolved it (the test machine has no GPU).
        bfloat16 = name != "jax" and backend.cpu_has_bfloat16()
        assert entry["precision"] == ("mixed_bfloat16" if bfloat16 else "float32")
        assert f"| {name} {entry['version']} | {entry['precision']} |" in quick[2]
    cache = section["backends"]["jax"]["compile_cache"]
    assert cache["cold_first_epoch_seconds"] > 0 and cache["warm_first_epoch_seconds"] > 0
    assert "## Backends (`backends`)" in quick[2]


def test_backends_jobs_log_their_figures_as_they_end(monkeypatch, caplog, tmp_path):
    # A cut-off section writes no files; its log must still hold every finished job's figures.
    from mnist_digits.bench import backends, context

    def fake_child(fn, name, seed, *args):
        return {"seed": seed, "epoch_seconds": [9.7, 0.29], "train_seconds": 10.4,
                "test_accuracy": 0.9927, "batched_images_per_second": 192878.4,
                "single_image_ms_median": 1.114}

    monkeypatch.setattr(training_bench, "_in_child", fake_child)
    ctx = context.Context(quick=True, work_dir=tmp_path)
    with caplog.at_level("INFO", logger=backends.__name__):
        backends._run("jax", 2, ctx)
    assert ("jax seed 2: test 99.27%, training 10.4 s, epochs 9.70, 0.29 s; inference "
            "192,878 images/s, one image 1.11 ms median") in caplog.text
