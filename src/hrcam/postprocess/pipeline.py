"""The refinement pipeline's step sequence (paper section 2.3), written once for both backends.

:func:`run_steps` chains the steps over a *backend*, a module holding one function per step
with the same names and keywords: :mod:`.reference` (NumPy, one image: ``(H, W)``
arrays) or :mod:`.batched` (PyTorch, a batch: ``(B, H, W)`` tensors). The sequence, the option
plumbing and the result's assembly live only here; :func:`~.reference.refine` and
:func:`~.batched.refine_batch` check their inputs and call it.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .options import (
    RefineOptions,
    resolve_focal_min_distance,
    resolve_max_hole_size,
    resolve_num_points,
)
from .steps import RefineSteps

__all__ = ["STEP_FUNCTIONS", "refine_single", "resolve_options", "run_steps"]

# What a backend implements, one function per step, with the same names and keywords.
STEP_FUNCTIONS = (
    "normalize_cam",
    "blur_cam",
    "sobel_edges",
    "resize_bilinear",
    "find_roi",
    "find_focal_points",
    "threshold_bounds",
    "grow_region",
    "find_strong_edges",
    "fill_holes",
    "merge_maps",
    "mask_image",
)


def run_steps(ops: ModuleType, low, high, image, opts: RefineOptions) -> RefineSteps:
    """Every step of the postprocessing on checked inputs, with the backend ``ops``.

    ``low``: low-res CAM(s) ``(..., h, w)``; ``high``: high-res CAM(s) ``(..., H, W)``;
    ``image``: ``None`` or image(s) ``(..., H', W'[, C])`` channels-last. A batched backend
    (``ops.BATCHED``) takes a batch of 2-D maps; the others one map of any rank they support
    (:mod:`.volume`: 3-D too).
    """
    shape = tuple(high.shape[1:] if getattr(ops, "BATCHED", False) else high.shape)
    height = shape[0]
    low_n = ops.normalize_cam(low)
    # Steps 1-2: the high-res CAM's edges.
    blurred = ops.blur_cam(high, size=opts.blur_size)
    edges = ops.sobel_edges(blurred)
    # Steps 3-5: region of interest and seeds from the low-res CAM.
    low_resized = ops.resize_bilinear(low_n, shape)
    roi = ops.find_roi(low_resized, percentile=opts.roi_percentile)
    points = resolve_num_points(opts, height)
    focal_points = ops.find_focal_points(
        low_n,
        shape,
        scope=opts.focal_scope,
        num_points=points,
        min_distance=resolve_focal_min_distance(opts, shape, points),
        maxima_areas=opts.maxima_areas,
        maxima_threshold=opts.maxima_threshold,
        low_resized=low_resized,
        within=roi,  # the seeds are the ROI's highest pixels
    )
    # Steps 6-8: grow a region on the edges between two percentiles of the ROI's edges, add the
    # ROI's strong edges, fill small holes.
    bounds = ops.threshold_bounds(
        edges, roi, lower_percentile=opts.lower_percentile, upper_percentile=opts.upper_percentile
    )
    lower, upper = bounds[..., 0], bounds[..., 1]
    segmented = ops.grow_region(edges, focal_points, lower=lower, upper=upper)
    full_segment = ops.fill_holes(
        segmented | ops.find_strong_edges(edges, roi, upper=upper),
        max_size=resolve_max_hole_size(opts, *shape),
    )
    # Step 9: merge with the base map; step 10: mask the image.
    base = low_resized if opts.merge_base == "low" else ops.normalize_cam(high)
    merged = ops.merge_maps(full_segment, base, method=opts.merge, alpha=opts.alpha)
    masked_image = None
    if image is not None:
        masked_image = ops.mask_image(
            image,
            merged,
            filter=opts.filter,
            keep_percentage=opts.keep_percentage,
            threshold=opts.threshold,
        )
    return RefineSteps(
        low=low_n,
        blurred=blurred,
        edges=edges,
        low_resized=low_resized,
        roi=roi,
        focal_points=focal_points,
        bounds=bounds,
        segmented=segmented,
        full_segment=full_segment,
        merged=merged,
        masked_image=masked_image,
        options=opts,
    )


NAN_POLICIES = ("raise", "zero")


def check_image_and_finite(low, high, image, nan_policy: str, *, batched: bool) -> None:
    """The checks both backends make: finite maps (``nan_policy="raise"``), and a finite image
    of the high-res CAM's size with 1, 3 or 4 channels. ``ShapeError``/``NonFiniteError``."""
    from ..checks import ShapeError, check_finite

    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if nan_policy == "raise":
        hint = "pass nan_policy='zero' to count them as 0"
        check_finite(low, "low (the low-res CAM)", hint=hint)
        check_finite(high, "high (the high-res CAM)", hint=hint)
    if image is None:
        return
    check_finite(image, "image", hint="a masked image of NaN is no picture: check what made it")
    lead = 1 if batched else 0
    size = tuple(image.shape[lead : lead + 2])
    channels = image.shape[lead + 2] if image.ndim == lead + 3 else None
    if size != tuple(high.shape[lead:]) or channels not in (None, 1, 3, 4):
        what = "images" if batched else "image"
        raise ShapeError(
            f"{what} of shape {tuple(image.shape)} does not fit the high-res CAM of shape "
            f"{tuple(high.shape)}: give the {what} at the CAM's size (H, W), with 1, 3 or 4 "
            "channels last (e.g. explainer.prepare(images).rgb[i] for the network's input)"
        )


def resolve_options(options: RefineOptions | None, overrides: dict) -> RefineOptions:
    """``options`` (default ``RefineOptions()``) with ``overrides`` applied and checked."""
    if options is None:
        options = RefineOptions()
    elif not isinstance(options, RefineOptions):
        raise ValueError(f"options must be a RefineOptions, got {type(options).__name__}")
    return options.replace(**overrides) if overrides else options


def refine_single(
    ops: ModuleType, low, high, image, options, nan_policy: str, overrides: dict
) -> RefineSteps:
    """What ``refine`` does for one image with the backend ``ops`` (:mod:`.reference` or
    :mod:`.compiled`): resolve the options, check the inputs, run the steps."""
    opts = resolve_options(options, overrides)
    low, high, image = _check_inputs(low, high, image)
    check_image_and_finite(low, high, image, nan_policy, batched=False)
    return run_steps(ops, low, high, image, opts)


def _as_real_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.iscomplexobj(a):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def _check_inputs(low, high, image):
    low = _as_real_array(low, "low")
    high = _as_real_array(high, "high")
    if low.ndim != 2 or 0 in low.shape:
        raise ValueError(
            f"low must be a non-empty (h, w) low-res CAM, got shape {low.shape}; "
            "select one class (e.g. cam[class_index]) and one image before refining"
        )
    if high.ndim != 2 or 0 in high.shape:
        raise ValueError(
            f"high must be a non-empty (H, W) high-res CAM, got shape {high.shape}; "
            "select one class and one image before refining"
        )
    if image is not None:
        image = _as_real_array(image, "image")
        if image.ndim not in (2, 3) or 0 in image.shape:
            raise ValueError(
                f"image must be (H', W') or (H', W', C) channels-last, got shape {image.shape}"
            )
    return low, high, image
