"""The ``hrcam`` command line. Thin: each sub-command parses its arguments and calls the library.

Every command module in ``hrcam.commands`` exposes ``register(subparsers)``, which adds its parser
and sets ``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit
status. Only the module of the command being run is imported, so ``hrcam --help`` and
``hrcam --version`` answer without importing torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading

from . import __version__
from .utils import keep_freed_memory, sequential_opencv

# command -> (module, one-line help), in the order ``hrcam --help`` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "explain": (
        ".commands.explain_command",
        "explain images or folders: top-5 classes, low/high-res and refined CAMs, HTML report",
    ),
    "app": (
        ".commands.app_command",
        "a local web page to explore explanations: any class, live refinement options",
    ),
    "demo": (
        ".commands.explain_command",
        "explain a few bundled photographs (no download) and say where the report is",
    ),
    "train-classifier": (
        ".commands.train_command",
        "stage 1: train or fine-tune the localization network on DATA/train, test on DATA/test",
    ),
    "train-expansion": (
        ".commands.train_command",
        "stage 2: train the expansion network (reconstruction) with the classifier frozen",
    ),
    "evaluate-classifier": (
        ".commands.train_command",
        "accuracy, top-5 and macro/micro P/R/F1 of a model on FOLDER/<class>/…",
    ),
    "data": (".commands.data_command", "build data sets: imagenet-animals, fashion-loc"),
    "evaluate": (
        ".commands.evaluate_command",
        "score and time CAM methods (ours and Grad-CAM & co.) against masks or boxes",
    ),
}


def get_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: with ``command``, that command's full parser; else one line per command."""
    parser = argparse.ArgumentParser(
        prog="hrcam",
        description="High-resolution Class Activation Maps: explain, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"hrcam {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0], __package__).register(sub)
    else:
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The first argument that names a command (options before it are the top level's)."""
    return next((a for a in argv if not a.startswith("-")), None)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so a stopped run finishes the same way (the work
    in flight written, the report saying "interrupted"); the exit status is 143."""


@contextlib.contextmanager
def _terminate_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = get_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s"
        if rank == 0
        else f"[rank {rank}] %(levelname)s: %(message)s",
    )
    keep_freed_memory()  # hrcam owns this process
    try:
        with sequential_opencv(), _terminate_as_interrupt():
            return int(args.func(args) or 0)
    except Terminated:
        print("hrcam: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("hrcam: interrupted", file=sys.stderr)
        return 130
    except (
        FileNotFoundError,
        NotADirectoryError,
        ValueError,
        KeyError,
        RuntimeError,
        ImportError,  # an optional dependency a flag needs: its message says how to install it
    ) as err:
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"hrcam {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
