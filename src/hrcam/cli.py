"""The ``hrcam`` command line. Thin: each sub-command parses its arguments and calls the library.

Every command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# (module, attribute) of each command's ``register`` function, in the order ``--help`` lists them.
_COMMANDS: list[str] = []


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrcam",
        description="High-resolution Class Activation Maps: explain, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"hrcam {__version__}")
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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
