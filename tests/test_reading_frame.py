"""Preprocessing: any image in, an MNIST-style 28x28 digit (or "no digit") out."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from conftest import ink_on_paper
from helpers import png_header_only
from PIL import Image, ImageFilter
from scipy import ndimage

from mnist_digits import predict
from mnist_digits.reading import decode
from mnist_digits.reading.decode import ImageError
from mnist_digits.reading.frame import frame_image

SEVEN, TWO, ZERO = 0, 1, 3  # indices of clear digits in the MNIST test set


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def check_frame(frame):
    assert frame is not None
    assert frame.shape == (28, 28) and frame.dtype == np.float32
    assert frame.min() >= 0 and frame.max() <= 1 and frame.max() == pytest.approx(1)
    rows, cols = np.nonzero(frame > 0.1)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21  # fits the 20x20 box (plus anti-aliasing)
    cy, cx = ndimage.center_of_mass(frame)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


def test_mnist_digit_passes_through_nearly_unchanged(mnist_test_set):
    images, _ = mnist_test_set
    for i in range(20):
        frame = frame_image(encode(Image.fromarray(images[i]), "PNG"))
        check_frame(frame)
        assert np.abs(frame - images[i] / 255).mean() < 0.03


def test_position_size_and_polarity_do_not_matter(mnist_test_set):
    digit = mnist_test_set[0][TWO]
    frames = [
        frame_image(Image.fromarray(ink_on_paper(digit, **kw)))
        for kw in ({}, {"dark_on_light": False}, {"size": 900, "scale": 20, "offset": (300, 20)},
                   {"size": 200, "scale": 2.5, "offset": (120, 5)})
    ]
    for frame in frames:
        check_frame(frame)
    for frame in frames[1:]:
        assert np.abs(frame - frames[0]).mean() < 0.05


def every_kind_of_file(digit: np.ndarray) -> dict[str, bytes]:
    """The same digit as the file formats and pixel modes people send."""
    paper = ink_on_paper(digit)  # dark ink on white, uint8
    gray = Image.fromarray(paper)
    ink = 255 - paper
    rgba = np.zeros((*paper.shape, 4), np.uint8)
    rgba[..., 3] = ink  # black strokes on a transparent canvas
    la = np.stack([np.zeros_like(ink), ink], axis=-1)
    palette = gray.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])  # the paper is transparent
    frames = [Image.fromarray(np.full_like(paper, 255)), gray]  # GIF: first frame is what counts
    big = Image.fromarray(paper).resize((4000, 3000), Image.Resampling.BILINEAR)
    rotated = gray.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": undoes the rotation above
    return {
        "png-gray": encode(gray, "PNG"),
        "jpeg-rgb": encode(gray.convert("RGB"), "JPEG", quality=70),
        "bmp": encode(gray.convert("RGB"), "BMP"),
        "gif-second-frame-blank": encode(frames[1], "GIF", save_all=True,
                                         append_images=[frames[0]]),
        "webp": encode(gray, "WEBP", quality=80),
        "tiff": encode(gray, "TIFF"),
        "rgba-transparent-canvas": encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        "la-transparent": encode(Image.fromarray(la, "LA"), "PNG"),
        "palette-with-transparency": encode(palette, "PNG"),
        "cmyk-jpeg": encode(gray.convert("CMYK"), "JPEG", quality=90),
        "png-16-bit": encode(Image.fromarray(paper.astype(np.uint16) * 257), "PNG"),
        "one-bit-scan": encode(gray.point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG"),
        "jpeg-exif-rotated": encode(rotated.convert("RGB"), "JPEG", quality=90, exif=exif),
        "tiny-8x8": encode(Image.fromarray(digit).resize((8, 8), Image.Resampling.BOX), "PNG"),
        "photo-4000x3000": encode(big.convert("RGB"), "JPEG", quality=85),
    }


@pytest.mark.parametrize("index", [SEVEN, TWO, ZERO])
def test_every_format_and_mode_is_read_correctly(index, mnist_test_set, mnist_model):
    images, labels = mnist_test_set
    files = every_kind_of_file(images[index])
    frames = [frame_image(data) for name, data in files.items()]
    for name, frame in zip(files, frames, strict=True):
        assert frame is not None, name
    predicted = predict.predict_proba(mnist_model, np.stack(frames)).argmax(axis=1)
    wrong = [name for name, p in zip(files, predicted, strict=True) if p != labels[index]]
    assert not wrong, f"misread as not {labels[index]}: {wrong}"


def keyed_drawing(digit: np.ndarray) -> Image.Image:
    """A dark digit drawn with a soft pen on white, saved as a palette image whose white is its
    transparent colour: the paper keyed out, the strokes' light anti-aliased rim still opaque
    (and more of it than their dark cores)."""
    paper = Image.fromarray(ink_on_paper(digit, size=280, scale=8))
    soft = Image.fromarray(255 - ndimage.grey_erosion(255 - np.asarray(paper), size=9)) \
        .filter(ImageFilter.GaussianBlur(4))
    palette = soft.convert("RGB").quantize(64)
    white = int(np.argmax(np.asarray(palette.getpalette()[:64 * 3]).reshape(-1, 3).sum(axis=1)))
    palette.info["transparency"] = white
    return palette


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_keyed_out_paper_is_paper_not_ink(fmt, mnist_test_set, mnist_model):
    images, labels = mnist_test_set
    keyed = keyed_drawing(images[TWO])
    drawing = encode(keyed, fmt, transparency=keyed.info["transparency"])
    image = decode.open_image(drawing)
    rgba = np.asarray(image.convert("RGBA"))
    opaque = rgba[..., 3] > 127
    gray = decode.to_gray(image)
    # The rim outnumbers the cores, which made the old rule call the marks light.
    assert np.median(gray[opaque]) > 0.5
    assert gray[~opaque].min() == 1.0  # the keyed paper is white again, not black
    frame = frame_image(drawing)
    check_frame(frame)
    assert predict.predict_proba(mnist_model, frame[None]).argmax() == labels[TWO]


@pytest.mark.parametrize("light_strokes", [False, True])
def test_canvas_exports_put_the_paper_opposite_the_strokes(light_strokes):
    ink = np.zeros((60, 60), np.uint8)
    ink[10:50, 27:33] = 255
    rgba = np.zeros((60, 60, 4), np.uint8)
    rgba[..., :3] = 255 if light_strokes else 0
    rgba[..., 3] = ndimage.uniform_filter(ink, 3)  # anti-aliasing lives in the alpha channel
    gray = decode.to_gray(Image.fromarray(rgba, "RGBA"))
    assert gray[0, 0] == (0.0 if light_strokes else 1.0)
    assert gray[30, 30] == (1.0 if light_strokes else 0.0)


def test_sixteen_bit_is_rescaled_not_saturated():
    values = np.zeros((60, 60), np.uint16)
    values[10:50, 28:32] = 20000  # a faint stroke in 16-bit: 8-bit clipping would make it white
    frame = frame_image(Image.fromarray(values))
    check_frame(frame)


def test_uneven_lighting_and_paper_noise(mnist_test_set):
    images, _ = mnist_test_set
    paper = ink_on_paper(images[SEVEN], size=400).astype(np.float32) / 255
    xx = np.mgrid[0:400, 0:400][1] / 400
    lit = np.clip(paper * (0.55 + 0.45 * xx) + np.random.default_rng(0).normal(0, 0.04,
                                                                               paper.shape), 0, 1)
    clean = frame_image(Image.fromarray(ink_on_paper(images[SEVEN], size=400)))
    frame = frame_image(Image.fromarray((lit * 255).astype(np.uint8)))
    check_frame(frame)
    assert np.abs(frame - clean).mean() < 0.06


@pytest.mark.parametrize("width", [1, 3, 25])
def test_thin_and_thick_strokes_get_mnist_like_width(width):
    canvas = np.full((300, 300), 255, np.uint8)
    canvas[40:260, 150 - width // 2: 150 + (width + 1) // 2] = 0  # a "1"
    canvas[40:40 + width, 110:150] = 0
    frame = frame_image(Image.fromarray(canvas))
    check_frame(frame)
    stroke = (frame[14] > 0.5).sum()  # the vertical bar's width on the middle row
    assert 1 <= stroke <= 5


def test_ruled_paper_lines_are_not_ink(mnist_test_set, mnist_model):
    images, labels = mnist_test_set
    paper = ink_on_paper(images[TWO], size=360, offset=(80, 90))
    clean = frame_image(Image.fromarray(paper))
    ruled = paper.copy()
    ruled[::30, :] = np.minimum(ruled[::30, :], 150)  # blue-ish rules every 30 px, edge to edge
    ruled[:, 20:22] = np.minimum(ruled[:, 20:22], 170)  # and a margin line
    frame = frame_image(Image.fromarray(ruled))
    check_frame(frame)
    assert np.abs(frame - clean).mean() < 0.05
    assert predict.predict_proba(mnist_model, frame[None]).argmax() == labels[TWO]


def test_a_lone_edge_to_edge_stroke_is_kept():
    canvas = np.full((200, 200), 255, np.uint8)
    canvas[:, 98:104] = 0  # a "1" drawn from the top edge to the bottom edge
    check_frame(frame_image(Image.fromarray(canvas)))


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_images_are_no_digit(value):
    assert frame_image(Image.new("L", (200, 120), value)) is None


def test_faint_paper_noise_is_no_digit():
    noise = np.random.default_rng(1).normal(230, 4, (300, 300)).clip(0, 255).astype(np.uint8)
    assert frame_image(Image.fromarray(noise)) is None


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"", "empty", "empty file"),
        (b"just some text, not an image\n", "not_image", "not an image"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "not_image", "not an image"),
        (png_header_only(100_000, 100_000), "too_large", "over the limit of 50,000,000 pixels"),
        (png_header_only(9_000, 9_000), "too_large", "9000x9000 pixels, over the limit"),
    ],
    ids=["empty", "text", "pdf", "decompression-bomb", "over-our-limit"],
)
def test_bad_bytes_raise_image_error(data, kind, message):
    with pytest.raises(ImageError, match=message) as info:
        decode.open_image(data, source="upload.png")
    assert info.value.kind == kind and "upload.png" in str(info.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_raise_image_error(fmt, mnist_test_set):
    data = encode(Image.fromarray(ink_on_paper(mnist_test_set[0][0])).convert("RGB"), fmt)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        frame_image(data[: len(data) // 2])


def test_psd_is_refused_as_unsupported():
    # A minimal valid Photoshop header: Pillow can open PSD, but we do not accept it.
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, 4, 4, 8, 1)
    data = header + struct.pack(">I", 0) * 3 + struct.pack(">H", 0) + bytes(16)
    with pytest.raises(ImageError) as info:
        frame_image(data)
    assert info.value.kind in ("unsupported", "not_image", "corrupt")


def test_file_errors_give_the_source_and_the_reason_apart(tmp_path):
    with pytest.raises(ImageError, match="no such file") as missing:
        decode.read_file(tmp_path / "missing.png")
    assert missing.value.source == str(tmp_path / "missing.png")
    assert missing.value.reason == "no such file" and missing.value.kind == "missing"
    assert str(missing.value) == f"{tmp_path / 'missing.png'}: no such file"
    with pytest.raises(ImageError, match="a folder, not an image file"):
        decode.read_file(tmp_path)
