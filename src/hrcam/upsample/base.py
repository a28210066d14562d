"""The upsampler protocol: part 2 of the framework, the high-resolution CAM.

The localization network's CAM lives on its feature grid (7×7 for a 224×224 input). An
:class:`Upsampler` turns what that network computed for a batch — its final feature maps, its
stage features (skips), the exact low-res CAM of each image's target class — and the images
themselves into the **high-resolution CAM**, one ``(H, W)`` map per image at the input's size.

Two ship with hrcam: the paper's :class:`~hrcam.upsample.expansion.ExpansionNetwork` (a decoder
with skip connections trained in stage 2, the classifier frozen) and the training-free
:class:`~hrcam.upsample.guided.GuidedUpsampler` (hrcam's default). Another is one new class with
these three members, handed to :class:`hrcam.Explainer`::

    class MyUpsampler:
        needs_skips = False

        def upsample(self, inputs: UpsampleInputs) -> torch.Tensor:
            return hrcam.upsample_cam(inputs.low_res, inputs.size)    # (B, H, W)

        def describe(self) -> dict:
            return {"name": "bilinear"}

    explainer = hrcam.load_model("default").replace(upsampler=MyUpsampler())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ..backbones.base import Backbone

__all__ = ["UpsampleInputs", "Upsampler"]


@dataclass(frozen=True)
class UpsampleInputs:
    """What an upsampler may read; the explainer computes it once per batch.

    - ``backbone``: the localization network (its ``fc`` weights, ``cam``, ``skip_info``);
    - ``features``: its final feature maps ``A``, ``(B, K, h, w)``;
    - ``skips``: its stage features, shallow to deep (``backbone.skip_info``), or None when the
      upsampler did not ask for them (``needs_skips``);
    - ``targets``: ``(B,)`` the class explained in each image;
    - ``low_res``: ``(B, h, w)`` the exact CAM ``Σ_k w_ck A_k`` of each target;
    - ``images``: ``(B, 3, H, W)`` the network's input as RGB in [0, 1] (not normalised).
    """

    backbone: Backbone
    features: torch.Tensor
    skips: Sequence[torch.Tensor] | None
    targets: torch.Tensor
    low_res: torch.Tensor
    images: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``: the input's size, which the high-res CAM has."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])


@runtime_checkable
class Upsampler(Protocol):
    """Anything that makes the high-resolution CAM (see the module docstring).

    ``needs_skips``: whether :meth:`upsample` reads ``inputs.skips`` (the explainer then asks
    the backbone for them; computing them costs nothing extra, keeping them costs memory).
    """

    needs_skips: bool

    def upsample(self, inputs: UpsampleInputs) -> torch.Tensor:
        """The high-res CAMs ``(B, H, W)`` at ``inputs.size``, on the inputs' device."""
        ...

    def describe(self) -> dict[str, Any]:
        """What made the maps, for results files and reports: ``{"name": ..., options}``."""
        ...
