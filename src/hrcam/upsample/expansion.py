"""The expansion network (the paper's "full model" decoder).

A decoder that mirrors the localization network: starting from its final feature maps ``A``
(stride ``S``), each stage doubles the resolution and takes a skip connection from the backbone
stage at that stride; the last doubling, to the input resolution, is a sub-pixel convolution.
Its full-resolution features ``D`` (``decoder_channels[-1]`` of them) feed

- the **high-resolution feature maps** ``A_high = P D`` (a 1×1 conv ``P`` to the FC layer's K
  channels), so ``high_res_cam_c = Σ_k w_ck A_high_k`` at full resolution, and
- the **reconstruction head** ``R A_high`` (a 1×1 conv to the image's channels), trained
  against the input image (MSE, as the paper) while the localization network is frozen.

Both heads are linear in ``D``, so the class weights (or ``R``) are folded into ``P`` and the
K-channel full-resolution tensor is never built: for EfficientNet-Lite0, K = 1280 maps at
224×224 would take 257 MB per image. ``D`` itself is kept before its pixel shuffle
(:class:`Decoded`), so the heads run at stride 2 and only their outputs reach full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import Backbone, FeatureInfo
from .base import UpsampleInputs
from .boundary_head import BoundaryHead

__all__ = ["LEGACY_CONFIG_KEYS", "Decoded", "ExpansionNetwork", "default_decoder_channels"]

# Options of the guidance head that hrcam 0.1 kept inside the expansion network; its training-free
# part is hrcam.guided_upsample now, and the learned part (which shipped as zeros) is gone.
LEGACY_CONFIG_KEYS = ("guided", "guide_sigma", "coarse_to_fine")


def default_decoder_channels(
    num_stages: int, *, start: int = 128, minimum: int = 16
) -> tuple[int, ...]:
    """Widths from the bottleneck to full resolution: ``start``, then ×0.7 a stage, multiples of 8."""
    widths, w = [], float(start)
    for _ in range(num_stages + 1):
        widths.append(max(minimum, int(round(w / 8)) * 8))
        w *= 0.7
    return tuple(widths)


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _folded(block: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of conv + BN (eval statistics) as one conv."""
    conv, bn = block[0], block[1]
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    return weight, bn.bias - bn.running_mean * scale


def _run(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``block`` (conv, BN, ReLU); in eval mode as one folded conv, which is the same map, faster."""
    if block.training:
        return block(x)
    conv = block[0]
    weight, bias = _folded(block)
    return F.relu(F.conv2d(x, weight, bias, padding=conv.padding, groups=conv.groups))


class _DecoderStage(nn.Module):
    """Upsample ×2 to the skip's size, concatenate the (projected) skip, then a separable conv.

    With bilinear upsampling the first 1×1 conv is applied before upsampling to the part of its
    input that comes from below (conv and bilinear interpolation commute), so the wide tensor is
    upsampled after it is narrowed and the concatenation is never built.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, *, upsample: str) -> None:
        super().__init__()
        self.upsample = upsample
        self.in_ch = in_ch
        if upsample == "transposed":
            self.up = nn.ConvTranspose2d(in_ch, in_ch, 2, stride=2, groups=in_ch, bias=False)
        skip_out = min(skip_ch, out_ch) if skip_ch else 0
        self.skip_proj = _conv_bn_relu(skip_ch, skip_out) if skip_ch else None
        self.body = nn.Sequential(
            _conv_bn_relu(in_ch + skip_out, out_ch),
            _conv_bn_relu(out_ch, out_ch, 3, groups=out_ch),
            _conv_bn_relu(out_ch, out_ch),
        )

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]
    ) -> torch.Tensor:
        if self.upsample == "transposed":
            x = self.up(x)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="nearest")
            if self.skip_proj is not None and skip is not None:
                x = torch.cat([x, _run(self.skip_proj, skip)], dim=1)
            return _run(self.body[2], _run(self.body[1], _run(self.body[0], x)))
        fuse = self.body[0]
        if fuse.training:
            weight, bias = fuse[0].weight, None
        else:
            weight, bias = _folded(fuse)
        y = F.interpolate(
            F.conv2d(x, weight[:, : self.in_ch]), size=size, mode="bilinear", align_corners=False
        )
        if self.skip_proj is not None and skip is not None:
            y = y + F.conv2d(_run(self.skip_proj, skip), weight[:, self.in_ch :])
        y = F.relu(fuse[1](y)) if fuse.training else F.relu(y + bias.view(1, -1, 1, 1))
        return _run(self.body[2], _run(self.body[1], y))


