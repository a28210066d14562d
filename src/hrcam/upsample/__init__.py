"""Part 2 of the framework: the high-resolution CAM, one :class:`Upsampler` protocol.

- :class:`GuidedUpsampler` (``"guided"``, hrcam's default): the low-res CAM upsampled by
  :func:`guided_upsample`, guided by the image's colours; no training, any GAP + FC model.
  :func:`guided_upsample` itself takes any CAM method's map.
- :class:`ExpansionNetwork` (``"paper"``): the paper's decoder with skip connections, trained
  in stage 2 with the classifier frozen (``hrcam train-expansion``).
- :class:`~.boundary.BoundaryUpsampler` (``"boundary"``, opt-in): the guided CAM spread by a
  random walk over HED's object boundaries; sharper objects, about 23× the forward pass.

A third is one new class with ``needs_skips``, ``upsample(inputs)`` and ``describe()``
(:mod:`.base`), handed to :class:`hrcam.Explainer` as ``upsampler=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch

from ..arrays import resize_maps
from .base import UpsampleInputs, Upsampler
from .expansion import ExpansionNetwork
from .guided import GuidedUpsampler, guided_upsample

__all__ = [
    "UPSAMPLERS",
    "ExpansionNetwork",
    "GuidedUpsampler",
    "UpsampleInputs",
    "Upsampler",
    "create_upsampler",
    "guided_upsample",
    "upsample_cam",
]

#: The upsamplers a name gives (``--high-res`` on the command line); "auto" is "guided".
UPSAMPLERS = ("guided", "paper", "boundary")


def create_upsampler(name: str, *, expansion: ExpansionNetwork | None = None) -> Upsampler:
    """The upsampler called ``name``: ``"guided"`` (or ``"auto"``), ``"paper"`` (which is
    ``expansion``, the model's trained expansion network) or ``"boundary"``."""
    if name in ("auto", "guided"):
        return GuidedUpsampler()
    if name == "boundary":
        from .boundary import BoundaryUpsampler, check_hed_available

        check_hed_available()
        return BoundaryUpsampler()
    if name == "paper":
        if expansion is None:
            raise ValueError(
                "the paper's high-res CAM needs an expansion network, and this model has none: "
                "train one with `hrcam train-expansion` (the guided high-res CAM needs none)"
            )
        return expansion
    raise ValueError(f"unknown upsampler {name!r}; choose one of {', '.join(UPSAMPLERS)}")


def upsample_cam(cam: torch.Tensor, size: Sequence[int], *, mode: str = "bilinear") -> torch.Tensor:
    """CAMs ``(B, h, w)`` or ``(h, w)`` resized to ``size = (H, W)``: bilinear with half-pixel
    centres, the plain baseline of every upsampler (and how a map reaches a photograph's own
    size). A map with NaN or ±inf, or a size that is not two positive integers, raises a
    ``ValueError`` that says so."""
    from ..checks import ShapeError, check_finite

    if not isinstance(cam, torch.Tensor) or cam.ndim not in (2, 3) or 0 in cam.shape:
        got = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
        raise ShapeError(f"cam must be a non-empty (B, h, w) or (h, w) tensor, got {got}")
    if (
        len(size) != 2
        or any(isinstance(n, bool) or not isinstance(n, Integral) for n in size)
        or min(size) < 1
    ):
        raise ValueError(f"size must be (H, W), two positive integers, got {tuple(size)!r}")
    check_finite(cam, "cam", hint="a map with NaN cannot be resized: check what made it")
    return resize_maps(cam, tuple(int(n) for n in size), mode=mode)
