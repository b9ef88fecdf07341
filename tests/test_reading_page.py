"""Photos of paper lying on something, and pages of several lines: the sheet is found and
flattened, boxes map back into the photo, lines read top to bottom, and images that are all
paper read exactly as they did before."""

from __future__ import annotations

import csv
import io

import cv2
import numpy as np
import pytest
from helpers import png
from PIL import Image

from mnist_digits import predict
from mnist_digits.bench import photos, userimages
from mnist_digits.reading import Reader, decode, formats, ink, lines, overview, page
from mnist_digits.reading.pipeline import prepare


@pytest.fixture(scope="module")
def model():
    return predict.load_model()


def _page(images: np.ndarray, rows: list[list[int]], size=(420, 300), digit=64,
          slope: float = 0.0) -> tuple[np.ndarray, list[list[tuple[int, int, int, int]]]]:
    """White paper (uint8) with MNIST test digits in `rows`, each row shifted sideways and
    sloped by `slope` pixels per digit; returns it and each digit's ink box."""
    width, height = size
    sheet = np.full((height, width), 255, np.uint8)
    boxes = []
    top = (height - len(rows) * digit * 1.6) / 2 + 0.3 * digit
    for r, row in enumerate(rows):
        left, line = 30 + 25 * (r % 2), []
        for k, i in enumerate(row):
            big = np.asarray(Image.fromarray(images[i]).resize((digit, digit),
                                                                  Image.Resampling.BICUBIC))
            x, y = left + k * int(0.95 * digit), int(top + r * 1.6 * digit + slope * k)
            sheet[y:y + digit, x:x + digit] = np.minimum(sheet[y:y + digit, x:x + digit],
                                                         255 - big)
            ys, xs = np.nonzero(big > 60)
            line.append((x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1))
        boxes.append(line)
    return sheet, boxes


CORNERS = np.float32([[150, 70], [520, 110], [500, 420], [110, 380]])  # tilted and turned


def _photo(sheet: np.ndarray, desk: float = 0.25, shadow: bool = False) -> tuple[bytes, np.ndarray]:
    """`sheet` lying on a dark desk in a 640x480 photo, at `CORNERS`; the photo and the
    transform from the sheet to it."""
    h, w = sheet.shape
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), CORNERS)
    warped = cv2.warpPerspective(sheet.astype(np.float32) / 255, matrix, (640, 480))
    cover = cv2.warpPerspective(np.ones((h, w), np.float32), matrix, (640, 480))
    rng = np.random.default_rng(0)
    photo = desk * (1 - cover) + warped * cover + rng.normal(0, 0.01, cover.shape)
    if shadow:  # a hard-edged shadow over the left third, paper and desk alike
        photo[:, :260] *= 0.6
    return png(np.uint8(np.clip(photo, 0, 1) * 255)), matrix


def _mapped(matrix: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    points = np.float64([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]])
    mapped = cv2.perspectiveTransform(points, matrix)[0]
    return np.concatenate([mapped.min(axis=0), mapped.max(axis=0)])


@pytest.mark.parametrize("shadow", [False, True], ids=["even-light", "hard-shadow"])
def test_a_note_on_a_desk_is_flattened_and_its_boxes_map_back(model, mnist_test_set, shadow):
    images, labels = mnist_test_set
    sheet, boxes = _page(images, [[0, 1]])
    data, matrix = _photo(sheet, shadow=shadow)
    result = Reader(model).read(data)
    assert result.text == f"{labels[0]}{labels[1]}", result.digits
    # The sheet's corners, in the photo's pixels, within 2% of where they are.
    assert np.abs(np.float32(result.sheet) - CORNERS).max() < 0.02 * 640
    for found, box in zip(result.digits, boxes[0], strict=True):
        true = _mapped(matrix, box)
        assert np.abs(np.array(found.box) - true).max() < 12, (found.box, true)
    assert result.to_dict()["sheet"] == result.sheet


def test_paper_read_as_it_is_has_no_sheet(model, mnist_test_set):
    images, _ = mnist_test_set
    sheet, _ = _page(images, [[0, 1]])
    result = Reader(model).read(png(sheet))
    assert result.status == "ok" and result.sheet is None and result.to_dict()["sheet"] is None


