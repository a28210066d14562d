"""Networks of your own on the command line: ``--model my_nets.py:build``.

A *builder* is a function of no arguments that returns the network to explain: a
``torch.nn.Module`` (wrapped by :func:`hrcam.from_model`, its weights as the function left
them) or an :class:`hrcam.Explainer` (for class names, an input size, a window of your
choice). It is named ``FILE.py:FUNCTION`` (a Python file, imported under a private name) or
``PACKAGE.MODULE:FUNCTION`` (an importable module). The spec is recorded in the backbone's
config, so :func:`hrcam.export_model` can store the weights and :func:`hrcam.load_model` can
rebuild the network from the same function later. A builder runs your code: name only files
you trust.

Example ``my_nets.py``::

    import torch
    from monai.networks.nets import DenseNet121

    def build():
        net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
        net.load_state_dict(torch.load("lesions.pt", weights_only=True))
        return net

then ``hrcam explain scan.nii.gz --model my_nets.py:build``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

__all__ = [
    "BuilderError",
    "backbone_from_builder",
    "call_builder",
    "explainer_from_builder",
    "is_builder_spec",
]

_SPEC = re.compile(r"^(?P<source>.+\.py|[A-Za-z_][\w.]*):(?P<function>[A-Za-z_]\w*)$")


class BuilderError(ValueError):
    """A builder spec names nothing callable, or its function failed or returned no network."""


def is_builder_spec(name: str) -> bool:
    """``FILE.py:FUNCTION`` or ``PACKAGE.MODULE:FUNCTION`` (a Windows drive letter is no
    module: ``C:model.pt`` is not a spec)."""
    match = _SPEC.match(str(name))
    return bool(match) and not re.match(r"^[A-Za-z]$", match["source"])


def call_builder(spec: str):
    """Import the function ``spec`` names and return what it builds (one line on any failure)."""
    match = _SPEC.match(str(spec))
    if not match:
        raise BuilderError(f"{spec}: not a builder; write FILE.py:FUNCTION or MODULE:FUNCTION")
    source, name = match["source"], match["function"]
    module = _load_file(spec, Path(source)) if source.endswith(".py") else _import(spec, source)
    function = getattr(module, name, None)
    if not callable(function):
        raise BuilderError(f"{spec}: {source} has no function {name!r}")
    try:
        return function()
    except Exception as err:  # noqa: BLE001 - the user's code: report it in one line
        first = str(err).splitlines()[0] if str(err) else ""
        raise BuilderError(f"{spec}: the builder failed: {type(err).__name__}: {first}") from None


def explainer_from_builder(spec: str, **wrap):
    """The :class:`~hrcam.Explainer` of what ``spec`` builds, the spec recorded in its
    backbone's config (``config["builder"]``). ``wrap``: :func:`hrcam.from_model`'s keywords
    for a module (``class_names``, ``mean``, ``std``, ``input_size``)."""
    import torch.nn as nn

    from .explainer import Explainer, from_model

    built = call_builder(spec)
    if isinstance(built, nn.Module):
        wrap.setdefault("class_names", getattr(built, "class_names", None))
        explainer = from_model(built, **wrap)
    elif isinstance(built, Explainer):
        explainer = built
    else:
        raise BuilderError(
            f"{spec}: the builder returned a {type(built).__name__}; return a torch.nn.Module "
            "or an hrcam.Explainer"
        )
    explainer.backbone.config["builder"] = str(spec)
    return explainer


def backbone_from_builder(config: dict, class_names=None):
    """The wrapped backbone a stored config describes (``config["builder"]``, and the
    normalisation and input size it was wrapped with), rebuilt by calling the builder."""
    spec = config["builder"]
    size = config.get("input_size")
    wrap = {
        "class_names": class_names,
        "mean": config.get("mean"),
        "std": config.get("std"),
        "input_size": size[-1] if isinstance(size, (list, tuple)) else size,
    }
    return explainer_from_builder(spec, **wrap).backbone


def _load_file(spec: str, path: Path):
    if not path.is_file():
        raise BuilderError(f"{spec}: file {path} not found")
    resolved = path.resolve()
    # A private module name per file, so two builder files never shadow each other or a package.
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module_name = f"hrcam_builder_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader_spec = importlib.util.spec_from_file_location(module_name, resolved)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the user's file: report it in one line
        del sys.modules[module_name]
        first = str(err).splitlines()[0] if str(err) else ""
        raise BuilderError(
            f"{spec}: importing {path} failed: {type(err).__name__}: {first}"
        ) from None
    return module


def _import(spec: str, name: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise BuilderError(f"{spec}: cannot import {name} ({err})") from None
