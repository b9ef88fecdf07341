"""`mnist-digits serve`: the drawing web page and its JSON API."""

from __future__ import annotations

import argparse
import errno
import socket

from mnist_digits.commands import options
from mnist_digits.errors import MnistDigitsError


def add_parser(sub) -> None:
    p = options.command(
        sub, "serve", "the drawing web page and its JSON API",
        "Serves a page to draw or upload digits and read them, and its JSON API "
        "(POST /api/predict; documented at /docs).",
        ["serve", "serve --port 8080 --model results/latest"])
    p.add_argument("--model", help=options.MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=options.positive_int, default=8000,
                   help="port to listen on (default 8000)")
    p.add_argument("--max-upload-mb", type=options.positive_float, default=5.0, metavar="MB",
                   help="largest upload accepted, in MB (default 5)")
    options.add_threshold(p)
    p.set_defaults(run=run, prepare=prepare)


def check_port(host: str, port: int) -> None:
    """Fails in one line, before the model loads, when the address cannot be listened on.

    Raises:
        MnistDigitsError: the port is taken, or the host is not an address of this machine.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise MnistDigitsError(f"cannot listen on {host}: {err.strerror}; give an address of "
                               f"this machine with --host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: with SO_REUSEADDR, so a port in TIME_WAIT is free, a listening one
        # is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise MnistDigitsError(f"port {port} on {host} is in use; stop what holds it, "
                                       f"or choose another with --port") from None
            raise MnistDigitsError(f"cannot listen on {host}:{port} ({err.strerror}); choose "
                                   f"another --host or --port") from None


def prepare(args: argparse.Namespace, backend_name: str) -> None:
    options.check_model_name(args.model)
    check_port(args.host, args.port)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from mnist_digits import predict
    from mnist_digits.serve.app import create_app

    model = options.load_model(args.model)
    # Compiled before the first request (on torch that takes seconds), so it is not the one to
    # wait: a request is one image, with up to a few digits.
    predict.warm_up(model, (1, 8))
    app = create_app(model, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                     threshold=args.threshold)
    print(f"Serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
