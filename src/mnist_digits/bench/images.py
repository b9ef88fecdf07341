"""Bench sections about reading: user-style images and tight crops (`realworld`), handwritten
numbers (`numbers`) and drawings that are not digits (`rejection`), all through the `reading`
path that `predict` and `serve` use, on images drawn by `userimages`.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from mnist_digits import data, runs
from mnist_digits.bench import pagereading, userimages
from mnist_digits.bench.context import Context, Section
from mnist_digits.defaults import DEFAULT_THRESHOLD

# Images per family in `realworld` (and user-style digits in `rejection`): full run, --quick.
REALWORLD_IMAGES = {False: 2000, True: 50}


def _read_all(model: Any, images: list[bytes], threshold: float) -> list[Any]:
    """`reading` results for encoded images, with the per-image preprocessing time."""
    from mnist_digits.reading import Reader

    reader = Reader(model, threshold)
    out = []
    for data_ in images:
        start = time.perf_counter()
        result = reader.read(data_)
        out.append((result, time.perf_counter() - start))
    return out


def _min_confidence(result: Any) -> float:
    """The least sure digit's confidence: the image is `ok` at any threshold up to this."""
    return min((d.confidence for d in result.digits), default=0.0)


def _draw(family: str, n: int, x_test: np.ndarray, y_test: np.ndarray) -> list[Any]:
    """`n` test digits drawn as `family` images; the same ones for the same `n`, always."""
    make = {"user_style": userimages.render, "tight_crops": userimages.tight_crop}[family]
    rng = np.random.default_rng(2026 if family == "user_style" else 2027)
    indices = rng.choice(len(x_test), n, replace=False)
    return [make(x_test[i], int(y_test[i]), rng) for i in indices]


def section_realworld(ctx: Context) -> dict[str, Any]:
    """`predict` on user-style images, per kind, against the naive approach; "unsure" is wrong.

    Two families: MNIST test digits drawn as photos, scans and canvas exports
    (`userimages.render`), and tightly cropped scans of them (`userimages.tight_crop`: strokes
    touching the edges, a thick pen, blur, 8- and 16-pixel scans enlarged).
    """
    from mnist_digits import predict

    model, model_path = ctx.model()
    threshold = DEFAULT_THRESHOLD
    n = REALWORLD_IMAGES[ctx.quick]
    (_, _), (x_test, y_test) = data.load_mnist()
    result: dict[str, Any] = {"model": str(model_path), "threshold": threshold,
                              "model_mnist_test_accuracy": _mnist_accuracy(model_path)}
    for family, kinds in (("user_style", userimages.KINDS),
                          ("tight_crops", userimages.TIGHT_KINDS)):
        images = _draw(family, n, x_test, y_test)
        read = _read_all(model, [im.data for im in images], threshold)
        labels = np.array([im.label for im in images])
        kinds_array = np.array([im.kind for im in images])
        texts = [r.text for r, _ in read]
        correct = np.array([t == str(label) for t, label in zip(texts, labels, strict=True)])
        # Without the threshold: the most probable digit of an image with exactly one digit.
        argmax = np.array([len(r.digits) == 1 and r.digits[0].digit == label
                           for (r, _), label in zip(read, labels, strict=True)])
        unsure = np.array([r.status == "unsure" for r, _ in read])
        naive = predict.predict_proba(model, np.stack(
            [userimages.naive_frame(im.data) for im in images])).argmax(axis=1) == labels
        result[family] = {
            "images": n, "accuracy": float(correct.mean()), "argmax_accuracy": float(
                argmax.mean()), "unsure_rate": float(unsure.mean()),
            "naive_accuracy": float(naive.mean()),
            "per_kind": {kind: {"images": int((kinds_array == kind).sum()),
                                "accuracy": float(correct[kinds_array == kind].mean()),
                                "unsure_rate": float(unsure[kinds_array == kind].mean())}
                         for kind in kinds if (kinds_array == kind).any()},
            "read_ms_median": 1000 * statistics.median(t for _, t in read)}
    result["note_photos"] = pagereading.measure_notes(model, threshold, ctx.quick)
    result["photo_one_core"] = pagereading.one_core_photo_ms(str(model_path), ctx.quick)
    return result


