"""What a reading returns: typed, frozen results whose `to_dict()` is exactly the JSON that
`predict --format jsonl` prints and the web API answers."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


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


def union_box(boxes: list[list[int]]) -> list[int]:
    """The smallest box `[x0, y0, x1, y1]` that holds all of `boxes`."""
    corners = np.array(boxes)
    return [*corners[:, :2].min(axis=0).tolist(), *corners[:, 2:].max(axis=0).tolist()]


@dataclasses.dataclass(frozen=True)
class LineReading:
    """One line of writing in an image.

    Attributes:
        box: `[x0, y0, x1, y1]` around its digits' boxes, in source-image pixels.
        digits: the indices of its digits in `Reading.digits`, left to right.
    """

    box: list[int]
    digits: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Reading:
    """The outcome for one input image.

    Attributes:
        path: the input as the user named it (or found it in a folder); `<bytes>`, `<image>` or
            `<array>` for other sources.
        status: `ok`, `no_digit`, `unsure` or `error` (see `reading`'s module docstring).
        digits: every digit found, line after line, each line left to right.
        lines: the lines of writing, top to bottom (one for a single number).
        error: a one-line reason the image could not be read, or None.
        sheet: the corners `[x, y]` (top-left, top-right, bottom-right, bottom-left) of the
            sheet of paper found in a photo and read flattened, in source-image pixels; None
            when the image was read as it is.
    """

    path: str
    status: str = "no_digit"
    digits: tuple[DigitReading, ...] = ()
    error: str | None = None
    lines: tuple[LineReading, ...] = ()
    sheet: list[list[float]] | None = None

    @property
    def text(self) -> str | None:
        """The digits read, each line left to right, lines joined by a newline; None unless
        the status is `ok`."""
        return "\n".join(self.line_texts) if self.status == "ok" else None

    @property
    def line_texts(self) -> list[str]:
        """Each line's digits, sure or not, top to bottom (see `written_lines`)."""
        return ["".join(str(self.digits[i].digit) for i in line.digits)
                for line in self.written_lines]

    @property
    def written_lines(self) -> tuple[LineReading, ...]:
        """`lines`; for a reading made without them, all its digits as one line."""
        if self.lines or not self.digits:
            return self.lines
        return (LineReading(union_box([d.box for d in self.digits]),
                            tuple(range(len(self.digits)))),)

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
        """The calibrated probability of `digit`, when there is one."""
        return self.digits[0].confidence if self.digit is not None else None

    @property
    def probabilities(self) -> tuple[float, ...] | None:
        """The 10 class probabilities of the one digit-like mark, sure or not."""
        return self.single.probabilities if self.single else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields of `predict --format jsonl` and the web API."""
        if self.error is not None:
            return {"path": self.path, "status": "error", "error": self.error, "digit": None,
                    "confidence": None, "probabilities": None, "text": None, "digits": [],
                    "lines": [], "sheet": None}
        ok = self.status == "ok"
        return {"path": self.path, "status": self.status, "digit": self.digit,
                "confidence": self.confidence,
                "probabilities": list(self.probabilities) if self.probabilities else None,
                "text": self.text, "digits": [d.to_dict() for d in self.digits],
                "lines": [{"text": text if ok else None, "box": line.box,
                           "digits": list(line.digits)}
                          for line, text in zip(self.written_lines, self.line_texts,
                                                strict=True)],
                "sheet": self.sheet}

    def top(self, k: int) -> list[tuple[int, float]]:
        """The single digit's k most probable classes, most probable first ([] otherwise)."""
        if not self.probabilities:
            return []
        order = np.argsort(-np.asarray(self.probabilities), kind="stable")[:k]
        return [(int(d), float(self.probabilities[d])) for d in order]