def test_images_that_are_all_paper_are_read_as_before(mnist_test_set):
    """Scans, canvas exports, photos cropped to the writing and tight crops: no sheet is found,
    so they take exactly the path they always took."""
    images, labels = mnist_test_set
    rng = np.random.default_rng(5)
    drawn = [userimages.render(images[i], int(labels[i]), rng) for i in range(40)]
    drawn += [userimages.tight_crop(images[i], int(labels[i]), rng) for i in range(40, 80)]
    drawn += [userimages.number_image(images[i:i + 4], labels[i:i + 4], rng)
              for i in range(80, 120, 4)]
    for image in drawn:
        decoded = decode.open_image(image.data)
        analysis = ink.analyse(decoded)
        assert analysis is None or analysis.sheet is None, image.kind
        plain = ink.analyse(decoded, find_sheet=False)
        assert (analysis is None) == (plain is None)
        if analysis is not None:
            np.testing.assert_array_equal(analysis.mask, plain.mask)


@pytest.mark.parametrize("generator", photos.GENERATORS)
def test_both_bench_generators_draw_a_sheet_the_reader_finds(model, mnist_test_set, generator):
    images, labels = mnist_test_set
    rng = np.random.default_rng(11)
    found = 0
    for i in range(6):
        shot = photos.photo([images[[i]]], str(labels[i]), rng, generator=generator,
                            background="dark-desk")
        analysis = ink.analyse(decode.open_image(shot.data))
        found += analysis is not None and analysis.sheet is not None
    assert found >= 5


def test_a_page_of_lines_reads_top_to_bottom(model, mnist_test_set):
    images, labels = mnist_test_set
    rows = [[0, 1, 2], [3, 4], [5, 6, 7, 8]]
    sheet, boxes = _page(images, rows, size=(480, 420), digit=56, slope=3)
    result = Reader(model).read(png(sheet))
    truth = ["".join(str(labels[i]) for i in row) for row in rows]
    assert result.text == "\n".join(truth)
    record = result.to_dict()
    assert [line["text"] for line in record["lines"]] == truth
    assert [line["digits"] for line in record["lines"]] == [[0, 1, 2], [3, 4], [5, 6, 7, 8]]
    tops = [line["box"][1] for line in record["lines"]]
    assert tops == sorted(tops)
    for line, row_boxes in zip(record["lines"], boxes, strict=True):
        x0, y0, x1, y1 = line["box"]
        assert x0 <= min(b[0] for b in row_boxes) + 3 and x1 >= max(b[2] for b in row_boxes) - 3
        assert y0 <= min(b[1] for b in row_boxes) + 3 and y1 >= max(b[3] for b in row_boxes) - 3


def test_the_text_and_csv_formats_keep_the_lines(model, mnist_test_set):
    images, labels = mnist_test_set
    sheet, _ = _page(images, [[0, 1], [2, 3]], size=(420, 360))
    result = Reader(model).read(png(sheet))
    shown = formats.text_line(result).split("\n")
    assert [s.split(": ")[0] for s in shown] == ["<bytes>:1", "<bytes>:2"]
    assert shown[1].split(": ")[1].startswith(f"{labels[2]}{labels[3]} [")
    stream = io.StringIO()
    formats.Writer(stream, "csv").write(result)
    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert len(rows) == 2 and rows[1][2] == result.text and "\n" in rows[1][2]


def test_one_line_reads_as_it_always_did_with_one_lines_entry(model, mnist_test_set):
    images, labels = mnist_test_set
    sheet, _ = _page(images, [[0, 1, 2, 3]], size=(420, 200))
    result = Reader(model).read(png(sheet))
    record = result.to_dict()
    assert result.text == "".join(str(labels[i]) for i in range(4))
    assert record["lines"] == [{"text": result.text, "box": record["lines"][0]["box"],
                                "digits": [0, 1, 2, 3]}]
    assert formats.text_line(result).startswith(f"<bytes>: {result.text} [")