def _mnist_accuracy(model_path: str) -> float | None:
    """The MNIST test accuracy recorded beside a model (its run's metrics.json), if any."""
    path = Path(model_path)
    metrics_path = (path if path.is_dir() else path.parent) / runs.METRICS
    return runs.read_json(metrics_path)["test"]["accuracy"] if metrics_path.exists() else None


NUMBER_LENGTHS = (2, 3, 4, 5, 6)


def section_numbers(ctx: Context) -> dict[str, Any]:
    """Handwritten numbers of 2-6 MNIST test digits on plain, ruled and squared paper, read
    exactly (every digit right, none missing or extra, none unsure)."""

    model, model_path = ctx.model()
    threshold = DEFAULT_THRESHOLD
    n = 20 if ctx.quick else 1000
    (_, _), (x_test, y_test) = data.load_mnist()
    rng = np.random.default_rng(2028)
    images, lengths = [], []
    for _ in range(n):
        length = int(rng.choice(NUMBER_LENGTHS))
        chosen = rng.choice(len(x_test), length, replace=False)
        images.append(userimages.number_image(x_test[chosen], y_test[chosen], rng))
        lengths.append(length)
    read = _read_all(model, [im.data for im in images], threshold)
    exact = np.array([r.text == im.text for (r, _), im in zip(read, images, strict=True)])
    found = np.array([len(r.digits) == len(im.text)
                      for (r, _), im in zip(read, images, strict=True)])
    unsure = np.array([r.status == "unsure" for r, _ in read])
    lengths_array = np.array(lengths)
    papers = np.array([im.paper for im in images])
    return {"model": str(model_path), "threshold": threshold, "images": n,
            "exact": float(exact.mean()), "digit_count_right": float(found.mean()),
            "unsure_rate": float(unsure.mean()),
            "per_length": {str(k): {"images": int((lengths_array == k).sum()),
                                    "exact": float(exact[lengths_array == k].mean())}
                           for k in NUMBER_LENGTHS if (lengths_array == k).any()},
            "per_paper": {p: {"images": int((papers == p).sum()),
                              "exact": float(exact[papers == p].mean())}
                          for p in userimages.NUMBER_PAPERS if (papers == p).any()},
            "read_ms_median": 1000 * statistics.median(t for _, t in read),
            "examples_wrong": [{"true": im.text, "read": r.text, "status": r.status,
                                "found": "".join(str(d.digit) for d in r.digits)}
                               for (r, _), im, ok in zip(read, images, exact, strict=True)
                               if not ok][:20],
            "pages": pagereading.measure_pages(model, threshold, ctx.quick)}


