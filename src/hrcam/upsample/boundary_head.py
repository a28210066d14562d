"""Object boundaries from the localization network's own stage features: the expansion network
of stage 2 trained on boundaries instead of on pixel reconstruction.

:class:`BoundaryHead` is a small head on the frozen classifier's stage features (its skips and
its final maps) that predicts a class-agnostic boundary probability on a grid four times coarser
than the input (56×56 at 224). It is trained with the classifier frozen (``hrcam
train-expansion --objective boundary-distill|affinity``) on two label-free signals:

- HED's boundaries (Xie & Tu, ICCV 2015; :mod:`.hed`), max-pooled to the head's grid, as soft
  targets: the boundary teacher distilled, so that explaining needs no HED;
- the classifier's own confident regions (AffinityNet, Ahn & Kwak, CVPR 2018; IRNet, Ahn et
  al., CVPR 2019): pairs of pixels within a radius that both lie in the CAM's confident
  foreground, or both in its confident background, should see no boundary on the segment
  between them, pairs across should see one (:func:`affinity_loss`).

:class:`BoundaryUpsampler` spreads the guided high-res CAM over those boundaries by a random
walk (:func:`.walk.walk_multiscale`, IRNet's inference) run coarse to fine, so that the CAM
crosses an animal in a few hundred cheap steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones.base import Backbone
from .base import UpsampleInputs

__all__ = ["BoundaryHead", "BoundaryUpsampler", "affinity_loss"]


class BoundaryHead(nn.Module):
    """Boundary logits ``(B, 1, H/stride, W/stride)`` from stage features.

    Each input (every skip, and the final maps) passes a 1×1 convolution to ``width`` channels
    and is brought to the head's grid (max-pooled from finer grids, bilinearly upsampled from
    coarser ones); their sum passes a ReLU, a 3×3 convolution, a ReLU and a 1×1 convolution.
    About 13 k parameters for EfficientNet-Lite0.
    """

    def __init__(
        self,
        skip_channels: Sequence[int],
        skip_strides: Sequence[int],
        feature_channels: int,
        feature_stride: int,
        *,
        width: int = 16,
        stride: int = 4,
    ) -> None:
        super().__init__()
        if len(skip_channels) != len(skip_strides):
            raise ValueError("skip_channels and skip_strides must have the same length")
        for name, value in (("width", width), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"the boundary head's {name} must be an integer >= 1, got {value!r}"
                )
        self.skip_channels = [int(c) for c in skip_channels]
        self.strides = [int(s) for s in skip_strides] + [int(feature_stride)]
        self.feature_channels = int(feature_channels)
        self.width = int(width)
        self.stride = int(stride)
        self.inputs = nn.ModuleList(
            nn.Conv2d(c, width, 1) for c in [*self.skip_channels, self.feature_channels]
        )
        self.mix = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, 1, 1)

    @classmethod
    def from_backbone(cls, backbone: Backbone, **kwargs: Any) -> BoundaryHead:
        info = backbone.skip_info
        return cls(
            [f.channels for f in info],
            [f.stride for f in info],
            backbone.num_features,
            backbone.feature_stride,
            **kwargs,
        )

    def config(self) -> dict[str, Any]:
        return {
            "skip_channels": self.skip_channels,
            "skip_strides": self.strides[:-1],
            "feature_channels": self.feature_channels,
            "feature_stride": self.strides[-1],
            "width": self.width,
            "stride": self.stride,
        }

    def logits(self, skips: Sequence[torch.Tensor], features: torch.Tensor) -> torch.Tensor:
        """``(B, 1, h, w)`` boundary logits on the head's grid."""
        tensors = [*skips, features]
        grid = None
        for t, s in zip(tensors, self.strides, strict=True):
            if s == self.stride:
                grid = tuple(t.shape[-2:])
        if grid is None:
            side = tensors[0].shape[-2:]
            ratio = self.strides[0] / self.stride
            grid = (math.ceil(side[0] * ratio), math.ceil(side[1] * ratio))
        total = None
        for conv, t, s in zip(self.inputs, tensors, self.strides, strict=True):
            y = conv(t)
            if s < self.stride:
                y = F.adaptive_max_pool2d(y, grid)
            elif y.shape[-2:] != grid:
                y = F.interpolate(y, size=grid, mode="bilinear", align_corners=False)
            total = y if total is None else total + y
        return self.out(F.relu(self.mix(F.relu(total))))

    def forward(self, skips: Sequence[torch.Tensor], features: torch.Tensor) -> torch.Tensor:
        """Boundary probabilities ``(B, h, w)`` in [0, 1]."""
        return torch.sigmoid(self.logits(skips, features))[:, 0]


