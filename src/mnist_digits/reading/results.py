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


@dataclasses.dataclass(frozen=True)
class Reading:
    """The outcome for one input image.

    Attributes:
        path: the input as the user named it (or found it in a folder); `<bytes>`, `<image>` or
            `<array>` for other sources.
        status: `ok`, `no_digit`, `unsure` or `error` (see `reading`'s module docstring).
        digits: every digit found, left to right.
        error: a one-line reason the image could not be read, or None.
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
