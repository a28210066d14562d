"""Classifier objects a user already has, wrapped in the backbone contract (:func:`wrap_classifier`).

A CAM is exact for a network whose logits are ``fc(GAP(A))``: the spatial mean of
``Σ_k w_ck A_k`` plus the class bias *is* the logit. These families are wrapped:

- **torchvision**: ResNet (and ResNeXt, Wide ResNet), DenseNet, EfficientNet (V1 and V2), RegNet,
  MobileNetV2, MNASNet, ShuffleNetV2 and Swin Transformer (V1, V2) — each ends in average pooling
  and one ``nn.Linear`` (EfficientNet, MobileNetV2 and MNASNet put a dropout before it, an
  identity at inference; Swin normalises each position *before* pooling, which keeps the head
  linear in the pooled features).
- **timm**: any model whose ``forward_head`` is average pooling and one ``nn.Linear``
  (``forward_features`` gives ``A``; ``forward_intermediates`` gives the skips), including ViTs
  built with ``global_pool="avg", fc_norm=False``, whose CAM lives on the patch grid.
- **Any other module** whose last global pooling is an ``nn.AdaptiveAvgPool2d``/``3d`` to one
  cell and whose logits are one ``nn.Linear`` of the pooled features: MONAI's classifiers
  (``DenseNet121/169/201/264``, ``ResNet``, ``SEResNet``, ``EfficientNetBN``, in 2-D and 3-D,
  any number of input channels) and most hand-written CNNs. ``A`` is what enters that pooling
  (a hook reads it); the first convolution gives the input channels and whether the network
  takes images or volumes. No skips: such a network has the guided upsampler, not the paper's
  expansion network.

Refused, with the reason (no exact CAM exists): torchvision's MobileNetV3 (Linear → Hardswish →
Linear after pooling), ConvNeXt (LayerNorm after pooling), VGG and AlexNet (an MLP after
pooling), VisionTransformer (the class token), MaxViT, SqueezeNet; timm heads that pool a class
token, pool by attention, normalise after pooling, or end in an MLP. For those, compute the
map with a peer method and sharpen it with :func:`hrcam.guided_upsample`.

Nothing is copied: the wrapped backbone runs the user's modules and reads their classifier's
weights, so ``from_model(net)`` always explains ``net`` as it is now. Every wrap is checked
numerically: the logits the contract computes must equal ``module(x)`` on a random input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone, FeatureInfo, logits_mismatch
from .timm_models import run_timm_trunk, timm_trunk_layout

__all__ = ["WrappedBackbone", "wrap_classifier"]

_GLOBAL_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_CONVS = {nn.Conv2d: 2, nn.Conv3d: 3}
# The side of the dry run's input when none is given: photographs, volumes.
_DEFAULT_SIDE = {2: 224, 3: 96}

# torchvision class -> (trunk steps as module paths, classifier path, final op, channels-last).
# ``"*features"`` means every child of ``features`` in order.
_TORCHVISION: dict[str, tuple[tuple[str, ...], str, str | None, bool]] = {
    "ResNet": (
        ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
        "fc",
        None,
        False,
    ),
    "DenseNet": (("*features",), "classifier", "relu", False),
    "EfficientNet": (("*features",), "classifier.1", None, False),
    "MobileNetV2": (("*features",), "classifier.1", None, False),
    "MNASNet": (("*layers",), "classifier.1", None, False),
    "RegNet": (("stem", "*trunk_output"), "fc", None, False),
    "ShuffleNetV2": (
        ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"),
        "fc",
        None,
        False,
    ),
    "SwinTransformer": (("*features", "norm"), "head", None, True),
}

_REFUSED: dict[str, str] = {
    "MobileNetV3": "its head is Linear → Hardswish → Dropout → Linear after pooling (an MLP)",
    "ConvNeXt": "it normalises after pooling (LayerNorm2d → Flatten → Linear)",
    "VGG": "its head is a three-layer MLP after 7×7 pooling",
    "AlexNet": "its head is a three-layer MLP after 6×6 pooling",
    "VisionTransformer": "it classifies from the class token, not from pooled patch features",
    "MaxVit": "its head normalises and runs an MLP after pooling",
    "SqueezeNet": "its classifier is a 1×1 conv and a ReLU before pooling",
}

_ADVICE = (
    "compute its map with a peer method (Grad-CAM, LayerCAM, …) and pass it through "
    "hrcam.guided_upsample, or wrap the network in a hrcam.Backbone subclass yourself"
)


class WrappedBackbone(Backbone):
    """A user's classifier behind the backbone contract, its own modules and weights in use.

    Build it with :func:`wrap_classifier`. ``model`` is the user's module (registered, so
    ``.to()``/``.eval()`` reach it); ``fc`` is its classifier ``nn.Linear``, not a copy.
    """

    external_classifier = True

    def __init__(
        self,
        model: nn.Module,
        *,
        trunk: Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]],
        classifier_path: str,
        num_features: int,
        feature_stride: int,
        skip_info: Sequence[FeatureInfo],
        **kwargs: Any,
    ) -> None:
        classifier = model.get_submodule(classifier_path)
        super().__init__(
            trunk_channels=num_features,
            feature_stride=feature_stride,
            skip_info=skip_info,
            num_classes=classifier.out_features,
            **kwargs,
        )
        self.model = model
        self._classifier_path = classifier_path
        self._trunk = trunk

    @property
    def fc(self) -> nn.Linear:
        return self.model.get_submodule(self._classifier_path)

    def _forward_trunk(self, x):
        return self._trunk(self.model, x)


def wrap_classifier(
    module: nn.Module,
    *,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | None = None,
) -> WrappedBackbone:
    """Wrap a classifier (see the module docstring) as a backbone.

    ``mean``/``std`` (the input normalisation of pictures in [0, 1], one value per input
    channel) and ``input_size`` default to timm's ``pretrained_cfg`` for timm models, to
    ImageNet's (224) for torchvision ones and other 3-channel networks, and to 0 and 1 (the
    pictures as they are) for other channel counts, with a side of 224 for images and 96 for
    volumes; ``class_names`` default to ImageNet's for 1000 classes. ``module`` is put in
    eval mode.

    Raises:
        ValueError: the head is not average pooling + one linear layer (the message names the
            head found and what to do instead), or the wrap does not reproduce the logits.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_model takes a torch.nn.Module, got {type(module).__name__}")
    module.eval()
    name = type(module).__name__
    in_chans, spatial_dims = _input_layout(module)
    if _is_timm(module):
        spec = _timm_spec(module, input_size)
    elif type(module).__module__.startswith("torchvision."):
        spec = _torchvision_spec(module, input_size)
    else:
        spec = _pooled_spec(
            module, input_size or _DEFAULT_SIDE[spatial_dims], in_chans, spatial_dims
        )
    cfg = getattr(module, "pretrained_cfg", None) or {}
    size = int(input_size or cfg.get("input_size", (3, _DEFAULT_SIDE[spatial_dims]))[-1])
    classes = module.get_submodule(spec["classifier_path"]).out_features
    if class_names is None and classes == 1000:
        from .weights import imagenet_categories

        class_names = imagenet_categories()
    default_mean, default_std = (
        (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((0.0,) * in_chans, (1.0,) * in_chans)
    )
    backbone = WrappedBackbone(
        module,
        class_names=class_names,
        mean=tuple(mean or cfg.get("mean", default_mean)),
        std=tuple(std or cfg.get("std", default_std)),
        input_size=size,
        in_chans=in_chans,
        spatial_dims=spatial_dims,
        config={
            "name": f"wrapped:{type(module).__module__}.{name}",
            "mean": list(mean or cfg.get("mean", default_mean)),
            "std": list(std or cfg.get("std", default_std)),
            "input_size": size,
        },
        **spec,
    )
    _verify(backbone, module, size)
    return backbone.eval()


def _input_layout(module: nn.Module) -> tuple[int, int]:
    """(input channels, spatial dims) from the module's first 2-D or 3-D convolution (3 and 2
    for a network without one, e.g. a ViT's patch embedding by linear layers)."""
    for m in module.modules():
        for kind, dims in _CONVS.items():
            if isinstance(m, kind):
                return int(m.in_channels), dims
    return 3, 2


def _is_timm(module: nn.Module) -> bool:
    return type(module).__module__.startswith("timm.") and hasattr(module, "get_classifier")


def _timm_spec(module: nn.Module, input_size: int | None) -> dict[str, Any]:
    try:
        layout = timm_trunk_layout(module)
    except ValueError as err:
        raise ValueError(f"{err}; {_ADVICE}") from None
    classifier = module.get_classifier()
    path = next(n for n, m in module.named_modules() if m is classifier)
    return {
        "trunk": lambda model, x: run_timm_trunk(model, x, layout),
        "classifier_path": path,
        "num_features": classifier.in_features,
        "feature_stride": layout.final_stride,
        "skip_info": layout.skip_info,
    }


def _pooled_spec(module: nn.Module, side: int, in_chans: int, spatial_dims: int) -> dict[str, Any]:
    """The trunk of a module that ends in global average pooling and one linear layer: ``A``
    is the last pooling's input, read by a hook while the module runs."""
    name = type(module).__name__
    ran: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: ran.append(m))
        for m in module.modules()
        if isinstance(m, (*_GLOBAL_POOLS, nn.Linear))
    ]
    device = next(module.parameters()).device
    x = torch.zeros(1, in_chans, *(side,) * spatial_dims, device=device)
    try:
        with torch.no_grad():
            module(x)
    finally:
        for hook in hooks:
            hook.remove()
    pools = [i for i, m in enumerate(ran) if isinstance(m, _GLOBAL_POOLS)]
    linears = [i for i, m in enumerate(ran) if isinstance(m, nn.Linear)]
    if not pools or not linears or linears[-1] < pools[-1]:
        raise ValueError(
            f"cannot wrap {name} for exact CAMs: no adaptive average pooling module followed by "
            f"an nn.Linear runs in its forward pass; {_ADVICE}"
        )
    pool, classifier = ran[pools[-1]], ran[linears[-1]]
    classifier_path = next(n for n, m in module.named_modules() if m is classifier)
    features = _pool_input(module, pool, x)
    if features.ndim != 2 + spatial_dims or features.shape[1] != classifier.in_features:
        raise ValueError(
            f"cannot wrap {name} for exact CAMs: its last pooling takes "
            f"{tuple(features.shape)} but its classifier takes {classifier.in_features} features; "
            f"{_ADVICE}"
        )

    def trunk(model: nn.Module, x: torch.Tensor):
        return _pool_input(model, pool, x), []

    return {
        "trunk": trunk,
        "classifier_path": classifier_path,
        "num_features": classifier.in_features,
        "feature_stride": max(1, round(side / features.shape[-1])),
        "skip_info": [],
    }