def affinity_loss(
    boundaries: torch.Tensor, cams: torch.Tensor, *, fg: float = 0.6, bg: float = 0.15,
    radius: int = 5,
) -> torch.Tensor:  # fmt: skip
    """IRNet's inter-pixel relation loss of boundary probabilities ``(B, h, w)`` against the
    confident regions of CAMs ``(B, h, w)`` on the same grid (the module doc): foreground where
    a CAM is at least ``fg`` of its maximum, background where it is at most ``bg`` of it. The
    affinity of two pixels is ``1 - max`` of the boundaries on the segment between them; pairs
    of one kind pull it to 1, pairs across to 0; the three kinds (foreground, background,
    across) weigh equally. Pairs within ``radius`` (half of the offsets: a pair counts once)."""
    if boundaries.shape != cams.shape or boundaries.ndim != 3:
        raise ValueError(
            f"boundaries and cams must both be (B, h, w), got {tuple(boundaries.shape)} and "
            f"{tuple(cams.shape)}"
        )
    top = cams.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
    fg_mask = (cams >= fg * top).float()
    bg_mask = (cams <= bg * top).float()
    h, w = cams.shape[-2:]
    r = int(radius)
    pb = F.pad(boundaries, (r, r, r, r))
    pf, pg = F.pad(fg_mask, (r, r, r, r)), F.pad(bg_mask, (r, r, r, r))
    sums = [boundaries.new_zeros(()) for _ in range(3)]
    counts = [boundaries.new_zeros(()) for _ in range(3)]
    eps = 1e-5
    for dy in range(0, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx > r * r or (dy == 0 and dx <= 0):
                continue
            n = max(abs(dy), abs(dx))
            path = None
            for k in range(n + 1):
                oy, ox = round(k * dy / n), round(k * dx / n)
                part = pb[:, r + oy : r + oy + h, r + ox : r + ox + w]
                path = part if path is None else torch.maximum(path, part)
            fg_j = pf[:, r + dy : r + dy + h, r + dx : r + dx + w]
            bg_j = pg[:, r + dy : r + dy + h, r + dx : r + dx + w]
            joined = -torch.log(1 - path + eps)
            cut = -torch.log(path + eps)
            for i, (mask, term) in enumerate(
                ((fg_mask * fg_j, joined), (bg_mask * bg_j, joined),
                 (fg_mask * bg_j + bg_mask * fg_j, cut))
            ):  # fmt: skip
                sums[i] = sums[i] + (mask * term).sum()
                counts[i] = counts[i] + mask.sum()
    means = [s / c.clamp_min(1) for s, c in zip(sums, counts, strict=True)]
    return (means[0] + means[1]) / 2 + means[2]


class BoundaryUpsampler(nn.Module):
    """The high-res CAM that stops at objects: the guided high-res CAM (``guided``) spread by a
    random walk (:func:`.walk.walk_multiscale`, ``beta``, ``steps`` coarse to fine) over the
    boundaries a trained :class:`BoundaryHead` finds in the classifier's own stage features,
    then mixed with the guided map: ``(1 - mix) * walked + mix * guided`` (the walk shows the
    object's extent, the guided map keeps its peak on the most discriminative part; without it
    the flatter maps lose on faithfulness metrics that reward compact maps, ``docs/tried.md``).
    What ``upsampler="auto"`` gives a model whose expansion network has a trained boundary
    head (the default model's file names ``"guided"`` instead); ``"boundary"`` asks for it by
    name. Options chosen on the first half
    of pets-dev (``docs/tried.md``).

    Example::

        explainer = hrcam.load_model("default")            # its expansion network has one
        explainer.replace(upsampler=BoundaryUpsampler(explainer.expansion.boundary_head,
                                                      steps=(1024,)))
    """

    needs_skips = True

    def __init__(
        self,
        head: BoundaryHead,
        *,
        beta: float = 6.0,
        steps: Sequence[int] = (1024,),
        mix: float = 0.5,
        guided: Any = None,
    ) -> None:
        super().__init__()
        from .guided import GuidedUpsampler

        if not isinstance(head, BoundaryHead):
            raise TypeError(f"head must be a BoundaryHead, got {type(head).__name__}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if not 0 <= mix <= 1:
            raise ValueError(f"mix must lie in [0, 1], got {mix}")
        steps = tuple(steps)
        if not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in steps):
            raise ValueError(f"steps must be one or more integers >= 0, got {steps!r}")
        self.head = head
        self.beta = float(beta)
        self.steps = steps
        self.mix = float(mix)
        self.guided = GuidedUpsampler() if guided is None else guided

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BoundaryUpsampler)
            and other.head is self.head
            and (other.beta, other.steps, other.mix, other.guided)
            == (self.beta, self.steps, self.mix, self.guided)
        )

    __hash__ = nn.Module.__hash__

    def replace(self, **changes: Any) -> BoundaryUpsampler:
        """A copy over the same head with ``changes`` (``beta``, ``steps``, ``mix``, ``guided``)
        applied and checked, e.g. ``upsampler.replace(mix=0)`` for the walked map alone."""
        unknown = sorted(set(changes) - {"beta", "steps", "mix", "guided"})
        if unknown:
            raise ValueError(f"unknown boundary upsampler option(s) {unknown}")
        options = {"beta": self.beta, "steps": self.steps, "mix": self.mix, "guided": self.guided}
        return BoundaryUpsampler(self.head, **{**options, **changes})

    def upsample(self, inputs: UpsampleInputs) -> torch.Tensor:
        """The walked high-res CAMs ``(B, H, W)``."""
        from .walk import walk_multiscale

        if inputs.skips is None or inputs.images.ndim != 4:
            raise ValueError(
                "the boundary upsampler takes images and the network's stage features (2-D)"
            )
        high = self.guided.upsample(inputs)
        boundaries = self.head(inputs.skips, inputs.features)
        walked = walk_multiscale(high, boundaries, beta=self.beta, steps=self.steps)
        return walked if self.mix == 0 else torch.lerp(walked, high, self.mix)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "boundary",
            "beta": self.beta,
            "steps": list(self.steps),
            "mix": self.mix,
            "guided": self.guided.describe(),
            "boundaries": f"the expansion network's boundary head (width {self.head.width})",
        }
