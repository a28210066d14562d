"""Peer CAM methods through torchcam, a second implementation (optional: the ``compare`` extra).

The same methods as :mod:`hrcam.methods.peers` from another library, so a table can show that a
method's score is the method's and not one library's: ``torchcam_cam``, ``torchcam_gradcam``,
``torchcam_gradcampp``, ``torchcam_xgradcam``, ``torchcam_layercam``, ``torchcam_refinecam``
(every stage, as ``refinecam``), ``torchcam_refinecam_fused`` (LayerCAM fused's three layers)
and ``torchcam_finercam``.

They hook the same taps of :class:`~hrcam.methods.peers.TappedBackbone` (the contract's ``A`` and
skips) and differ from pytorch-grad-cam only where the libraries do:

- torchcam returns each map at its layer's grid, ReLU'd (the gradient methods; CAM is not),
  min-max normalised; hrcam resizes it to the input bilinearly (``align_corners=False``, as
  ``cv2.resize`` does) and min-max normalises again;
- RefineCAM multiplies the per-layer maps at the finest layer's grid and resizes once;
  pytorch-grad-cam resizes each layer's map to the input first, then multiplies;
- FinerCAM uses torchcam's defaults, ``gamma=0.6`` and 3 references (pytorch-grad-cam's
  ``FinerWeightedTarget`` as hrcam uses it: ``alpha=1``, 3 references).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import register_method, reject_unknown
from .peers import LayerSetPeer, MissingDependencyError, TappedBackbone, frozen_parameters

__all__ = ["TorchCAMMethod", "import_torchcam"]


def import_torchcam():
    """The ``torchcam.methods`` module, or :class:`MissingDependencyError` saying how to install it."""
    try:
        import torchcam.methods
    except ImportError as err:
        raise MissingDependencyError(
            f"the torchcam_* methods use torchcam, which could not be imported ({err}); install "
            "it, in the hrcam checkout, with `pip install -e '.[compare]'` (or `pip install torchcam`)"
        ) from err
    return torchcam.methods


def torchcam_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torchcam")
    except PackageNotFoundError:
        return "unknown"


class TorchCAMMethod(LayerSetPeer):
    """One torchcam extractor on ``model.backbone`` (see the module docstring).

    Args:
        name: the spec (table row).
        cam_class: the torchcam class name, e.g. ``"GradCAMpp"``.
        layers: ``"last"``, ``"fused"`` or ``"all"``, as for the pytorch-grad-cam peers.
    """

    def __init__(self, name: str, cam_class: str, *, layers: str = "last") -> None:
        super().__init__(name, layers)
        self._module = import_torchcam()  # fails now if torchcam is missing
        self.cam_class = cam_class

    def _native(self, model, batch, targets):
        """torchcam's map as it returns it: at the (finest) target layer's grid, in [0, 1]."""
        return self._run(model, batch.x, targets)

    def _compute(self, model, batch, targets):
        maps = F.interpolate(
            self._run(model, batch.x, targets)[:, None],
            size=batch.x.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )[:, 0]
        low = maps.flatten(1).amin(1)[:, None, None]
        high = maps.flatten(1).amax(1)[:, None, None]
        return (maps - low) / (high - low + 1e-8)

    def _grad_from(self) -> str:
        if self.cam_class == "CAM":
            return "none"
        return "features" if self.layers == "last" else "input"

    def _extractor(self, wrapper: TappedBackbone, x: torch.Tensor):
        module = self._module
        layers = self.target_layers(wrapper)
        shape = tuple(x.shape[1:])
        if self.cam_class == "CAM":
            return module.CAM(wrapper, layers[0], fc_layer=wrapper.backbone.fc, input_shape=shape)
        if self.cam_class == "RefineCAM":
            return module.RefineCAM(wrapper, layers, shape, base_method=module.GradCAMpp)
        if self.cam_class == "FinerCAM":
            return module.FinerCAM(wrapper, layers[0], shape, base_method=module.GradCAM)
        return getattr(module, self.cam_class)(wrapper, layers[0], shape)

    def _run(self, model, x, targets) -> torch.Tensor:
        self.check_model(model)
        backbone = model.backbone
        wrapper = TappedBackbone(backbone, grad_from=self._grad_from())
        was_training = backbone.training
        try:
            with (
                torch.inference_mode(False),
                torch.enable_grad(),
                frozen_parameters(backbone, True),
            ):
                inputs = x.clone() if x.is_inference() else x
                with self._extractor(wrapper, inputs) as extractor:
                    scores = wrapper(inputs)
                    maps = extractor(class_idx=[int(t) for t in targets], scores=scores)
                    out = maps[0].detach().float()
        finally:
            backbone.train(was_training)
        return out

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "library": f"torchcam {torchcam_version()}",
            "class": self.cam_class,
            "layers": self.layers,
            "class_idx": "target",
            "resize": "torchcam's map (layer grid, min-max) → bilinear to the input "
            "(align_corners=False) → min-max",
        }
        if self.cam_class == "RefineCAM":
            out["base_method"] = "GradCAMpp"
        if self.cam_class == "FinerCAM":
            out.update(base_method="GradCAM", gamma=0.6, num_references=3)
        return out


# name -> (torchcam class, layers)
_PEERS: dict[str, tuple[str, str]] = {
    "torchcam_cam": ("CAM", "last"),
    "torchcam_gradcam": ("GradCAM", "last"),
    "torchcam_gradcampp": ("GradCAMpp", "last"),
    "torchcam_xgradcam": ("XGradCAM", "last"),
    "torchcam_layercam": ("LayerCAM", "last"),
    "torchcam_refinecam": ("RefineCAM", "all"),
    "torchcam_refinecam_fused": ("RefineCAM", "fused"),
    "torchcam_finercam": ("FinerCAM", "last"),
}


def _make_builder(key: str):
    cam_class, layers = _PEERS[key]

    def build(name: str, params: dict[str, str], **context) -> TorchCAMMethod:
        reject_unknown(name, params, ())
        return TorchCAMMethod(name, cam_class, layers=layers)

    build.__doc__ = f"torchcam's {cam_class} ({layers} layer{'s' if layers != 'last' else ''})."
    return build


for _key in _PEERS:
    register_method(_key)(_make_builder(_key))
