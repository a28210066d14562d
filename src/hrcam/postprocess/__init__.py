"""Part 3 of the framework: the refinement of a low-res and a high-res CAM (paper section 2.3).

- :func:`refine` — one image: every step in :class:`RefineSteps`, ``steps.refined`` the
  refined CAM. It runs :mod:`.compiled` (the steps as Numba loops), or :mod:`.reference`
  (NumPy, the readable specification, one pure function per step) where Numba is missing; the
  two agree bit for bit. :mod:`.backend` says which (``one_image``), and holds each step
  function (``one_image.blur_cam`` ... ``one_image.mask_image``).
- :func:`refine_batch` (:mod:`.batched`) — PyTorch, a batch at once on a CPU or a GPU, the
  same steps and results.
- A volume's maps (``(d, h, w)`` and ``(D, H, W)``: CT, MRI) go to :mod:`.volume` (NumPy and
  SciPy, the steps in 3-D): ``refine`` sends them there.
- :class:`RefineOptions` — every option, immutable; ``RefineOptions()`` is hrcam's preset, the
  refined CAM hrcam makes; ``RefineOptions.preset("paper")`` the paper's.

Example::

    from hrcam.postprocess import refine
    steps = refine(low_res_cam, high_res_cam, image)
    refined_cam = steps.refined

The names load on first use, so importing the package (or its options, for a command's
``--help``) needs neither torch nor Numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS = {
    "RefineOptions": ".options",
    "RefineSteps": ".steps",
    "refine_batch": ".batched",
    "one_image": ".backend",
}
_SUBMODULES = (
    "backend",
    "batched",
    "compiled",
    "options",
    "pipeline",
    "reference",
    "steps",
    "volume",
)

__all__ = ["RefineOptions", "RefineSteps", "one_image", "refine", "refine_batch"]


def __getattr__(name: str) -> Any:
    if name == "refine":
        value = importlib.import_module(".backend", __name__).refine
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'hrcam.postprocess' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])


if TYPE_CHECKING:
    from .backend import one_image, refine
    from .batched import refine_batch
    from .options import RefineOptions
    from .steps import RefineSteps
