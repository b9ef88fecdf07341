"""Bad and unusual image files, through the two front doors: `mnist-digits predict` and the web
API. Every bad file gets a one-line error (the CLI goes on with the others; the API answers 4xx,
never 5xx); every unusual but valid file is read correctly."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import ink_on_paper
from fastapi.testclient import TestClient
from helpers import png_header_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from test_reading_frame import SEVEN, encode, every_kind_of_file

from mnist_digits.cli import main
from mnist_digits.reading.decode import ImageError
from mnist_digits.reading.frame import frame_image
from mnist_digits.serve.app import create_app

UPLOAD_LIMIT = 2_000_000


def psd_header() -> bytes:
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, 4, 4, 8, 1) + bytes(30)


def bad_files(digit) -> dict[str, tuple[bytes, int]]:
    """name -> (content, the API's status code)."""
    png = encode(Image.fromarray(ink_on_paper(digit)), "PNG")
    jpeg = encode(Image.fromarray(ink_on_paper(digit)).convert("RGB"), "JPEG")
    return {
        "empty.png": (b"", 400),
        "text-named.png": (b"hello, this is a text file\n", 415),
        "truncated.png": (png[: len(png) // 2], 400),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], 400),
        "bomb.png": (png_header_only(100_000, 100_000), 413),
        "document.pdf": (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n%%EOF\n", 415),
        "layers.psd": (psd_header(), 415),
        "huge-upload.png": (b"\x89PNG\r\n\x1a\n" + bytes(UPLOAD_LIMIT + 10), 413),
    }


@pytest.fixture(scope="module")
def seven(mnist_test_set):
    images, labels = mnist_test_set
    assert labels[SEVEN] == 7
    return images[SEVEN]


@pytest.fixture(scope="module")
def client(mnist_model):
    return TestClient(create_app(mnist_model, max_upload_bytes=UPLOAD_LIMIT))


@pytest.fixture
def cli(capsys, mnist_run):
    def run(paths):
        code = main(["predict", "--model", str(mnist_run), "--format", "jsonl",
                     *map(str, paths)])
        return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return run


BLANK = np.zeros((28, 28), np.uint8)
BAD_NAMES = list(bad_files(BLANK))
UNUSUAL_NAMES = list(every_kind_of_file(BLANK))


@pytest.mark.parametrize("name", BAD_NAMES)
def test_cli_reports_a_bad_file_in_one_line_and_reads_the_rest(name, seven, tmp_path, cli):
    content, _ = bad_files(seven)[name]
    bad = tmp_path / name
    bad.write_bytes(content)
    good = tmp_path / "good.png"
    good.write_bytes(encode(Image.fromarray(ink_on_paper(seven)), "PNG"))
    code, records = cli([bad, good])
    assert code == 1  # some file failed
    assert [r["path"] for r in records] == [str(bad), str(good)]
    assert records[0].get("digit") is None and "\n" not in records[0]["error"]
    # The record names the file once, in "path"; the error is the reason alone.
    assert records[0]["error"] and name not in records[0]["error"]
    assert records[1]["digit"] == 7 and "error" not in records[1]


@pytest.mark.parametrize("case", ["missing-path", "directory-as-file", "no-permission"])
def test_cli_reports_unreachable_paths_in_one_line(case, seven, tmp_path, cli, monkeypatch):
    good = tmp_path / "good.png"
    good.write_bytes(encode(Image.fromarray(ink_on_paper(seven)), "PNG"))
    if case == "missing-path":
        bad, expected = tmp_path / "nowhere.png", "no such file"
    elif case == "directory-as-file":
        bad, expected = tmp_path / "scan.png", "a folder with no image files"
        bad.mkdir()
    else:
        bad, expected = tmp_path / "locked.png", "permission denied"
        bad.write_bytes(good.read_bytes())
        bad.chmod(0)
        real_read_bytes = Path.read_bytes

        def read_bytes(self):  # root ignores file modes; make the kernel's answer explicit
            if self == bad:
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_bytes(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    code, records = cli([bad, good])
    assert code == 1
    assert expected in records[0]["error"] and "\n" not in records[0]["error"]
    assert records[1]["digit"] == 7


@pytest.mark.parametrize("name", BAD_NAMES)
def test_api_answers_a_bad_file_with_4xx(name, seven, client):
    content, status = bad_files(seven)[name]
    response = client.post("/api/predict", files={"file": (name, content, "image/png")})
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"detail"}  # every error response has one shape
    message = body["detail"]
    assert isinstance(message, str) and "\n" not in message and len(message) < 300


@pytest.mark.parametrize(("body", "content_type"), [
    (b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nunterminated",
     "multipart/form-data; boundary=x"),
    (b"--x--\r\n", "multipart/form-data"),  # no boundary parameter
    (b"\x89PNG\r\n", "image/png"),  # raw body, not a form
    (b"{\"image\": \"...\"}", "application/json"),
    (b"file=abc", "application/x-www-form-urlencoded"),
], ids=["malformed-multipart", "multipart-without-boundary", "raw-png-body", "json-body",
        "urlencoded-form"])
def test_api_answers_a_malformed_request_with_4xx(body, content_type, client):
    response = client.post("/api/predict", content=body, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("name", UNUSUAL_NAMES)
def test_unusual_valid_files_are_read_correctly_by_cli_and_api(name, seven, tmp_path, cli,
                                                               client):
    content = every_kind_of_file(seven)[name]
    path = tmp_path / f"{name}.img"
    path.write_bytes(content)
    code, records = cli([path])
    assert code == 0 and records[0]["digit"] == 7, records[0]
    response = client.post("/api/predict", files={"file": (path.name, content)})
    assert response.status_code == 200 and response.json()["digit"] == 7


# Random input straight into the preprocessing: a frame, "no digit", or ImageError; nothing else.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 64), st.integers(1, 64)),
                  elements=st.integers(0, 255)))
def test_any_array_gives_a_valid_frame_or_no_digit(array):
    frame = frame_image(Image.fromarray(array))
    if frame is not None:
        assert frame.shape == (28, 28) and frame.dtype == np.float32
        assert np.isfinite(frame).all() and frame.min() >= 0 and frame.max() <= 1


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_frame_none_or_image_error(data):
    try:
        frame = frame_image(data)
    except ImageError:
        return
    assert frame is None or frame.shape == (28, 28)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 48), st.integers(1, 48), st.just(4)),
                  elements=st.integers(0, 255)),
       st.sampled_from(["RGBA", "RGB", "LA", "L", "P", "1", "I;16", "CMYK"]),
       st.sampled_from(["PNG", "WEBP", "GIF", "TIFF", "BMP", "JPEG"]))
def test_any_image_in_any_mode_and_format_gives_a_valid_frame_or_an_image_error(pixels, mode,
                                                                                fmt):
    image = Image.fromarray(pixels, "RGBA")
    try:
        data = encode(image.convert(mode), fmt)
    except (OSError, ValueError, KeyError):
        return  # a mode this format cannot hold; nothing to feed the preprocessing
    try:
        frame = frame_image(data)
    except ImageError:
        return
    if frame is not None:
        assert frame.shape == (28, 28) and frame.dtype == np.float32
        assert np.isfinite(frame).all() and frame.min() >= 0 and frame.max() <= 1
