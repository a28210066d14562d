"""The paper's maps as CAM methods: ``low_res``, ``high_res`` and ``refined``.

- ``low_res`` — the localization network's CAM ``Σ_k w_ck A_k`` (paper section 2.1), upsampled
  bilinearly to the input (:func:`hrcam.upsample_cam`; :meth:`LowResCAM.native` gives the
  ``(B, h, w)`` map itself). It runs the backbone alone.
- ``high_res`` — the expansion network's high-resolution CAM (section 2.2); ``high_res:mode=paper``
  or ``high_res:mode=guided`` picks how it is made (see :class:`hrcam.HRCAM`), ``flip=1`` adds
  test-time mirroring (twice the cost); both work for ``refined`` too, as does
  ``preset=paper|hrcam`` (:meth:`RefineOptions.preset`) under the other options.
- ``refined`` — the postprocessing pipeline on both (section 2.3), with any
  :class:`~hrcam.postprocess.RefineOptions`: ``"refined:focal_scope=local,merge=multiply"``
  changes two options of the base options (``refine_options`` of :func:`create_method`, the
  paper's defaults unless given). Option values are parsed by the field's type; ``auto`` or
  ``none`` set an optional field to None. ``impl=numpy|torch`` picks the implementation (``numpy``:
  ``hrcam.refine``, one image at a time, its steps compiled by Numba; default: that on a CPU,
  the batched PyTorch one on a GPU, the faster of each).

``high_res`` and ``refined`` both start from :meth:`HRCAM.generate_cams`; they are
:class:`SharedCAMsMethod` s, so an evaluation can run ``generate_cams`` once per batch and hand the
result to each (:meth:`SharedCAMsMethod.from_cams`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..guided_upsampling import guided_upsample
from ..model import CAM_WEIGHTS, CAMs, upsample_cam
from ..postprocess import RefineOptions, refine, refine_batch
from .base import CAMMethod, parse_flag, register_method, reject_unknown

__all__ = [
    "GuidedUpsampledCAM",
    "HighResCAM",
    "LowResCAM",
    "MultiScaleCAM",
    "RefinedCAM",
    "SharedCAMsMethod",
]


class LowResCAM(CAMMethod):
    """The low-res CAM of the localization network, upsampled bilinearly to the input size.

    ``scale`` > 1 runs the network on the input enlarged that many times (bilinearly), so the
    CAM has ``scale``² as many cells (14×14 for a 224 input at ``scale=2``): the baseline
    CAMERAS (Jalwana et al., CVPR 2021) builds its multi-scale fusion on, at ``scale``² the cost.
    """

    def __init__(self, name: str, scale: float = 1.0, weights: str = "all") -> None:
        super().__init__(name)
        if not 1.0 <= scale <= 8.0:
            raise ValueError(f"method {name!r}: scale must lie in [1, 8], got {scale}")
        _check_weights(name, weights)
        self.scale = float(scale)
        self.weights = weights

    def _compute(self, model, x, targets):
        return upsample_cam(self.native(model, x, targets), x.shape[-2:]).float().cpu()

    @torch.inference_mode()
    def native(self, model, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The CAM at the feature resolution, ``(B, h, w)`` (e.g. 7×7 for 224×224 at stride 32)."""
        cam = model.low_res_cam(_enlarged(x, self.scale), targets, weights=self.weights)
        return cam.float().cpu()

    def settings(self) -> dict[str, Any]:
        out = {
            "map": "sum_k w_ck A_k over the final features A (backbone.cam)",
            "resize": "bilinear to the input size (upsample_cam, align_corners=False)",
        }
        if self.scale != 1:
            out["input"] = f"enlarged {self.scale:g}× bilinearly before the network"
        if self.weights != "all":
            out["weights"] = "only the FC weights above zero (max(w_ck, 0))"
        return out


