"""The web app: one drawing page and a JSON API, on FastAPI.

The page posts the canvas as a PNG to `/api/predict`, so drawings and uploads go through exactly
the same `reading` code as the command line; nothing is reimplemented in JavaScript. The app
makes no outgoing requests and neither the page nor `/docs` loads anything from anywhere else
(Swagger UI's files come from the swagger-ui-bundle package).
"""

from __future__ import annotations

import base64
import json
import threading
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import keras
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from mnist_digits import __version__, calibrate, models
from mnist_digits.defaults import DEFAULT_THRESHOLD
from mnist_digits.reading import decode, frame, pipeline

DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# Multipart framing around the file: boundaries and part headers.
MULTIPART_OVERHEAD = 16 * 1024

_STATUS = {"empty": 400, "corrupt": 400, "not_image": 415, "unsupported": 415,
           "too_large": 413, "missing": 400, "unreadable": 400}


class BodyLimit:
    """ASGI middleware: answers 413 to any request body over the limit, before the app reads it.

    A Content-Length over the limit is refused at once; a chunked body is counted as it arrives
    and refused as soon as it passes the limit, so an oversized upload is never held in full.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _send_json(send, 413 if length.isdigit() else 400,
                             {"detail": self._message() if length.isdigit()
                              else "invalid Content-Length header"})
            return
        # Read the body up front (it is at most `limit` bytes), then replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                await _send_json(send, 413, {"detail": self._message()})
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _message(self) -> str:
        return f"upload too large: the limit is {self.limit - MULTIPART_OVERHEAD:,} bytes"


async def _send_json(send: Any, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class DigitOut(BaseModel):
    """One digit found in the image."""

    digit: int = Field(description="the most probable digit")
    confidence: float = Field(description="its calibrated probability")
    box: list[int] = Field(description="[x0, y0, x1, y1] in the uploaded image's pixels")
    probabilities: list[float] = Field(description="the 10 class probabilities")
    unsure: bool = Field(description="confidence under the threshold: maybe not a digit")


class LineOut(BaseModel):
    """One line of writing in the image."""

    text: str | None = Field(description="its digits, left to right, when the status is ok")
    box: list[int] = Field(description="[x0, y0, x1, y1] around its digits, in the uploaded "
                                       "image's pixels")
    digits: list[int] = Field(description="the indices of its digits in `digits`")


class PredictionOut(BaseModel):
    """What was read in one image: the fields of `mnist-digits predict --format jsonl`."""

    path: str = Field(description="the uploaded file's name")
    status: Literal["ok", "no_digit", "unsure", "error"] = Field(
        description="ok: every digit read confidently; unsure: something is there but not "
                    "confidently a digit; no_digit: nothing there")
    text: str | None = Field(description="the digits, each line left to right, lines joined "
                                         "by a newline, when the status is ok")
    digit: int | None = Field(description="the digit, when exactly one was found and it is sure")
    confidence: float | None = Field(description="the probability of `digit`")
    probabilities: list[float] | None = Field(
        description="the 10 class probabilities, when exactly one digit-like mark was found")
    digits: list[DigitOut] = Field(description="every digit found, line after line, each "
                                               "line left to right")
    lines: list[LineOut] = Field(description="the lines of writing, top to bottom")
    sheet: list[list[float]] | None = Field(
        description="the corners [x, y] (top-left, top-right, bottom-right, bottom-left) of the "
                    "sheet of paper found in a photo and read flattened; null when the image "
                    "was read as it is")
    threshold: float = Field(description="the confidence threshold used")
    preprocessed: list[str] = Field(
        description="per digit, the 28x28 image the model saw, as a PNG data URL")


class ErrorOut(BaseModel):
    """Every error response has this shape."""

    detail: str


def create_app(model: keras.Model, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               threshold: float = DEFAULT_THRESHOLD) -> FastAPI:
    """The FastAPI app serving `model`.

    Args:
        model: the classifier (see `predict.load_model`).
        max_upload_bytes: larger uploads get 413.
        threshold: the default calibrated confidence under which a digit is unsure; a request
            may pass its own as `?threshold=`.
    """
    app = FastAPI(
        title="mnist-digits",
        version=__version__,
        description="Reads handwritten digits and numbers from an image: upload it to "
                    "`/api/predict`.",
        docs_url=None,  # served below from local files: FastAPI's default needs a CDN
        redoc_url=None,
    )
    # The vendored Swagger UI (4.15) renders OpenAPI 3.0 only: with FastAPI's default 3.1.0
    # /docs says "Unable to render this definition". Declared 3.0.3, it renders every operation
    # and model; the nullable fields keep 3.1's `anyOf` with `null`, which it shows as is.
    app.openapi_version = "3.0.3"
    app.add_middleware(BodyLimit, limit=max_upload_bytes + MULTIPART_OVERHEAD)
    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    page = resources.files("mnist_digits.serve").joinpath("static/index.html").read_text()
    lock = threading.Lock()  # one forward pass at a time: two cores gain nothing from more
    info = {"status": "ok", "model": model.name, "params": models.count_params(model),
            "version": __version__, "threshold": threshold,
            "temperature": calibrate.temperature_of(model)}

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        locations = [tuple(map(str, e.get("loc", ()))) for e in exc.errors()]
        if ("query", "threshold") in locations:
            given = request.query_params.get("threshold")
            return JSONResponse(status_code=422, content={
                "detail": f"threshold must be a number between 0 and 1, got {given!r}"})
        fields = ", ".join(".".join(loc) for loc in locations)
        return JSONResponse(status_code=422, content={
            "detail": f"malformed request: expected a multipart form with an image in the "
                      f"'file' field (problem with: {fields or 'body'})"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc.detail)},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace to the client; the server's log keeps it.
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(Path(swagger_ui_path) / "favicon-32x32.png", media_type="image/png")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="mnist-digits API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Liveness, which model is served, and its threshold."""
        return info

    error = {"model": ErrorOut}

    @app.post("/api/predict", response_model=PredictionOut, responses={
        400: {**error, "description": "empty or corrupt image"},
        413: {**error, "description": "upload or image too large"},
        415: {**error, "description": "not an image, or an unsupported format"},
        422: {**error, "description": "malformed request, or more marks than a page of "
                                      "numbers has (16 lines, 32 digits a line)"}})
    def predict_upload(
        file: Annotated[UploadFile, File(description="the image")],
        threshold_: Annotated[float | None, Query(
            alias="threshold", ge=0, le=1,
            description="calibrated confidence under which a digit is unsure")] = None,
    ) -> Any:
        """Reads every digit in an uploaded image, line by line, left to right.

        `status` says whether the digits were read confidently (`ok`), something is there but
        not confidently a digit (`unsure`), or there is nothing (`no_digit`).
        """
        name = file.filename or "upload"
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return JSONResponse(status_code=413, content={
                "detail": f"upload too large: the limit is {max_upload_bytes:,} bytes"})
        try:
            image = decode.open_image(data, source=name)
        except decode.ImageError as err:
            return JSONResponse(status_code=_STATUS.get(err.kind, 400),
                                content={"detail": str(err)})
        used = threshold if threshold_ is None else threshold_
        # Finding the digits runs concurrently across requests; only the model call is locked.
        pending = pipeline.prepare(name, image)
        with lock:
            result = pipeline.finish([pending], model, used)[0]
        if result.error is not None:
            return JSONResponse(status_code=422, content={"detail": result.error})
        return {**result.to_dict(), "threshold": used, "preprocessed": [
            "data:image/png;base64," + base64.b64encode(frame.to_png(d.frame)).decode()
            for d in result.digits]}

    return app
