"""One interface for every CAM method, and the registry that names them.

A :class:`CAMMethod` is called as ``method(explainer, images, targets)``:

- ``explainer``: an :class:`hrcam.Explainer` (peers only use ``explainer.backbone``);
- ``images``: an :class:`hrcam.ImageBatch` (``explainer.prepare(...)``), or ``(B, 3, H, W)``
  float inputs normalised for the model;
- ``targets``: ``(B,)`` class indices, one per image (the same for every method in a comparison);

and returns ``(B, H, W)`` float32 CPU maps at the input's resolution, one per image (any scale:
the metrics min-max normalise each map).

Methods are built from a *spec* string, ``name`` or ``name:key=value,key=value``, e.g.
``"refined:focal_scope=local,merge=multiply"`` (a refined CAM with two options changed) or
``"scorecam:batch_size=64"``. ``name+guided`` is any method's map at its own resolution
(:meth:`CAMMethod.native`) upsampled by :func:`hrcam.guided_upsample`, e.g. ``"gradcam+guided"``
or ``"layercam_fused+guided:colour_sigma=0.2"`` (the upsampler's options ``colour_sigma``,
``spatial_sigma``, ``coarse_to_fine``, ``stride``, ``lattice_filter`` go to it, the rest to the
method).
:func:`parse_method_list` splits a comma-separated list of specs (``key=value`` items without
a name belong to the spec before them).

Example::

    >>> from hrcam.methods import create_method, list_methods
    >>> "refined" in list_methods()
    True
    >>> create_method("refined:merge=multiply").name
    'refined:merge=multiply'
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch

__all__ = [
    "CAMMethod",
    "create_method",
    "list_methods",
    "parse_method_list",
    "parse_method_spec",
    "register_method",
]


class CAMMethod:
    """Base class of CAM methods: checks the inputs, then calls :meth:`_compute`.

    Subclasses implement :meth:`_compute` (and :meth:`_native` when their map has a resolution
    of its own) on an :class:`~hrcam.ImageBatch` and checked targets.

    Attributes (what a method can do is declared here, never probed):
        name: the spec this method was built from (its row in result tables).
        family: ``"ours"`` (the paper's maps) or ``"peer"`` (pytorch-grad-cam, torchcam).
        slow: True for methods that run many forward passes per image (Score-CAM); the
            evaluation runs them on a subset by default.
        shares_cams: True for methods made from :meth:`hrcam.Explainer.cams` (the evaluation
            computes those once per batch for all of them).
    """

    family = "ours"
    slow = False
    shares_cams = False

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, explainer, images, targets: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, H, W)`` float32 on the CPU, at the input's size."""
        batch = as_image_batch(explainer, images)
        return self._compute(explainer, batch, _required(check_inputs(explainer, batch.x, targets)))

    def native(self, explainer, images, targets: torch.Tensor) -> torch.Tensor:
        """The map at the method's own resolution, ``(B, h, w)`` float32 on the CPU.

        For a CAM that is the target layer's grid (7×7 for a 224 input at stride 32), before
        any resizing to the input; ``name+guided`` upsamples this with
        :func:`hrcam.guided_upsample`. Methods that are made at the input's resolution
        return the same maps as calling the method.
        """
        batch = as_image_batch(explainer, images)
        return self._native(explainer, batch, _required(check_inputs(explainer, batch.x, targets)))

    def layer_names(self, backbone) -> list[str]:
        """The backbone layers the method reads (for the results file); none by default."""
        return []

    def _native(self, explainer, batch, targets: torch.Tensor) -> torch.Tensor:
        return self._compute(explainer, batch, targets)

    def check_model(self, model) -> None:
        """Raise a ``ValueError`` when ``model`` cannot give this method's maps (say why)."""

    def settings(self) -> dict[str, Any]:
        """What produced the maps (class, layers, options), for the results file."""
        return {}

    def _compute(self, explainer, batch, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _required(targets: torch.Tensor | None) -> torch.Tensor:
    if targets is None:
        raise ValueError(
            "a CAM method needs the target classes, one per image (the evaluation's are each "
            "image's predicted class: explainer.cams(batch).targets)"
        )
    return targets


def as_image_batch(explainer, images):
    """``images`` as an :class:`~hrcam.ImageBatch`: itself, or one made from normalised inputs."""
    from ..explainer import ImageBatch

    if isinstance(images, ImageBatch):
        return images
    if not isinstance(images, torch.Tensor):
        raise ValueError(
            f"images must be an ImageBatch (explainer.prepare(...)) or a normalised (B, 3, H, W) "
            f"tensor, got {type(images).__name__}"
        )
    check_inputs(explainer, images, None)
    backbone = explainer.backbone
    return ImageBatch.from_normalized(images, backbone.mean, backbone.std)


def check_inputs(model, x, targets) -> torch.Tensor | None:
    """Check ``x`` (B, C, H, W) float and ``targets`` (B,) class indices; return targets as long."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = (
            f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        )
        raise ValueError(
            f"x must be a float tensor (B, 3, H, W) normalised for the model, got {got}; "
            "build it with explainer.prepare(...)"
        )
    if targets is None:
        return None
    t = torch.as_tensor(targets)
    if t.ndim != 1 or t.shape[0] != x.shape[0] or t.is_floating_point():
        raise ValueError(
            f"targets must be ({x.shape[0]},) integer class indices, one per image, got "
            f"{t.dtype} of shape {tuple(t.shape)}; use explainer.resolve_targets(None, logits) for "
            "the predicted classes"
        )
    num_classes = model.backbone.num_classes
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"targets must lie in [0, {num_classes - 1}], got {t.tolist()}")
    return t.to(dtype=torch.long, device=x.device)


# -- the registry ---------------------------------------------------------------------------------

Builder = Callable[..., CAMMethod]
B = TypeVar("B", bound=Builder)
_BUILDERS: dict[str, Builder] = {}


def register_method(name: str) -> Callable[[B], B]:
    """Decorator adding a method builder ``builder(spec_name, params: dict[str, str], **context)``.

    A duplicate name is refused. ``params`` are the spec's ``key=value`` pairs (strings); the
    builder refuses keys it does not know. ``context`` carries ``refine_options``.
    """

    def decorator(fn: B) -> B:
        if name in _BUILDERS:
            raise ValueError(f"a CAM method named {name!r} is already registered")
        if not name.isidentifier():
            raise ValueError(f"method names are identifiers (letters, digits, _), got {name!r}")
        _BUILDERS[name] = fn
        return fn

    return decorator


def list_methods() -> list[str]:
    """Names of the registered methods: ours first, then the peers, in registration order."""
    return list(_BUILDERS)


def parse_method_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"name:k=v,k2=v2"`` → ``("name", {"k": "v", "k2": "v2"})``; raises ``ValueError`` if malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a method spec is a non-empty string such as 'gradcam', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ValueError(
                f"method spec {spec!r}: {item!r} is not key=value (e.g. 'refined:merge=multiply')"
            )
        key = key.strip().replace("-", "_")
        if key in params:
            raise ValueError(f"method spec {spec!r} sets {key!r} twice")
        params[key] = value.strip()
    return name.strip(), params


def parse_method_list(text: str | Iterable[str]) -> list[str]:
    """Split ``"low_res,refined:merge=multiply,alpha=0.7,gradcam"`` into method specs.

    Items are separated by commas; an item holding ``=`` but no ``:`` is an option of the spec
    before it, so the example gives ``["low_res", "refined:merge=multiply,alpha=0.7",
    "gradcam"]``. Several strings (a repeated ``--methods``) are joined. Duplicates are refused.
    """
    parts = [text] if isinstance(text, str) else list(text)
    specs: list[str] = []
    for part in parts:
        for item in filter(None, (s.strip() for s in part.split(","))):
            if "=" in item and ":" not in item:
                if not specs:
                    raise ValueError(f"{item!r} is an option but no method comes before it")
                sep = "," if ":" in specs[-1] else ":"
                specs[-1] = f"{specs[-1]}{sep}{item}"
            else:
                specs.append(item)
    seen = set()
    for spec in specs:
        if spec in seen:
            raise ValueError(f"method {spec!r} is listed twice")
        seen.add(spec)
    if not specs:
        raise ValueError("no method given; choose from " + ", ".join(list_methods()))
    return specs


def create_method(spec: str, **context: Any) -> CAMMethod:
    """Build the method a spec names (see the module docstring).

    ``context``: ``refine_options`` (the base :class:`~hrcam.postprocess.RefineOptions` of
    ``refined`` specs). Raises ``KeyError`` for an unknown name (listing the valid ones),
    ``ValueError`` for a bad option, ``ImportError`` when a peer's optional dependency is missing.
    """
    if isinstance(spec, CAMMethod):
        return spec
    name, params = parse_method_spec(spec)
    base_name, plus, upsampler = name.partition("+")
    if plus:
        return _create_upsampled(base_name, upsampler, params, context)
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, list(_BUILDERS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown CAM method {name!r}.{hint} Valid methods: {', '.join(_BUILDERS)}")
    return _BUILDERS[name](canonical_spec(name, params), params, **context)


def reject_unknown(name: str, params: dict[str, str], allowed: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming any key of ``params`` not in ``allowed``."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"method {name!r}: unknown option(s) {unknown}; valid options: {valid}")


def parse_flag(name: str, key: str, text: str) -> bool:
    """A spec's on/off value: ``1``/``true``/``yes`` or ``0``/``false``/``no`` (any case)."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"method {name!r}: {key} must be 0 or 1, got {text!r}")


# -- "name+upsampler" -----------------------------------------------------------------------------

# upsampler name -> builder(base_name, upsampler, params, context) of the "base+upsampler" method
_UPSAMPLED: dict[str, Callable[..., CAMMethod]] = {}


def register_upsampled(name: str) -> Callable[[B], B]:
    """Decorator adding the builder of ``base+name`` specs (``gradcam+guided``); a duplicate
    name is refused."""

    def decorator(fn: B) -> B:
        if name in _UPSAMPLED:
            raise ValueError(f"an upsampler named {name!r} is already registered")
        _UPSAMPLED[name] = fn
        return fn

    return decorator


def canonical_spec(name: str, params: dict[str, str]) -> str:
    """``name:k=v,...`` as a method's name (its row in result tables)."""
    return name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")


def _create_upsampled(base_name: str, upsampler: str, params: dict[str, str], context) -> CAMMethod:
    """``base+upsampler``: the base method's native map through a registered upsampler."""
    if upsampler not in _UPSAMPLED:
        known = ", ".join(repr(n) for n in _UPSAMPLED)
        raise KeyError(f"unknown upsampler {upsampler!r} in a method spec; known: {known}")
    return _UPSAMPLED[upsampler](base_name, upsampler, dict(params), context)
