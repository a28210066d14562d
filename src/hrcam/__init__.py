"""hrcam: high-resolution Class Activation Maps for CNN classifiers.

The three parts of the framework (Tagaris, Sdraka & Stafylopatis, ICIP 2019):

- localization networks — :func:`create_backbone`, :func:`list_backbones` (``hrcam.backbones``);
- the expansion network — :class:`ExpansionNetwork` (``hrcam.expansion``), and its
  training-free alternative for any model and any CAM method, :func:`guided_upsample`
  (``hrcam.guided_upsampling``);
- the postprocessing pipeline — :func:`refine`, :func:`refine_batch` (``hrcam.postprocess``);

joined by :class:`HRCAM`, loaded with :func:`load_model`, or wrapped around a torchvision or
timm classifier you already have with :func:`from_model`.

The names load on first use, so ``import hrcam`` (and the ``hrcam`` command's ``--help``) does
not import torch until something needs it.
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
    "ExpansionNetwork": ".expansion",
    "guided_upsample": ".guided_upsampling",
    "ImageLoadError": ".io",
    "load_image": ".io",
    "CAMs": ".model",
    "HRCAM": ".model",
    "from_model": ".model",
    "upsample_cam": ".model",
    "RefineOptions": ".postprocess",
    "RefineSteps": ".postprocess",
    "refine": ".postprocess",
    "refine_batch": ".postprocess",
}
_SUBMODULES = ("viz", "metrics", "methods", "evaluation", "train", "postprocess", "backbones")

__all__ = [
    "HRCAM",
    "Backbone",
    "CAMs",
    "ExpansionNetwork",
    "FeatureInfo",
    "ImageLoadError",
    "RefineOptions",
    "RefineSteps",
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
    from .expansion import ExpansionNetwork
    from .guided_upsampling import guided_upsample
    from .io import ImageLoadError, load_image
    from .model import HRCAM, CAMs, from_model, upsample_cam
    from .postprocess import RefineOptions, RefineSteps, refine, refine_batch
