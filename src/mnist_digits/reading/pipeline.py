"""The reading pipeline: images -> frames -> one model call -> `Reading`s, in order.

One image goes through `ink.analyse` (its ink, on the flattened sheet of a photo),
`lines.find_lines` (its lines of writing), `segment.find_digits` (one region per digit),
`frame.frame_region` (each region as an MNIST-style 28x28 frame) and the model, in one batch
for all the digits of all the images at hand. `prepare` does all the work but the model's, and
`finish` the model's, so that a server can hold its model lock only for `finish`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mnist_digits import data, runs
from mnist_digits.defaults import DEFAULT_THRESHOLD, PACKAGED
from mnist_digits.errors import ConfigError
from mnist_digits.reading import decode, frame, ink, lines, segment
from mnist_digits.reading.results import DigitReading, LineReading, Reading, union_box

if TYPE_CHECKING:
    import keras

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MIN_PHOTO_SIDE = 400  # an image with no sheet found is also read as a photo from this size
MAX_WRITING = 0.08  # ink covering more of an image than this is not only pen strokes


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
    """One reading of an image's ink, cut into lines of writing and digit frames.

    Attributes:
        analysis: the ink.
        items: every line's digit-like regions, line after line, each line left to right.
        lines: how many of `items` each line of writing holds, top to bottom.
    """

    analysis: ink.InkAnalysis
    items: list[_Item]
    lines: list[int]

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


def _frame(analysis: ink.InkAnalysis, region: segment.Region) -> np.ndarray:
    x0, y0, x1, y1 = region.box
    return frame.frame_region(analysis.ink[y0:y1, x0:x1], region.mask, analysis.threshold)


def prepare(path: str, image: Image.Image, max_digits: int = segment.MAX_DIGITS, *,
            find_sheet: bool = True) -> _Pending:
    """Cuts a decoded image into digit frames, ready for `finish`: all the work but the model's,
    so a server can do it for many requests at once and hold its model lock only for `finish`.
    """
    analysis = ink.analyse(image, find_sheet=find_sheet)
    analyses = [analysis] if analysis is not None else []
    if analysis is not None and analysis.ambiguous:
        other = ink.analyse(image, paper="dark" if analysis.paper == "light" else "light",
                            find_sheet=find_sheet)
        if other is not None:
            analyses.append(other)
    if find_sheet and analysis is not None and analysis.sheet is None and \
            min(image.size) >= MIN_PHOTO_SIDE and _looks_like_a_photo(analysis):
        # A photo whose sheet was not found (paper as bright as the desk, a shadow over an
        # edge) is also read as a photographed sheet; `finish` keeps the surer reading.
        photo = ink.analyse(image, as_photo=True)
        if photo is not None:
            analyses.append(photo)
    cuts = []
    for found in analyses:
        try:
            written = [segment.find_digits(line.mask, max_digits=max_digits,
                                           offset=line.box[:2])
                       for line in lines.find_lines(found.mask)]
        except segment.SegmentError as err:
            if len(analyses) == 1:
                return _Pending(path, error=str(err))
            continue
        items = []
        for regions in written:
            for region in regions:
                parts = segment.split_wide(region)
                items.append(_Item(region, _frame(found, region), [] if len(parts) == 1 else
                                   [(part, _frame(found, part)) for part in parts]))
        cuts.append(_Cut(found, items, [len(regions) for regions in written]))
    return _Pending(path, cuts)


def _looks_like_a_photo(analysis: ink.InkAnalysis) -> bool:
    """Whether the ink found in an image as it is looks like a photo's desk, shadows or
    sheet rather than writing: it reaches the image's own edge (inside the paper that
    `ink.analyse` added around it), or covers more of the image than pen strokes do."""
    m, mask = analysis.margin, analysis.mask
    inner = mask[m:mask.shape[0] - m, m:mask.shape[1] - m]
    return bool(inner[:2].any() or inner[-2:].any() or inner[:, :2].any() or
                inner[:, -2:].any() or inner.mean() > MAX_WRITING)


def _digits(cut: _Cut, probabilities: np.ndarray, threshold: float,
            max_digits: int) -> tuple[list[DigitReading], list[LineReading]]:
    """The digits and lines of one cut, given the model's probabilities for `cut.frames` in
    order.

    A region with a proposed split is read as its parts only when the whole is unsure and every
    part is sure: touching digits.
    """
    def reading(region: segment.Region, frame: np.ndarray, row: np.ndarray) -> DigitReading:
        probs = tuple(round(float(v), 6) for v in row)
        digit = int(np.argmax(probs))
        return DigitReading(digit, probs[digit], cut.analysis.to_source(region.box), probs,
                            probs[digit] < threshold, frame)

    digits: list[DigitReading] = []
    line_readings = []
    row, items = 0, iter(cut.items)
    for count in cut.lines:
        line: list[DigitReading] = []
        for item in itertools.islice(items, count):
            whole = reading(item.region, item.frame, probabilities[row])
            parts = [reading(region, frame, probabilities[row + 1 + k])
                     for k, (region, frame) in enumerate(item.parts)]
            row += 1 + len(parts)
            split = parts and whole.unsure and not any(p.unsure for p in parts)
            line.extend(parts if split else [whole])
        line = line[:max_digits]
        if line:
            line_readings.append(LineReading(union_box([d.box for d in line]), tuple(
                range(len(digits), len(digits) + len(line)))))
            digits.extend(line)
    return digits, line_readings


def finish(pending: Sequence[_Pending], model: keras.Model, threshold: float,
           max_digits: int = segment.MAX_DIGITS) -> list[Reading]:
    """Runs the model once over every frame of `pending` and builds the predictions.

    Of two readings of one image (see `_Pending`), a sure one beats an unsure one, then fewer
    digits beat more (an image whose ink runs into its border is most often one tightly cropped
    digit, and the wrong paper can turn the corners of its crop into confident 1s), then the
    surer least sure digit wins.
    """
    frames = [f for p in pending for cut in p.cuts for f in cut.frames]
    if frames:
        from mnist_digits import predict  # Keras, only once there is something to predict

        probabilities = predict.predict_proba(model, np.stack(frames))
    else:
        probabilities = np.zeros((0, data.NUM_CLASSES), np.float32)
    out, row = [], 0
    for p in pending:
        if p.error is not None:
            out.append(Reading(p.path, status="error", error=p.error))
            continue
        readings = []
        for cut in p.cuts:
            count = len(cut.frames)
            readings.append((*_digits(cut, probabilities[row:row + count], threshold,
                                      max_digits), cut))
            row += count
        best, best_lines, cut = max(readings, key=lambda found: (
            bool(found[0]) and not any(d.unsure for d in found[0]), -len(found[0]),
            min((d.confidence for d in found[0]), default=0.0)), default=([], [], None))
        status = "no_digit" if not best else \
            "unsure" if any(d.unsure for d in best) else "ok"
        sheet = cut.analysis.sheet if cut is not None else None
        out.append(Reading(p.path, status=status, digits=tuple(best), lines=tuple(best_lines),
                           sheet=sheet.outline(cut.analysis.scale)
                           if sheet and sheet.found else None))
    return out


def expand_paths(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files as given, and folders replaced by the image files below them (sorted, recursive).

    A path that does not exist, and a folder with no image files in it, are kept, so that each
    is reported as an error in its place rather than silently skipped. Lazy: a folder is listed
    when it is reached.
    """
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            yield from found or [path]
        else:
            yield path


