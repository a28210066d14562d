"""hrcam: high-resolution Class Activation Maps for CNN classifiers.

One call from images to the refined CAM::

    import hrcam
    explainer = hrcam.load_model("default")       # EfficientNet-Lite0, offline
    explanation = explainer.explain("cat.jpg")    # low_res, high_res, refined, probabilities

The three parts of the framework (Tagaris, Sdraka & Stafylopatis, ICIP 2019), each a package:

1. localization networks — :class:`Backbone`, :func:`create_backbone` (``hrcam.backbones``),
   or a torchvision / timm classifier you have, wrapped by :func:`from_model`;
2. the high-res CAM — an upsampler (``hrcam.upsample``): the paper's
   :class:`ExpansionNetwork` or the training-free :class:`GuidedUpsampler`, whose
   :func:`guided_upsample` also takes any CAM method's map;
3. the refinement — :func:`refine`, :func:`refine_batch`, :class:`RefineOptions`
   (``hrcam.postprocess``);

joined by :class:`Explainer` (``hrcam.explainer``), which :func:`load_model` and
:func:`from_model` return.

The names load on first use, so ``import hrcam`` (and every ``hrcam … --help``) does not
import torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Backbone": ".backbones",
    "FeatureInfo": ".backbones",
    "create_backbone": ".backbones",
    "list_backbones": ".backbones",
    "register_backbone": ".backbones",
    "export_model": ".checkpoint",
    "load_model": ".checkpoint",
    "CAMs": ".explainer",
    "ClassScore": ".explainer",
    "Explainer": ".explainer",
    "Explanation": ".explainer",
    "ImageBatch": ".explainer",
    "from_model": ".explainer",
    "ImageLoadError": ".io",
    "load_image": ".io",
    "RefineOptions": ".postprocess",
    "RefineSteps": ".postprocess",
    "refine": ".postprocess",
    "refine_batch": ".postprocess",
    "ExpansionNetwork": ".upsample",
    "GuidedUpsampler": ".upsample",
    "Upsampler": ".upsample",
    "guided_upsample": ".upsample",
    "upsample_cam": ".upsample",
}
_SUBMODULES = (
    "backbones",
    "evaluation",
    "explainer",
    "methods",
    "metrics",
    "postprocess",
    "train",
    "upsample",
    "viz",
)

__all__ = [
    "Backbone",
    "CAMs",
    "ClassScore",
    "ExpansionNetwork",
    "Explainer",
    "Explanation",
    "FeatureInfo",
    "GuidedUpsampler",
    "ImageBatch",
    "ImageLoadError",
    "RefineOptions",
    "RefineSteps",
    "Upsampler",
    "__version__",
    "create_backbone",
    "export_model",
    "from_model",
    "guided_upsample",
    "list_backbones",
    "load_image",
    "load_model",
    "refine",
    "refine_batch",
    "register_backbone",
    "upsample_cam",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hrcam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .backbones import Backbone, FeatureInfo, create_backbone, list_backbones, register_backbone
    from .checkpoint import export_model, load_model
    from .explainer import CAMs, ClassScore, Explainer, Explanation, ImageBatch, from_model
    from .io import ImageLoadError, load_image
    from .postprocess import RefineOptions, RefineSteps, refine, refine_batch
    from .upsample import (
        ExpansionNetwork,
        GuidedUpsampler,
        Upsampler,
        guided_upsample,
        upsample_cam,
    )
