"""Command-line flags for :class:`RefineOptions`, generated from the dataclass fields.

Every field becomes ``--field-name`` with the field's type, ``choices`` and ``help`` from its
``metadata``, so a new option needs no change here. Flags default to "not given", and only
the given ones override the dataclass defaults.

Example::

    parser = argparse.ArgumentParser()
    add_refine_arguments(parser)                  # --roi-percentile, --focal-scope, ...
    options = refine_options_from_args(parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from .options import DEFAULT_PRESET, RefineOptions

__all__ = ["add_refine_arguments", "refine_options_from_args"]


def _field_type(annotation) -> type:
    """``float`` for ``float``, ``int`` for ``int | None``, and so on."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _dest(prefix: str, name: str) -> str:
    return f"{prefix.replace('-', '_')}{name}"


def add_refine_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, prefix: str = ""
) -> argparse._ArgumentGroup:
    """Add one ``--<prefix><field-name>`` flag per :class:`RefineOptions` field to ``parser``.

    ``prefix`` (e.g. ``"refine-"``) keeps the flags apart from a command's own ``--alpha`` or
    ``--threshold``. Returns the argument group the flags went into.
    """
    if isinstance(parser, argparse.ArgumentParser):
        group = parser.add_argument_group(
            "refinement",
            "options of the postprocessing pipeline, applied on top of a preset: "
            f"'{DEFAULT_PRESET}' (the default) or 'paper'",
        )
    else:
        group = parser
    hints = typing.get_type_hints(RefineOptions)
    presets = {name: RefineOptions.preset(name) for name in (DEFAULT_PRESET, "paper")}
    for f in dataclasses.fields(RefineOptions):
        kind = _field_type(hints[f.name])
        values = {name: getattr(o, f.name) for name, o in presets.items()}
        shown = {name: "auto" if v is None else v for name, v in values.items()}
        if len(set(shown.values())) == 1:
            default = f"default: {shown[DEFAULT_PRESET]}"
        else:
            default = ", ".join(f"{name}: {v}" for name, v in shown.items())
        help_text = f.metadata.get("help", "").replace("%", "%%")
        group.add_argument(
            f"--{prefix}{f.name.replace('_', '-')}",
            dest=_dest(prefix, f.name),
            type=kind,
            choices=f.metadata.get("choices"),
            default=None,
            metavar=None if f.metadata.get("choices") else kind.__name__.upper(),
            help=f"{help_text} ({default})",
        )
    return group


def refine_options_from_args(
    namespace: argparse.Namespace, *, prefix: str = "", base: RefineOptions | None = None
) -> RefineOptions:
    """The :class:`RefineOptions` of ``base`` (default: :meth:`RefineOptions.default`) with the
    given flags applied.

    Raises ``ValueError`` (naming the option) for values outside the allowed range.
    """
    changes = {}
    for f in dataclasses.fields(RefineOptions):
        value = getattr(namespace, _dest(prefix, f.name), None)
        if value is not None:
            changes[f.name] = value
    return (base or RefineOptions()).replace(**changes)
