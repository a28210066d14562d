"""Postprocessing: combine a low-res and a high-res CAM into the refined CAM (paper section 2.3).

Three implementations with one meaning:

- :mod:`.reference`: NumPy (OpenCV labels components), one image at a time; the readable
  reference, one pure function per step.
- :mod:`.compiled`: the same steps compiled with Numba, one image at a time, bit for bit the
  reference's results in about a third of its time (3.3 -> 1.0 ms at 224x224,
  ``benchmarks/bench_refine.py``). :func:`refine` is this one (the reference's when Numba is
  missing).
- :func:`refine_batch` (:mod:`.batched`): PyTorch, a batch at once on a CPU or GPU.

All return :class:`RefineSteps` (every intermediate step) and take :class:`RefineOptions`.
Each step is also a pure function: ``reference.blur_cam`` ... ``reference.mask_image`` here,
``compiled.blur_cam`` ..., and the batched ones under :mod:`hrcam.postprocess.batched`.

Example::

    from hrcam.postprocess import refine
    steps = refine(low_res_cam, high_res_cam, image)
    refined_cam = steps.refined
"""

from . import batched, reference
from .batched import label_components, refine_batch
from .options import RefineOptions, resolve_max_hole_size, resolve_num_points
from .reference import (
    blur_cam,
    fill_holes,
    find_focal_points,
    find_local_maxima,
    find_roi,
    find_strong_edges,
    grow_region,
    linear_percentile,
    mask_image,
    merge_maps,
    normalize_map,
    resize_bilinear,
    sobel_edges,
    threshold_bounds,
)
from .steps import RefineSteps

try:  # the compiled steps when Numba is installed (a dependency; a missing wheel falls back)
    from . import compiled
except ImportError:  # pragma: no cover - Numba is installed with hrcam
    compiled = None
refine = reference.refine if compiled is None else compiled.refine

__all__ = [
    "RefineOptions",
    "RefineSteps",
    "batched",
    "blur_cam",
    "compiled",
    "fill_holes",
    "find_focal_points",
    "find_local_maxima",
    "find_roi",
    "find_strong_edges",
    "grow_region",
    "label_components",
    "linear_percentile",
    "mask_image",
    "merge_maps",
    "normalize_map",
    "reference",
    "refine",
    "refine_batch",
    "resize_bilinear",
    "resolve_max_hole_size",
    "resolve_num_points",
    "sobel_edges",
    "threshold_bounds",
]
