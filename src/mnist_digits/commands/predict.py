"""`mnist-digits predict`: read digits from image files or folders."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mnist_digits.commands import options


def add_parser(sub) -> None:
    from mnist_digits.reading.formats import FORMATS

    p = options.command(
        sub, "predict", "read digits from image files or folders",
        "Reads the digits in photos, scans and drawings: one digit or a whole number per image, "
        "each with a calibrated confidence. An image that is not confidently digits is "
        "'unsure'; a blank one has 'no digit'. Exits 1 if any file could not be read.",
        ["predict my-digit.png", "predict photos/ --format csv > digits.csv",
         "predict scan.jpg --top 3 --format jsonl",
         "predict cheque.png --model results/latest --threshold 0.8"])
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders (recursive)")
    p.add_argument("--model", help=options.MODEL_HELP)
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="one line per image (default), JSON lines, or CSV with every "
                        "probability")
    p.add_argument("--top", type=options.positive_int, default=1, metavar="K",
                   help="show the K most probable digits (text, jsonl)")
    p.add_argument("--batch-size", type=options.positive_int, default=256, metavar="N",
                   help="images read and predicted together (default 256)")
    p.add_argument("--save-preprocessed", type=Path, metavar="DIR",
                   help="write into DIR the 28x28 images the model saw, and each image's page "
                        "as read (the sheet flattened, lines and digits boxed)")
    options.add_threshold(p)
    p.set_defaults(run=run, prepare=prepare)


def prepare(args: argparse.Namespace, backend_name: str) -> None:
    """Before Keras: a --model that names nothing fails now; so does a list of paths none of
    which exists (each is reported in its place, with no model loaded)."""
    options.check_model_name(args.model)
    if not any(os.path.exists(p) for p in args.paths):
        args.needs_keras = False


def run(args: argparse.Namespace) -> int:
    from mnist_digits.reading import formats, pipeline

    paths = list(pipeline.expand_paths(args.paths))
    if args.needs_keras:
        reader = pipeline.Reader(options.load_model(args.model), args.threshold)
    if args.save_preprocessed:
        args.save_preprocessed.mkdir(parents=True, exist_ok=True)
    failed = 0
    # Results print as each batch is read; the bar (on a terminal) stays below them.
    with options.progress_bar("images") as progress:
        # Made inside the bar's block, which routes stdout around the bar.
        writer = formats.Writer(sys.stdout, args.format, top=args.top)
        results = reader.read_many(paths, args.batch_size, progress=progress) \
            if args.needs_keras else (_unreadable(p) for p in paths)
        for i, result in enumerate(results):
            failed += result.error is not None
            if args.save_preprocessed and result.error is None:
                _save_preprocessed(args.save_preprocessed, f"{i:05d}-{Path(result.path).stem}",
                                   result)
            writer.write(result)
    return 1 if failed else 0


def _save_preprocessed(folder: Path, stem: str, result) -> None:
    """Each digit's 28x28 frame as `STEM[-k].png`, and the page as read as `STEM-page.png`."""
    from mnist_digits.reading import decode, frame, overview

    for k, found in enumerate(result.digits):
        suffix = f"-{k}" if len(result.digits) > 1 else ""
        (folder / f"{stem}{suffix}.png").write_bytes(frame.to_png(found.frame))
    try:
        image = decode.load(result.path)
    except decode.ImageError:  # changed or gone since it was read: there is no page to draw
        return
    overview.page_picture(image, result).save(folder / f"{stem}-page.png")


def _unreadable(path: Path):
    """The error reading of a file that is not there, in `decode.read_file`'s words, with no
    model loaded (`prepare` found that none of the paths exists)."""
    from mnist_digits.reading import decode
    from mnist_digits.reading.results import Reading

    try:
        decode.read_file(path)
    except decode.ImageError as err:
        return Reading(str(path), "error", error=err.reason)
    return Reading(str(path), "error", error="it appeared after predict started, with no model "
                                             "loaded; run predict again")
