"""CAM methods behind one interface: ``method(model, x, targets) -> (B, H, W) maps``.

Ours (:mod:`.ours`): ``low_res``, ``high_res``, ``refined`` (with any refinement option, e.g.
``refined:focal_scope=local,merge=multiply``). Peers (:mod:`.peers`, through pytorch-grad-cam,
``pip install hrcam[compare]``): ``gradcam``, ``gradcampp``, ``hirescam``, ``layercam``,
``layercam_fused``, ``eigencam``, ``scorecam``.

Example::

    from hrcam.methods import create_method
    gradcam = create_method("gradcam")
    maps = gradcam(model, x, targets)         # (B, H, W) float32, CPU
"""

from . import ours, peers  # noqa: F401  (registers the builders)
from .base import (
    CAMMethod,
    create_method,
    list_methods,
    parse_method_list,
    parse_method_spec,
    register_method,
)
from .ours import HighResCAM, LowResCAM, RefinedCAM, SharedCAMsMethod
from .peers import GradCAMMethod, MissingDependencyError, TappedBackbone

__all__ = [
    "CAMMethod",
    "GradCAMMethod",
    "HighResCAM",
    "LowResCAM",
    "MissingDependencyError",
    "RefinedCAM",
    "SharedCAMsMethod",
    "TappedBackbone",
    "create_method",
    "list_methods",
    "parse_method_list",
    "parse_method_spec",
    "register_method",
]
