"""`mnist-digits export`: export a model for serving elsewhere, verified."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_digits.commands import options
from mnist_digits.export import FORMATS


def add_parser(sub) -> None:
    p = options.command(
        sub, "export", "export a model for serving elsewhere, verified",
        "Exports a model as a TensorFlow SavedModel, a LiteRT (.tflite) file or ONNX, then "
        "loads the export with its own runtime and checks it agrees with Keras on 500 test "
        "digits. LiteRT and ONNX need the export extra.",
        ["export --model packaged --format onnx --out model.onnx",
         "export --model results/latest --format savedmodel --out exported/"])
    p.add_argument("--model", required=True, help=options.MODEL_HELP)
    p.add_argument("--format", required=True, choices=tuple(FORMATS), help="the export format")
    p.add_argument("--out", type=Path, required=True, help="output folder or file")
    p.set_defaults(run=run, prepare=prepare)


def prepare(args: argparse.Namespace, backend_name: str) -> None:
    from mnist_digits import export

    options.check_model_name(args.model)
    export.check_requirements(args.format)


def run(args: argparse.Namespace) -> int:
    from mnist_digits import export

    model = options.load_model(args.model)
    report = export.export_and_verify(model, args.format, args.out)
    print(f"exported {args.format} to {args.out}: {report['images']} test digits, argmax "
          f"agreement {report['argmax_agreement']:.2%}, max |diff| "
          f"{report['max_abs_diff']:.2e}")
    print(args.out)
    return 0
