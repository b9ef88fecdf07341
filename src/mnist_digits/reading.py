"""Reading images: every digit in an image, left to right, and an honest status.

One image goes through `preprocess.analyse` (its ink), `segment.find_digits` (one region per
digit), `preprocess.frame_region` (each region as an MNIST-style 28x28 frame) and the model,
in one batch for all the digits of all the images at hand. The status says what came of it:

- `ok`: every digit's calibrated confidence reached the threshold; `text` holds them all;
- `unsure`: something is there, but at least one mark is not confidently a digit (a letter, a
  scribble, an ambiguous stroke); `digit` and `text` are null, the probabilities stay visible;
- `no_digit`: blank paper, nothing but specks;
- `error`: the file is not a readable image, or holds far more marks than a number has.

The threshold is on calibrated probabilities (see `calibrate`): 0.6 means "this digit, at least
six times in ten, by the model's own honest account".
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from PIL import Image

from mnist_digits import data, predict, preprocess, segment

# The default operating point, chosen on the packaged model's `mnist-digits bench` curve: the
# lowest threshold at which over 90% of non-digits are rejected (0.6: 90.9%, 0.5: 89.3%), so
# that as few digits as possible are (user-style 0.30%, MNIST test 0.33%). The README's
# "Reading" section has the curve.
DEFAULT_THRESHOLD = 0.6
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class DigitReading:
    """One digit found in an image.

    Attributes:
        digit: the most probable digit.
        confidence: its calibrated probability.
        box: `[x0, y0, x1, y1]` in source-image pixels (x1, y1 exclusive).
        probabilities: the 10 class probabilities.
        unsure: the confidence is under the threshold.
        frame: the 28x28 image the model saw.
    """

    digit: int
    confidence: float
    box: list[int]
    probabilities: tuple[float, ...]
    unsure: bool
    frame: np.ndarray = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"digit": self.digit, "confidence": self.confidence, "box": self.box,
                "probabilities": list(self.probabilities), "unsure": self.unsure}


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The outcome for one input image.

    Attributes:
        path: the input as the user named it (or found it in a folder).
        status: `ok`, `no_digit`, `unsure` or `error` (see the module docstring).
        digits: every digit found, left to right.
        error: a one-line reason the file could not be read, or None.
    """

    path: str
    status: str = "no_digit"
    digits: tuple[DigitReading, ...] = ()
    error: str | None = None

    @property
    def text(self) -> str | None:
        """The digits read, left to right, or None unless the status is `ok`."""
        return "".join(str(d.digit) for d in self.digits) if self.status == "ok" else None

    @property
    def digit(self) -> int | None:
        """The digit, when exactly one was found and it is sure; else None."""
        return self.digits[0].digit if self.status == "ok" and len(self.digits) == 1 else None

    @property
    def single(self) -> DigitReading | None:
        """The one digit found, sure or not; None for none or several."""
        return self.digits[0] if len(self.digits) == 1 else None

    @property
    def confidence(self) -> float | None:
        return self.digits[0].confidence if self.digit is not None else None

    @property
    def probabilities(self) -> tuple[float, ...] | None:
        return self.single.probabilities if self.single else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields of `predict --format jsonl` and the web API."""
        if self.error is not None:
            return {"path": self.path, "status": "error", "error": self.error, "digit": None,
                    "confidence": None, "probabilities": None, "text": None, "digits": []}
        return {"path": self.path, "status": self.status, "digit": self.digit,
                "confidence": self.confidence,
                "probabilities": list(self.probabilities) if self.probabilities else None,
                "text": self.text, "digits": [d.to_dict() for d in self.digits]}

    def top(self, k: int) -> list[tuple[int, float]]:
        """The single digit's k most probable classes, most probable first ([] otherwise)."""
        if not self.probabilities:
            return []
        order = np.argsort(-np.asarray(self.probabilities), kind="stable")[:k]
        return [(int(d), float(self.probabilities[d])) for d in order]


@dataclasses.dataclass
class _Item:
    """One digit-like region and its frame, with the parts it may split into (touching
    digits, see `segment.split_wide`), each with its frame."""

    region: segment.Region
    frame: np.ndarray
    parts: list[tuple[segment.Region, np.ndarray]]

    @property
    def frames(self) -> list[np.ndarray]:
        return [self.frame, *(frame for _, frame in self.parts)]


@dataclasses.dataclass
class _Cut:
    """One reading of an image's ink, cut into digit frames."""

    analysis: preprocess.InkAnalysis
    items: list[_Item]

    @property
    def frames(self) -> list[np.ndarray]:
        return [f for item in self.items for f in item.frames]


@dataclasses.dataclass
class _Pending:
    """An image cut into digit frames, waiting for the model: one cut, or two when the image
    does not say which side is paper (a thick pen in a tight crop)."""

    path: str
    cuts: list[_Cut] = dataclasses.field(default_factory=list)
    error: str | None = None


def _frame(analysis: preprocess.InkAnalysis, region: segment.Region) -> np.ndarray:
    x0, y0, x1, y1 = region.box
    return preprocess.frame_region(analysis.ink[y0:y1, x0:x1], region.mask, analysis.threshold)


