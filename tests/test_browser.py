"""The writing page in a real browser: Playwright drives Debian's Chromium against a live server
with the packaged model.

Digits are drawn with mouse strokes traced from real MNIST test digits: each row of ink becomes
one pen stroke, left to right, on the canvas. A two-digit number, a mark that is no digit, a
Clear during a request, an upload. Screenshots (desktop and phone-sized) are saved under
`test-artifacts/`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ink_on_paper
from helpers import free_port
from PIL import Image

from mnist_digits import predict

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

if not Path(CHROMIUM).exists():
    # CI installs it (scripts/ensure-chromium.sh); there a missing browser is a failure.
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing; run scripts/ensure-chromium.sh as root",
                    pytrace=False)
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def model():
    """The packaged reading model: what `mnist-digits serve` uses by default."""
    return predict.load_model()


@pytest.fixture(scope="module")
def server(model):
    import uvicorn

    from mnist_digits.serve.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(model), host="127.0.0.1", port=port,
                            log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        # The flags keep Chromium from reaching out to Google's services, which this machine
        # cannot reach; a fresh profile each time.
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic"])
        yield instance
        instance.close()


def strokes_from_digit(digit: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Pen strokes tracing an MNIST digit: one horizontal stroke per run of ink in each row.

    Returns (x0, y0, x1, y1) in MNIST pixel units, pixel centres.
    """
    strokes = []
    for row in range(digit.shape[0]):
        ink = np.flatnonzero(digit[row] > 127)
        if not len(ink):
            continue
        runs = np.split(ink, np.flatnonzero(np.diff(ink) > 1) + 1)
        strokes += [(run[0] + 0.5, row + 0.5, run[-1] + 0.5, row + 0.5) for run in runs]
    return strokes


def draw(page, digit: np.ndarray, *, left: float = 0.0, size: float = 0.8) -> None:
    """Traces an MNIST digit on the pad: `size` of the pad's height, `left` of its width in."""
    box = page.locator("#pad").bounding_box()
    cell = box["height"] * size / 28
    x_offset = box["x"] + left * box["width"]
    y_offset = box["y"] + box["height"] * (1 - size) / 2
    for x0, y0, x1, y1 in strokes_from_digit(digit):
        page.mouse.move(x_offset + x0 * cell, y_offset + y0 * cell)
        page.mouse.down()
        page.mouse.move(x_offset + x1 * cell, y_offset + y1 * cell, steps=3)
        page.mouse.up()


def draw_lines(page, lines: list[tuple[float, float, float, float]]) -> None:
    """Pen strokes given as fractions of the pad's width and height."""
    box = page.locator("#pad").bounding_box()
    for x0, y0, x1, y1 in lines:
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=8)
        page.mouse.up()


def wait_for_answer(page) -> str:
    page.wait_for_function("document.body.dataset.state === 'idle'", timeout=20_000)
    return page.locator("#number").inner_text().strip()


def clear_examples(images, labels, model, wanted=(0, 2, 3, 7)):
    """The test digit of each wanted class (among the first 200) the model reads most surely.

    Tracing preserves the shape, so the choice only avoids digits even MNIST finds ambiguous.
    """
    probabilities = predict.predict_proba(model, images[:200] / 255.0)
    picks = []
    for digit in wanted:
        candidates = [i for i in range(200) if labels[i] == digit]
        picks.append(max(candidates, key=lambda i: probabilities[i, digit]))
    return picks


def overlay_has_boxes(page) -> bool:
    return page.evaluate("""() => {
        const c = document.getElementById('boxes');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
        return false; }""")


def test_write_a_number_and_a_letter(server, browser, mnist_test_set, model):
    images, labels = mnist_test_set
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(server)
    assert page.title().startswith("mnist-digits")
    seven, three = clear_examples(images, labels, model, wanted=(7, 3))

    # A two-digit number: one digit on each half of the pad.
    draw(page, images[seven], left=0.12)
    draw(page, images[three], left=0.55)
    assert wait_for_answer(page) == "73"
    assert page.locator("#chips button").count() == 2
    assert page.locator("#summary").inner_text().startswith("2 digits")
    assert overlay_has_boxes(page)
    # Each digit's bars: choosing the second shows its probabilities, and the bars have width.
    page.locator("#chips button").nth(1).click()
    best = page.locator("#bars li.best")
    assert best.locator(".label").inner_text() == "3"
    page.wait_for_timeout(400)  # the bars' width transition
    assert best.locator(".fill").bounding_box()["width"] > 0.5 * \
        best.locator(".track").bounding_box()["width"]
    assert page.locator("#preview").get_attribute("src").startswith("data:image/png")
    page.screenshot(path=str(ARTIFACTS / "browser-number.png"))

    # A letter that is no digit: the page says it is unsure, not "73%-sure 8".
    page.click("#clear")
    draw_lines(page, [(0.36, 0.88, 0.49, 0.12), (0.49, 0.12, 0.62, 0.88),  # an A
                      (0.41, 0.6, 0.57, 0.6)])
    wait_for_answer(page)
    assert page.evaluate("document.body.dataset.status") == "unsure"
    assert page.locator("#summary").inner_text().startswith("Unsure")
    assert page.locator("#chips button.unsure").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "browser-unsure.png"))

    # Clear during a request: the late answer must not come back onto an empty pad.
    page.click("#clear")
    draw(page, images[seven], left=0.3)
    page.click("#clear")
    page.wait_for_timeout(1500)
    assert page.locator("#number").inner_text().strip() == "–"
    assert page.evaluate("document.body.dataset.state") == "idle"
    assert not overlay_has_boxes(page)
    page.close()


