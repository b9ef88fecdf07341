"""The drawing page in a real browser: Playwright drives Debian's Chromium against a live server.

Digits are drawn with mouse strokes traced from real MNIST test digits: each row of ink becomes
one pen stroke, left to right, on the canvas. Then an image is uploaded through the page's file
control. Screenshots (desktop and phone-sized) are saved under `test-artifacts/`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ink_on_paper
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(mnist_model):
    import uvicorn

    from mnist_digits.serve.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(mnist_model), host="127.0.0.1", port=port,
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


def draw(page, digit: np.ndarray) -> None:
    box = page.locator("#pad").bounding_box()
    cell = box["width"] / 28
    for x0, y0, x1, y1 in strokes_from_digit(digit):
        page.mouse.move(box["x"] + x0 * cell, box["y"] + y0 * cell)
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * cell, box["y"] + y1 * cell, steps=3)
        page.mouse.up()


def wait_for_answer(page) -> str:
    page.wait_for_function("document.body.dataset.state === 'idle'", timeout=20_000)
    return page.locator("#digit").inner_text().strip()


def clear_examples(images, labels, model, wanted=(0, 2, 3, 7)):
    """The test digit of each wanted class (among the first 200) the model reads most surely.

    Tracing preserves the shape, so the choice only avoids digits even MNIST finds ambiguous.
    (Not a fixed threshold: label smoothing keeps the default model's confidence near 0.9.)
    """
    probabilities = predict.predict_proba(model, images[:200] / 255.0)
    picks = []
    for digit in wanted:
        candidates = [i for i in range(200) if labels[i] == digit]
        picks.append(max(candidates, key=lambda i: probabilities[i, digit]))
    return picks


def test_draw_digits_and_upload(server, browser, mnist_test_set, mnist_model, tmp_path):
    images, labels = mnist_test_set
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    page.goto(server)
    assert page.title().startswith("mnist-digits")

    results = []
    for index in clear_examples(images, labels, mnist_model):
        page.click("#clear")
        draw(page, images[index])
        results.append((int(labels[index]), wait_for_answer(page)))
        # The page shows its bars and the 28x28 image the model saw.
        assert page.locator("#bars li.best").count() == 1
        assert page.locator("#preview").get_attribute("src").startswith("data:image/png")
    page.screenshot(path=str(ARTIFACTS / "browser-drawing.png"))
    assert all(str(want) == got for want, got in results), results

    # Upload: the same preprocessing as the CLI, through the page's file control.
    path = tmp_path / "photo.jpg"
    Image.fromarray(ink_on_paper(images[1], size=500, scale=9)).convert("RGB").save(path)
    page.set_input_files("#upload", str(path))
    assert wait_for_answer(page) == str(labels[1])
    page.screenshot(path=str(ARTIFACTS / "browser-upload.png"))

    page.click("#clear")
    assert page.locator("#digit").inner_text().strip() == "–"
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
    draw(page, images[0])
    assert wait_for_answer(page) == str(labels[0])
    page.screenshot(path=str(ARTIFACTS / "browser-phone.png"), full_page=True)
    page.close()
