"""The photo and page kinds of the `realworld` and `numbers` bench sections: notes photographed
on desks (one digit each), pages of 2-6 lines (photographed and scanned), and the time to read
a 640x480 photo on one core. The images come from `photos`, by both of its generators.

Each photo is also read as the reader read it before it looked for sheets (`Reader(...,
find_sheet=False)`): `lost_to_the_sheet` counts the photos that reading got right and the
flattened sheet gets wrong, which is how often a wrong outline costs a reading.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from mnist_digits.bench import photos

# Photos per measure: full run, --quick.
NOTE_PHOTOS = {False: 600, True: 6}
PAGES = {False: 300, True: 6}
TIMED_PHOTOS = {False: 60, True: 3}
PAGE_LINES = (2, 3, 4, 5, 6)
PHOTO_SIZE = (640, 480)


def _tally(shots: list[photos.Photo], right: np.ndarray) -> dict[str, dict[str, Any]]:
    """Share read right by generator, paper, background and effect."""
    groups: dict[str, list[bool]] = collections.defaultdict(list)
    for shot, ok in zip(shots, right, strict=True):
        for key in (f"generator:{shot.generator}", f"paper:{shot.paper}",
                    f"background:{shot.background}",
                    *(f"effect:{e}" for e in shot.effects or ("none",))):
            groups[key].append(bool(ok))
    return {k: {"images": len(v), "accuracy": float(np.mean(v))}
            for k, v in sorted(groups.items())}


def _measure(model: Any, threshold: float, shots: list[photos.Photo]) -> dict[str, Any]:
    """Read every photo with and without the sheet search: accuracy (exact text), by kind and
    by line count, and losses."""
    from mnist_digits.reading import Reader

    reader = Reader(model, threshold)
    plain = Reader(model, threshold, find_sheet=False)
    right, before, found, times = [], [], [], []
    for shot in shots:
        start = time.perf_counter()
        result = reader.read(shot.data)
        times.append(time.perf_counter() - start)
        right.append(result.text == shot.text)
        found.append(result.sheet is not None)
        before.append(plain.read(shot.data).text == shot.text)
    right_, before_, found_ = np.array(right), np.array(before), np.array(found)
    sheets = [s for s in shots if s.background != "none"]
    counts = np.array([s.text.count("\n") + 1 for s in shots])
    return {"images": len(shots), "accuracy": float(right_.mean()),
            "accuracy_without_sheet_search": float(before_.mean()),
            "sheet_found": float(found_.mean()) if sheets else None,
            "accuracy_when_sheet_found": float(right_[found_].mean()) if found_.any() else None,
            "accuracy_when_no_sheet": float(right_[~found_].mean()) if (~found_).any() else None,
            "lost_to_the_sheet": int((before_ & ~right_).sum()),
            "per_kind": _tally(shots, right_),
            "per_line_count": {str(k): {"images": int((counts == k).sum()),
                                        "accuracy": float(right_[counts == k].mean())}
                               for k in sorted(set(counts.tolist()))},
            "accuracy_2_to_4_lines": float(right_[(counts >= 2) & (counts <= 4)].mean())
            if ((counts >= 2) & (counts <= 4)).any() else None,
            "read_ms_median": 1000 * statistics.median(times),
            "examples_wrong": [{"true": s.text, "kind": s.kind, "paper": s.paper,
                                "effects": list(s.effects)}
                               for s, ok in zip(shots, right, strict=True) if not ok][:20]}


def note_photos(n: int, x_test: np.ndarray, y_test: np.ndarray, seed: int = 2030,
                frame: tuple[int, int] | None = None) -> list[photos.Photo]:
    """`n` photos of one MNIST test digit on a note, sheet, card or whiteboard on a desk."""
    rng = np.random.default_rng(seed)
    indices = rng.choice(len(x_test), n, replace=False)
    return [photos.photo([x_test[[i]]], str(y_test[i]), rng, frame=frame) for i in indices]


def page_images(n: int, x_test: np.ndarray, y_test: np.ndarray, *, scanned: bool,
                seed: int = 2031) -> list[photos.Photo]:
    """`n` pages of 2-6 lines of 1-6 MNIST test digits each, photographed on a desk or
    scanned."""
    rng = np.random.default_rng(seed + scanned)
    out = []
    for _ in range(n):
        lines, texts = [], []
        for _ in range(int(rng.choice(PAGE_LINES))):
            chosen = rng.choice(len(x_test), int(rng.integers(1, 7)), replace=False)
            lines.append(x_test[chosen])
            texts.append("".join(str(int(d)) for d in y_test[chosen]))
        text = "\n".join(texts)
        out.append(photos.page_scan(lines, text, rng) if scanned else
                   photos.photo(lines, text, rng, paper=str(rng.choice(["sheet", "whiteboard"]))))
    return out


def measure_notes(model: Any, threshold: float, quick: bool) -> dict[str, Any]:
    """The notes-on-desks family of `realworld`."""
    from mnist_digits import data

    (_, _), (x_test, y_test) = data.load_mnist()
    return _measure(model, threshold, note_photos(NOTE_PHOTOS[quick], x_test, y_test))


def measure_pages(model: Any, threshold: float, quick: bool) -> dict[str, Any]:
    """Pages of 2-6 lines for `numbers`: photographed, scanned, and by line count."""
    from mnist_digits import data

    (_, _), (x_test, y_test) = data.load_mnist()
    out = {}
    for name, scanned in (("photographed", False), ("scanned", True)):
        out[name] = _measure(model, threshold,
                             page_images(PAGES[quick], x_test, y_test, scanned=scanned))
    return out


def one_core_photo_ms(model_path: str, quick: bool) -> dict[str, Any]:
    """The median time to read one 640x480 photo of a note, on one core: in a child process
    held to one CPU, with every framework and OpenCV at one thread."""
    from mnist_digits.backend import parallel

    env = {**os.environ, **parallel.thread_env(1)}
    cpu = min(os.sched_getaffinity(0))
    code = ("import json; from mnist_digits.bench.pagereading import _time_photos; "
            f"print(json.dumps(_time_photos({model_path!r}, {TIMED_PHOTOS[quick]})))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"photos": len(times), "size": list(PHOTO_SIZE), "cpu_cores": 1,
            "median_ms": 1000 * statistics.median(times),
            "p90_ms": 1000 * float(np.percentile(times, 90))}


def _time_photos(model_path: str, n: int) -> list[float]:
    """Seconds to read each of `n` 640x480 note photos (after one read to warm up)."""
    import cv2

    from mnist_digits import data
    from mnist_digits.reading import Reader

    cv2.setNumThreads(1)
    (_, _), (x_test, y_test) = data.load_mnist()
    shots = note_photos(n + 1, x_test, y_test, seed=2032, frame=PHOTO_SIZE)
    reader = Reader(model_path)
    reader.read(shots[0].data)
    times = []
    for shot in shots[1:]:
        start = time.perf_counter()
        reader.read(shot.data)
        times.append(time.perf_counter() - start)
    return times


def notes_markdown(r: dict[str, Any], timing: dict[str, Any]) -> list[str]:
    """The notes-on-desks family of `realworld`, as Markdown."""
    lines = ["### Notes photographed on desks", "",
             f"{r['images']} photos of one MNIST test digit on a note, sheet, card or "
             "whiteboard lying on wood, cloth, a floor or a dark or light desk, tilted up to "
             "30°, turned up to 25°, paper 40-95% of the frame, with shadows, vignetting, flash, "
             "pencil, blur, a hand, JPEG; drawn by two generators (`warp`, `paint`).", "",
             *_summary(r), "",
             f"One 640×480 photo on one core: median **{timing['median_ms']:.1f} ms** "
             f"(90th percentile {timing['p90_ms']:.1f} ms, {timing['photos']} photos).", ""]
    return lines


def pages_markdown(r: dict[str, Any]) -> list[str]:
    """The pages family of `numbers`, as Markdown."""
    lines = ["### Pages of 2-6 lines", ""]
    for name, found in r.items():
        lines += [f"{name.capitalize()} ({found['images']} pages, read exactly):", "",
                  *_summary(found), "",
                  "| lines | pages | read exactly |", "|--:|--:|--:|",
                  *(f"| {k} | {v['images']} | {100 * v['accuracy']:.1f}% |"
                    for k, v in found["per_line_count"].items()), ""]
    return lines


def _summary(r: dict[str, Any]) -> list[str]:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}%"

    return ["| measure | value |", "|---|--:|",
            f"| read right | **{pct(r['accuracy'])}** |",
            *([f"| pages of 2-4 lines read exactly | {pct(r['accuracy_2_to_4_lines'])} |"]
              if r["accuracy_2_to_4_lines"] is not None else []),
            f"| read right without the sheet search (as before) | "
            f"{pct(r['accuracy_without_sheet_search'])} |",
            f"| sheet found | {pct(r['sheet_found'])} |",
            f"| read right where a sheet was found / not found | "
            f"{pct(r['accuracy_when_sheet_found'])} / {pct(r['accuracy_when_no_sheet'])} |",
            f"| right without the sheet search, wrong with it | {r['lost_to_the_sheet']} |",
            f"| median time per image | {r['read_ms_median']:.1f} ms |", "",
            "| kind | images | read right |", "|---|--:|--:|",
            *(f"| {k} | {v['images']} | {100 * v['accuracy']:.1f}% |"
              for k, v in r["per_kind"].items())]
