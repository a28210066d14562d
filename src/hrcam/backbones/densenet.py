"""DenseNets: torchvision's DenseNet-121 (the paper's family) and a small configurable one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone, FeatureInfo
from .registry import register_backbone
from .weights import (
    WeightsUnavailableError,
    imagenet_categories,
    load_state_file,
    load_weights_into,
)

__all__ = ["DenseNet121", "TinyDenseNet"]

_DENSENET121_FILE = "densenet121-a639ec97.pth"


def _fix_legacy_densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # torchvision's published DenseNet files name layers "norm.1" where the modules are "norm1".
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
    )
    fixed = {}
    for key, value in state.items():
        match = pattern.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


class DenseNet121(Backbone):
    """torchvision's DenseNet-121 as a localization network.

    The CAM follows torchvision's forward exactly: ``A = relu(features(x))`` (its final ReLU comes
    before pooling), so ``classifier(GAP(A))`` are torchvision's logits. Skips: the stem (stride 2,
    64 ch.) and dense blocks 1–3 (strides 4, 8, 16; 256, 512, 1024 ch.); ``A`` is at stride 32.
    """

    def __init__(self, features: nn.Sequential, **kwargs: Any) -> None:
        super().__init__(
            trunk_channels=1024,
            feature_stride=32,
            skip_info=[
                FeatureInfo("relu0", 2, 64),
                FeatureInfo("denseblock1", 4, 256),
                FeatureInfo("denseblock2", 8, 512),
                FeatureInfo("denseblock3", 16, 1024),
            ],
            **kwargs,
        )
        self.features = features

    def _forward_trunk(self, x):
        skips = []
        taps = {info.name for info in self.skip_info}
        for name, module in self.features.named_children():
            x = module(x)
            if name in taps:
                skips.append(x)
        return F.relu(x), skips


@register_backbone("densenet121")
def densenet121(
    *,
    weights: str | None = None,
    num_classes: int | None = None,
    cam_channels: int | None = None,
    class_names: Sequence[str] | None = None,
    drop_rate: float = 0.0,
) -> DenseNet121:
    """DenseNet-121 (Huang et al. 2017) from torchvision.

    ``weights="imagenet"`` loads torchvision's ImageNet weights (``IMAGENET1K_V1``): from the
    torch hub cache (``~/.cache/torch/hub/checkpoints/densenet121-a639ec97.pth``) or by
    downloading them. ``weights=PATH`` reads that file (torchvision's file, or a state dict of
    this backbone). With another ``num_classes`` or ``cam_channels`` the trunk keeps the weights
    and the new layers start random, ready for fine-tuning.
    """
    from torchvision.models import densenet121 as tv_densenet121

    net = tv_densenet121(weights=None)
    state = None
    if weights == "imagenet":
        state = _download_densenet121()
    elif weights is not None:
        state = _fix_legacy_densenet_keys(load_state_file(weights))
    pretrained_names = None
    if state is not None and "classifier.weight" in state:
        pretrained_classes = state["classifier.weight"].shape[0]
        if pretrained_classes == 1000 and weights == "imagenet":
            pretrained_names = imagenet_categories()
    n = num_classes or (
        state["classifier.weight"].shape[0] if state and "classifier.weight" in state else 1000
    )
    names = class_names or (pretrained_names if n == 1000 else None)
    backbone = DenseNet121(
        net.features,
        num_classes=n,
        cam_channels=cam_channels,
        class_names=names,
        drop_rate=drop_rate,
        config={"name": "densenet121", "num_classes": n, "cam_channels": cam_channels},
    )
    if state is not None:
        _load_trunk_and_head(backbone, state, head_prefix="classifier.")
    return backbone


def _download_densenet121() -> dict[str, torch.Tensor]:
    from torchvision.models import DenseNet121_Weights

    try:
        state = DenseNet121_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=False)
    except Exception as err:  # noqa: BLE001 - urllib, socket and SSL errors all mean "offline"
        hub = torch.hub.get_dir()
        raise WeightsUnavailableError(
            "torchvision's DenseNet-121 ImageNet weights could not be downloaded "
            f"({type(err).__name__}: {err}). Either connect to the internet once, or copy "
            f"{_DENSENET121_FILE} (from {DenseNet121_Weights.IMAGENET1K_V1.url}) into "
            f"{hub}/checkpoints/, or pass weights='/path/to/{_DENSENET121_FILE}'."
        ) from None
    return _fix_legacy_densenet_keys(state)


def _load_trunk_and_head(
    backbone: Backbone, state: dict[str, torch.Tensor], *, head_prefix: str
) -> None:
    """Load a state dict whose FC lives under ``head_prefix``; keep a fresh FC when shapes differ."""
    state = dict(state)
    if any(k.startswith("fc.") for k in state):  # already in this backbone's own naming
        head = {k[3:]: v for k, v in state.items() if k.startswith("fc.")}
    else:
        head = {
            k[len(head_prefix) :]: state.pop(k) for k in list(state) if k.startswith(head_prefix)
        }
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = backbone.load_state_dict(trunk, strict=False)
    missing = [
        k
        for k in missing
        if not k.startswith(("fc.", "cam_reduce.")) and not k.endswith("num_batches_tracked")
    ]
    if missing or unexpected:
        raise ValueError(
            "weights do not fit this backbone: "
            f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    if head and head["weight"].shape == backbone.fc.weight.shape:
        backbone.fc.load_state_dict(head)


def _layers(spatial_dims: int):
    """``(Conv, BatchNorm, AvgPool)`` of 2-D images or 3-D volumes."""
    if spatial_dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.AvgPool3d
    return nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d


class _DenseLayer(nn.Module):
    def __init__(
        self, in_channels: int, growth_rate: int, bn_size: int, spatial_dims: int = 2
    ) -> None:
        super().__init__()
        conv, norm, _ = _layers(spatial_dims)
        inner = bn_size * growth_rate
        self.body = nn.Sequential(
            norm(in_channels),
            nn.ReLU(inplace=True),
            conv(in_channels, inner, 1, bias=False),
            norm(inner),
            nn.ReLU(inplace=True),
            conv(inner, growth_rate, 3, padding=1, bias=False),
        )

    def forward(self, x):
        return torch.cat([x, self.body(x)], dim=1)


def _transition(in_channels: int, out_channels: int, spatial_dims: int = 2) -> nn.Sequential:
    conv, norm, pool = _layers(spatial_dims)
    return nn.Sequential(
        norm(in_channels),
        nn.ReLU(inplace=True),
        conv(in_channels, out_channels, 1, bias=False),
        pool(2, ceil_mode=True),
    )


class TinyDenseNet(Backbone):
    """A small DenseNet (Huang et al. 2017) for small images and tests.

    A 3×3 stride-2 stem, then ``len(block_config)`` dense blocks with a halving transition
    between them: the final maps are at stride ``2 ** len(block_config)`` (8 for three blocks,
    so 12×12 maps for 96×96 images). Skips are the outputs of all blocks but the last.

    ``spatial_dims=3`` builds the same network of volumes (3-D convolutions, batch norm and
    pooling): ``(B, in_chans, D, H, W)`` in, 8×8×8 maps for a 64³ volume with three blocks. The
    final ReLU is a module (``final_relu``) so that hooks of other CAM libraries (MONAI's
    ``target_layers``) can name the layer whose output is the CAM's ``A``.
    """

    def __init__(
        self,
        *,
        block_config: Sequence[int] = (2, 2, 2),
        growth_rate: int = 12,
        init_features: int = 24,
        bn_size: int = 4,
        compression: float = 0.5,
        in_chans: int = 3,
        spatial_dims: int = 2,
        **kwargs: Any,
    ) -> None:
        block_config = tuple(int(b) for b in block_config)
        if not block_config or min(block_config) < 1:
            raise ValueError(
                f"block_config needs at least one block of ≥ 1 layer, got {block_config}"
            )
        conv, norm, _ = _layers(spatial_dims)
        stem = nn.Sequential(
            conv(in_chans, init_features, 3, stride=2, padding=1, bias=False),
            norm(init_features),
            nn.ReLU(inplace=True),
        )
        blocks, transitions, skip_info = nn.ModuleList(), nn.ModuleList(), []
        channels, stride = init_features, 2
        for i, num_layers in enumerate(block_config):
            layers = []
            for _ in range(num_layers):
                layers.append(_DenseLayer(channels, growth_rate, bn_size, spatial_dims))
                channels += growth_rate
            blocks.append(nn.Sequential(*layers))
            if i < len(block_config) - 1:
                skip_info.append(FeatureInfo(f"block{i + 1}", stride, channels))
                out = max(1, int(channels * compression))
                transitions.append(_transition(channels, out, spatial_dims))
                channels, stride = out, stride * 2
        super().__init__(
            trunk_channels=channels,
            feature_stride=stride,
            skip_info=skip_info,
            in_chans=in_chans,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.stem = stem
        self.blocks = blocks
        self.transitions = transitions
        self.final_norm = norm(channels)
        self.final_relu = nn.ReLU()

    def _forward_trunk(self, x):
        x = self.stem(x)
        skips = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.transitions):
                skips.append(x)
                x = self.transitions[i](x)
        return self.final_relu(self.final_norm(x)), skips


@register_backbone("tiny_densenet")
def tiny_densenet(
    *,
    weights: str | None = None,
    num_classes: int = 10,
    cam_channels: int | None = None,
    class_names: Sequence[str] | None = None,
    drop_rate: float = 0.0,
    block_config: Sequence[int] = (2, 2, 2),
    growth_rate: int = 12,
    init_features: int = 24,
    bn_size: int = 4,
    input_size: int = 96,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    in_chans: int = 3,
    spatial_dims: int = 2,
) -> TinyDenseNet:
    """A small DenseNet with configurable depth (``block_config``) and ``growth_rate``.

    ``spatial_dims=3``: a network of volumes (``input_size`` is then the side of the cube it
    takes). ``mean``/``std`` default to ImageNet's for three channels and to 0.5/0.25 per channel
    otherwise (windowed scans in [0, 1]).
    """
    if mean is None:
        mean = IMAGENET_MEAN if in_chans == 3 else (0.5,) * in_chans
    if std is None:
        std = IMAGENET_STD if in_chans == 3 else (0.25,) * in_chans
    config = {
        "name": "tiny_densenet",
        "num_classes": num_classes,
        "cam_channels": cam_channels,
        "block_config": list(block_config),
        "growth_rate": growth_rate,
        "init_features": init_features,
        "bn_size": bn_size,
        "input_size": input_size,
        "mean": list(mean),
        "std": list(std),
        "in_chans": in_chans,
        "spatial_dims": spatial_dims,
    }
    net = TinyDenseNet(
        block_config=block_config,
        growth_rate=growth_rate,
        init_features=init_features,
        bn_size=bn_size,
        num_classes=num_classes,
        cam_channels=cam_channels,
        class_names=class_names,
        drop_rate=drop_rate,
        input_size=input_size,
        mean=mean,
        std=std,
        in_chans=in_chans,
        spatial_dims=spatial_dims,
        config=config,
    )
    if weights is not None:
        if weights == "imagenet":
            raise WeightsUnavailableError(
                "tiny_densenet has no pretrained weights; train it with `hrcam train-classifier`"
            )
        load_weights_into(net, load_state_file(weights), weights)
    return net