def section_rejection(ctx: Context) -> dict[str, Any]:
    """Drawings that are not digits rejected, against digits wrongly rejected, per threshold.

    An image is rejected when its status is not `ok`: no digit, or a mark under the threshold.
    The non-digits (`userimages.nondigit_image`: font letters that resemble no digit, shapes,
    scribbles, crossed-out letters) are drawn by other code than the training outliers. The
    digits: the MNIST test set as the model sees it, and user-style images of test digits.
    The curve is drawn by `rejection_figures`.
    """
    from mnist_digits import predict

    model, model_path = ctx.model()
    n = 40 if ctx.quick else 1200
    rng = np.random.default_rng(2029)
    images = [userimages.nondigit_image(rng) for _ in range(n)]
    read = _read_all(model, [im.data for im in images], DEFAULT_THRESHOLD)
    nondigit_conf = np.array([_min_confidence(r) for r, _ in read])
    kinds = np.array([im.kind for im in images])
    (_, _), (x_test, y_test) = data.load_mnist()
    limit = 500 if ctx.quick else len(x_test)
    mnist_conf = predict.predict_proba(model, data.normalize_images(x_test[:limit])).max(axis=1)
    # The user-style digits of `realworld` (drawn again: sections share no state).
    user_style = _draw("user_style", REALWORLD_IMAGES[ctx.quick], x_test, y_test)
    user_conf = np.array([_min_confidence(r) for r, _ in _read_all(
        model, [im.data for im in user_style], DEFAULT_THRESHOLD)])
    thresholds = np.round(np.linspace(0, 0.95, 20), 2)
    curve = [{"threshold": float(t),
              "nondigits_rejected": float(np.mean(nondigit_conf < t)),
              "mnist_test_rejected": float(np.mean(mnist_conf < t)),
              "user_style_rejected": float(np.mean(user_conf < t))} for t in thresholds]
    chosen = DEFAULT_THRESHOLD
    return {"model": str(model_path), "threshold": chosen, "nondigit_images": n,
            "mnist_test_images": int(limit), "user_style_images": len(user_conf),
            "nondigits_rejected": float(np.mean(nondigit_conf < chosen)),
            "mnist_test_rejected": float(np.mean(mnist_conf < chosen)),
            "user_style_rejected": float(np.mean(user_conf < chosen)),
            "per_kind": {k: {"images": int((kinds == k).sum()),
                             "rejected": float(np.mean(nondigit_conf[kinds == k] < chosen))}
                         for k in userimages.NONDIGIT_KINDS if (kinds == k).any()},
            "curve": curve}


def rejection_figures(r: dict[str, Any]) -> dict[str, Any]:
    """The rejection section's curve: share rejected against the threshold, per image set.

    Non-digits on the left axis (0-100%), digits on the right one (0-5%): the digits' share is
    a few tenths of a percent, invisible on the non-digits' scale.
    """
    import matplotlib.pyplot as plt

    from mnist_digits import plots  # noqa: F401  (selects the Agg backend first)

    curve = r["curve"]
    t = [c["threshold"] for c in curve]
    fig, ax = plt.subplots(figsize=(7, 4.4), layout="constrained")
    digits = ax.twinx()
    ax.plot(t, [100 * c["nondigits_rejected"] for c in curve], "-o", markersize=3,
            color="tab:blue", label=f"non-digit drawings ({r['nondigit_images']}), left")
    digits.plot(t, [100 * c["user_style_rejected"] for c in curve], "-s", markersize=3,
                color="tab:orange", label=f"user-style digits ({r['user_style_images']}), right")
    digits.plot(t, [100 * c["mnist_test_rejected"] for c in curve], "-^", markersize=3,
                color="tab:green", label=f"MNIST test digits ({r['mnist_test_images']}), right")
    ax.axvline(r["threshold"], color="grey", linestyle=":")
    ax.set_xlabel("Threshold on the calibrated confidence")
    ax.set_ylabel("Non-digits rejected (%)")
    digits.set_ylabel("Digits rejected (%)")
    ax.set_ylim(0, 102)
    digits.set_ylim(0, 5)
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = digits.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize=8)
    ax.set_title(f"Rejection at threshold {r['threshold']:g}: non-digits "
                 f"{r['nondigits_rejected']:.1%}, user-style {r['user_style_rejected']:.1%}, "
                 f"MNIST {r['mnist_test_rejected']:.2%}", fontsize=10)
    return {"rejection.png": fig}


