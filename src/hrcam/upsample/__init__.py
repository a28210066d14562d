"""Part 2 of the framework: the high-resolution CAM, one :class:`Upsampler` protocol.

- :class:`GuidedUpsampler` (``"guided"``, hrcam's default): the low-res CAM upsampled by
  :func:`guided_upsample`, guided by the image's colours; no training, any GAP + FC model.
  :func:`guided_upsample` itself takes any CAM method's map.
- :class:`ExpansionNetwork` (``"paper"``): the paper's decoder with skip connections, trained
  in stage 2 with the classifier frozen (``hrcam train-expansion``).
- :class:`~.boundary_head.BoundaryUpsampler` (``"boundary"``; what ``"auto"`` gives a model
  whose expansion network has a trained boundary head; the default model has one, and loads
  with ``"guided"`` as its file says): the guided CAM
  spread by a random walk (:mod:`.walk`) over the object boundaries that head finds in the
  classifier's own features — maps that stop at the object, not at its colours.
- :class:`~.hed_walk.HEDUpsampler` (``"hed"``, opt-in): the same walk over the boundaries of
  HED, the teacher the boundary head was distilled from, run on every image (slower).

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

#: The upsamplers a name gives (``--high-res`` on the command line), besides "auto": "boundary"
#: for a model whose expansion network has a boundary head, else "guided".
UPSAMPLERS = ("guided", "boundary", "paper", "hed")


def create_upsampler(name: str, *, expansion: ExpansionNetwork | None = None) -> Upsampler:
    """The upsampler called ``name``: ``"guided"``, ``"boundary"`` (the guided map walked over
    the boundaries of ``expansion``'s boundary head), ``"paper"`` (``expansion`` itself, the
    paper's decoder), ``"hed"`` (the walk over HED's boundaries), or ``"auto"``: ``"boundary"``
    when ``expansion`` has a boundary head, else ``"guided"``."""
    head = None if expansion is None else expansion.boundary_head
    if name == "auto":
        name = "guided" if head is None else "boundary"
    if name == "guided":
        return GuidedUpsampler()
    if name == "boundary":
        from .boundary_head import BoundaryUpsampler

        if head is None:
            raise ValueError(
                "the boundary high-res CAM needs an expansion network with a boundary head, and "
                "this model has none: train one with `hrcam train-expansion --objective "
                "boundary-distill` (or use 'guided', which needs none)"
            )
        return BoundaryUpsampler(head)
    if name == "hed":
        from .hed_walk import HEDUpsampler, check_hed_available

        check_hed_available()
        return HEDUpsampler()
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
