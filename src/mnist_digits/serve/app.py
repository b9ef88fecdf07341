"""The web app: one drawing page and a JSON API, on FastAPI.

The page posts the canvas as a PNG to `/api/predict`, so drawings and uploads go through exactly
the same `preprocess` code as the command line; nothing is reimplemented in JavaScript. The app
makes no outgoing requests and the page loads nothing from anywhere else.
"""

from __future__ import annotations

import base64
import json
import threading
from importlib import resources
from typing import Annotated, Any

import keras
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from mnist_digits import __version__, models, predict, preprocess

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


def create_app(model: keras.Model, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_pixels: int = preprocess.DEFAULT_MAX_PIXELS) -> FastAPI:
    """The FastAPI app serving `model`.

    Args:
        model: the classifier (see `predict.load_model`).
        max_upload_bytes: larger uploads get 413.
        max_pixels: larger images (by their header) get 413, before being decoded.
    """
    app = FastAPI(
        title="mnist-digits",
        version=__version__,
        description="Reads a handwritten digit from an image: upload it to `/api/predict`.",
    )
    app.add_middleware(BodyLimit, limit=max_upload_bytes + MULTIPART_OVERHEAD)
    page = resources.files("mnist_digits.serve").joinpath("static/index.html").read_text()
    lock = threading.Lock()  # one forward pass at a time: two cores gain nothing from more
    info = {"status": "ok", "model": model.name, "params": models.count_params(model),
            "version": __version__}

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(map(str, e.get("loc", ()))) for e in exc.errors())
        return JSONResponse(status_code=422, content={
            "detail": f"malformed request: expected a multipart form with an image in the "
                      f"'file' field (problem with: {fields or 'body'})"})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace to the client; the server's log keeps it.
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Liveness, and which model is served."""
        return info

    @app.post("/api/predict", responses={
        400: {"description": "empty or corrupt image"},
        413: {"description": "upload or image too large"},
        415: {"description": "not an image, or an unsupported format"},
        422: {"description": "malformed request"}})
    def predict_upload(file: Annotated[UploadFile, File(description="the image")]) -> Any:
        """Reads the digit in an uploaded image.

        Returns the fields of `mnist-digits predict --format jsonl` (`path`, `digit`,
        `confidence`, `probabilities`; `digit` is null when there is no digit) and
        `preprocessed`, the 28x28 image the model saw, as a PNG data URL.
        """
        name = file.filename or "upload"
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return JSONResponse(status_code=413, content={
                "detail": f"upload too large: the limit is {max_upload_bytes:,} bytes"})
        try:
            frame = preprocess.preprocess_bytes(data, source=name, max_pixels=max_pixels)
        except preprocess.ImageError as err:
            return JSONResponse(status_code=_STATUS.get(err.kind, 400),
                                content={"path": name, "error": str(err)})
        with lock:
            result = predict.predict_frames(model, [name], [frame])[0]
        payload = result.to_dict()
        payload["preprocessed"] = None if frame is None else (
            "data:image/png;base64," + base64.b64encode(preprocess.to_png(frame)).decode())
        return payload

    return app
