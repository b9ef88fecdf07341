"""`mnist-digits data`: check the MNIST files, or download them if they are gone."""

from __future__ import annotations

import argparse

from mnist_digits.commands import options


def add_parser(sub) -> None:
    p = options.command(
        sub, "data", "check the MNIST files, or download them if they are gone",
        "The four MNIST files come with the project (data/mnist, and inside the wheel), "
        "checked against pinned SHA-256 hashes on every load. `verify` checks them; `download` "
        "fetches missing or damaged ones from the public mirrors, verified.",
        ["data verify", "data download", "data download --dest /tmp/mnist --force"])
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION",
                                parser_class=type(p))
    d = data_sub.add_parser("verify", help="check the four MNIST files (hashes, IDX format)",
                            description="Checks the four MNIST files: hashes and IDX format.")
    d.add_argument("--data-dir", metavar="DIR",
                   help="folder with the MNIST .gz files (default: the vendored copy)")
    d = data_sub.add_parser("download", help="fetch missing or corrupt MNIST files from the "
                                             "public mirrors, verified",
                            description="Fetches missing or corrupt MNIST files from the "
                                        "public mirrors and verifies them.")
    d.add_argument("--dest", metavar="DIR", help="target folder (default: data/mnist)")
    d.add_argument("--force", action="store_true", help="download even files that verify")
    d.add_argument("--timeout", type=options.positive_float, default=30.0, metavar="SECONDS",
                   help="seconds to wait on each mirror (default 30)")
    p.set_defaults(run=run, needs_keras=False)


def verified_data(data_dir: str | None = None) -> str:
    """Loads (so verifies) the MNIST files; says what was found. Raises DataError."""
    from mnist_digits import data

    (x_train, _), (x_test, _) = data.load_mnist(data_dir)
    return (f"MNIST files OK: {len(x_train)} training and {len(x_test)} test images, SHA-256 "
            f"verified ({data_dir or data.default_data_dir()})")


def run(args: argparse.Namespace) -> int:
    from mnist_digits import data, download

    if args.data_command == "verify":
        print(verified_data(args.data_dir))
        return 0
    outcome = download.download_mnist(args.dest, timeout=args.timeout, force=args.force)
    for name, source in outcome.items():
        print(f"{name}: {'already present, verified' if source == 'present' else source}")
    print(args.dest or data.default_data_dir())
    return 0
