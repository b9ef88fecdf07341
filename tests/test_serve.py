"""The web API, in process with FastAPI's TestClient."""

from __future__ import annotations

import base64
import io
import re

import pytest
from conftest import ink_on_paper
from fastapi.testclient import TestClient
from helpers import png_header_only
from PIL import Image

from mnist_digits.defaults import DEFAULT_THRESHOLD
from mnist_digits.serve.app import create_app


@pytest.fixture(scope="module")
def client(mnist_model):
    return TestClient(create_app(mnist_model, max_upload_bytes=200_000))


@pytest.fixture(scope="module")
def seven_png(mnist_test_set):
    buffer = io.BytesIO()
    Image.fromarray(ink_on_paper(mnist_test_set[0][0])).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["model"] == "cnn_reader"


def test_predict_returns_the_cli_fields_and_the_preprocessed_image(client, seven_png):
    response = client.post("/api/predict", files={"file": ("seven.png", seven_png, "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"path", "status", "text", "digit", "confidence", "probabilities",
                         "digits", "lines", "sheet", "threshold", "preprocessed"}
    assert body["lines"] == [{"text": "7", "box": body["digits"][0]["box"], "digits": [0]}]
    assert body["sheet"] is None
    assert body["path"] == "seven.png" and body["digit"] == 7 and body["text"] == "7"
    assert body["status"] == "ok" and body["threshold"] == DEFAULT_THRESHOLD
    assert len(body["probabilities"]) == 10 and body["confidence"] > 0.5
    assert body["digits"][0]["probabilities"] == body["probabilities"]
    prefix = "data:image/png;base64,"
    assert len(body["preprocessed"]) == 1 and body["preprocessed"][0].startswith(prefix)
    png = base64.b64decode(body["preprocessed"][0][len(prefix):])
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (28, 28)


def test_threshold_per_request_moves_the_operating_point(client, seven_png):
    files = {"file": ("seven.png", seven_png, "image/png")}
    unsure = client.post("/api/predict?threshold=1", files=files).json()
    assert unsure["status"] == "unsure" and unsure["digit"] is None and unsure["text"] is None
    assert len(unsure["probabilities"]) == 10 and unsure["digits"][0]["unsure"] is True
    assert client.post("/api/predict?threshold=2", files=files).status_code == 422


def test_the_schema_types_the_answer(client):
    schema = client.get("/openapi.json").json()
    ok = schema["paths"]["/api/predict"]["post"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/PredictionOut")
    fields = schema["components"]["schemas"]["PredictionOut"]["properties"]
    assert {"status", "text", "digits", "digit", "confidence", "probabilities"} <= set(fields)
    assert set(schema["components"]["schemas"]["DigitOut"]["properties"]) == {
        "digit", "confidence", "box", "probabilities", "unsure"}
    assert set(schema["components"]["schemas"]["LineOut"]["properties"]) == {
        "text", "box", "digits"}


def test_more_than_16_lines_is_a_422_in_one_line(client, mnist_test_set):
    images, _ = mnist_test_set
    page = Image.new("L", (120, 17 * 40), 255)
    for k in range(17):
        digit = Image.fromarray(255 - images[k]).resize((24, 24), Image.Resampling.BICUBIC)
        page.paste(digit, (40, 8 + 40 * k))
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    response = client.post("/api/predict", files={"file": ("page.png", buffer.getvalue(),
                                                           "image/png")})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "found 17 lines of writing; at most 16" in detail and "\n" not in detail


def test_blank_canvas_is_no_digit(client):
    buffer = io.BytesIO()
    Image.new("RGBA", (280, 280), (255, 255, 255, 255)).save(buffer, format="PNG")
    body = client.post("/api/predict", files={"file": ("c.png", buffer.getvalue())}).json()
    assert body["digit"] is None and body["preprocessed"] == []
    assert body["status"] == "no_digit" and body["text"] is None


@pytest.mark.parametrize(
    ("files", "status"),
    [
        ({"file": ("notes.png", b"plain text, not an image", "image/png")}, 415),
        ({"file": ("doc.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")}, 415),
        ({"file": ("empty.png", b"", "image/png")}, 400),
        ({"file": ("bomb.png", png_header_only(100_000, 100_000), "image/png")}, 413),
        ({"file": ("big.png", b"\x89PNG" + bytes(300_000), "image/png")}, 413),
        ({"other": ("x.png", b"abc", "image/png")}, 422),
    ],
    ids=["text", "pdf", "empty", "bomb", "over-upload-limit", "wrong-field"],
)
def test_bad_uploads_get_4xx_with_a_short_message(client, files, status):
    response = client.post("/api/predict", files=files)
    assert response.status_code == status
    assert set(response.json()) == {"detail"}  # every error has one shape
    assert "\n" not in response.json()["detail"] and len(response.text) < 600


def test_an_out_of_range_threshold_is_blamed_with_its_range(client, seven_png):
    response = client.post("/api/predict?threshold=2", files={"file": ("7.png", seven_png)})
    assert response.status_code == 422
    assert response.json() == {"detail": "threshold must be a number between 0 and 1, got '2'"}


def test_the_page_has_a_favicon_and_the_schema_is_one_swagger_ui_renders(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
    # The vendored Swagger UI (4.15) reads OpenAPI 3.0; a 3.1 document does not render.
    assert client.get("/openapi.json").json()["openapi"].startswith("3.0.")


def test_malformed_requests(client):
    assert client.post("/api/predict").status_code == 422
    response = client.post("/api/predict", content=b"--x\r\nbroken",
                           headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code in (400, 422)
    response = client.post("/api/predict", content=b"{}",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_docs_work_offline_and_page(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI from this server, not a CDN.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", docs.text)
    for asset in re.findall(r"""(?:src|href)=["'](/docs-assets/[^"']+)""", docs.text):
        assert client.get(asset).status_code == 200, asset
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert client.get("/no/such/page").json() == {"detail": "Not Found"}
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/").text
    assert "<canvas" in page and 'id="upload"' in page
    # Nothing loaded from elsewhere: no CDN scripts, fonts or styles.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page