def test_the_api_docs_render_their_operations_and_the_page_asks_for_nothing_missing(
        server, browser):
    page = browser.new_page()
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = {p.strip() for p in page.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/api/predict", "/api/health"} <= paths, paths
    assert page.get_by_text("Unable to render this definition").count() == 0
    page.goto(server + "/")
    page.wait_for_load_state("networkidle")
    assert missing == [], missing  # the favicon included
    page.close()


def test_upload_appears_on_the_pad(server, browser, mnist_test_set, tmp_path):
    images, labels = mnist_test_set
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(server)
    path = tmp_path / "photo.jpg"
    Image.fromarray(ink_on_paper(images[1], size=500, scale=9)).convert("RGB").save(path)
    page.set_input_files("#upload", str(path))
    assert wait_for_answer(page) == str(labels[1])
    # The photo is drawn on the pad (dark ink where the digit is), with its box.
    dark = page.evaluate("""() => {
        const c = document.getElementById('pad');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < data.length; i += 4) if (data[i] < 80) n++;
        return n; }""")
    assert dark > 500 and overlay_has_boxes(page)
    page.screenshot(path=str(ARTIFACTS / "browser-upload.png"))
    page.close()


def test_phone_sized_screen(server, browser, mnist_test_set):
    images, labels = mnist_test_set
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True,
                            has_touch=True, device_scale_factor=2)
    page.goto(server)
    # Everything fits the width: no horizontal scrolling on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    pad = page.locator("#pad").bounding_box()
    assert pad["x"] >= 0 and pad["x"] + pad["width"] <= 390
    draw(page, images[0], left=0.3)
    assert wait_for_answer(page) == str(labels[0])
    page.screenshot(path=str(ARTIFACTS / "browser-phone.png"), full_page=True)
    page.close()


def test_a_photo_of_a_page_shows_its_lines_and_sheet(server, browser, mnist_test_set, tmp_path):
    """Two lines on a sheet lying on a dark desk: the answer keeps the lines, the sheet's outline
    is drawn in green on the pad, and each line gets its box."""
    import cv2

    images, labels = mnist_test_set
    sheet = np.full((300, 420), 255, np.uint8)
    rows = [[0, 1], [2, 3, 4]]
    for r, row in enumerate(rows):
        for k, i in enumerate(row):
            big = np.asarray(Image.fromarray(images[i]).resize((64, 64), Image.Resampling.BICUBIC))
            y, x = 50 + 110 * r, 40 + 25 * r + 62 * k
            sheet[y:y + 64, x:x + 64] = np.minimum(sheet[y:y + 64, x:x + 64], 255 - big)
    corners = np.float32([[150, 70], [520, 110], [500, 420], [110, 380]])
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [420, 0], [420, 300], [0, 300]]),
                                         corners)
    photo = cv2.warpPerspective(sheet, matrix, (640, 480), borderValue=60)
    path = tmp_path / "page.png"
    Image.fromarray(photo).save(path)
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(server)
    page.set_input_files("#upload", str(path))
    answer = wait_for_answer(page)
    assert answer.split("\n") == ["".join(str(labels[i]) for i in row) for row in rows]
    colours = page.evaluate("""() => {
        const c = document.getElementById('boxes');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let green = 0, grey = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i + 3] < 200) continue;
          if (data[i + 1] > data[i] + 60 && data[i + 1] > data[i + 2] + 60) green++;
          if (Math.abs(data[i] - 134) < 12 && Math.abs(data[i + 2] - 150) < 12) grey++;
        }
        return [green, grey]; }""")
    assert colours[0] > 200 and colours[1] > 50, colours
    page.screenshot(path=str(ARTIFACTS / "browser-page-photo.png"))
    page.close()
