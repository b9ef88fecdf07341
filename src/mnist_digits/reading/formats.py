"""The renderings of readings that `predict --format` writes: text, JSON lines and CSV."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from mnist_digits.data import NUM_CLASSES
from mnist_digits.reading.results import Reading

FORMATS = ("text", "jsonl", "csv")
CSV_HEADER = ("path", "status", "text", "digit", "confidence",
              *(f"p{d}" for d in range(NUM_CLASSES)), "error")


def percent(p: float) -> str:
    """A probability for people: a calibrated model is never certain, so never "100.0%"."""
    return ">99.9%" if p >= 0.9995 else f"{p:.1%}"


def _shown(digits) -> str:
    return ", ".join(f"{d.digit} ({percent(d.confidence)}{', unsure' if d.unsure else ''})"
                     for d in digits)


def text_line(result: Reading, top: int = 1) -> str:
    """The text format of one reading: one line with the number and each digit's confidence;
    for a page of several lines of writing, one such line for each, as `path:k: ...` (k
    counts from 1, top to bottom)."""
    if result.error is not None:
        return f"{result.path}: error: {result.error}"
    if result.status == "no_digit":
        return f"{result.path}: no digit"
    if len(result.written_lines) > 1:
        out = []
        for k, (line, text) in enumerate(zip(result.written_lines, result.line_texts,
                                                     strict=True), 1):
            digits = [result.digits[i] for i in line.digits]
            shown = _shown(digits)
            out.append(f"{result.path}:{k}: unsure, not confidently a number (best guess: "
                       f"{shown})" if any(d.unsure for d in digits) else
                       f"{result.path}:{k}: {text} [{shown}]")
        return "\n".join(out)
    if result.single:
        shown = ", ".join(f"{d} ({percent(p)})" for d, p in result.top(top))
    else:
        shown = _shown(result.digits)
    if result.status == "unsure":
        what = "a digit" if len(result.digits) == 1 else "a number"
        return f"{result.path}: unsure, not confidently {what} (best guess: {shown})"
    if result.single:
        return f"{result.path}: {shown}"
    return f"{result.path}: {result.text} [{shown}]"


def json_record(result: Reading, top: int = 1) -> dict:
    """`to_dict()`, plus the `top` most probable classes of a single digit when top > 1."""
    record = result.to_dict()
    if top > 1 and result.single:
        record["top"] = [[d, p] for d, p in result.top(top)]
    return record


def csv_row(result: Reading) -> list:
    """One CSV row under `CSV_HEADER`: every probability of a single digit-like mark. The
    `text` of a page of several lines holds newlines, which the CSV writer quotes."""
    probs = result.probabilities or [""] * NUM_CLASSES
    return [result.path, result.status, result.text or "",
            "" if result.digit is None else result.digit,
            "" if result.confidence is None else result.confidence, *probs, result.error or ""]


class Writer:
    """Writes readings to a stream in one of `FORMATS`, a record per reading (CSV with its
    header first)."""

    def __init__(self, stream: TextIO, fmt: str = "text", *, top: int = 1) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.stream, self.format, self.top = stream, fmt, top
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self._csv:
            self._csv.writerow(CSV_HEADER)

    def write(self, result: Reading) -> None:
        if self._csv:
            self._csv.writerow(csv_row(result))
        elif self.format == "jsonl":
            self.stream.write(json.dumps(json_record(result, self.top)) + "\n")
        else:
            self.stream.write(text_line(result, self.top) + "\n")