def _prepare_source(source: Any, *, strict: bool, find_sheet: bool = True) -> _Pending:
    """Decodes and cuts one source; a source that cannot be read raises (`strict`) or becomes
    an error reading whose message is the reason alone (each result shows its path already)."""
    name = decode.source_name(source)
    if not strict and isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        # What `expand_paths` keeps of a folder with no images.
        return _Pending(name, error=f"a folder with no image files in it "
                                    f"({', '.join(IMAGE_SUFFIXES)})")
    try:
        image = decode.load(source, name=name)
    except decode.ImageError as err:
        if strict:
            raise
        return _Pending(name, error=err.reason)
    return prepare(name, image, find_sheet=find_sheet)


def check_threshold(threshold: float | None) -> float:
    """The threshold to use: `DEFAULT_THRESHOLD` for None, else a number in [0, 1].

    Raises:
        ConfigError: a threshold outside [0, 1].
    """
    if threshold is None:
        return DEFAULT_THRESHOLD
    if not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must be between 0 and 1, got {threshold}")
    return float(threshold)


class Reader:
    """Reads digits and numbers in images with one model, loaded once.

    Args:
        model: None or `"packaged"` for the packaged, calibrated reading model; a run folder
            or `.keras` file; or a loaded Keras model.
        threshold: the calibrated confidence under which a digit is `unsure` (default
            `DEFAULT_THRESHOLD`).
        find_sheet: look for a sheet of paper lying on something in each image, and read it
            flattened (the default); False reads every image as it is.

    Raises:
        RunError: the model cannot be found or loaded.
        ConfigError: a threshold outside [0, 1].
    """

    def __init__(self, model: Any = None, threshold: float | None = None, *,
                 find_sheet: bool = True) -> None:
        self.find_sheet = find_sheet
        self.threshold = check_threshold(threshold)
        self.model = model if _is_model(model) else _load_model(model)

    def read(self, source: decode.Source) -> Reading:
        """Reads one image: a path, image file bytes, a PIL image or a NumPy array (H x W or
        H x W x C; uint8, or float in [0, 1]).

        Raises:
            ImageError: the source is missing, not an image, or not a readable one.
        """
        return finish([_prepare_source(source, strict=True, find_sheet=self.find_sheet)],
                      self.model, self.threshold)[0]

    def read_many(self, sources: Iterable[decode.Source], batch_size: int = 256, *,
                  progress: Callable[[int, int | None], None] | None = None
                  ) -> Iterator[Reading]:
        """Reads sources in order, `batch_size` at a time, holding one batch at a time.

        A source that cannot be read does not stop the others: it comes back as a reading with
        status `error` and its one-line reason.

        Args:
            sources: any iterable of sources (a generator of paths is never listed whole).
            batch_size: sources cut and predicted together (one model call per batch).
            progress: called with (done, total) after each batch; total is None when `sources`
                has no length.

        Yields:
            One `Reading` per source, in input order.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        total = len(sources) if hasattr(sources, "__len__") else None
        done = 0
        iterator = iter(sources)
        while batch := list(itertools.islice(iterator, batch_size)):
            pending = [_prepare_source(s, strict=False, find_sheet=self.find_sheet)
                       for s in batch]
            yield from finish(pending, self.model, self.threshold)
            done += len(batch)
            if progress:
                progress(done, total)


def _is_model(model: Any) -> bool:
    return model is not None and not isinstance(model, (str, os.PathLike))


def _load_model(model: str | os.PathLike | None) -> keras.Model:
    """A model by name: None or `"packaged"`, a run folder or a `.keras` file, loaded quietly
    (a Python user sees no framework start-up notices, as the CLI does not)."""
    from mnist_digits import backend

    backend.import_keras_quietly()
    from mnist_digits import predict

    return predict.load_model(model)


_READERS: dict[tuple[Any, ...], Reader] = {}


def _model_key(model: str | os.PathLike | None) -> tuple[Any, ...]:
    """What a model name stands for now: the model file it resolves to (following
    `results/latest`) and when that file last changed, so a retrained run is loaded anew."""
    if model is None or str(model) == PACKAGED:
        return (PACKAGED,)
    path = Path(model).resolve()
    file = path / runs.MODEL if path.is_dir() else path
    try:
        return (str(file), file.stat().st_mtime_ns)
    except OSError:  # missing: Reader says so, in its words
        return (str(file), None)


def read(source: decode.Source | list[decode.Source], *, model: Any = None,
         threshold: float | None = None) -> Reading | list[Reading]:
    """Reads the digits or number in one image, or in each of a list of images.

    The model named by `model` is loaded once and kept for later calls, until its file changes
    (a run folder's `latest` retrained, say); `Reader` gives you the object to hold.

    Args:
        source: a path, image file bytes, a PIL image or a NumPy array (H x W or H x W x C;
            uint8, or float in [0, 1]); or a list of them.
        model: see `Reader`.
        threshold: see `Reader`.

    Returns:
        A `Reading`, or a list of them for a list.

    Raises:
        ImageError: a source is missing, not an image, or not a readable one.
        ConfigError: an empty list, or a threshold outside [0, 1].
    """
    threshold = check_threshold(threshold)
    if _is_model(model):
        reader = Reader(model, threshold)
    else:
        key = (*_model_key(model), threshold)
        reader = _READERS.get(key) or _READERS.setdefault(key, Reader(model, threshold))
    if not isinstance(source, list):
        return reader.read(source)
    if not source:
        raise ConfigError("read() was given an empty list; give at least one image")
    pending = [_prepare_source(s, strict=True) for s in source]
    return finish(pending, reader.model, reader.threshold)
