"""Postprocessing: combine a low-res and a high-res CAM into the refined CAM (paper section 2.3).

Three implementations with one meaning:

- :mod:`.reference`: NumPy (OpenCV labels components), one image at a time; the readable
  reference, one pure function per step.
- :mod:`.compiled`: the same steps compiled with Numba, one image at a time, bit for bit the
  reference's results in 1.9-2.6x less time (2.87 -> 1.20 ms at 224x224 with the paper's
  options, ``benchmarks/bench_refine.py``). :func:`refine` is this one (the reference's when
  Numba is missing).
- :func:`refine_batch` (:mod:`.batched`): PyTorch, a batch at once on a CPU or GPU.

All return :class:`RefineSteps` (every intermediate step) and take :class:`RefineOptions`.
Each step is also a pure function: :func:`blur_cam` ... :func:`mask_image` here (the compiled
ones; ``reference.blur_cam`` ... for the NumPy ones), and the batched ones under
:mod:`hrcam.postprocess.batched`.

Example::

    from hrcam.postprocess import refine
    steps = refine(low_res_cam, high_res_cam, image)
    refined_cam = steps.refined
"""

from . import batched, reference
from .batched import label_components, refine_batch
from .options import RefineOptions, resolve_max_hole_size, resolve_num_points
from .steps import RefineSteps

try:  # the compiled steps when Numba is installed (a dependency; a missing wheel falls back)
    from . import compiled
except ImportError:  # pragma: no cover - Numba is installed with hrcam
    compiled = None

# The one-image pipeline and its steps: the compiled ones, the reference's without Numba (the
# results are the same bit for bit either way).
_one_image = reference if compiled is None else compiled
refine = _one_image.refine
blur_cam = _one_image.blur_cam
fill_holes = _one_image.fill_holes
find_focal_points = _one_image.find_focal_points
find_local_maxima = _one_image.find_local_maxima
find_roi = _one_image.find_roi
find_strong_edges = _one_image.find_strong_edges
grow_region = _one_image.grow_region
linear_percentile = _one_image.linear_percentile
mask_image = _one_image.mask_image
merge_maps = _one_image.merge_maps
normalize_map = _one_image.normalize_map
resize_bilinear = _one_image.resize_bilinear
sobel_edges = _one_image.sobel_edges
threshold_bounds = _one_image.threshold_bounds

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