class MultiScaleCAM(CAMMethod):
    """Mean of the CAMs of the input at several scales, on the largest scale's grid.

    For a GAP + FC network this is what CAMERAS (Jalwana et al., CVPR 2021) computes: it averages
    activations and gradients over scales, and the gradient of a logit with respect to ``A_k``
    is ``w_ck / (h w)``, so its map is the scale-averaged CAM up to a constant factor.
    """

    def __init__(self, name: str, scales: tuple[float, ...] = (1.0, 1.5, 2.0)) -> None:
        super().__init__(name)
        if not scales or min(scales) < 1 or max(scales) > 8:
            raise ValueError(f"method {name!r}: scales must lie in [1, 8], got {scales}")
        self.scales = tuple(float(s) for s in scales)

    def _compute(self, model, x, targets):
        return upsample_cam(self.native(model, x, targets), x.shape[-2:]).float().cpu()

    @torch.inference_mode()
    def native(self, model, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cams = [model.low_res_cam(_enlarged(x, s), targets).float() for s in self.scales]
        size = max((c.shape[-2:] for c in cams), key=lambda hw: hw[0] * hw[1])
        return torch.stack([upsample_cam(c, size) for c in cams]).mean(0).cpu()

    def settings(self) -> dict[str, Any]:
        return {
            "map": "mean over scales of the CAM of the enlarged input, on the finest grid",
            "scales": list(self.scales),
        }


def _enlarged(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` resized by ``scale`` (bilinear; the identity for 1)."""
    if scale == 1:
        return x
    size = [max(1, round(s * scale)) for s in x.shape[-2:]]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class GuidedUpsampledCAM(CAMMethod):
    """``base+guided``: another method's native map upsampled by :func:`hrcam.guided_upsample`.

    The base's map at its own resolution (:meth:`CAMMethod.native`: a peer's at its target
    layer's grid, not resized to the input), the image (the input un-normalised) as the guide.
    """

    def __init__(self, name: str, base: CAMMethod, options: dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.base = base
        self.options = dict(options or {})
        self.family = base.family if base.family == "ours" else f"{base.family}+guided"
        self.slow = base.slow

    def check_model(self, model) -> None:
        self.base.check_model(model)

    def _compute(self, model, x, targets):
        native = self.base.native(model, x, targets).float()
        with torch.inference_mode():
            image = model.unnormalize(x)
            return guided_upsample(native.to(x.device), image, **self.options).float().cpu()

    def settings(self) -> dict[str, Any]:
        settings = dict(self.base.settings())
        settings["upsampling"] = "hrcam.guided_upsample of the native map" + (
            f" ({', '.join(f'{k}={v}' for k, v in self.options.items())})" if self.options else ""
        )
        return settings

    def layer_names(self, backbone) -> list[str]:
        return self.base.layer_names(backbone) if hasattr(self.base, "layer_names") else []


class SharedCAMsMethod(CAMMethod):
    """A method computed from :meth:`HRCAM.generate_cams`; :meth:`_maps` does the rest.

    ``mode``, ``weights`` and ``flip`` say how its CAMs are made (None: as the model makes
    them). An evaluation runs ``generate_cams`` once per batch for every method that
    :meth:`matches` the model and hands the result to :meth:`from_cams`.
    """

    mode: str | None = None
    weights: str | None = None
    flip: bool = False

    def check_model(self, model) -> None:
        if model.expansion is None and (self.mode or model.high_res_mode) == "paper":
            raise ValueError(
                f"method {self.name!r} needs the paper's expansion network, and this model has "
                "none; use mode=guided (no training), or a model with one (a stage-2 checkpoint, "
                "or 'default')"
            )

    def matches(self, model) -> bool:
        """Whether the model's own ``generate_cams(x, targets)`` gives this method's CAMs."""
        return (
            not self.flip
            and self.mode in (None, model.high_res_mode)
            and self.weights in (None, model.cam_weights)
        )

    def _compute(self, model, x, targets):
        self.check_model(model)
        with _configured(model, self.mode, self.weights), torch.inference_mode():
            cams = model.generate_cams(x, targets, flip=self.flip)
            return self._maps(cams)

    def from_cams(self, model, x: torch.Tensor, targets: torch.Tensor, cams: CAMs) -> torch.Tensor:
        """The ``(B, H, W)`` float32 CPU maps from the model's ``generate_cams(x, targets)``.

        When the method does not :meth:`match <matches>` the model, its own CAMs are made again.
        """
        if not self.matches(model):
            return self._compute(model, x, targets)
        return self._maps(cams)

    def _maps(self, cams: CAMs) -> torch.Tensor:
        raise NotImplementedError


def _check_weights(name: str, weights: str | None) -> None:
    if weights not in (None, *CAM_WEIGHTS):
        raise ValueError(f"method {name!r}: weights must be all or positive, got {weights!r}")


@contextlib.contextmanager
def _configured(model, mode: str | None, weights: str | None):
    """The model with its high-res mode and CAM weights set for the block (then restored)."""
    previous = (model.high_res_mode, model.cam_weights)
    try:
        model.high_res_mode = mode or previous[0]
        model.cam_weights = weights or previous[1]
        yield model
    finally:
        model.high_res_mode, model.cam_weights = previous


class HighResCAM(SharedCAMsMethod):
    """The expansion network's high-res CAM, at the input size already.

    ``mode`` (``"paper"`` or ``"guided"``) and ``weights`` override the model's
    :attr:`HRCAM.high_res_mode` and :attr:`HRCAM.cam_weights`; ``flip`` adds test-time mirroring.
    """

    def __init__(
        self, name: str, mode: str | None = None, flip: bool = False, weights: str | None = None
    ) -> None:
        super().__init__(name)
        if mode not in (None, "paper", "guided"):
            raise ValueError(f"method {name!r}: mode must be paper or guided, got {mode!r}")
        _check_weights(name, weights)
        self.mode = mode
        self.flip = flip
        self.weights = weights

    def _maps(self, cams):
        return cams.high_res.float().cpu()

    def settings(self) -> dict[str, Any]:
        described = {
            "paper": "the expansion network's class map (the paper's high-res CAM)",
            "guided": "hrcam.guided_upsample of the low-res CAM (the default high-res CAM)",
        }
        return {
            "map": "generate_cams().high_res of the target",
            "mode": described.get(self.mode, "the model's high_res_mode"),
            "weights": self.weights or "the model's cam_weights",
            "flip": self.flip,
        }


class RefinedCAM(SharedCAMsMethod):
    """The refined CAM (``steps.refined``) of the postprocessing pipeline, at the input size.

    Args:
        name: the spec (table row).
        options: the pipeline's options.
        impl: ``"numpy"`` (:func:`~hrcam.postprocess.refine`, image by image), ``"torch"``
            (:func:`~hrcam.postprocess.refine_batch`) or ``"auto"`` (one image at a time on a CPU).
    """

    def __init__(
        self,
        name: str,
        options: RefineOptions | None = None,
        *,
        impl: str = "auto",
        mode: str | None = None,
        flip: bool = False,
        weights: str | None = None,
    ) -> None:
        super().__init__(name)
        _check_weights(name, weights)
        self.weights = weights
        if impl not in ("auto", "numpy", "torch"):
            raise ValueError(f"method {name!r}: impl must be auto, numpy or torch, got {impl!r}")
        if mode not in (None, "paper", "guided"):
            raise ValueError(f"method {name!r}: mode must be paper or guided, got {mode!r}")
        self.options = options or RefineOptions.default()
        self.impl = impl
        self.mode = mode
        self.flip = flip

    def _maps(self, cams):
        low, high = cams.low_res, cams.high_res
        use_torch = self.impl == "torch" or (self.impl == "auto" and low.device.type != "cpu")
        if use_torch:
            return refine_batch(low, high, options=self.options).refined.float().cpu()
        low_np = low.float().cpu().numpy()
        high_np = high.float().cpu().numpy()
        refined = [
            refine(low_np[i], high_np[i], options=self.options).refined for i in range(len(low_np))
        ]
        return torch.from_numpy(np.stack(refined).astype(np.float32, copy=False))

    def settings(self) -> dict[str, Any]:
        return {
            "options": dataclasses.asdict(self.options),
            "impl": self.impl,
            "mode": self.mode,
            "flip": self.flip,
            "weights": self.weights,
        }


# -- builders -------------------------------------------------------------------------------------


@register_method("low_res")
def _low_res(name: str, params: dict[str, str], **context) -> LowResCAM:
    reject_unknown(name, params, ("scale", "weights"))
    scale = _number(name, "scale", params.get("scale", "1"))
    return LowResCAM(name, scale=scale, weights=params.get("weights", "all"))


def _number(name: str, key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"method {name!r}: {key}={text!r} is not a number") from None


@register_method("high_res")
def _high_res(name: str, params: dict[str, str], **context) -> HighResCAM:
    reject_unknown(name, params, ("mode", "flip", "weights"))
    flip = parse_flag(name, "flip", params.get("flip", "0"))
    return HighResCAM(name, mode=params.get("mode"), flip=flip, weights=params.get("weights"))


@register_method("refined")
def _refined(
    name: str, params: dict[str, str], *, refine_options: RefineOptions | None = None, **context
) -> RefinedCAM:
    fields = {f.name for f in dataclasses.fields(RefineOptions)}
    reject_unknown(name, params, sorted(fields) + ["impl", "mode", "flip", "preset", "weights"])
    params = dict(params)
    impl = params.pop("impl", "auto")
    mode = params.pop("mode", None)
    weights = params.pop("weights", None)
    flip = parse_flag(name, "flip", params.pop("flip", "0"))
    if "preset" in params:
        refine_options = RefineOptions.preset(params.pop("preset"))
    hints = typing.get_type_hints(RefineOptions)
    changes = {key: _parse_value(name, key, value, hints[key]) for key, value in params.items()}
    return RefinedCAM(
        name,
        (refine_options or RefineOptions.default()).replace(**changes),
        impl=impl,
        mode=mode,
        flip=flip,
        weights=weights,
    )


@register_method("multiscale")
def _multiscale(name: str, params: dict[str, str], **context) -> MultiScaleCAM:
    reject_unknown(name, params, ("scales",))
    text = params.get("scales", "1/1.5/2")
    return MultiScaleCAM(name, tuple(_number(name, "scales", v) for v in text.split("/")))


def _parse_value(name: str, key: str, text: str, annotation) -> Any:
    """A spec's string value as the RefineOptions field's type (``auto``/``none`` → None)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) < len(
        typing.get_args(annotation)
    )
    kind = args[0] if optional and len(args) == 1 else annotation
    if optional and text.lower() in ("auto", "none"):
        return None
    try:
        return kind(text) if kind in (int, float) else text
    except ValueError:
        raise ValueError(f"method {name!r}: {key}={text!r} is not a {kind.__name__}") from None
