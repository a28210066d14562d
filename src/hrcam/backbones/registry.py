"""Registry of localization networks: ``register_backbone``, ``create_backbone``, ``list_backbones``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Backbone

__all__ = ["create_backbone", "list_backbones", "register_backbone"]

_BUILDERS: dict[str, Callable[..., Backbone]] = {}
_PREFIX_BUILDERS: dict[str, Callable[..., Backbone]] = {}

F = TypeVar("F", bound=Callable[..., Backbone])


def register_backbone(name: str, *, prefix: bool = False) -> Callable[[F], F]:
    """Decorator adding a backbone builder under ``name``; a duplicate name is refused.

    With ``prefix=True`` the builder serves every name ``"<name>/<model>"`` and receives
    ``model`` as its first argument (e.g. ``"timm/resnet50"``).
    """

    def decorator(fn: F) -> F:
        table = _PREFIX_BUILDERS if prefix else _BUILDERS
        if name in table:
            raise ValueError(f"a backbone named {name!r} is already registered")
        table[name] = fn
        return fn

    return decorator


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone` (prefix families shown as ``"timm/<name>"``)."""
    return sorted(_BUILDERS) + [f"{p}/<name>" for p in sorted(_PREFIX_BUILDERS)]


def create_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build a registered localization network.

    Common keyword arguments: ``weights`` (None for random init, ``"imagenet"``, or a path to a
    weights file), ``num_classes``, ``cam_channels``, ``class_names``, ``drop_rate``; each builder
    documents its own extras (e.g. ``tiny_densenet``'s ``growth_rate``).

    Example::

        >>> net = create_backbone("tiny_densenet", num_classes=10, block_config=(2, 2, 2))
        >>> net.feature_stride, net.num_features > 0
        (8, True)

    Raises:
        KeyError: ``name`` is not registered (the message lists the valid names).
    """
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a str, got {type(name).__name__}")
    if name in _BUILDERS:
        return _BUILDERS[name](**kwargs)
    prefix, _, model = name.partition("/")
    if model and prefix in _PREFIX_BUILDERS:
        return _PREFIX_BUILDERS[prefix](model, **kwargs)
    close = difflib.get_close_matches(name, list(_BUILDERS), n=1)
    suggestion = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(
        f"unknown backbone {name!r}.{suggestion} Valid names: {', '.join(list_backbones())}"
    )
