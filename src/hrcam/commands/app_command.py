"""``hrcam app``: serve the interactive page on this machine (the ``app`` extra).

    hrcam app                          # the default model, http://127.0.0.1:7860
    hrcam app --model my_model.pt --device cuda --port 8000

Listens on 127.0.0.1 (this machine only) unless ``--host`` says otherwise; prints its URL and
serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
import tempfile
from pathlib import Path

from .model_args import add_model_arguments, load_from_args


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"port must lie in [0, 65535] (0: any free one), got {value}"
        )
    return value


def _check_port_free(host: str, port: int) -> None:
    """A one-line error naming --port when something already listens on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ValueError(
                f"--port {port}: {host}:{port} is taken ({err.strerror}); choose another port, "
                "or --port 0 for any free one"
            ) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app",
        help="a local web page to explore explanations: any class, live refinement options",
        description=(
            "Serve a web page that explains images with one model: upload an image, click one of "
            "its top-5 classes (or type any class), see the low-res, high-res and refined CAMs "
            "over it, change the refinement options and the opacity, show the pipeline figure, "
            "download the maps. Needs Gradio: the app extra (make app sets it up)."
        ),
    )
    add_model_arguments(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to "
        "the network, which has no authentication)",
    )
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860; 0: any free one)")
    p.set_defaults(func=run_app)


def run_app(args) -> int:
    try:
        ipaddress.ip_address(args.host)
    except ValueError:
        if args.host != "localhost":
            raise ValueError(
                f"--host must be an IP address or localhost, got {args.host!r}"
            ) from None
    if args.port:
        _check_port_free(args.host, args.port)  # before the model loads: fails in a second
    try:
        from ..app.page import import_gradio

        import_gradio()  # a missing extra fails now, before the model loads
    except ImportError as err:
        raise ValueError(str(err)) from None
    from ..app import ExplainerSession
    from ..app.page import launch
    from ..io import write_demo_images

    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own health checks
    session = ExplainerSession(load_from_args(args))
    examples = write_demo_images(Path(tempfile.gettempdir()) / "hrcam-demo-images")
    session.load(examples[0])  # warm up: the first maps draw at the page's speed

    def ready(url: str) -> None:
        print(f"hrcam app: serving {args.model} at {url} (Ctrl-C stops it)", flush=True)

    launch(session, host=args.host, port=args.port or None, examples=examples, on_ready=ready)
    print("hrcam app: stopped", file=sys.stderr)
    return 0