def prepare(path: str, image: Image.Image, max_digits: int = segment.MAX_DIGITS) -> _Pending:
    """Cuts a decoded image into digit frames, ready for `finish`: all the work but the model's,
    so a server can do it for many requests at once and hold its model lock only for `finish`.
    """
    analysis = preprocess.analyse(image)
    analyses = [analysis] if analysis is not None else []
    if analysis is not None and analysis.ambiguous:
        other = preprocess.analyse(image, paper="dark" if analysis.paper == "light" else "light")
        if other is not None:
            analyses.append(other)
    cuts = []
    for found in analyses:
        try:
            regions = segment.find_digits(found.mask, max_digits=max_digits)
        except segment.SegmentError as err:
            if len(analyses) == 1:
                return _Pending(path, error=str(err))
            continue
        items = []
        for region in regions:
            parts = segment.split_wide(region)
            items.append(_Item(region, _frame(found, region), [] if len(parts) == 1 else
                               [(part, _frame(found, part)) for part in parts]))
        cuts.append(_Cut(found, items))
    return _Pending(path, cuts)


def _digits(cut: _Cut, probabilities: np.ndarray, threshold: float,
            max_digits: int) -> list[DigitReading]:
    """The digits of one cut, given the model's probabilities for `cut.frames` in order.

    A region with a proposed split is read as its parts only when the whole is unsure and every
    part is sure: touching digits.
    """
    def reading(region: segment.Region, frame: np.ndarray, row: np.ndarray) -> DigitReading:
        probs = tuple(round(float(v), 6) for v in row)
        digit = int(np.argmax(probs))
        return DigitReading(digit, probs[digit], cut.analysis.to_source(region.box), probs,
                            probs[digit] < threshold, frame)

    digits, row = [], 0
    for item in cut.items:
        whole = reading(item.region, item.frame, probabilities[row])
        parts = [reading(region, frame, probabilities[row + 1 + k])
                 for k, (region, frame) in enumerate(item.parts)]
        row += 1 + len(parts)
        split = parts and whole.unsure and not any(p.unsure for p in parts)
        digits.extend(parts if split else [whole])
    return digits[:max_digits]


def finish(pending: Sequence[_Pending], model: keras.Model, threshold: float,
           max_digits: int = segment.MAX_DIGITS) -> list[Prediction]:
    """Runs the model once over every frame of `pending` and builds the predictions.

    Of two readings of one image (see `_Pending`), a sure one beats an unsure one, then fewer
    digits beat more (an image whose ink runs into its border is most often one tightly cropped
    digit, and the wrong paper can turn the corners of its crop into confident 1s), then the
    surer least sure digit wins.
    """
    frames = [f for p in pending for cut in p.cuts for f in cut.frames]
    probabilities = predict.predict_proba(model, np.stack(frames)) if frames else \
        np.zeros((0, data.NUM_CLASSES), np.float32)
    out, row = [], 0
    for p in pending:
        if p.error is not None:
            out.append(Prediction(p.path, status="error", error=p.error))
            continue
        readings = []
        for cut in p.cuts:
            count = len(cut.frames)
            readings.append(_digits(cut, probabilities[row:row + count], threshold, max_digits))
            row += count
        best = max(readings, key=lambda digits: (
            bool(digits) and not any(d.unsure for d in digits), -len(digits),
            min((d.confidence for d in digits), default=0.0)), default=[])
        status = "no_digit" if not best else \
            "unsure" if any(d.unsure for d in best) else "ok"
        out.append(Prediction(p.path, status=status, digits=tuple(best)))
    return out


def read_images(model: keras.Model, images: Sequence[Image.Image], paths: Sequence[str], *,
                threshold: float = DEFAULT_THRESHOLD,
                max_digits: int = segment.MAX_DIGITS) -> list[Prediction]:
    """Reads decoded images: one `Prediction` each, one model call for all their digits."""
    return finish([prepare(p, im, max_digits) for p, im in zip(paths, images, strict=True)],
                   model, threshold)


def read_bytes(model: keras.Model, data: bytes, *, source: str = "<bytes>",
               threshold: float = DEFAULT_THRESHOLD) -> Prediction:
    """Reads image file bytes.

    Raises:
        ImageError: the bytes are not a readable image of a supported format and size.
    """
    return read_images(model, [preprocess.open_image(data, source=source)], [source],
                       threshold=threshold)[0]


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, and folders replaced by the image files below them (sorted, recursive).

    A path that does not exist, and a folder with no image files in it, are kept, so that each
    is reported as an error in its place rather than silently skipped.
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            out.extend(found or [path])
        else:
            out.append(path)
    return out


def read_files(model: keras.Model, paths: Sequence[str | os.PathLike], *,
               threshold: float = DEFAULT_THRESHOLD, batch_size: int = 256,
               progress: Callable[[int, int], None] | None = None) -> Iterator[Prediction]:
    """Reads image files in order, a batch at a time; a bad file never stops the others.

    Args:
        model: the classifier.
        paths: image files (see `expand_paths` for folders).
        threshold: the calibrated confidence under which a digit is `unsure`.
        batch_size: files preprocessed and predicted together.
        progress: called with (done, total) after each batch.

    Yields:
        One `Prediction` per path, in input order.
    """
    total = len(paths)
    for start in range(0, total, batch_size):
        pending = []
        for path in (str(p) for p in paths[start:start + batch_size]):
            if os.path.isdir(path):  # what `expand_paths` keeps of a folder with no images
                pending.append(_Pending(path, error="a folder with no image files in it ("
                                                    f"{', '.join(IMAGE_SUFFIXES)})"))
                continue
            try:
                image = preprocess.open_image(preprocess.read_file(path), source=path)
            except preprocess.ImageError as err:
                # Each result shows its path already: the reason alone.
                pending.append(_Pending(path, error=err.reason))
                continue
            pending.append(prepare(path, image))
        yield from finish(pending, model, threshold)
        if progress:
            progress(min(start + batch_size, total), total)