def test_more_than_16_lines_is_a_clear_error(model, mnist_test_set):
    images, _ = mnist_test_set
    sheet, _ = _page(images, [[i] for i in range(17)], size=(200, 17 * 40), digit=24)
    result = Reader(model).read(png(sheet))
    assert result.status == "error"
    assert "found 17 lines of writing; at most 16" in result.error


def test_pieces_of_one_digit_stay_one_line():
    """The two loops of a broken 8, stacked closely: one line, not two."""
    mask = np.zeros((100, 60), bool)
    mask[10:45, 15:45] = True
    mask[50:90, 12:48] = True
    assert len(lines.find_lines(mask)) == 1


@pytest.mark.parametrize("kind", ["chessboard", "noise"])
def test_pathological_photos_get_a_bounded_honest_answer(model, kind):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:480, 0:640]
    image = {"chessboard": ((yy // 40 + xx // 40) % 2) * 255,
             "noise": rng.integers(0, 256, (480, 640))}[kind].astype(np.uint8)
    result = Reader(model).read(png(image))
    assert result.status in ("unsure", "no_digit", "error")


def test_the_page_picture_shows_the_flattened_sheet(model, mnist_test_set):
    images, _ = mnist_test_set
    sheet, _ = _page(images, [[0, 1]])
    data, _ = _photo(sheet)
    result = Reader(model).read(data)
    picture = np.asarray(overview.page_picture(decode.open_image(data), result))
    # Upright, as long and as high as the outline's longer sides, with none of the desk left.
    corners = np.float32(result.sheet)
    sides = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
    assert picture.shape[:2] == pytest.approx((max(sides[1], sides[3]), max(sides[0], sides[2])),
                                              rel=0.02)
    inner = picture[10:-10, 10:-10]
    assert (inner.mean(axis=2) < 100).mean() < 0.2  # ink and boxes, not desk


def test_a_sheet_found_costs_few_digits_of_the_whole_image(mnist_test_set):
    """Reading the flattened sheet, never the photo: the prepared frames come from the sheet."""
    images, _ = mnist_test_set
    sheet, _ = _page(images, [[0, 1]])
    data, _ = _photo(sheet)
    pending = prepare("<bytes>", decode.open_image(data))
    assert pending.cuts and all(cut.analysis.sheet is not None for cut in pending.cuts)
    assert len(pending.cuts[0].frames) == 2
    assert page.find_sheet(np.zeros((20, 20), np.float32)) is None


def test_a_photo_whose_sheet_is_not_found_is_also_read_as_a_photo(model, mnist_test_set):
    """Paper barely brighter than the desk, a hard shadow across both: no sheet passes the
    checks, and the image as it is reads the shadow's edge as a 1; read as a photo (light
    taken out locally, marks along the frame's edges dropped), it is right."""
    images, labels = mnist_test_set
    sheet, _ = _page(images, [[0, 1]])
    data, _ = _photo(sheet, desk=0.85, shadow=True)
    assert ink.analyse(decode.open_image(data)).sheet is None
    result = Reader(model).read(data)
    assert result.text == f"{labels[0]}{labels[1]}" and result.sheet is None
    assert Reader(model, find_sheet=False).read(data).text != result.text


def test_of_several_sheets_the_largest_is_read(model, mnist_test_set):
    images, labels = mnist_test_set
    large, _ = _page(images, [[0, 1]])
    small, _ = _page(images, [[2]], size=(160, 120), digit=48)
    photo = np.full((480, 640), 0.25, np.float32)
    for sheet, corners in ((large, np.float32([[40, 60], [400, 90], [380, 380], [30, 350]])),
                           (small, np.float32([[450, 100], [610, 110], [605, 230], [445, 220]]))):
        h, w = sheet.shape
        matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]),
                                             corners)
        cover = cv2.warpPerspective(np.ones((h, w), np.float32), matrix, (640, 480))
        warped = cv2.warpPerspective(sheet.astype(np.float32) / 255, matrix, (640, 480))
        photo = photo * (1 - cover) + warped * cover
    result = Reader(model).read(png(np.uint8(photo * 255)))
    assert result.text == f"{labels[0]}{labels[1]}"
    assert np.float32(result.sheet)[:, 0].max() < 420  # the large sheet's outline
