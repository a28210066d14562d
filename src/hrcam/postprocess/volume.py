"""The refinement pipeline on one map of rank 2 or 3: an image ``(H, W)`` or a volume
``(D, H, W)``, with NumPy and SciPy.

The same steps as :mod:`.reference` (the specification), each generalised axis by axis: the box
blur, the Sobel filter and the multilinear resampling run along every axis; region growing and
hole filling label face-connected components (4-connectivity in 2-D, 6 in 3-D); local maxima
use full connectivity (8 in 2-D, 26 in 3-D); the global seeds keep a ball, not a disc, free
around them. On a 2-D map every step computes what :mod:`.reference` does, in the same float32
order, so the two agree bit for bit. The steps that never looked at the rank
(:func:`normalize_cam`, :func:`find_roi`, :func:`threshold_bounds`, :func:`find_strong_edges`,
:func:`merge_maps`) are :mod:`.reference`'s own.

:func:`refine_volume` checks its inputs and chains the steps with :func:`.pipeline.run_steps`.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage

from ..arrays import normalize_finite, normalize_map, to_numpy
from ..checks import ShapeError, check_finite
from . import grid, reference
from .options import RefineOptions
from .pipeline import NAN_POLICIES, resolve_options, run_steps
from .reference import (
    find_roi,
    find_strong_edges,
    kept_pixels,
    merge_maps,
    normalize_cam,
    threshold_bounds,
)
from .steps import RefineSteps

# The step functions (pipeline.STEP_FUNCTIONS, five of them reference's own) and the entry point.
__all__ = [
    "blur_cam",
    "fill_holes",
    "find_focal_points",
    "find_roi",
    "find_strong_edges",
    "grow_region",
    "mask_image",
    "merge_maps",
    "normalize_cam",
    "refine_volume",
    "resize_bilinear",
    "sobel_edges",
    "threshold_bounds",
]

RANKS = (2, 3)


def label_faces(mask) -> tuple[np.ndarray, int]:
    """The face-connected components of a bool mask of any rank (4-connected in 2-D, 6 in 3-D):
    ``(labels, count)``, int32 labels ``1..count`` on the mask and 0 off it."""
    labels, count = ndimage.label(np.asarray(mask, dtype=bool))
    return labels, int(count)


# --------------------------------------------------------------------------- maps


def resize_bilinear(array, shape: tuple[int, ...]) -> np.ndarray:
    """Resample the first ``len(shape)`` axes of ``array`` to ``shape`` multilinearly
    (bilinear in 2-D, trilinear in 3-D), half-pixel centres.

    ``array``: ``(d, h, w, ...)`` real (trailing axes, e.g. channels, are carried along);
    returns ``(D, H, W, ...)`` float32. Equal to ``torch.nn.functional.interpolate(mode=
    'bilinear'/'trilinear', align_corners=False)``; downsampling does not antialias.

    >>> resize_bilinear(np.array([[[0.0, 4.0]]]), (1, 1, 4)).tolist()
    [[[0.0, 1.0, 3.0, 4.0]]]
    """
    x = np.asarray(array, dtype=np.float32)
    rank = len(shape)
    # The last axis first (the smallest intermediate array), then back to the first: on a 2-D
    # map this is reference.resize_bilinear's order, so the sums round the same way.
    for axis in reversed(range(rank)):
        i0, i1, w0, w1 = grid.bilinear_table(x.shape[axis], shape[axis])
        along = (-1,) + (1,) * (x.ndim - axis - 1)
        x = x.take(i0, axis=axis) * w0.reshape(along) + x.take(i1, axis=axis) * w1.reshape(along)
    return x


def blur_cam(high_res_cam, *, size: int = 5) -> np.ndarray:
    """Step 1: the high-res CAM normalised to [0, 1], then box-blurred (the mean over a cube of
    side ``size``, ``size x size`` in 2-D).

    ``high_res_cam``: ``(H, W)`` or ``(D, H, W)`` real. Returns the same shape, float32 in
    [0, 1]. Borders are padded half-sample symmetrically. ``size`` must be odd; 1 returns the
    normalised map unblurred.

    >>> x = np.zeros((3, 3, 3)); x[1, 1, 1] = 1
    >>> float(blur_cam(x, size=3)[0, 0, 0]) == float(np.float32(1) / 27)
    True
    """
    x = normalize_map(high_res_cam)
    if size == 1:
        return x
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 1, got {size}")
    r = size // 2
    # Separable box sums, the last axis first, each added window position by position in
    # float32 (reference.blur_cam's order); one division at the end.
    for axis in reversed(range(x.ndim)):
        p = x.take(grid.reflect_indices(x.shape[axis], r), axis=axis)
        n = x.shape[axis]
        total = _slab(p, axis, 0, n) + _slab(p, axis, 1, n)
        for k in range(2, size):
            total += _slab(p, axis, k, n)
        x = total
    return x / (size**x.ndim)


def sobel_edges(blurred) -> np.ndarray:
    """Step 2: N-D Sobel gradient magnitude ``sqrt(sum over axes of g_axis**2)``, normalised to
    [0, 1].

    ``blurred``: ``(H, W)`` or ``(D, H, W)`` float. Returns the same shape, float32.
    ``g_axis`` is the derivative ``[-1, 0, 1]`` along that axis of the map smoothed by
    ``[1, 2, 1]`` along every other axis; borders are padded half-sample symmetrically. In 2-D
    the map of ``skimage.filters.sobel`` (and of ``scipy.ndimage.sobel`` along each axis) up to
    the constant factor that the normalisation removes.
    """
    x = np.asarray(blurred, dtype=np.float32)
    p = x
    for axis in range(x.ndim):
        p = p.take(grid.reflect_indices(x.shape[axis], 1), axis=axis)
    total = None
    # The last axis's term first: reference.sobel_edges adds gx**2 (across columns) + gy**2.
    for axis in reversed(range(x.ndim)):
        g = p
        for other in range(x.ndim):
            if other != axis:
                n = x.shape[other]
                g = _slab(g, other, 0, n) + _slab(g, other, 1, n) * 2 + _slab(g, other, 2, n)
        n = x.shape[axis]
        g = _slab(g, axis, 2, n) - _slab(g, axis, 0, n)
        g *= g
        total = g if total is None else total + g
    return normalize_finite(np.sqrt(total))


def _slab(x: np.ndarray, axis: int, start: int, length: int) -> np.ndarray:
    """``x[start : start + length]`` along ``axis`` (a view)."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, start + length)
    return x[tuple(index)]


