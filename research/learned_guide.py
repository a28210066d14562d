"""A learned guide for the upsampler: the expansion network that knows what objects are.

:func:`hrcam.guided_upsample` moves a CAM's edges onto the image's *colour* edges, so it cuts an
animal along its fur-colour boundaries and joins background of the animal's colour. The
:class:`GuideNetwork` replaces colour with features the classifier itself computes: its early
stages (the skip connections of the expansion network) are projected, fused at stride 4 and
upsampled into a few guide channels, beside the RGB image with a learned weight. The upsampling
stays :func:`~hrcam.upsample.guided.upsample_with_guide`: every output pixel a convex mix of
the CAM's own values, so the map stays class-discriminative and linear in the CAM.

Initialised, it is nearly the colour guide (the learned channels start small, the RGB weight
at 1 / ``colour_sigma``), so training starts from the training-free default.

Training (stage 2: the classifier frozen, no labels read) is research code for now,
``research/train_learned_guide.py``; it is not an objective of ``hrcam train-expansion``
because it has not beaten the training-free colour guide (README, "Everything we tried"):

- ``cam2x``: the classifier's CAM of the image at twice the size (14×14 for a 224 model at 448)
  is a genuinely higher-resolution, class-discriminative map; the 7×7 CAM of the 1× image,
  upsampled by the guide and average-pooled to 14×14, should equal it (after each is scaled to
  its maximum), for the top-``k`` predicted classes. JAFAR (Couairon et al., NeurIPS 2025)
  trains its upsampler the same way, at a low ratio, and finds it carries to high ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hrcam.backbones.base import Backbone, FeatureInfo
from hrcam.upsample.guided import upsample_with_guide

__all__ = ["GuideNetwork"]


class GuideNetwork(nn.Module):
    """Guide features (B, 3 + E, H, W) from the image and the classifier's early stages.

    Args:
        skip_info: the backbone's skips (``backbone.skip_info``); those of stride 4 to 16 are used.
        channels: width of the fused stride-4 features.
        guide_channels: ``E``, the learned guide channels.
        colour_sigma: the colour scale of the training-free guide it starts from.
        spatial_sigma: of the upsampling (cells), as :func:`hrcam.guided_upsample`.
        init_std: of the last layer's initial weights (see the note in the code).
    """

    def __init__(
        self,
        skip_info: Sequence[FeatureInfo | dict],
        *,
        channels: int = 16,
        guide_channels: int = 6,
        colour_sigma: float = 0.1,
        spatial_sigma: float = 1.0,
        init_std: float = 0.05,
    ) -> None:
        super().__init__()
        infos = [FeatureInfo.parse(s) for s in skip_info]
        self.used = [i for i, s in enumerate(infos) if 4 <= s.stride <= 16]
        if not self.used:
            raise ValueError(
                "a learned guide needs backbone skips at strides 4 to 16; this backbone has "
                f"{[s.stride for s in infos]}"
            )
        self.skip_info = infos
        self.project = nn.ModuleList(
            nn.Conv2d(infos[i].channels, channels, 1, bias=False) for i in self.used
        )
        self.fuse = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, guide_channels, 1),
        )
        self.colour = nn.Conv2d(3, guide_channels, 1, bias=False)
        # log of the RGB channels' weight; starts at 1 / colour_sigma, the training-free guide
        self.log_rgb_scale = nn.Parameter(torch.tensor(-math.log(colour_sigma)))
        # The learned channels start near zero, not at zero: with every guide channel equal
        # everywhere, the range kernel's gradient with respect to the guide is zero (each
        # pixel is exactly at its cells' mean), a saddle that training never leaves.
        nn.init.normal_(self.fuse[-1].weight, std=init_std)
        nn.init.zeros_(self.fuse[-1].bias)
        nn.init.zeros_(self.colour.weight)
        self.spatial_sigma = spatial_sigma
        self.config = {
            "channels": channels,
            "guide_channels": guide_channels,
            "colour_sigma": colour_sigma,
            "spatial_sigma": spatial_sigma,
            "skip_info": [dict(name=s.name, stride=s.stride, channels=s.channels) for s in infos],
        }

    @classmethod
    def from_backbone(cls, backbone: Backbone, **kwargs: Any) -> GuideNetwork:
        return cls(backbone.skip_info, **kwargs)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GuideNetwork:
        config = dict(config)
        return cls(config.pop("skip_info"), **config)

    def check_backbone(self, backbone: Backbone) -> None:
        mine = [(s.stride, s.channels) for s in self.skip_info]
        theirs = [(s.stride, s.channels) for s in backbone.skip_info]
        if mine != theirs:
            raise ValueError(
                f"this learned guide was trained for skips (stride, channels) {mine}, and the "
                f"backbone has {theirs}: train one for it with "
                "research/train_learned_guide.py"
            )

    def forward(
        self,
        images: torch.Tensor,
        skips: Sequence[torch.Tensor],
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """The guide (B, 3 + E, *size*) for ``images`` (B, 3, H, W), RGB in [0, 1], and their
        ``skips`` as ``forward_features`` returns them; ``size`` defaults to (H, W) (a smaller
        one, e.g. the stride-4 grid in training, pools the image instead)."""
        full = tuple(images.shape[-2:])
        size = tuple(size or full)
        grid = (max(1, -(-full[0] // 4)), max(1, -(-full[1] // 4)))
        fused = None
        for layer, i in zip(self.project, self.used, strict=True):
            part = F.interpolate(layer(skips[i]), size=grid, mode="bilinear", align_corners=False)
            fused = part if fused is None else fused + part
        learned = self.fuse(fused)
        if tuple(learned.shape[-2:]) != size:
            learned = F.interpolate(learned, size=size, mode="bilinear", align_corners=False)
        if size != full:
            images = F.adaptive_avg_pool2d(images, size)
        return torch.cat([images * self.log_rgb_scale.exp(), learned + self.colour(images)], dim=1)

    def upsample(self, maps: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """``maps`` (B, h, w) or (B, M, h, w) to the guide's resolution."""
        squeeze = maps.ndim == 3
        out = upsample_with_guide(
            maps[:, None] if squeeze else maps, guide, spatial_sigma=self.spatial_sigma
        )
        return out[:, 0] if squeeze else out
