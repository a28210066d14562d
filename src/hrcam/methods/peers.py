"""Peer CAM methods through pytorch-grad-cam (optional: the ``compare`` extra).

Every peer runs on the very model and inputs ours do: ``model.backbone`` wrapped in
:class:`TappedBackbone`, a module that returns the backbone's logits and passes the backbone
contract's feature maps through identity "taps" (``nn.Identity``), so grad-cam's hooks see
exactly the tensors the contract names:

- **last layer** (``tap.final``): the final features ``A`` (B, K, h, w) whose GAP feeds the FC
  layer — for ``efficientnet_lite0`` the output of the trunk's ``bn2`` (conv_head → BN →
  ReLU6); for the DenseNets ``A`` comes after a functional ReLU that no module outputs, which a
  hook on the module before it would miss;
- **fused** (LayerCAM, Jiang et al. 2021, "fuse several stages"): the skip features of strides
  ``S/4`` and ``S/2`` (``backbone.skip_info``; for ``efficientnet_lite0`` ``blocks.2`` at stride 8
  and ``blocks.4`` at 16) plus ``A``; with fewer stages, the two deepest skips.

Settings, the same for every peer: ``ClassifierOutputTarget(target)`` with the caller's target
class, ``aug_smooth=False``, ``eigen_smooth=False``, no ``reshape_transform``. The library
ReLUs each layer's map, min-max normalises it and resizes it to the input with ``cv2.resize``
(bilinear), and for several layers averages them and normalises again. EigenCAM ignores the
target (first principal component of ``A``, sign as the SVD gives it, as the library does).
Score-CAM (Wang et al. 2020) runs one image at a time (the library builds a ``(B, K, 3, H, W)``
tensor of masked inputs) with ``batch_size`` masked images per forward pass
(``scorecam:batch_size=64``).

**Gradients** (option ``backward``): ``minimal`` (default) computes only the gradients the method
reads: for the last layer the trunk runs without autograd and ``A`` is a leaf that requires
grad (the backward pass is GAP + FC); for fused layers the weights are frozen and the input
requires grad; gradient-free methods run without autograd. ``dL/dA`` is the same either way.
``full`` is the library's out-of-the-box use: the weights require grad and the backward pass
computes their gradients too (what a user calling pytorch-grad-cam on the model pays).
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import CAMMethod, register_method, reject_unknown

__all__ = [
    "GradCAMMethod",
    "TappedBackbone",
    "at_layer_resolution",
    "fused_skip_indices",
    "import_grad_cam",
]

_INSTALL_HINT = "install it, in the hrcam checkout, with `pip install -e '.[compare]'` (or `pip install grad-cam`)"


class MissingDependencyError(ImportError):
    """An optional dependency of a method is not installed; the message says how to install it."""


def import_grad_cam():
    """The ``pytorch_grad_cam`` module, or :class:`MissingDependencyError` saying how to install it."""
    try:
        import pytorch_grad_cam
        import pytorch_grad_cam.utils.model_targets  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(
            f"the peer CAM methods (Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM, EigenCAM, Score-CAM) "
            f"use pytorch-grad-cam, which could not be imported ({err}); {_INSTALL_HINT}"
        ) from err
    return pytorch_grad_cam


def grad_cam_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("grad-cam")
    except PackageNotFoundError:
        return "unknown"


def fused_skip_indices(backbone) -> list[int]:
    """Indices into ``backbone.skip_info`` of the skips fused with ``A``: strides S/4 and S/2.

    With no skip at those strides, the two deepest skips (fewer if the backbone has fewer).
    """
    stride = backbone.feature_stride
    infos = backbone.skip_info
    wanted = [i for i, s in enumerate(infos) if s.stride in (stride // 4, stride // 2)]
    if len(wanted) < 2:
        wanted = sorted(range(len(infos)), key=lambda i: infos[i].stride)[-2:]
    return sorted(wanted, key=lambda i: infos[i].stride)


class TappedBackbone(nn.Module):
    """The backbone's logits, with identity taps on ``A`` (``final``) and on each skip (``skips``).

    ``grad_from`` says where autograd starts: ``"params"`` (the backbone as it is),
    ``"features"`` (the trunk runs without autograd; ``A`` becomes a leaf requiring grad),
    ``"input"`` (a copy of ``x`` requires grad) or ``"none"`` (no autograd at all).
    """

    def __init__(self, backbone, *, grad_from: str = "params") -> None:
        super().__init__()
        if grad_from not in ("params", "features", "input", "none"):
            raise ValueError(
                f"grad_from must be params, features, input or none, got {grad_from!r}"
            )
        self.backbone = backbone
        self.final = nn.Identity()
        self.skips = nn.ModuleList(nn.Identity() for _ in backbone.skip_info)
        self.grad_from = grad_from

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_from in ("features", "none"):
            with torch.no_grad():
                features, skips = self.backbone.forward_features(x, return_skips=True)
            if self.grad_from == "features":
                features = features.detach().requires_grad_(True)
        else:
            if self.grad_from == "input" and torch.is_grad_enabled():
                x = x.detach().requires_grad_(True)
            features, skips = self.backbone.forward_features(x, return_skips=True)
        # The taps return their input itself, so a skip's hook sees the tensor the deeper stages used.
        for tap, skip in zip(self.skips, skips, strict=True):
            tap(skip)
        context = torch.no_grad() if self.grad_from == "none" else contextlib.nullcontext()
        with context:
            return self.backbone.forward_head(self.final(features))


@contextlib.contextmanager
def frozen_parameters(module: nn.Module, freeze: bool):
    """Parameters' ``requires_grad`` off inside the block (if ``freeze``); grads and flags restored."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        if freeze:
            for p in params:
                p.requires_grad_(False)
        yield
    finally:
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad


class LayerSetPeer(CAMMethod):
    """A peer library's method hooked on one of the layer sets ``last``, ``fused`` or ``all``."""

    family = "peer"

    def __init__(self, name: str, layers: str) -> None:
        super().__init__(name)
        if layers not in LAYER_SETS:
            raise ValueError(f"method {name!r}: layers must be one of {LAYER_SETS}, got {layers!r}")
        self.layers = layers

    def target_layers(self, wrapper: TappedBackbone) -> list[nn.Module]:
        """The taps hooked, in the order the forward pass reaches them (skips, then ``A``)."""
        return tap_layers(wrapper, self.layers)

    def layer_names(self, backbone) -> list[str]:
        return layer_names(backbone, self.layers)

    def check_model(self, model) -> None:
        if self.layers != "last" and not model.backbone.skip_info:
            raise ValueError(
                f"method {self.name!r} fuses skip features, and this backbone has none"
            )


class GradCAMMethod(LayerSetPeer):
    """One pytorch-grad-cam method on ``model.backbone`` (see the module docstring).

    Args:
        name: the spec (table row).
        cam_class: the pytorch-grad-cam class name, e.g. ``"GradCAM"``.
        layers: ``"last"`` (``A``), ``"fused"`` (skips at S/4, S/2 and ``A``) or ``"all"``
            (every skip and ``A``).
        backward: ``"minimal"`` or ``"full"`` (see the module docstring).
        batch_size: masked images per forward pass (Score-CAM only).
    """

    def __init__(
        self,
        name: str,
        cam_class: str,
        *,
        layers: str = "last",
        backward: str = "minimal",
        batch_size: int | None = None,
        uses_gradients: bool = True,
        per_image: bool = False,
        slow: bool = False,
        second_order: bool = False,
    ) -> None:
        super().__init__(name, layers)
        if backward not in ("minimal", "full"):
            raise ValueError(f"method {name!r}: backward must be minimal or full, got {backward!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"method {name!r}: batch_size must be >= 1, got {batch_size}")
        self._cam_cls = getattr(import_grad_cam(), cam_class)  # fails now if grad-cam is missing
        self.cam_class = cam_class
        self.backward = backward
        self.batch_size = batch_size
        self.uses_gradients = uses_gradients
        self.per_image = per_image
        self.slow = slow
        self.second_order = second_order  # ShapleyCAM: a Hessian-vector product

    def _grad_from(self, backbone) -> str:
        if self.backward == "full":
            return "params" if any(p.requires_grad for p in backbone.parameters()) else "input"
        if not self.uses_gradients:
            return "none"
        if self.second_order:
            # ShapleyCAM differentiates dy/dA once more (a Hessian-vector product): with a linear
            # head dy/dA depends on the weights only, so they must stay in the graph.
            return "params"
        return "features" if self.layers == "last" else "input"

    def _compute(self, model, batch, targets):
        return self._run(model, batch.x, targets, native=False)

    def _native(self, model, batch, targets):
        """The library's map before its resize to the input: at the (finest) target layer's grid."""
        return self._run(model, batch.x, targets, native=True)

    def _run(self, model, x, targets, *, native: bool):
        self.check_model(model)

        backbone = model.backbone
        wrapper = TappedBackbone(backbone, grad_from=self._grad_from(backbone))
        was_training = backbone.training
        chunks = [slice(i, i + 1) for i in range(x.shape[0])] if self.per_image else [slice(None)]
        outputs = []
        try:
            with (
                torch.inference_mode(False),
                torch.enable_grad(),
                frozen_parameters(backbone, self.backward == "minimal" and not self.second_order),
            ):
                inputs = x.clone() if x.is_inference() else x
                for chunk in chunks:
                    cam = self._build(wrapper)
                    try:
                        cam_targets = self._targets(wrapper, inputs[chunk], targets[chunk])
                        # Score-CAM draws a tqdm bar per image on stderr; keep the log readable.
                        quiet = (
                            contextlib.redirect_stderr(io.StringIO())
                            if self.slow
                            else contextlib.nullcontext()
                        )
                        size = (
                            _finest_size(wrapper, self.layers, inputs.shape[-2:])
                            if native
                            else None
                        )
                        with quiet, _at_size(cam, size):
                            out = self._call(cam, inputs[chunk], cam_targets)
                    finally:
                        _release(cam)  # not `with cam`: its __exit__ swallows IndexError
                    outputs.append(np.asarray(out, dtype=np.float32))
        finally:
            backbone.train(was_training)
        return torch.from_numpy(np.concatenate(outputs))

    def _build(self, wrapper: TappedBackbone):
        layers = self.target_layers(wrapper)
        if self.cam_class == "RefineCAM":  # the product of Grad-CAM++ maps of several layers
            return self._cam_cls(
                model=wrapper, target_layers=layers, base_method=import_grad_cam().GradCAMPlusPlus
            )
        cam = self._cam_cls(model=wrapper, target_layers=layers)
        if self.batch_size is not None:
            cam.batch_size = self.batch_size
        return cam

    def _targets(self, wrapper, x, targets):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

        if self.cam_class != "FinerCAM":
            return [ClassifierOutputTarget(int(t)) for t in targets]
        # FinerCAM's own choice of comparison classes, for the caller's target: the three
        # classes whose logits are nearest the target's, compared with alpha = 1.
        with torch.no_grad():
            logits = wrapper.backbone(x).float()
        out = []
        for row, t in zip(logits, targets.tolist(), strict=True):
            order = torch.argsort((row - row[t]).abs()).tolist()
            out.append(FinerWeightedTarget(t, [c for c in order if c != t][:3], 1.0))
        return out

    def _call(self, cam, x, targets):
        if self.cam_class in ("RefineCAM", "FinerCAM"):  # no aug_smooth argument
            return cam(x, targets)
        return cam(input_tensor=x, targets=targets, aug_smooth=False, eigen_smooth=False)

    def settings(self) -> dict[str, Any]:
        out = {
            "library": f"pytorch-grad-cam {grad_cam_version()}",
            "class": self.cam_class,
            "layers": self.layers,
            "targets": "ClassifierOutputTarget(target)"
            if self.cam_class != "EigenCAM"
            else "none (class-agnostic)",
            "aug_smooth": False,
            "eigen_smooth": False,
            "reshape_transform": None,
            "backward": self.backward,
            "resize": "per layer: ReLU, min-max to [0, 1], cv2.resize bilinear to the input; "
            "several layers: mean, then min-max again",
        }
        if self.batch_size is not None:
            out["batch_size"] = self.batch_size
        if self.per_image:
            out["images_per_call"] = 1
        return out


LAYER_SETS = ("last", "fused", "all")


def tap_layers(wrapper: TappedBackbone, layers: str) -> list[nn.Module]:
    """The taps of a layer set, in the order the forward pass reaches them (skips, then ``A``)."""
    if layers == "last":
        return [wrapper.final]
    skips = fused_skip_indices(wrapper.backbone) if layers == "fused" else range(len(wrapper.skips))
    return [wrapper.skips[i] for i in skips] + [wrapper.final]


def layer_names(backbone, layers: str) -> list[str]:
    """Readable names of a layer set's tapped features (for the results)."""
    names = []
    if layers != "last":
        skips = (
            fused_skip_indices(backbone) if layers == "fused" else range(len(backbone.skip_info))
        )
        for i in skips:
            info = backbone.skip_info[i]
            names.append(f"skip {info.name} (stride {info.stride}, {info.channels} channels)")
    names.append(
        f"final features A (stride {backbone.feature_stride}, {backbone.num_features} channels)"
    )
    return names


def _finest_size(wrapper: TappedBackbone, layers: str, size) -> tuple[int, int]:
    """(width, height) of the finest tapped layer's grid for an input of ``size`` (H, W)."""
    backbone = wrapper.backbone
    strides = [backbone.feature_stride]
    if layers != "last":
        skips = (
            fused_skip_indices(backbone) if layers == "fused" else range(len(backbone.skip_info))
        )
        strides += [backbone.skip_info[i].stride for i in skips]
    s = min(strides)
    return -(-int(size[1]) // s), -(-int(size[0]) // s)


def _base_cams(cam) -> list:
    """The BaseCAM objects behind a pytorch-grad-cam method (itself, or a meta-method's)."""
    if hasattr(cam, "base_cam_per_layer"):  # RefineCAM
        return list(cam.base_cam_per_layer)
    if hasattr(cam, "base_cam"):  # FinerCAM
        return [cam.base_cam]
    return [cam]


@contextlib.contextmanager
def _at_size(cam, size: tuple[int, int] | None):
    """Every base CAM scales its maps to ``size`` (width, height) instead of the input's."""
    if size is None:
        yield
        return
    bases = _base_cams(cam)
    for base in bases:
        base.get_target_width_height = lambda input_tensor, size=size: size
    try:
        yield
    finally:
        for base in bases:
            del base.get_target_width_height


def _release(cam) -> None:
    for base in _base_cams(cam):
        base.activations_and_grads.release()


@contextlib.contextmanager
def at_layer_resolution(cam):
    """Inside the block, a pytorch-grad-cam object returns its maps at the layer's own grid.

    pytorch-grad-cam resizes every map to the input before returning it; hrcam's
    :func:`~hrcam.guided_upsample` wants the map before that (7×7 for ResNet-50's ``layer4``
    at 224). With several target layers, the maps are combined at the finest layer's grid.

    Example::

        cam = GradCAM(model=model, target_layers=[model.layer4[-1]])
        with at_layer_resolution(cam):
            low = torch.from_numpy(cam(input_tensor=x, targets=targets))   # (B, 7, 7)
        sharp = hrcam.guided_upsample(low, images)                         # (B, 224, 224)
    """
    if not hasattr(cam, "get_target_width_height") or not hasattr(cam, "activations_and_grads"):
        raise TypeError(
            f"expected a pytorch-grad-cam CAM object (GradCAM(...), LayerCAM(...), …), got "
            f"{type(cam).__name__}"
        )
    cam.get_target_width_height = functools.partial(_finest_layer_size, cam)
    try:
        yield cam
    finally:
        del cam.get_target_width_height  # the class's own method again


def _finest_layer_size(cam, input_tensor) -> tuple[int, int]:
    """(width, height) of the largest activation the hooks saw (pytorch-grad-cam's order)."""
    shapes = [tuple(a.shape[-2:]) for a in cam.activations_and_grads.activations]
    height, width = max(shapes, key=lambda hw: hw[0] * hw[1])
    return int(width), int(height)


# name -> (class, layers, uses gradients, slow)
_PEERS: dict[str, tuple[str, str, bool, bool]] = {
    "gradcam": ("GradCAM", "last", True, False),
    "gradcampp": ("GradCAMPlusPlus", "last", True, False),
    "hirescam": ("HiResCAM", "last", True, False),
    "xgradcam": ("XGradCAM", "last", True, False),
    "layercam": ("LayerCAM", "last", True, False),
    "layercam_fused": ("LayerCAM", "fused", True, False),
    # RefineCAM ("How to Evaluate and Refine your CAM", 2026): the product of normalised
    # Grad-CAM++ maps of several layers; on every stage of the contract, and on LayerCAM fused's
    # three (which are also torchcam's example, ResNet's layer2-4).
    "refinecam": ("RefineCAM", "all", True, False),
    "refinecam_fused": ("RefineCAM", "fused", True, False),
    "finercam": ("FinerCAM", "last", True, False),
    "shapleycam": ("ShapleyCAM", "last", True, False),
    "eigencam": ("EigenCAM", "last", False, False),
    "scorecam": ("ScoreCAM", "last", False, True),
}

SCORECAM_BATCH_SIZE = 32


def _make_builder(key: str):
    cam_class, layers, uses_gradients, slow = _PEERS[key]

    def build(name: str, params: dict[str, str], **context) -> GradCAMMethod:
        allowed: Sequence[str] = ("backward", "batch_size") if slow else ("backward",)
        reject_unknown(name, params, allowed)
        batch_size = None
        if slow:
            try:
                batch_size = int(params.get("batch_size", SCORECAM_BATCH_SIZE))
            except ValueError:
                raise ValueError(f"method {name!r}: batch_size must be an integer") from None
        return GradCAMMethod(
            name,
            cam_class,
            layers=layers,
            backward=params.get("backward", "minimal"),
            batch_size=batch_size,
            uses_gradients=uses_gradients,
            per_image=slow,
            slow=slow,
            second_order=cam_class == "ShapleyCAM",
        )

    build.__doc__ = (
        f"pytorch-grad-cam's {cam_class} ({layers} layer{'s' if layers == 'fused' else ''})."
    )
    return build


for _key in _PEERS:
    register_method(_key)(_make_builder(_key))