# --------------------------------------------------------------------------- seeds


def find_focal_points(low_res_cam, shape: tuple[int, ...], *, low_resized=None, **options):
    """Step 5 for images and volumes: :func:`.reference.find_focal_points` (every option
    there), the CAM upsampled multilinearly when ``low_resized`` is not given. In 3-D the
    global seeds keep a ball free around them, and local maxima have 26 neighbours.

    >>> cam = np.zeros((2, 2, 2)); cam[1, 1, 1] = 1; cam[0, 0, 0] = 0.9
    >>> np.argwhere(find_focal_points(cam, (4, 4, 4), num_points=2, min_distance=3)).tolist()
    [[0, 0, 0], [3, 3, 3]]
    """
    if low_resized is None and options.get("scope", "global") == "global":
        low_resized = resize_bilinear(normalize_map(low_res_cam), shape)
    return reference.find_focal_points(low_res_cam, shape, low_resized=low_resized, **options)


# --------------------------------------------------------------------------- segment


def grow_region(edges, seeds, *, lower: float, upper: float) -> np.ndarray:
    """Step 7: threshold region growing on ``edges`` from ``seeds`` (ITK ``ConnectedThreshold``).

    ``edges``: float, ``seeds``: bool, both ``(H, W)`` or ``(D, H, W)``. Returns bool of that
    shape: every voxel with ``lower <= edges <= upper`` that is face-connected (4 neighbours in
    2-D, 6 in 3-D; diagonal voxels are not connected), through such voxels, to a seed that is
    itself in range. NaN bounds give an empty region.
    """
    e = np.asarray(edges, dtype=np.float32)
    in_range = (e >= np.float32(lower)) & (e <= np.float32(upper))
    labels, count = label_faces(in_range)
    if count == 0:
        return in_range
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[labels[np.asarray(seeds, dtype=bool)]] = True
    seeded[0] = False
    return seeded.take(labels)


def fill_holes(mask, *, max_size: int) -> np.ndarray:
    """Step 8b: fill the holes of ``mask`` up to ``max_size`` voxels.

    ``mask``: ``(H, W)`` or ``(D, H, W)`` bool. A hole is a face-connected component of the
    background that does not touch the map's border (an enclosed cavity in 3-D). Returns bool
    of the same shape; background pieces open to the border stay open, however small.
    """
    m = np.asarray(mask, dtype=bool)
    out = m.copy()
    if max_size <= 0 or not m.any():
        return out
    # A hole lies inside the mask's bounding box, and background on the box's faces reaches the
    # map's border through the all-background outside: label only the box.
    box = []
    for axis in range(m.ndim):
        others = tuple(a for a in range(m.ndim) if a != axis)
        present = np.flatnonzero(m.any(axis=others))
        box.append(slice(present[0], present[-1] + 1))
    box = tuple(box)
    labels, count = label_faces(~m[box])
    if count == 0:
        return out
    fill = np.bincount(labels.ravel(), minlength=count + 1) <= max_size
    fill[0] = False
    for axis in range(labels.ndim):
        fill[labels.take(0, axis=axis)] = False
        fill[labels.take(-1, axis=axis)] = False
    if fill.any():
        out[box] |= fill.take(labels)
    return out


# --------------------------------------------------------------------------- mask


