"""`mnist-digits predict` on files and folders: formats, no-digit, bad files, exit codes."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import ink_on_paper
from helpers import one_line_error
from PIL import Image

from mnist_digits.cli import main

DIGITS = {0: 7, 1: 2, 2: 1, 3: 0}  # MNIST test index -> its label


@pytest.fixture
def image_folder(tmp_path, mnist_test_set):
    """Three digit photos in nested folders, a blank page, and a text file posing as a PNG."""
    images, labels = mnist_test_set
    root = tmp_path / "scans"
    (root / "b" / "c").mkdir(parents=True)
    paths = {}
    for i, sub in zip((0, 1, 3), ("a.png", "b/c/two.jpg", "b/zero.png"), strict=True):
        path = root / sub
        Image.fromarray(ink_on_paper(images[i])).convert("RGB").save(path)
        paths[sub] = int(labels[i])
    Image.new("L", (100, 100), 255).save(root / "blank.png")
    (root / "fake.png").write_text("not an image")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return root, paths


def run(capsys, argv):
    code = main(argv)
    return code, capsys.readouterr().out


def test_jsonl_one_object_per_file_in_order(capsys, mnist_run, image_folder):
    root, expected = image_folder
    code, out = run(capsys, ["predict", "--model", str(mnist_run), "--format", "jsonl",
                             str(root / "b" / "zero.png"), str(root)])
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 1  # fake.png could not be read
    # Explicit file first, then the folder's image files, sorted, recursive (notes.txt skipped).
    assert [r["path"] for r in records] == [str(root / p) for p in (
        "b/zero.png", "a.png", "b/c/two.jpg", "b/zero.png", "blank.png", "fake.png")]
    by_path = {r["path"]: r for r in records}
    for rel, label in expected.items():
        record = by_path[str(root / rel)]
        assert set(record) == {"path", "status", "digit", "confidence", "probabilities", "text",
                               "digits", "lines", "sheet"}
        assert record["lines"] == [{"text": str(label), "box": record["digits"][0]["box"],
                                    "digits": [0]}] and record["sheet"] is None
        assert record["digit"] == label and record["status"] == "ok"
        assert record["text"] == str(label) and len(record["digits"]) == 1
        found = record["digits"][0]
        assert found["digit"] == label and found["probabilities"] == record["probabilities"]
        x0, y0, x1, y1 = found["box"]  # ink_on_paper puts the digit at (60, 40), 168 wide
        assert 50 <= x0 < x1 <= 240 and 30 <= y0 < y1 <= 220
        assert len(record["probabilities"]) == 10
        assert record["confidence"] == max(record["probabilities"])
        assert sum(record["probabilities"]) == pytest.approx(1, abs=1e-4)
    blank = by_path[str(root / "blank.png")]
    assert blank["digit"] is None and blank["status"] == "no_digit" and blank["digits"] == []
    bad = by_path[str(root / "fake.png")]
    assert bad["status"] == "error" and bad["digit"] is None and bad["text"] is None
    assert "not an image" in bad["error"]
    assert "\n" not in bad["error"]


def test_all_good_files_exit_zero_and_text_format(capsys, mnist_run, image_folder):
    root, _ = image_folder
    code, out = run(capsys, ["predict", "--model", str(mnist_run), "--top", "3",
                             str(root / "a.png"), str(root / "blank.png")])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{root / 'a.png'}: 7 (") and lines[0].count("%") == 3
    assert lines[1] == f"{root / 'blank.png'}: no digit"


def test_csv_format(capsys, mnist_run, image_folder):
    root, _ = image_folder
    code, out = run(capsys, ["predict", "--model", str(mnist_run), "--format", "csv",
                             str(root / "a.png"), str(root / "missing.png")])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 1
    assert rows[0]["digit"] == "7" and float(rows[0]["p7"]) == float(rows[0]["confidence"])
    assert rows[0]["status"] == "ok" and rows[0]["text"] == "7"
    assert rows[1]["digit"] == "" and "no such file" in rows[1]["error"]
    assert rows[1]["status"] == "error" and rows[1]["text"] == ""


def test_save_preprocessed(capsys, mnist_run, image_folder, tmp_path):
    root, _ = image_folder
    out_dir = tmp_path / "seen"
    code, _ = run(capsys, ["predict", "--model", str(mnist_run), "--save-preprocessed",
                           str(out_dir), str(root / "a.png"), str(root / "b" / "zero.png")])
    assert code == 0
    saved = sorted(out_dir.iterdir())
    assert [p.name for p in saved] == ["00000-a-page.png", "00000-a.png",
                                       "00001-zero-page.png", "00001-zero.png"]
    with Image.open(saved[1]) as image:
        assert image.size == (28, 28) and image.mode == "L"
        assert np.asarray(image).max() == 255
    # The page as read: the source image's size (no sheet in it), the digit boxed in colour.
    with Image.open(saved[0]) as page, Image.open(root / "a.png") as source:
        assert page.size == source.size and page.mode == "RGB"
        pixels = np.asarray(page, np.int16)
        assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 100).any()


def test_batches_keep_input_order(capsys, mnist_run, image_folder):
    root, _ = image_folder
    code, out = run(capsys, ["predict", "--model", str(mnist_run), "--format", "jsonl",
                             "--batch-size", "2", str(root / "a.png"), str(root / "b")])
    digits = [json.loads(line)["digit"] for line in out.splitlines()]
    assert code == 0 and digits == [7, 2, 0]


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "/nonexistent/run", "x.png"],
    ["predict", "--model", "weights.h5", "x.png"],
    ["predict"],
])
def test_usage_errors_exit_two(capsys, argv):
    one_line_error(capsys, main(argv), 2)


def test_the_packaged_model_reads_without_a_model_flag(capsys, image_folder):
    root, _ = image_folder
    code, out = run(capsys, ["predict", str(root / "a.png"), str(root / "blank.png")])
    assert code == 0
    assert out.splitlines()[0].startswith(f"{root / 'a.png'}: 7 (")


def test_threshold_flag_and_a_number_in_text_format(capsys, image_folder, mnist_test_set,
                                                    tmp_path):
    root, _ = image_folder
    code, out = run(capsys, ["predict", "--threshold", "1", str(root / "a.png")])
    assert code == 0 and out.startswith(f"{root / 'a.png'}: unsure, not confidently a digit")
    images, _ = mnist_test_set
    sheet = np.full((200, 420), 255, np.uint8)
    for k, i in enumerate((1, 0, 4)):  # 2, 7, 4
        big = np.asarray(Image.fromarray(images[i]).resize((120, 120)))
        sheet[40:160, 20 + k * 130:140 + k * 130] = 255 - big
    Image.fromarray(sheet).save(tmp_path / "number.png")
    code, out = run(capsys, ["predict", str(tmp_path / "number.png")])
    assert code == 0 and out.startswith(f"{tmp_path / 'number.png'}: 274 [2 (")
    assert out.count("%") == 3


def test_threshold_out_of_range_is_a_usage_error(capsys):
    one_line_error(capsys, main(["predict", "--threshold", "1.5", "x.png"]), 2,
                   "must be between 0 and 1")


def test_package_model_writes_the_model_and_its_card(capsys, tiny_splits, tmp_path):
    from mnist_digits import predict, runs, train
    from mnist_digits.config import TrainConfig

    config = TrainConfig(model="mlp_small", epochs=1, val_size=32)
    run_dir = runs.new_run_dir(tmp_path / "results", config.model)
    train.train(config, run_dir, splits=tiny_splits)
    dest = tmp_path / "pretrained"
    code, out = run(capsys, ["package-model", str(run_dir), "--threshold", "0.6",
                             "--dest", str(dest)])
    assert code == 0 and out.splitlines()[-1] == str(dest / "reader.keras")
    card = json.loads((dest / "model_card.json").read_text())
    assert card["preset"] == "mlp_small" and card["threshold"] == 0.6
    assert card["data"].startswith("mnist-sha256:")
    assert "threshold 0.6" in (dest / "MODEL_CARD.md").read_text()
    assert predict.load_model(dest / "reader.keras").name == "mlp_small"


def test_each_failing_file_is_named_once_and_an_empty_folder_says_so(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    code = main(["predict", str(empty), str(text), str(tmp_path / "gone.png")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0].startswith(f"{empty}: error: a folder with no image files in it (.png")
    assert lines[1].startswith(f"{text}: error: not an image")
    assert lines[2] == f"{tmp_path / 'gone.png'}: error: no such file"
    assert all(line.count(str(tmp_path)) == 1 for line in lines)