class ExpansionNetwork(nn.Module):
    """Decoder mirroring a :class:`~hrcam.backbones.Backbone` (see the module docstring).

    Args:
        num_features: K, the backbone's final feature channels (= FC inputs).
        feature_stride: the stride ``S`` of those features (a power of two).
        skip_info: the backbone's skip features (stride and channels), shallow to deep.
        decoder_channels: widths from the bottleneck down to full resolution,
            ``log2(S) + 1`` values; defaults to :func:`default_decoder_channels`.
        out_channels: channels of the reconstructed image.
        skip_connections: take the backbone's stage features (the paper does); False for an
            ablation without them.
        upsample: ``"bilinear"`` (default, no checkerboard artefacts) or ``"transposed"``
            (a learned 2×2 transposed conv, as the paper's "transition up" layers).
        boundary_width: give it a :class:`~.boundary_head.BoundaryHead` of this width too (the
            object boundaries that ``upsampler="boundary"`` walks over; trained by
            ``hrcam train-expansion --objective boundary-distill|affinity``); None: none.

    Example::

        >>> from hrcam import create_backbone
        >>> backbone = create_backbone("tiny_densenet", num_classes=10)
        >>> expansion = ExpansionNetwork.from_backbone(backbone)
        >>> x = torch.randn(2, 3, 96, 96)
        >>> features, skips = backbone.forward_features(x, return_skips=True)
        >>> expansion.decode(features, skips, x.shape[-2:]).full().shape[-2:]
        torch.Size([96, 96])
    """

    def __init__(
        self,
        num_features: int,
        feature_stride: int,
        skip_info: Sequence[FeatureInfo | dict | Sequence],
        *,
        decoder_channels: Sequence[int] | None = None,
        out_channels: int = 3,
        skip_connections: bool = True,
        upsample: str = "bilinear",
        boundary_width: int | None = None,
    ) -> None:
        super().__init__()
        if feature_stride < 2 or feature_stride & (feature_stride - 1):
            raise ValueError(f"feature_stride must be a power of two ≥ 2, got {feature_stride}")
        if upsample not in ("bilinear", "transposed"):
            raise ValueError(f"upsample must be 'bilinear' or 'transposed', got {upsample!r}")
        skip_info = tuple(FeatureInfo.parse(s) for s in skip_info)
        num_stages = feature_stride.bit_length() - 1
        if decoder_channels is None:
            decoder_channels = default_decoder_channels(num_stages)
        decoder_channels = tuple(int(c) for c in decoder_channels)
        if len(decoder_channels) != num_stages + 1:
            raise ValueError(
                f"decoder_channels needs {num_stages + 1} widths for stride {feature_stride} "
                f"(bottleneck + {num_stages} stages), got {len(decoder_channels)}"
            )
        self.num_features = num_features
        self.feature_stride = feature_stride
        self.skip_info = skip_info
        self.decoder_channels = decoder_channels
        self.skip_connections = skip_connections
        self.config: dict[str, Any] = {
            "num_features": num_features,
            "feature_stride": feature_stride,
            "skip_info": [[s.name, s.stride, s.channels] for s in skip_info],
            "decoder_channels": list(decoder_channels),
            "out_channels": out_channels,
            "skip_connections": skip_connections,
            "upsample": upsample,
        }
        self.boundary_head: BoundaryHead | None = None
        if boundary_width is not None:
            self.add_boundary_head(boundary_width)

        skip_by_stride = {s.stride: s for s in skip_info} if skip_connections else {}
        self.bottleneck = _conv_bn_relu(num_features, decoder_channels[0])
        self.stages = nn.ModuleList()
        self._stage_strides: list[int] = []
        stride = feature_stride
        for i in range(num_stages):
            stride //= 2
            skip = skip_by_stride.get(stride)
            if stride == 1:
                break  # the last doubling is the sub-pixel head below
            self.stages.append(
                _DecoderStage(
                    decoder_channels[i],
                    skip.channels if skip else 0,
                    decoder_channels[i + 1],
                    upsample=upsample,
                )
            )
            self._stage_strides.append(stride)
        # Full resolution by sub-pixel convolution (Shi et al., CVPR 2016): a 1×1 conv at stride 2
        # gives r² = 4 values per channel, one for each pixel of a 2×2 block. Every full-resolution
        # pixel gets its own weights, and nothing is computed at full resolution but the heads.
        self.subpixel = nn.Sequential(
            nn.Conv2d(decoder_channels[-2], decoder_channels[-1] * 4, 1, bias=False),
            nn.BatchNorm2d(decoder_channels[-1] * 4),
            nn.ReLU(inplace=True),
        )
        # P: decoder features -> the K high-resolution maps aligned with the FC layer.
        self.to_features = nn.Conv2d(decoder_channels[-1], num_features, 1)
        # R: high-resolution maps -> image (the autoencoder's output).
        self.reconstruction_head = nn.Conv2d(num_features, out_channels, 1)

    def add_boundary_head(self, width: int = 16) -> BoundaryHead:
        """Give this network a new (untrained) boundary head of ``width`` channels, in place of
        any it had; returns it."""
        self.boundary_head = BoundaryHead(
            [s.channels for s in self.skip_info],
            [s.stride for s in self.skip_info],
            self.num_features,
            self.feature_stride,
            width=width,
        )
        self.config["boundary_width"] = int(width)
        return self.boundary_head

    # -- the Upsampler protocol ------------------------------------------------------------------
    needs_skips = True

    def upsample(self, inputs: UpsampleInputs) -> torch.Tensor:
        """The paper's high-res CAMs ``Σ_k w_ck A_high_k`` ``(B, H, W)`` (folded: no K-channel
        full-resolution tensor is built)."""
        decoded = self.decode(inputs.features, inputs.skips, inputs.size)
        return self.class_maps(decoded, inputs.backbone.fc.weight[inputs.targets])

    def describe(self) -> dict[str, Any]:
        return {"name": "paper", "decoder_channels": list(self.decoder_channels)}

    @classmethod
    def from_backbone(cls, backbone: Backbone, **kwargs: Any) -> ExpansionNetwork:
        """An expansion network fitted to ``backbone``'s contract."""
        return cls(backbone.num_features, backbone.feature_stride, backbone.skip_info, **kwargs)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ExpansionNetwork:
        config = dict(config)
        for key in LEGACY_CONFIG_KEYS:  # the guidance head of hrcam 0.1, now guided_upsample
            config.pop(key, None)
        return cls(
            config.pop("num_features"),
            config.pop("feature_stride"),
            config.pop("skip_info"),
            **config,
        )

    def check_backbone(self, backbone: Backbone) -> None:
        """Raise ``ValueError`` when ``backbone`` does not have the contract this was built for."""
        theirs = (
            backbone.num_features,
            backbone.feature_stride,
            [(s.stride, s.channels) for s in backbone.skip_info],
        )
        ours = (
            self.num_features,
            self.feature_stride,
            [(s.stride, s.channels) for s in self.skip_info],
        )
        if theirs != ours:
            raise ValueError(
                "expansion network does not match the localization network: it was built for "
                f"K={ours[0]}, stride {ours[1]}, skips {ours[2]}, the backbone has K={theirs[0]}, "
                f"stride {theirs[1]}, skips {theirs[2]}"
            )

    # -- decoding -------------------------------------------------------------------------------
    def decode(
        self, features: torch.Tensor, skips: Sequence[torch.Tensor], output_size: Sequence[int]
    ) -> Decoded:
        """Decode ``A`` (and the skips) into the full-resolution features ``D`` at ``output_size``.

        Stage sizes come from the skips where there are some and from ``ceil(H / stride)``
        elsewhere, so inputs that are not a multiple of the stride work; the sub-pixel output
        (2× the stride-2 size) is cropped to (H, W).
        """
        if features.ndim != 4 or features.shape[1] != self.num_features:
            raise ValueError(
                f"expected features (B, {self.num_features}, h, w), got {tuple(features.shape)}"
            )
        height, width = int(output_size[0]), int(output_size[1])
        skip_at = {info.stride: t for info, t in zip(self.skip_info, skips, strict=False)}
        x = _run(self.bottleneck, features)
        for stage, stride in zip(self.stages, self._stage_strides, strict=True):
            skip = skip_at.get(stride) if self.skip_connections else None
            if skip is not None:
                size = tuple(skip.shape[-2:])
            else:
                size = (-(-height // stride), -(-width // stride))
            x = stage(x, skip, size)
        if x.shape[-2] * 2 < height or x.shape[-1] * 2 < width:
            # Only when a backbone's stride-2 skip is smaller than ceil(H / 2).
            x = F.interpolate(
                x, size=(-(-height // 2), -(-width // 2)), mode="bilinear", align_corners=False
            )
        return Decoded(_run(self.subpixel, x), (height, width))

    # -- heads, folded ----------------------------------------------------------------------------
    def high_res_features(self, decoded: Decoded) -> torch.Tensor:
        """The K high-resolution maps ``A_high = P D`` (B, K, H, W). Large for big K: prefer the folded heads."""
        return self.to_features(decoded.full())

    def reconstruct(self, decoded: Decoded) -> torch.Tensor:
        """The reconstructed image ``R P D`` (B, out_channels, H, W), one folded 1×1 map."""
        p_w = self.to_features.weight.flatten(1)  # (K, Dc)
        r_w = self.reconstruction_head.weight.flatten(1)  # (O, K)
        weight = r_w @ p_w  # (O, Dc)
        bias = r_w @ self.to_features.bias + self.reconstruction_head.bias
        batch = decoded.subpixel.shape[0]
        return decoded.apply_linear(weight.expand(batch, -1, -1), bias.expand(batch, -1))

    def class_maps(self, decoded: Decoded, class_weights: torch.Tensor) -> torch.Tensor:
        """``Σ_k w_k A_high_k`` (B, H, W) for one weight vector per image (B, K), folded into ``P``."""
        p_w = self.to_features.weight.flatten(1)  # (K, Dc)
        w = class_weights.to(p_w.dtype)
        folded = (w @ p_w)[:, None, :]  # (B, 1, Dc)
        offset = (w @ self.to_features.bias)[:, None]  # (B, 1)
        return decoded.apply_linear(folded, offset)[:, 0]

    def pooled_features(self, decoded: Decoded, size: Sequence[int]) -> torch.Tensor:
        """``A_high`` average-pooled to ``size`` (B, K, h, w); pooling commutes with ``P``."""
        return self.to_features(F.adaptive_avg_pool2d(decoded.full(), tuple(size)))


class Decoded:
    """The expansion network's full-resolution features ``D``, held before the pixel shuffle.

    ``subpixel`` is (B, Dc·4, ⌈H/2⌉, ⌈W/2⌉); ``full()`` is ``D`` itself (B, Dc, H, W).
    Linear heads are applied before the shuffle (:meth:`apply_linear`), which gives the same
    numbers as applying them to ``D`` because a shuffle only moves values.
    """

    def __init__(self, subpixel: torch.Tensor, size: tuple[int, int]) -> None:
        self.subpixel = subpixel
        self.size = size

    @property
    def channels(self) -> int:
        return self.subpixel.shape[1] // 4

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.size[0], : self.size[1]]

    def full(self) -> torch.Tensor:
        return self._crop(F.pixel_shuffle(self.subpixel, 2))

    def apply_linear(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Per-image 1×1 maps ``weight @ D + bias``: weight (B, O, Dc), bias (B, O) → (B, O, H, W)."""
        b, _, h2, w2 = self.subpixel.shape
        grouped = self.subpixel.reshape(b, self.channels, 4, h2 * w2)
        out = torch.einsum("bod,bdsp->bosp", weight.to(grouped.dtype), grouped)
        out = out + bias.to(out.dtype)[:, :, None, None]
        out = out.reshape(b, -1, h2, w2)  # channels ordered (o, subpixel), as pixel_shuffle expects
        return self._crop(F.pixel_shuffle(out, 2))
