"""CAM methods behind one interface: ``method(model, x, targets) -> (B, H, W) maps``.

Ours (:mod:`.ours`): ``low_res`` (``low_res:scale=2``: of the enlarged input), ``high_res``,
``refined`` (with any refinement option, e.g. ``refined:focal_scope=local,merge=multiply``),
``multiscale`` (CAMs at 1, 1.5, 2×, averaged). Any of them, or any peer, followed by ``+guided``:
its map at its own resolution upsampled by :func:`hrcam.guided_upsample`.

Peers (the ``compare`` extra), through pytorch-grad-cam (:mod:`.peers`): ``gradcam``,
``gradcampp``, ``hirescam``, ``xgradcam``, ``layercam``, ``layercam_fused``, ``refinecam``,
``refinecam_fused``, ``finercam``, ``shapleycam``, ``eigencam``, ``scorecam``; and through
torchcam (:mod:`.torchcam_peers`), a second implementation: ``torchcam_cam``,
``torchcam_gradcam``, ``torchcam_gradcampp``, ``torchcam_xgradcam``, ``torchcam_layercam``,
``torchcam_refinecam``, ``torchcam_refinecam_fused``, ``torchcam_finercam``.

Example::

    from hrcam.methods import create_method
    gradcam = create_method("gradcam")
    maps = gradcam(model, x, targets)         # (B, H, W) float32, CPU
"""

from . import ours, peers, torchcam_peers  # noqa: F401  (registers the builders)
from .base import (
    CAMMethod,
    create_method,
    list_methods,
    parse_method_list,
    parse_method_spec,
    register_method,
)
from .ours import (
    GuidedUpsampledCAM,
    HighResCAM,
    LowResCAM,
    MultiScaleCAM,
    RefinedCAM,
    SharedCAMsMethod,
)
from .peers import GradCAMMethod, MissingDependencyError, TappedBackbone, at_layer_resolution
from .torchcam_peers import TorchCAMMethod

__all__ = [
    "CAMMethod",
    "GradCAMMethod",
    "GuidedUpsampledCAM",
    "HighResCAM",
    "LowResCAM",
    "MissingDependencyError",
    "MultiScaleCAM",
    "RefinedCAM",
    "SharedCAMsMethod",
    "TappedBackbone",
    "TorchCAMMethod",
    "at_layer_resolution",
    "create_method",
    "list_methods",
    "parse_method_list",
    "parse_method_spec",
    "register_method",
]
