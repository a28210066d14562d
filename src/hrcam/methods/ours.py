"""The paper's maps as CAM methods: ``low_res``, ``high_res`` and ``refined``.

- ``low_res`` — the localization network's CAM ``Σ_k w_ck A_k`` (paper section 2.1), upsampled
  bilinearly to the input (:func:`hrcam.upsample_cam`; :meth:`LowResCAM.native` gives the
  ``(B, h, w)`` map itself). It runs the backbone alone.
- ``high_res`` — the explainer's high-resolution CAM (section 2.2); ``high_res:mode=guided``,
  ``boundary``, ``paper`` or ``hed`` picks the upsampler, ``weights=all|positive`` the CAM
  weights of its guided map (the guided upsampler's, or the one a walk starts from), ``mix``
  (0 to 1) the boundary high-res CAM's share of the guided map (0: the walked map alone),
  ``flip=1`` adds test-time mirroring (twice the cost); all four work for ``refined`` too, as
  does ``preset=paper|hrcam`` (:meth:`RefineOptions.preset`) under the other options.
- ``refined`` — the refinement (section 2.3) of both, with any
  :class:`~hrcam.postprocess.RefineOptions`: ``"refined:focal_scope=local,merge=multiply"``
  changes two options of the base options (``refine_options`` of :func:`create_method`, else
  hrcam's preset); with no option the method uses the explainer's own. Option values are parsed by the field's type; ``auto`` or
  ``none`` set an optional field to None.

Each runs :class:`hrcam.Explainer` with its own settings (``explainer.replace(...)``): the maps
are the one call's. ``high_res`` and ``refined`` are :class:`SharedCAMsMethod` s, so an
evaluation runs :meth:`Explainer.cams` once per batch and hands the result to each whose
settings match (:meth:`SharedCAMsMethod.from_cams`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import torch
import torch.nn.functional as F

from ..postprocess import RefineOptions
from ..upsample import GuidedUpsampler, create_upsampler, guided_upsample, upsample_cam
from ..upsample.guided import CAM_WEIGHTS
from .base import (
    CAMMethod,
    canonical_spec,
    create_method,
    parse_flag,
    register_method,
    register_upsampled,
    reject_unknown,
)

__all__ = [
    "GuidedUpsampledCAM",
    "HighResCAM",
    "LowResCAM",
    "MultiScaleCAM",
    "RefinedCAM",
    "SharedCAMsMethod",
]


def _upsampler_name(upsampler) -> str | None:
    return upsampler.describe().get("name")


def _low_res_cam(explainer, x: torch.Tensor, targets: torch.Tensor, weights: str = "all"):
    """The backbone's CAM ``(B, h, w)`` of ``targets`` for normalised inputs ``x``, run in the
    explainer's chunks (the same bits as its low-res CAMs)."""
    backbone = explainer.backbone
    return torch.cat(
        [
            backbone.cam(backbone.forward_features(x[rows]), targets[rows], weights=weights)[:kept]
            for rows, kept in explainer.chunks(x)
        ]
    )


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
        if weights not in CAM_WEIGHTS:
            raise ValueError(f"method {name!r}: weights must be all or positive, got {weights!r}")
        self.scale = float(scale)
        self.weights = weights

    def _compute(self, explainer, batch, targets):
        low = self._native(explainer, batch, targets)
        return upsample_cam(low, tuple(batch.x.shape[-2:])).float().cpu()

    @torch.inference_mode()
    def _native(self, explainer, batch, targets: torch.Tensor) -> torch.Tensor:
        """The CAM at the feature resolution, ``(B, h, w)`` (e.g. 7×7 for 224×224 at stride 32)."""
        x = _enlarged(batch.x, self.scale)
        return _low_res_cam(explainer, x, targets, self.weights).float().cpu()

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

    def _compute(self, explainer, batch, targets):
        low = self._native(explainer, batch, targets)
        return upsample_cam(low, tuple(batch.x.shape[-2:])).float().cpu()

    @torch.inference_mode()
    def _native(self, explainer, batch, targets: torch.Tensor) -> torch.Tensor:
        cams = [
            _low_res_cam(explainer, _enlarged(batch.x, s), targets).float() for s in self.scales
        ]
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
    layer's grid, not resized to the input), the images' pixels as the guide.
    """

    def __init__(self, name: str, base: CAMMethod, options: dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.base = base
        self.options = dict(options or {})
        self.family = base.family if base.family == "ours" else f"{base.family}+guided"
        self.slow = base.slow

    def check_model(self, model) -> None:
        self.base.check_model(model)

    def _compute(self, explainer, batch, targets):
        native = self.base.native(explainer, batch, targets).float()
        with torch.inference_mode():
            maps = guided_upsample(native.to(batch.x.device), batch.pixels, **self.options)
            return maps.float().cpu()

    def settings(self) -> dict[str, Any]:
        settings = dict(self.base.settings())
        settings["upsampling"] = "hrcam.guided_upsample of the native map" + (
            f" ({', '.join(f'{k}={v}' for k, v in self.options.items())})" if self.options else ""
        )
        return settings

    def layer_names(self, backbone) -> list[str]:
        return self.base.layer_names(backbone)


class SharedCAMsMethod(CAMMethod):
    """A method made by :meth:`hrcam.Explainer.cams`; :meth:`_maps` does the rest.

    ``mode`` (``"paper"``/``"guided"``), ``weights`` (the guided upsampler's CAM weights) and
    ``flip`` say how its CAMs are made; None keeps the explainer's own. An evaluation runs
    ``explainer.cams`` once per batch for every method that :meth:`matches` the explainer and
    hands the result to :meth:`from_cams`.
    """

    shares_cams = True
    mode: str | None = None
    weights: str | None = None
    flip: bool | None = None
    mix: float | None = None

    def _settings(self, name: str, mode, weights, flip, mix: float | None = None) -> None:
        if mode not in (None, "paper", "guided", "boundary", "hed"):
            raise ValueError(
                f"method {name!r}: mode must be guided, boundary, paper or hed, got {mode!r}"
            )
        if weights not in (None, *CAM_WEIGHTS):
            raise ValueError(f"method {name!r}: weights must be all or positive, got {weights!r}")
        if mode == "paper" and weights is not None:
            raise ValueError(
                f"method {name!r}: weights= sets the guided upsampler's CAM weights; the paper's "
                "high-res CAM weights its maps by every FC weight"
            )
        if mix is not None and not 0 <= mix <= 1:
            raise ValueError(f"method {name!r}: mix must lie in [0, 1], got {mix:g}")
        if mix is not None and mode not in (None, "boundary"):
            raise ValueError(
                f"method {name!r}: mix= sets the share of the guided map in the boundary "
                f"high-res CAM; mode={mode} has none"
            )
        self.mode, self.weights, self.flip, self.mix = mode, weights, flip, mix

    def check_model(self, explainer) -> None:
        self.explainer_for(explainer)  # raises when the explainer cannot make this method's CAMs

    def explainer_for(self, explainer):
        """``explainer`` with this method's settings (the same explainer when they match)."""
        changes: dict[str, Any] = {}
        upsampler = self._upsampler(explainer)
        if upsampler is not explainer.upsampler:
            changes["upsampler"] = upsampler
        if self.flip is not None and self.flip != explainer.flip:
            changes["flip"] = self.flip
        changes.update(self._more_changes(explainer))
        return explainer.replace(**changes) if changes else explainer

    def _more_changes(self, explainer) -> dict[str, Any]:
        return {}

    def _upsampler(self, explainer):
        if self.mode is None and self.weights is None and self.mix is None:
            return explainer.upsampler
        return self._mixed(self._weighted(self._by_mode(explainer)))

    def _mixed(self, upsampler):
        """``upsampler`` with ``mix`` as the boundary upsampler's share of the guided map."""
        if self.mix is None:
            return upsampler
        if _upsampler_name(upsampler) != "boundary":
            raise ValueError(
                f"method {self.name!r}: mix= sets the share of the guided map in the boundary "
                f"high-res CAM, and this explainer's is {_upsampler_name(upsampler)}; add "
                "mode=boundary (a model whose expansion network has a boundary head)"
            )
        return upsampler if upsampler.mix == self.mix else upsampler.replace(mix=self.mix)

    def _by_mode(self, explainer):
        """The upsampler ``mode`` names (the explainer's own when it is that one, or no mode)."""
        current = explainer.upsampler
        if self.mode is None:
            return current
        if self.mode == "paper":
            try:
                return create_upsampler("paper", expansion=explainer.expansion)
            except ValueError:
                raise ValueError(
                    f"method {self.name!r} needs the paper's expansion network, and this model "
                    "has none; use mode=guided (no training), or a model with one (a stage-2 "
                    "checkpoint, or 'default')"
                ) from None
        if _upsampler_name(current) == self.mode:
            return current
        if self.mode == "boundary":
            try:
                return create_upsampler("boundary", expansion=explainer.expansion)
            except ValueError:
                raise ValueError(
                    f"method {self.name!r} needs a model whose expansion network has a boundary "
                    "head (the default model, or one trained by `hrcam train-expansion "
                    "--objective boundary-distill`); use mode=guided or mode=hed"
                ) from None
        return create_upsampler(self.mode)

    def _weighted(self, upsampler):
        """``upsampler`` with ``weights`` as the CAM weights of its guided map: the guided
        upsampler's own, or the one a boundary or HED walk starts from."""
        if self.weights is None:
            return upsampler
        if isinstance(upsampler, GuidedUpsampler):
            if upsampler.cam_weights == self.weights:
                return upsampler
            return dataclasses.replace(upsampler, cam_weights=self.weights)
        guided = getattr(upsampler, "guided", None)
        if not isinstance(guided, GuidedUpsampler):
            raise ValueError(
                f"method {self.name!r}: weights= sets the CAM weights of a guided map, and "
                f"this explainer's high-res CAM ({_upsampler_name(upsampler)}) has none; add "
                "mode=guided"
            )
        if guided.cam_weights == self.weights:
            return upsampler
        return upsampler.replace(guided=dataclasses.replace(guided, cam_weights=self.weights))

    def matches(self, explainer) -> bool:
        """Whether ``explainer.cams`` gives this method's CAMs (same upsampler and flip)."""
        return self._upsampler(explainer) == explainer.upsampler and self.flip in (
            None,
            explainer.flip,
        )

    def _compute(self, explainer, batch, targets):
        own = self.explainer_for(explainer)
        return self._maps(own, own.cams(batch, targets), batch)

    def from_cams(self, explainer, batch, targets: torch.Tensor, cams) -> torch.Tensor:
        """The ``(B, H, W)`` float32 CPU maps from ``explainer.cams(batch, targets)``.

        When the method does not :meth:`match <matches>` the explainer, its own CAMs are made.
        """
        if not self.matches(explainer):
            return self._compute(explainer, batch, targets)
        return self._maps(self.explainer_for(explainer), cams, batch)

    def _maps(self, explainer, cams, batch) -> torch.Tensor:
        raise NotImplementedError

    def _described(self) -> dict[str, Any]:
        """The settings it sets itself; the explainer's own stand for the others."""
        own = {"mode": self.mode, "weights": self.weights, "flip": self.flip, "mix": self.mix}
        return {k: v for k, v in own.items() if v is not None} or {"settings": "the explainer's"}


class HighResCAM(SharedCAMsMethod):
    """The explainer's high-res CAM, at the input size already (``mode``, ``weights``,
    ``flip`` and ``mix`` as :class:`SharedCAMsMethod`)."""

    def __init__(
        self,
        name: str,
        mode: str | None = None,
        flip: bool | None = None,
        weights: str | None = None,
        mix: float | None = None,
    ) -> None:
        super().__init__(name)
        self._settings(name, mode, weights, flip, mix)

    def _maps(self, explainer, cams, batch):
        return cams.high_res.float().cpu()

    def settings(self) -> dict[str, Any]:
        return {"map": "Explainer.cams().high_res of the target", **self._described()}


class RefinedCAM(SharedCAMsMethod):
    """The refined CAM of the explainer, at the input size, with ``options`` (None: the
    explainer's own refinement options); ``mode``, ``weights``, ``flip`` and ``mix`` as
    :class:`SharedCAMsMethod`."""

    def __init__(
        self,
        name: str,
        options: RefineOptions | None = None,
        *,
        mode: str | None = None,
        flip: bool | None = None,
        weights: str | None = None,
        mix: float | None = None,
    ) -> None:
        super().__init__(name)
        self._settings(name, mode, weights, flip, mix)
        self.options = options

    def _more_changes(self, explainer) -> dict[str, Any]:
        if self.options is None or self.options == explainer.refine_options:
            return {}
        return {"refine_options": self.options}

    def _maps(self, explainer, cams, batch):
        return explainer.refine(cams, batch).refined.float().cpu()

    def settings(self) -> dict[str, Any]:
        if self.options is None:
            return {"refinement": "the explainer's options", **self._described()}
        return {"options": dataclasses.asdict(self.options), **self._described()}


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


def _flip(name: str, params: dict[str, str]) -> bool | None:
    return parse_flag(name, "flip", params.pop("flip")) if "flip" in params else None


@register_method("high_res")
def _high_res(name: str, params: dict[str, str], **context) -> HighResCAM:
    reject_unknown(name, params, ("mode", "flip", "weights", "mix"))
    params = dict(params)
    flip = _flip(name, params)
    mix = _number(name, "mix", params["mix"]) if "mix" in params else None
    return HighResCAM(
        name, mode=params.get("mode"), flip=flip, weights=params.get("weights"), mix=mix
    )


@register_method("refined")
def _refined(
    name: str, params: dict[str, str], *, refine_options: RefineOptions | None = None, **context
) -> RefinedCAM:
    fields = {f.name for f in dataclasses.fields(RefineOptions)}
    reject_unknown(name, params, sorted(fields) + ["mode", "flip", "preset", "weights", "mix"])
    params = dict(params)
    mode = params.pop("mode", None)
    weights = params.pop("weights", None)
    mix = _number(name, "mix", params.pop("mix")) if "mix" in params else None
    flip = _flip(name, params)
    if "preset" in params:
        refine_options = RefineOptions.preset(params.pop("preset"))
    hints = typing.get_type_hints(RefineOptions)
    changes = {key: _parse_value(name, key, value, hints[key]) for key, value in params.items()}
    if changes:
        refine_options = (refine_options or RefineOptions()).replace(**changes)
    return RefinedCAM(name, refine_options, mode=mode, flip=flip, weights=weights, mix=mix)


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


UPSAMPLER_OPTIONS = ("colour_sigma", "spatial_sigma", "coarse_to_fine", "stride", "lattice_filter")


@register_upsampled("guided")
def _guided(base_name: str, upsampler: str, params: dict[str, str], context) -> GuidedUpsampledCAM:
    """``base+guided``: the base method's native map through :func:`hrcam.guided_upsample`
    (the upsampler's options go to it, the rest to the base method)."""
    given = dict(params)
    options: dict[str, Any] = {}
    for key in UPSAMPLER_OPTIONS:
        if key not in params:
            continue
        text = params.pop(key)
        if key in ("coarse_to_fine", "lattice_filter"):
            options[key] = parse_flag(base_name, key, text)
        elif key == "stride":
            if not (text.isdigit() and int(text) >= 1):
                raise ValueError(f"stride={text!r}: the stride must be an integer >= 1")
            options[key] = int(text)
        else:
            try:
                options[key] = float(text)
            except ValueError:
                raise ValueError(f"{key}={text!r} is not a number") from None
    base = create_method(canonical_spec(base_name, params), **context)
    return GuidedUpsampledCAM(canonical_spec(f"{base_name}+{upsampler}", given), base, options)