def _pool_input(model: nn.Module, pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What enters ``pool`` when ``model`` runs on ``x``."""
    seen: list[torch.Tensor] = []
    hook = pool.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        model(x)
    finally:
        hook.remove()
    return seen[-1]


def _torchvision_spec(module: nn.Module, input_size: int | None) -> dict[str, Any]:
    name = type(module).__name__
    family = next((c.__name__ for c in type(module).__mro__ if c.__name__ in _TORCHVISION), None)
    refused = next((c.__name__ for c in type(module).__mro__ if c.__name__ in _REFUSED), None)
    if family is None:
        reason = _REFUSED.get(refused or "", "hrcam has no adapter for it")
        raise ValueError(f"cannot wrap {name} for exact CAMs: {reason}; {_ADVICE}")
    paths, classifier_path, final, channels_last = _TORCHVISION[family]
    steps = _expand_steps(module, paths)
    classifier = module.get_submodule(classifier_path)
    if not isinstance(classifier, nn.Linear):
        raise ValueError(
            f"{name}.{classifier_path} is a {type(classifier).__name__}, not the nn.Linear of a "
            f"GAP + linear head; {_ADVICE}"
        )
    taps, strides, channels = _dry_run(module, steps, input_size or 224, channels_last)
    final_stride = strides[-1]
    skip_info, skip_steps = [], []
    for stride in sorted({s for s in strides if s < final_stride}):
        last = max(i for i, s in enumerate(strides) if s == stride)
        skip_steps.append(last)
        skip_info.append(FeatureInfo(taps[last], stride, channels[last]))

    def trunk(model: nn.Module, x: torch.Tensor):
        skips = []
        for i, (_, step) in enumerate(steps):
            x = step(x)
            if i in skip_steps:
                skips.append(x.permute(0, 3, 1, 2) if channels_last else x)
        if channels_last:
            x = x.permute(0, 3, 1, 2)
        return (F.relu(x) if final == "relu" else x), skips

    return {
        "trunk": trunk,
        "classifier_path": classifier_path,
        "num_features": classifier.in_features,
        "feature_stride": final_stride,
        "skip_info": skip_info,
    }


def _expand_steps(module: nn.Module, paths: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """The trunk's modules in order; ``"*name"`` expands to the children of ``name``."""
    steps = []
    for path in paths:
        if path.startswith("*"):
            parent = module.get_submodule(path[1:])
            steps.extend((f"{path[1:]}.{n}", child) for n, child in parent.named_children())
        else:
            steps.append((path, module.get_submodule(path)))
    return steps


@torch.no_grad()
def _dry_run(module, steps, size: int, channels_last: bool):
    """Names, strides and channels of every step's output, from one input of ``size``²."""
    device = next(module.parameters()).device
    x = torch.zeros(1, 3, size, size, device=device)
    names, strides, channels = [], [], []
    for name, step in steps:
        x = step(x)
        height, chans = (x.shape[1], x.shape[-1]) if channels_last else (x.shape[-2], x.shape[1])
        names.append(name)
        strides.append(max(1, round(size / height)))
        channels.append(int(chans))
    return names, strides, channels


@torch.no_grad()
def _verify(backbone: WrappedBackbone, module: nn.Module, size: int) -> None:
    """Refuse a wrap whose ``fc(GAP(A))`` does not reproduce ``module(x)`` (a non-linear head)."""
    device = next(module.parameters()).device
    shape = (2, backbone.in_chans, *(size,) * backbone.spatial_dims)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    expected = module(x)
    if isinstance(expected, (tuple, list)):  # e.g. auxiliary logits
        expected = expected[0]
    problem = logits_mismatch(backbone, x, expected)
    if problem:
        raise ValueError(
            f"{type(module).__name__}: pooling its final features and applying its classifier "
            f"does not reproduce its logits ({problem}), so its head is not GAP + linear and it "
            f"has no exact CAM; {_ADVICE}"
        )
