"""Packages whose names load on first use: ``import hrcam.explain`` (or a command's ``--help``)
costs nothing until a name that needs torch is read."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, exports: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__``: ``exports`` maps each public name to the
    module (relative, e.g. ``".runner"``) that defines it; ``submodules`` load as themselves."""
    submodules = tuple(submodules)
    module_globals = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
            module_globals[name] = value  # the next lookup is a plain attribute
            return value
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*exports, *submodules})

    return __getattr__, __dir__