def mask_image(
    image,
    refined,
    *,
    filter: str = "percentage",
    keep_percentage: float = 15.0,
    threshold: float = 0.6,
) -> np.ndarray:
    """Step 10: ``image`` with only the refined CAM's strongest voxels kept (others set to 0).

    ``refined``: float, ``(H, W)`` or ``(D, H, W)``. ``image``: that spatial shape, optionally
    with a trailing channel axis, uint8 or float; resized multilinearly to it when its spatial
    shape differs (integers rounded and clipped to their dtype). The kept voxels are
    :func:`.reference.kept_pixels`' (``filter='percentage'``: the top ``keep_percentage`` %
    that are positive; ``'threshold'``: the normalised refined CAM above ``threshold``).
    Returns the image's shape and dtype.
    """
    img = np.asarray(image)
    r = np.asarray(refined, dtype=np.float32)
    if img.shape[: r.ndim] != r.shape:
        resized = resize_bilinear(img, r.shape)
        if np.issubdtype(img.dtype, np.integer):
            info = np.iinfo(img.dtype)
            resized = np.clip(np.rint(resized), info.min, info.max)
        img = resized.astype(img.dtype)
    keep = kept_pixels(r, filter=filter, keep_percentage=keep_percentage, threshold=threshold)
    if img.ndim == r.ndim:
        return img * keep.astype(img.dtype)
    out = np.empty_like(img)
    for c in range(img.shape[-1]):  # per channel: a trailing broadcast axis is much slower
        np.multiply(img[..., c], keep, out=out[..., c])
    return out


# --------------------------------------------------------------------------- pipeline


def refine_volume(
    low,
    high,
    image=None,
    *,
    options: RefineOptions | None = None,
    nan_policy: str = "raise",
    **option_overrides,
) -> RefineSteps:
    """The whole postprocessing pipeline on one image or one volume; returns every step.

    ``low``: low-res CAM ``(h, w)`` or ``(d, h, w)``; ``high``: high-res CAM of the same rank,
    ``(H, W)`` or ``(D, H, W)`` (the sizes need not be in proportion). ``image``: ``None`` or a
    grayscale image/volume of ``high``'s shape (optionally with 1, 3 or 4 channels last), uint8
    or float. Any real dtype, or tensors. A map with NaN or infinite values raises
    :class:`hrcam.checks.NonFiniteError`; ``nan_policy="zero"`` counts them as 0 instead.
    ``options`` (default ``RefineOptions()``) with ``option_overrides`` applied; the
    size-dependent defaults scale with the rank (``max_hole_size`` by the voxel count). On a
    2-D map the result equals :func:`.reference.refine`'s. ``ValueError`` (a
    :class:`hrcam.checks.ShapeError` for shapes) says what was expected.

    Example::

        steps = refine_volume(low_res_cam, high_res_cam)   # (6, 6, 6) and (96, 96, 96)
        refined_cam = steps.refined                         # (96, 96, 96) float32 in [0, 1]
    """
    opts = resolve_options(options, option_overrides)
    low, high, image = _check_volume_inputs(low, high, image)
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if nan_policy == "raise":
        hint = "pass nan_policy='zero' to count them as 0"
        check_finite(low, "low (the low-res CAM)", hint=hint)
        check_finite(high, "high (the high-res CAM)", hint=hint)
    if image is not None:
        check_finite(image, "image", hint="a masked image of NaN is no picture: check what made it")
    return run_steps(sys.modules[__name__], low, high, image, opts)


def _real_array(x, name: str) -> np.ndarray:
    """``x`` (array-like or tensor) as a NumPy array of real numbers, else ``ValueError``."""
    a = to_numpy(x)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.iscomplexobj(a):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def _check_volume_inputs(low, high, image):
    """The maps and image as arrays, or a ``ShapeError`` that says what was expected."""
    low, high = _real_array(low, "low"), _real_array(high, "high")
    expected = {"low": "(h, w) or (d, h, w)", "high": "(H, W) or (D, H, W)"}
    for name, cam in (("low", low), ("high", high)):
        sizes = expected[name]
        if cam.ndim not in RANKS or 0 in cam.shape:
            raise ShapeError(
                f"{name} must be a non-empty {sizes} CAM, got shape {cam.shape}; select one "
                "class and one image or volume (e.g. cam[class_index]) before refining"
            )
    if low.ndim != high.ndim:
        raise ShapeError(
            f"low and high must have the same rank, got low of shape {low.shape} and high of "
            f"shape {high.shape}; give both as images (2-D) or both as volumes (3-D)"
        )
    if image is None:
        return low, high, None
    image = _real_array(image, "image")
    channels = image.shape[-1] if image.ndim == high.ndim + 1 else None
    fits = image.ndim in (high.ndim, high.ndim + 1) and image.shape[: high.ndim] == high.shape
    if not fits or channels not in (None, 1, 3, 4):
        raise ShapeError(
            f"image of shape {image.shape} does not fit the high-res CAM of shape {high.shape}: "
            f"give it at the CAM's shape {high.shape} (grayscale), or with 1, 3 or 4 channels last"
        )
    return low, high, image
