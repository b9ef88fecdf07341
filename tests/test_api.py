"""The Python API as a user calls it: `mnist_digits.read`, `Reader`, the errors, a light import
and a quiet first model."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mnist_digits
from mnist_digits.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


@pytest.fixture(scope="module")
def reader():
    return mnist_digits.Reader()


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, stdin=subprocess.DEVNULL)


def _without_path(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "path"}


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.png")))
def test_read_gives_what_predict_prints_for_every_kind_of_source(name, capsys):
    path = EXAMPLES / name
    assert main(["predict", str(path), "--format", "jsonl"]) == 0
    expected = json.loads(capsys.readouterr().out)
    image = Image.open(path)
    image.load()
    sources = {"path": str(path), "bytes": path.read_bytes(), "pil": image,
               "array": np.asarray(image),
               "float array": np.asarray(image.convert("L"), np.float32) / 255}
    for kind, source in sources.items():
        got = mnist_digits.read(source).to_dict()
        if kind == "float array":  # gray, so only the reading itself must agree
            assert (got["status"], got["text"]) == (expected["status"], expected["text"]), name
            continue
        assert _without_path(got) == _without_path(expected), (name, kind)
    assert mnist_digits.read(str(path)).path == str(path)


def test_a_list_gives_a_list_in_order_and_read_many_streams(reader):
    seven, number = EXAMPLES / "seven.png", EXAMPLES / "number-4021.png"
    assert [r.text for r in mnist_digits.read([seven, number, seven])] == ["7", "4021", "7"]
    pulled = []

    def sources():
        for i in range(7):
            pulled.append(i)
            yield seven if i % 2 == 0 else number

    readings = reader.read_many(sources(), batch_size=2)
    first = next(readings)
    assert first.text == "7" and len(pulled) == 2  # one batch taken, not the whole input
    assert [first.text, *(r.text for r in readings)] == ["7", "4021"] * 3 + ["7"]


def test_read_many_reads_past_a_bad_source_and_says_why_in_its_place(reader, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    readings = list(reader.read_many([EXAMPLES / "seven.png", bad, tmp_path / "gone.png"]))
    assert [r.status for r in readings] == ["ok", "error", "error"]
    assert readings[1].error.startswith("not an image") and readings[2].error == "no such file"


def test_readings_are_typed_and_frozen(reader):
    reading = reader.read(EXAMPLES / "number-4021.png")
    assert isinstance(reading, mnist_digits.Reading)
    assert all(isinstance(d, mnist_digits.DigitReading) for d in reading.digits)
    assert reading.text == "4021" and reading.digit is None
    digit = reading.digits[0]
    assert digit.digit == 4 and 0 < digit.confidence <= 1 and len(digit.box) == 4
    assert len(digit.probabilities) == 10 and digit.unsure is False
    with pytest.raises(AttributeError):
        reading.status = "no_digit"


@pytest.mark.parametrize(("source", "message"), [
    ("does/not/exist.png", "does/not/exist.png: no such file"),
    (np.zeros((4, 4, 7), np.uint8), "an array of shape (4, 4, 7) is not an image"),
    (np.zeros((4, 4), np.int64), "an array of dtype int64 is not an image"),
    (np.full((4, 4), np.nan, np.float32), "NaN"),
    (np.full((4, 4), 2.0), "float values must lie in [0, 1]"),
    (b"", "empty file"),
    (3.5, "cannot read a float"),
], ids=["missing", "shape", "dtype", "nan", "range", "empty-bytes", "not-a-source"])
def test_unreadable_input_raises_image_error_in_one_line(source, message):
    with pytest.raises(mnist_digits.ImageError) as info:
        mnist_digits.read(source)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_folder_and_an_empty_list_are_refused_in_one_line(tmp_path):
    with pytest.raises(mnist_digits.ImageError, match="a folder, not an image file"):
        mnist_digits.read(tmp_path)
    with pytest.raises(mnist_digits.MnistDigitsError, match="empty list"):
        mnist_digits.read([])
    with pytest.raises(mnist_digits.MnistDigitsError, match="threshold must be between 0 and 1"):
        mnist_digits.read(EXAMPLES / "seven.png", threshold=1.5)


def test_a_model_named_by_latest_is_loaded_anew_after_a_new_run(tiny_splits, tmp_path):
    from mnist_digits import runs, train
    from mnist_digits.config import resolve_config

    seven = EXAMPLES / "seven.png"
    results = tmp_path / "results"
    readings = []
    for seed in (1, 2):
        run_dir = runs.new_run_dir(results, "mlp_small", f"s{seed}")
        train.train(resolve_config({}, {"model": "mlp_small", "epochs": 1, "seed": seed}),
                    run_dir, splits=tiny_splits)
        runs.point_latest(results, run_dir)
        readings.append(mnist_digits.read(seven, model=results / "latest"))
    assert readings[0].digits[0].probabilities != readings[1].digits[0].probabilities


def test_a_pil_image_is_turned_upright_as_its_file_would_be(tmp_path):
    # A photo taken turned: the pixels lie on their side and the EXIF tag says so.
    upright = Image.open(EXAMPLES / "number-4021.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to view
    path = tmp_path / "turned.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    assert mnist_digits.read(path).text == "4021"
    assert mnist_digits.read(Image.open(path)).text == "4021"


def test_the_threshold_and_the_model_are_the_users_to_choose(tiny_splits, tmp_path):
    from mnist_digits import runs, train
    from mnist_digits.config import resolve_config

    letter, seven = EXAMPLES / "letter-m.png", EXAMPLES / "seven.png"
    assert mnist_digits.read(letter).status == "unsure"
    assert mnist_digits.read(letter, threshold=0.0).status == "ok"
    run_dir = runs.new_run_dir(tmp_path, "mlp_small")
    train.train(resolve_config({}, {"model": "mlp_small", "epochs": 1}), run_dir,
                splits=tiny_splits)
    packaged = mnist_digits.read(seven, model="packaged")
    assert packaged.text == "7" and packaged == mnist_digits.read(seven)
    for model in (run_dir, str(run_dir / "model.keras"), mnist_digits.load_model(run_dir)):
        mine = mnist_digits.read(seven, model=model)
        assert mine.digits[0].probabilities != packaged.digits[0].probabilities, model


def test_frame_image_gives_the_28x28_frame_a_model_sees():
    frame = mnist_digits.frame_image(EXAMPLES / "seven.png")
    assert frame.shape == (28, 28) and frame.dtype == np.float32 and frame.max() == 1
    buffer = io.BytesIO()
    Image.new("L", (50, 50), 255).save(buffer, format="PNG")
    assert mnist_digits.frame_image(buffer.getvalue()) is None


def test_importing_the_package_imports_no_framework_until_the_first_read():
    done = _python("import sys, mnist_digits\n"
                   "mnist_digits.read, mnist_digits.Reader, mnist_digits.ImageError\n"
                   "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') "
                   "if m in sys.modules))\n"
                   "mnist_digits.read('docs/examples/seven.png')\n"
                   "print('keras' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True"]


def test_the_api_is_as_quiet_as_the_cli():
    # TensorFlow prints start-up notices when imported and when its first op runs; the CLI
    # hides them, and so must the API.
    done = _python("import mnist_digits\n"
                   "model = mnist_digits.load_model()\n"
                   "print(mnist_digits.read('docs/examples/seven.png', model=model).text)")
    assert done.returncode == 0 and done.stdout == "7\n", done.stderr
    assert done.stderr == "", done.stderr


def test_the_package_is_typed_and_says_its_version():
    assert (Path(mnist_digits.__file__).parent / "py.typed").is_file()
    from importlib.metadata import version

    assert mnist_digits.__version__ == version("mnist-digits")
    assert set(mnist_digits.__all__) <= set(dir(mnist_digits))


def test_the_readme_python_example_prints_what_the_readme_says():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    expected = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected
    assert done.stderr == ""  # and no framework notices on the way
