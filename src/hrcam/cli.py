"""The ``hrcam`` command line. Thin: each sub-command parses its arguments and calls the library.

Every command module in ``hrcam.commands`` exposes ``register(subparsers)``, which adds its parser
and sets ``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit
status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__

# Command modules, in the order ``hrcam --help`` lists them.
_COMMANDS: list[str] = [
    ".commands.explain",
    ".commands.train",
    ".commands.data",
    ".commands.evaluate",
]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrcam",
        description="High-resolution Class Activation Maps: explain, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"hrcam {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        importlib.import_module(module, __package__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
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
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("hrcam: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, RuntimeError) as err:
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"hrcam {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
