"""The `mnist-digits` command line: the parser's skeleton, and dispatch to `commands`.

Each subcommand's parser and handler live together in `commands/`; the handlers call the
library. User mistakes (`MnistDigitsError`, bad flags) print one line to stderr and exit 2
(usage) or 1 (anything else the user must fix), never a traceback. Checks that need no model
run before any framework is imported, so they answer in a moment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from mnist_digits import __version__, backend
from mnist_digits.commands import MODULES
from mnist_digits.errors import ConfigError, MnistDigitsError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a tool killed by the signal reports


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not the usage block plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = _Parser(
        prog="mnist-digits", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read handwritten digits and numbers; train, compare and evaluate the "
                    "models that do it.",
        epilog="examples:\n  mnist-digits predict my-digit.png\n  mnist-digits serve\n"
               "  mnist-digits train --model cnn_best\n\n"
               "`mnist-digits COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    parser.add_argument("--backend", choices=backend.BACKENDS, metavar="NAME",
                        help="Keras backend: tensorflow (default), jax or torch; "
                             "KERAS_BACKEND is read too")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep JAX's compiled programs between runs (kept by "
                             f"default in {backend.default_compile_cache()}, or "
                             f"${backend.COMPILE_CACHE_ENV})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for module in MODULES:
        module.add_parser(sub)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    """Prepares the process (before Keras), imports Keras quietly if needed, runs the command."""
    backend_name = backend.choose(args.backend)
    if args.no_compile_cache:
        os.environ[backend.COMPILE_CACHE_ENV] = "off"
    args.needs_keras = getattr(args, "needs_keras", True)
    prepare = getattr(args, "prepare", None)
    if prepare:
        prepare(args, backend_name)
    if args.needs_keras:
        backend.import_keras_quietly()
        backend.configure_compile_cache()
    return args.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        status = _dispatch(args)
        # Flushed here, so a reader that has gone away is noticed inside the try.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader closed the pipe (`mnist-digits list-models | head -1`): stop quietly, as
        # Unix tools do, and keep Python from complaining again when it flushes at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ConfigError as err:
        print(f"mnist-digits {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except MnistDigitsError as err:
        print(f"mnist-digits {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"mnist-digits {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
