"""The contract every localization network (the paper's "half model") follows.

A :class:`Backbone` is a CNN whose logits are exactly ``fc(GAP(A))`` for its final feature maps
``A`` (B, K, h, w) — or (B, K, d, h, w) for a network of volumes (``spatial_dims=3``: CT, MRI).
The expansion network and the CAM code read only this contract:

- ``forward_features(x, return_skips=True)`` → ``(A, skips)``, where ``skips`` are the
  intermediate stage outputs described by ``skip_info`` (shallow to deep);
- ``forward_head(A)`` → logits;
- ``fc`` (``nn.Linear``, weight (C, K), bias (C,)), ``num_features`` = K,
  ``feature_stride`` = the stride of ``A``;
- ``class_names``, ``input_size``, ``mean``/``std`` (the input normalisation, per channel, of
  pictures in [0, 1]), ``in_chans``, ``spatial_dims`` (2 for images, 3 for volumes);
- ``config`` — everything :func:`hrcam.create_backbone` needs to build the same network again.

Subclasses implement ``_forward_trunk``; the base class owns the optional "CAM channels"
reduction, the classifier, input checks and the CAM itself. :func:`hrcam.from_model` wraps a
classifier object a user already has (torchvision, timm) in this contract without copying it
(:mod:`hrcam.backbones.wrapped`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Backbone", "FeatureInfo", "IMAGENET_MEAN", "IMAGENET_STD", "logits_mismatch"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureInfo:
    """One stage feature the backbone hands to the expansion network."""

    name: str
    stride: int
    channels: int

    @classmethod
    def parse(cls, item: FeatureInfo | dict | Sequence) -> FeatureInfo:
        """A ``FeatureInfo`` from itself, a ``{"name", "stride", "channels"}`` dict (as configs
        store it) or a ``(name, stride, channels)`` sequence."""
        if isinstance(item, FeatureInfo):
            return item
        if isinstance(item, dict):
            return cls(str(item["name"]), int(item["stride"]), int(item["channels"]))
        name, stride, channels = item
        return cls(str(name), int(stride), int(channels))


class Backbone(nn.Module):
    """Base class of CAM-capable localization networks (see the module docstring).

    Args:
        trunk_channels: channels of the trunk's final features, before any CAM reduction.
        feature_stride: stride of the final features relative to the input.
        skip_info: the stage features ``_forward_trunk`` returns, shallow to deep.
        num_classes: classes of the FC layer.
        cam_channels: if set, a 1×1 conv + BN + ReLU reduces the trunk's features to this many
            maps before GAP (the original code used 16), trading K for memory.
        drop_rate: dropout before the FC layer, during training only (never changes CAMs).
        class_names: one name per class; defaults to ``"class_0"`` ….
        config: the arguments that rebuild this network with :func:`hrcam.create_backbone`.
    """

    def __init__(
        self,
        *,
        trunk_channels: int,
        feature_stride: int,
        skip_info: Sequence[FeatureInfo],
        num_classes: int,
        cam_channels: int | None = None,
        drop_rate: float = 0.0,
        class_names: Sequence[str] | None = None,
        input_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        in_chans: int = 3,
        spatial_dims: int = 2,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims}")
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(
                f"mean and std need one value per input channel ({in_chans}), got {len(mean)} "
                f"and {len(std)}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if cam_channels is not None and cam_channels < 1:
            raise ValueError(f"cam_channels must be a positive int or None, got {cam_channels}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names for {num_classes} classes; "
                "give one name per class"
            )
        self.trunk_channels = trunk_channels
        self.feature_stride = feature_stride
        self.skip_info: tuple[FeatureInfo, ...] = tuple(skip_info)
        self.input_size = input_size
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.in_chans = in_chans
        self.spatial_dims = spatial_dims
        self.class_names: list[str] = (
            list(class_names)
            if class_names is not None
            else [f"class_{i}" for i in range(num_classes)]
        )
        if cam_channels:
            conv, norm = (
                (nn.Conv2d, nn.BatchNorm2d) if spatial_dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
            )
            self.cam_reduce: nn.Module = nn.Sequential(
                conv(trunk_channels, cam_channels, 1, bias=False),
                norm(cam_channels),
                nn.ReLU(inplace=True),
            )
            num_features = cam_channels
        else:
            self.cam_reduce = nn.Identity()
            num_features = trunk_channels
        self.num_features = num_features
        self.drop_rate = float(drop_rate)
        if not self.external_classifier:
            self.fc = nn.Linear(num_features, num_classes)
        self.config: dict[str, Any] = dict(config or {})
        if self.drop_rate and self.config:
            self.config["drop_rate"] = self.drop_rate  # a resumed run must drop out as well

    #: Subclasses that wrap a user's model set this and define ``fc`` as a property returning the
    #: model's own ``nn.Linear`` (so it is neither copied nor registered twice).
    external_classifier = False

    # -- to implement -------------------------------------------------------------------------
    def _forward_trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the trunk's final features (B, trunk_channels, h, w) and the skip features."""
        raise NotImplementedError

    # -- the contract -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` that says how to fix an input that is not (B, C, H, W) (or
        (B, C, D, H, W) for a network of volumes)."""
        axes = "H, W" if self.spatial_dims == 2 else "D, H, W"
        expected = f"(B, {self.in_chans}, {axes})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"expected a torch.Tensor of shape {expected}, got {type(x).__name__}; "
                "turn images into tensors with explainer.prepare(images).x"
            )
        rank = 2 + self.spatial_dims
        if x.ndim != rank or x.shape[1] != self.in_chans:
            hint = ""
            if x.ndim == rank - 1:
                hint = "; add a batch dimension with x.unsqueeze(0)"
            elif x.ndim == rank and x.shape[-1] == self.in_chans:
                hint = "; the tensor looks channels-last: move the channels to axis 1"
            elif x.ndim == rank and self.in_chans == 3 and x.shape[1] in (1, 4):
                hint = "; convert grayscale/RGBA images to RGB first (hrcam.load_image does)"
            elif x.ndim == 4 and self.spatial_dims == 3:
                hint = "; this network takes volumes"
            elif x.ndim == 5 and self.spatial_dims == 2:
                hint = "; this network takes 2-D images, not volumes"
            raise ValueError(f"expected a batch of shape {expected}, got {tuple(x.shape)}{hint}")
        if not x.is_floating_point():
            raise ValueError(
                f"expected a float tensor normalised for this model, got dtype {x.dtype}; "
                "use explainer.prepare(images).x to build inputs"
            )
        if min(x.shape[2:]) < self.feature_stride:
            size = "×".join(str(n) for n in x.shape[2:])
            raise ValueError(
                f"input of {size} is smaller than the network's stride {self.feature_stride}; "
                f"resize inputs to at least {self.feature_stride} pixels a side"
            )

    def forward_features(
        self, x: torch.Tensor, *, return_skips: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Final feature maps ``A`` (B, K, h, w) or (B, K, d, h, w), and the skip features
        when asked."""
        self.check_input(x)
        trunk, skips = self._forward_trunk(x)
        features = self.cam_reduce(trunk)
        return (features, skips) if return_skips else features

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits = FC(GAP(A)), the identity that makes the CAM exact."""
        pooled = features.mean(dim=tuple(range(2, features.ndim)))
        if self.drop_rate and self.training:
            pooled = F.dropout(pooled, self.drop_rate, training=True)
        return self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def cam(
        self, features: torch.Tensor, targets: torch.Tensor, *, weights: str = "all"
    ) -> torch.Tensor:
        """Class activation maps ``Σ_k w_ck A_k`` (B, h, w), or (B, d, h, w) for volumes, for
        one class index per image.

        ``weights="positive"`` keeps only the FC weights above zero, ``Σ_k max(w_ck, 0) A_k``:
        the evidence *for* the class, which is LayerCAM's map (Jiang et al., TIP 2021) of a
        GAP + FC network, whose gradients are the FC weights. Only ``"all"`` is exact (its mean
        plus the bias is the logit).
        """
        w = self.fc.weight[targets]  # (B, K)
        if weights == "positive":
            w = w.clamp_min(0)
        elif weights != "all":
            raise ValueError(f"weights must be 'all' or 'positive', got {weights!r}")
        return torch.einsum("bk,bk...->b...", w.to(features.dtype), features)

    def extra_repr(self) -> str:
        return (
            f"num_features={self.num_features}, feature_stride={self.feature_stride}, "
            f"num_classes={self.num_classes}, skips={[(s.stride, s.channels) for s in self.skip_info]}"
        )


@torch.no_grad()
def logits_mismatch(backbone: Backbone, x: torch.Tensor, expected: torch.Tensor) -> str | None:
    """How the contract's logits differ from ``expected``, or None when they agree to 1e-4."""
    try:
        got = backbone(x)
    except RuntimeError as err:  # e.g. a layer between pooling and the classifier
        return f"the contract's forward failed: {str(err).splitlines()[0]}"
    if got.shape != expected.shape:
        return f"shapes {tuple(got.shape)} and {tuple(expected.shape)}"
    diff = float((got - expected).abs().max())
    if diff > 1e-4 * float(expected.abs().max().clamp_min(1.0)):
        return f"max difference {diff:.3g}"
    return None
