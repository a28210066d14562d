"""hrcam: high-resolution Class Activation Maps for CNN classifiers.

The three parts of the framework (Tagaris, Sdraka & Stafylopatis, ICIP 2019):

- localization networks — :func:`create_backbone`, :func:`list_backbones` (``hrcam.backbones``);
- the expansion network — :class:`ExpansionNetwork` (``hrcam.expansion``), and its
  training-free alternative for any model and any CAM method, :func:`guided_upsample`
  (``hrcam.guided_upsampling``);
- the postprocessing pipeline — :func:`refine`, :func:`refine_batch` (``hrcam.postprocess``);

joined by :class:`HRCAM`, loaded with :func:`load_model`, or wrapped around a torchvision or
timm classifier you already have with :func:`from_model`.
"""

__version__ = "0.1.0"

from .backbones import Backbone, FeatureInfo, create_backbone, list_backbones, register_backbone
from .checkpoint import export_model, load_model
from .expansion import ExpansionNetwork
from .guided_upsampling import guided_upsample
from .io import ImageLoadError, load_image
from .model import HRCAM, CAMs, from_model, upsample_cam
from .postprocess import RefineOptions, RefineSteps, refine, refine_batch

__all__ = [
    "CAMs",
    "HRCAM",
    "Backbone",
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


def __getattr__(name: str):
    # hrcam.viz and hrcam.metrics load on first use: matplotlib and the metrics stay out of
    # `import hrcam`.
    if name in ("viz", "metrics"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hrcam' has no attribute {name!r}")
