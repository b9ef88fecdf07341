"""`mnist-digits list-models`: the model presets."""

from __future__ import annotations

import argparse
import json

from mnist_digits.commands import options


def add_parser(sub) -> None:
    p = options.command(
        sub, "list-models", "list the model presets",
        "Lists the registered presets: name, family, trainable parameters and description. "
        "JSON adds each preset's training recipe.",
        ["list-models", "list-models --format json"])
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="a table (default) or JSON with the recipes")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnist_digits import models

    rows = models.describe()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "FAMILY", "PARAMS", "DESCRIPTION")] + [
        (r["name"], r["family"], f"{r['params']:,}", r["description"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for name, family, params, description in table:
        print(f"{name:<{widths[0]}}  {family:<{widths[1]}}  {params:>{widths[2]}}  "
              f"{description}")
    return 0