def realworld_markdown(r: dict[str, Any]) -> list[str]:
    """The `realworld` section as Markdown."""
    acc = r["model_mnist_test_accuracy"]
    lines = ["## User-style images and tight crops (`realworld`)", "",
             f"MNIST test digits (writers the training set does not have) drawn as photos, "
             f"scans and canvas exports, and as tightly cropped scans; model `{r['model']}`"
             + (f" (MNIST test accuracy {100 * acc:.2f}%)" if acc is not None else "")
             + f", threshold {r['threshold']:g}. An `unsure` answer counts as wrong.", "",
             "| images | read right | unsure | most probable digit right | naive: shrink "
             "the image to 28×28 |", "|---|--:|--:|--:|--:|"]
    for family in ("user_style", "tight_crops"):
        f = r[family]
        lines.append(f"| {family.replace('_', '-')} ({f['images']}) | "
                     f"**{100 * f['accuracy']:.2f}%** | {100 * f['unsure_rate']:.2f}% | "
                     f"{100 * f['argmax_accuracy']:.2f}% | {100 * f['naive_accuracy']:.2f}% |")
    lines += ["", "| image kind | images | read right | unsure |", "|---|--:|--:|--:|"]
    for family in ("user_style", "tight_crops"):
        lines += [f"| {k} | {v['images']} | {100 * v['accuracy']:.2f}% | "
                  f"{100 * v['unsure_rate']:.2f}% |" for k, v in r[family]["per_kind"].items()]
    return [*lines, "", f"Median time to read one image: "
                        f"{r['user_style']['read_ms_median']:.1f} ms (user-style), "
                        f"{r['tight_crops']['read_ms_median']:.1f} ms (tight crops).", "",
            *pagereading.notes_markdown(r["note_photos"], r["photo_one_core"])]


def numbers_markdown(r: dict[str, Any]) -> list[str]:
    """The `numbers` section as Markdown."""
    return ["## Handwritten numbers (`numbers`)", "",
            f"{r['images']} numbers of 2-6 MNIST test digits, mixed sizes, gaps of 0.1-0.6 of a "
            f"digit's height, a slope of up to 6°, specks, on plain, ruled or squared paper; "
            f"threshold {r['threshold']:g}.", "",
            "| measure | value |", "|---|--:|",
            f"| read exactly | **{100 * r['exact']:.2f}%** |",
            f"| right number of digits found | {100 * r['digit_count_right']:.2f}% |",
            f"| unsure | {100 * r['unsure_rate']:.2f}% |",
            "| read exactly, by length | " + ", ".join(
                f"{k}: {100 * v['exact']:.1f}%" for k, v in r["per_length"].items()) + " |",
            "| read exactly, by paper | " + ", ".join(
                f"{k}: {100 * v['exact']:.1f}%" for k, v in r["per_paper"].items()) + " |",
            f"| median time per image | {r['read_ms_median']:.1f} ms |", "",
            *pagereading.pages_markdown(r["pages"])]


def rejection_markdown(r: dict[str, Any]) -> list[str]:
    """The `rejection` section as Markdown."""
    lines = ["## Not a digit (`rejection`)", "",
             f"Threshold {r['threshold']:g} on the calibrated confidence; an image is rejected "
             f"when its status is not `ok`.", "",
             "| images | rejected |", "|---|--:|",
             f"| non-digit drawings ({r['nondigit_images']}) | "
             f"**{100 * r['nondigits_rejected']:.2f}%** |",
             f"| MNIST test digits ({r['mnist_test_images']}) | "
             f"{100 * r['mnist_test_rejected']:.2f}% |",
             f"| user-style digits ({r['user_style_images']}) | "
             f"{100 * r['user_style_rejected']:.2f}% |", "",
             "| non-digit kind | images | rejected |", "|---|--:|--:|"]
    lines += [f"| {k} | {v['images']} | {100 * v['rejected']:.2f}% |"
              for k, v in r["per_kind"].items()]
    lines += ["", "| threshold | non-digits rejected | user-style rejected | MNIST test "
                  "rejected |", "|--:|--:|--:|--:|"]
    lines += [f"| {c['threshold']:.2f} | {100 * c['nondigits_rejected']:.1f}% | "
              f"{100 * c['user_style_rejected']:.2f}% | "
              f"{100 * c['mnist_test_rejected']:.2f}% |" for c in r["curve"]]
    return [*lines, ""]


SECTIONS = (
    Section("realworld", section_realworld, realworld_markdown),
    Section("numbers", section_numbers, numbers_markdown),
    Section("rejection", section_rejection, rejection_markdown, rejection_figures),
)
