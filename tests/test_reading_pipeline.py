"""Reading images with the packaged model: numbers, boxes, statuses, tight crops, limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import png
from PIL import Image, ImageDraw

from mnist_digits import modelfile, predict, pretrained
from mnist_digits.reading import Reader, Reading


@pytest.fixture(scope="module")
def model():
    return predict.load_model()


def read(model, data: bytes, threshold: float | None = None) -> Reading:
    return Reader(model, threshold).read(data)


def number_sheet(images: np.ndarray, indices: list[int], gap: int = 12) -> tuple[bytes, list]:
    """MNIST test digits enlarged to 120 pixels, side by side on white paper, with their boxes."""
    sheet = np.full((220, 60 + len(indices) * (120 + gap)), 255, np.uint8)
    boxes = []
    for k, i in enumerate(indices):
        big = np.asarray(Image.fromarray(images[i]).resize((120, 120), Image.Resampling.BICUBIC))
        left = 30 + k * (120 + gap)
        sheet[50:170, left:left + 120] = np.minimum(sheet[50:170, left:left + 120], 255 - big)
        rows, cols = np.nonzero(big > 60)
        boxes.append((left + cols.min(), 50 + rows.min(), left + cols.max(), 50 + rows.max()))
    return png(sheet), boxes


def test_a_number_is_read_left_to_right_with_boxes(model, mnist_test_set):
    images, labels = mnist_test_set
    indices = [3, 2, 1, 0, 4]  # 0, 1, 2, 7, 4
    data, boxes = number_sheet(images, indices)
    result = read(model, data)
    assert result.status == "ok"
    assert result.text == "".join(str(labels[i]) for i in indices) == "01274"
    assert result.digit is None and result.confidence is None  # several digits
    for found, (x0, y0, x1, y1) in zip(result.digits, boxes, strict=True):
        bx0, by0, bx1, by1 = found.box
        # The box is in source pixels and holds the digit's ink, give or take a faint edge.
        assert abs(bx0 - x0) <= 4 and abs(by0 - y0) <= 4
        assert abs(bx1 - 1 - x1) <= 4 and abs(by1 - 1 - y1) <= 4
        assert sum(found.probabilities) == pytest.approx(1, abs=1e-4)
    record = result.to_dict()
    assert record["text"] == "01274" and len(record["digits"]) == 5
    assert set(record["digits"][0]) == {"digit", "confidence", "box", "probabilities", "unsure"}


def test_one_digit_keeps_the_single_digit_fields(model, mnist_test_set):
    images, _ = mnist_test_set
    result = read(model, number_sheet(images, [0])[0])
    assert result.status == "ok" and result.digit == 7 and result.text == "7"
    assert result.confidence == max(result.probabilities)


def _drawing(strokes, size=300, width=12) -> bytes:
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line([(x * size, y * size) for x, y in stroke], fill=0, width=width, joint="curve")
    return png(np.asarray(image))


@pytest.mark.parametrize("strokes", [
    [[(0.3, 0.2), (0.7, 0.8)], [(0.7, 0.2), (0.3, 0.8)], [(0.2, 0.5), (0.8, 0.5)],
     [(0.5, 0.15), (0.5, 0.85)]],  # an asterisk
    [[(0.25, 0.8), (0.25, 0.2), (0.5, 0.6), (0.75, 0.2), (0.75, 0.8)]],  # an M
    [[(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.2)], [(0.2, 0.2), (0.8, 0.8)],
     [(0.8, 0.2), (0.2, 0.8)]],  # a crossed box
], ids=["asterisk", "M", "crossed-box"])
def test_what_is_not_a_digit_is_unsure(model, strokes):
    result = read(model, _drawing(strokes))
    assert result.status == "unsure"
    assert result.digit is None and result.text is None
    assert result.probabilities is not None and len(result.probabilities) == 10
    assert result.digits[0].unsure
    # The threshold is the operating point: at 0 everything passes.
    assert read(model, _drawing(strokes), threshold=0.0).status == "ok"


def test_blank_paper_is_no_digit(model):
    result = read(model, png(np.full((200, 300), 250, np.uint8)))
    assert result.status == "no_digit" and result.digits == () and result.text is None


def test_more_than_32_digits_is_a_clear_error(model, mnist_test_set):
    images, _ = mnist_test_set
    data, _ = number_sheet(images, list(range(34)), gap=20)
    result = read(model, data)
    assert result.status == "error" and result.text is None
    assert "found 34 digits in a line; at most 32" in result.error


def test_thousands_of_marks_get_a_clear_answer(model):
    rng = np.random.default_rng(0)
    noise = np.full((800, 800), 255, np.uint8)
    noise[rng.random((800, 800)) < 0.03] = 0  # ~19,000 specks
    result = read(model, png(noise))
    assert result.status in ("error", "no_digit", "unsure")
    if result.status == "error":
        assert "separate marks" in result.error


def _tight(digit: np.ndarray, height: int, thick: int = 0, dark_paper: bool = False) -> bytes:
    rows, cols = np.nonzero(digit > 50)
    crop = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    width = round(crop.shape[1] * height / crop.shape[0])
    ink = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BICUBIC),
                     np.float32)
    if thick:
        from scipy import ndimage

        ink = ndimage.grey_dilation(ink, size=(thick, thick))
    ink = np.clip(ink, 0, 255).astype(np.uint8)
    return png(ink if dark_paper else 255 - ink)


@pytest.mark.parametrize("index", [0, 1, 17, 26])  # 7, 2, 7, 7: bars and feet at the edges
@pytest.mark.parametrize("style", ["thin", "thick", "light-on-dark-thick"])
def test_tight_crops_keep_the_strokes_at_their_edges(model, mnist_test_set, index, style):
    images, labels = mnist_test_set
    data = _tight(images[index], 160, thick=0 if style == "thin" else 15,
                  dark_paper=style.startswith("light"))
    result = read(model, data)
    assert result.text == str(labels[index]), (result.status, result.digits)


def test_packaged_model_is_calibrated_documented_and_safe(monkeypatch):
    path = pretrained.model_path()
    assert path.stat().st_size <= pretrained.MAX_BYTES
    manifest = json.loads(modelfile.manifest_path(path).read_text())
    assert manifest["sha256"] == modelfile.sha256_file(path)
    card = json.loads((path.parent / pretrained.CARD_JSON).read_text())
    assert {"preset", "seed", "data", "test_accuracy", "calibration", "threshold", "versions",
            "packaged"} <= set(card)
    assert card["calibration"]["test_ece"] <= 0.01 and card["test_accuracy"] > 0.99
    assert (path.parent / pretrained.CARD_MD).read_text().startswith("# Model card")
    # It goes through the same checks as any model file.
    checked = []
    original = modelfile.check_archive
    monkeypatch.setattr(modelfile, "check_archive",
                        lambda p: checked.append(p) or original(p))
    model = predict.load_model()
    assert checked == [path] and model.name == card["model"]


def test_the_text_format_says_number_for_an_unsure_number():
    from mnist_digits.reading import formats
    from mnist_digits.reading.results import DigitReading

    def digit(value: int, confidence: float) -> DigitReading:
        probabilities = tuple(confidence if d == value else (1 - confidence) / 9
                              for d in range(10))
        return DigitReading(value, confidence, [0, 0, 9, 9], probabilities, confidence < 0.6,
                            np.zeros((28, 28), np.float32))

    number = Reading("n.png", "unsure", (digit(1, 0.9), digit(7, 0.4)))
    assert formats.text_line(number) == ("n.png: unsure, not confidently a number (best guess: "
                                         "1 (90.0%), 7 (40.0%, unsure))")
    single = Reading("d.png", "unsure", (digit(7, 0.4),))
    assert formats.text_line(single) == ("d.png: unsure, not confidently a digit (best guess: "
                                         "7 (40.0%))")
