"""The refinement pipeline in NumPy (OpenCV labels components): one image at a time, one
pure function per step.

This is the readable reference; :mod:`hrcam.postprocess.batched` computes the same thing for a
batch with PyTorch. Each function below is one step of the paper's postprocessing (and of the
original ``postprocessing.pipeline``), and :func:`refine` chains them.

Conventions both implementations share (so they agree; see also :mod:`._grid`):

- Maps are float32. Non-finite values (NaN, +-inf, float64 values beyond float32's range) count
  as 0. "Normalised" means ``(x - min) / (max - min)``; a constant map normalises to all zeros.
- Blur and Sobel pad the borders half-sample symmetrically (SciPy ``mode='reflect'``:
  ``b a | a b c | c b``), the default of ``scipy.ndimage.convolve`` and
  ``skimage.filters.sobel`` that the original code called.
- Bilinear resampling uses half-pixel centres (``align_corners=False``), like
  ``torch.nn.functional.interpolate`` and PIL's upsampling in the original.
- Percentiles are NumPy's default ``method='linear'``.
- Region growing and hole filling use 4-connectivity (ITK ``ConnectedThreshold``'s default;
  ``skimage.morphology.remove_small_holes``' default ``connectivity=1``). Local maxima use
  8-connectivity (``skimage.morphology.local_maxima``' default).
- Ties in "the k highest pixels" are broken by row-major position (first wins).
"""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np
from skimage import morphology

from ..arrays import normalize_finite, normalize_map
from . import grid
from .options import RefineOptions
from .pipeline import STEP_FUNCTIONS, refine_single
from .steps import RefineSteps

__all__ = [*STEP_FUNCTIONS, "find_local_maxima", "linear_percentile", "refine"]


def label_components(mask) -> tuple[np.ndarray, int]:
    """The 4-connected components of a bool ``(H, W)`` mask: ``(labels, count)`` as
    ``scipy.ndimage.label`` gives them (int32 labels ``1..count`` on the mask, 0 off it).

    OpenCV's labelling (Spaghetti, Bolelli et al. 2019), 3-5x faster than SciPy's at 224x224;
    the components are the same, only their numbering may differ, and nothing here depends on it.
    """
    m = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    count, labels = cv2.connectedComponents(m, connectivity=4, ltype=cv2.CV_32S)
    return labels, count - 1


# --------------------------------------------------------------------------- maps


def normalize_cam(cam) -> np.ndarray:
    """A CAM scaled to [0, 1], float32, NaN and ±inf counted as 0 (:func:`hrcam.arrays.normalize_map`)."""
    return normalize_map(cam)


def resize_bilinear(array, shape: tuple[int, int]) -> np.ndarray:
    """Resample the first two axes of ``array`` to ``shape`` bilinearly (half-pixel centres).

    ``array``: ``(h, w, ...)`` real; returns ``(H, W, ...)`` float32. Equal to
    ``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)``; downsampling
    does not antialias.
    """
    x = np.asarray(array, dtype=np.float32)
    (h, w), (H, W) = x.shape[:2], shape
    i0, i1, w0, w1 = grid.bilinear_table(h, H)
    j0, j1, v0, v1 = grid.bilinear_table(w, W)
    extra = (1,) * (x.ndim - 2)
    w0, w1 = w0.reshape(H, 1, *extra), w1.reshape(H, 1, *extra)
    v0, v1 = v0.reshape(W, *extra), v1.reshape(W, *extra)
    # Along the width first (the small array), then the height: torch's own order.
    cols = x.take(j0, axis=1) * v0 + x.take(j1, axis=1) * v1
    return cols.take(i0, axis=0) * w0 + cols.take(i1, axis=0) * w1


def blur_cam(high_res_cam, *, size: int = 5) -> np.ndarray:
    """Step 1: the high-res CAM normalised to [0, 1], then box-blurred (``size x size`` mean).

    ``high_res_cam``: ``(H, W)`` real. Returns ``(H, W)`` float32 in [0, 1]. Borders are padded
    half-sample symmetrically. ``size`` must be odd; 1 returns the normalised map unblurred.

    >>> float(blur_cam(np.eye(3), size=3)[1, 1]) == float(np.float32(3) / 9)
    True
    """
    x = normalize_map(high_res_cam)
    if size == 1:
        return x
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 1, got {size}")
    H, W = x.shape
    r = size // 2
    p = _pad_reflect(x, r)
    Wp = W + 2 * r
    # Separable box sum, added left to right then top to bottom. The sums run along the
    # flattened padded map (contiguous, so fast); the sums that straddle two rows land in the
    # padding columns, which are cropped.
    flat = p.ravel()
    m = flat.size - (size - 1)
    rows = flat[0:m] + flat[1 : m + 1]
    for k in range(2, size):
        rows += flat[k : m + k]
    out = np.empty(H * Wp, dtype=np.float32)
    m2 = m - (size - 1) * Wp  # = H * Wp - 2r: the last row's cropped columns are not needed
    np.add(rows[0:m2], rows[Wp : m2 + Wp], out=out[:m2])
    for k in range(2, size):
        out[:m2] += rows[k * Wp : m2 + k * Wp]
    out[m2:] = 0
    return out.reshape(H, Wp)[:, :W] / (size * size)


def sobel_edges(blurred) -> np.ndarray:
    """Step 2: Sobel gradient magnitude ``sqrt(gx**2 + gy**2)`` normalised to [0, 1].

    ``blurred``: ``(H, W)`` float. Returns ``(H, W)`` float32. Kernels ``[1, 2, 1]`` (smoothing)
    x ``[-1, 0, 1]`` (derivative), borders padded half-sample symmetrically; the same map as
    ``skimage.filters.sobel`` up to the constant factor that the normalisation removes.
    """
    x = np.asarray(blurred, dtype=np.float32)
    H, W = x.shape
    Wp = W + 2
    # As in blur_cam: work along the flattened padded map, crop the padding columns at the end.
    flat = _pad_reflect(x, 1).ravel()
    n = flat.size
    smooth_v = flat[0 : n - 2 * Wp] + flat[Wp : n - Wp] * 2 + flat[2 * Wp : n]
    gx = smooth_v[2:] - smooth_v[:-2]
    smooth_h = flat[0 : n - 2] + flat[1 : n - 1] * 2 + flat[2:n]
    gy = smooth_h[2 * Wp :] - smooth_h[: -2 * Wp]
    magnitude = np.empty(H * Wp, dtype=np.float32)
    np.sqrt(gx * gx + gy * gy, out=magnitude[: gx.size])
    magnitude[gx.size :] = 0  # cropped padding columns of the last row
    return normalize_finite(magnitude.reshape(H, Wp)[:, :W])


def _pad_reflect(x: np.ndarray, r: int) -> np.ndarray:
    """``x`` padded by ``r`` on every side, half-sample symmetric (contiguous copy)."""
    H, W = x.shape
    return x.take(grid.reflect_indices(H, r), axis=0).take(grid.reflect_indices(W, r), axis=1)


# --------------------------------------------------------------------------- statistics


def linear_percentile(values, q: float) -> np.float32:
    """The ``q``-th percentile of ``values`` (any shape), NumPy's ``method='linear'``; NaN if empty.

    Computed in float32 from the two neighbouring order statistics (``a + (b - a) * frac``) so the
    batched implementation reproduces it exactly.

    >>> float(linear_percentile(np.array([4.0, 1.0, 3.0, 2.0]), 50))
    2.5
    """
    v = np.asarray(values, dtype=np.float32).ravel()
    if v.size == 0:
        return np.float32(np.nan)
    lo, frac = grid.percentile_position(v.size, q)
    part = np.partition(v, lo)
    a = part[lo]
    b = part[lo + 1 :].min() if lo + 1 < v.size else a
    return a + (b - a) * np.float32(frac)


def find_roi(low_resized, *, percentile: float = 85.0) -> np.ndarray:
    """Step 4: the region of interest, pixels of ``low_resized`` above its ``percentile``.

    ``low_resized``: ``(H, W)`` float. Returns ``(H, W)`` bool. When the percentile equals the
    maximum (a flat top wider than the ROI would be), the ROI is that flat top; a constant map
    has an empty ROI.
    """
    x = np.asarray(low_resized, dtype=np.float32)
    t = linear_percentile(x, percentile)
    roi = x > t
    if not roi.any() and x.size and x.max() > x.min():
        roi = x >= t
    return roi


def threshold_bounds(
    edges, roi, *, lower_percentile: float = 25.0, upper_percentile: float = 75.0
) -> np.ndarray:
    """Step 6: ``[lower, upper]``, percentiles of ``edges`` inside ``roi`` (float32 ``(2,)``).

    ``edges``: ``(H, W)`` float; ``roi``: ``(H, W)`` bool. An empty ROI gives ``[nan, nan]``,
    which no pixel satisfies, so nothing grows.
    """
    inside = np.asarray(edges, dtype=np.float32)[np.asarray(roi, dtype=bool)]
    return np.array(
        [linear_percentile(inside, lower_percentile), linear_percentile(inside, upper_percentile)],
        dtype=np.float32,
    )


# --------------------------------------------------------------------------- seeds


def find_local_maxima(low_res_cam) -> np.ndarray:
    """Local maxima of a map: plateaus (8-connected) whose every neighbour is strictly lower.

    ``low_res_cam``: ``(h, w)`` float. Returns ``(h, w)`` bool. Pixels outside the map are
    ignored (``skimage.morphology.local_maxima(allow_borders=True)``); a constant map has none.
    """
    x = np.asarray(low_res_cam, dtype=np.float32)
    return morphology.local_maxima(x, allow_borders=True).astype(bool)


def find_focal_points(
    low_res_cam,
    shape: tuple[int, ...],
    *,
    scope: str = "global",
    num_points: int | None = None,
    min_distance: int = 1,
    maxima_areas: str = "small",
    maxima_threshold: float | None = None,
    low_resized=None,
    within=None,
) -> np.ndarray:
    """Step 5: the seeds of region growing, as a bool mask of ``shape`` (``(H, W)``; any rank
    when ``low_resized`` is given, as :mod:`.volume` does for volumes).

    ``low_res_cam``: ``(h, w)`` float (normalised to [0, 1] here), of ``shape``'s rank.

    - ``scope='global'``: the ``num_points`` highest pixels of the bilinearly upsampled CAM
      (default ``round(sqrt(shape[0]))``), each at least ``min_distance`` pixels from the ones
      before it (greedy, highest first; ties go to the first in row-major order), so the seeds
      are distinct points rather than a plateau's top; ``min_distance=1`` takes the highest
      pixels as they come. ``within`` (bool, ``shape``; e.g. the ROI) limits the candidates
      (all pixels when it is empty). Pass ``low_resized`` to reuse an upsampled map.
    - ``scope='local'``: the CAM's local maxima (:func:`find_local_maxima`: full connectivity)
      whose value is at least ``maxima_threshold`` (default: midway between the weakest and
      the strongest maximum, so the strongest is always kept), mapped to ``shape``: with
      ``maxima_areas='large'`` the whole cell of each maximum (nearest-neighbour upsampling),
      with ``'small'`` the one pixel at its centre.

    >>> cam = np.array([[0.0, 1.0], [0.5, 0.9]])   # hottest at the top right, then below it
    >>> find_focal_points(cam, (4, 4), num_points=2, min_distance=3).astype(int).tolist()
    [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    """
    low = normalize_map(low_res_cam)
    if scope == "global":
        x = resize_bilinear(low, shape) if low_resized is None else low_resized
        k = num_points if num_points is not None else max(1, round(math.sqrt(shape[0])))
        return spread_top_k(np.asarray(x, dtype=np.float32), int(k), int(min_distance), within)
    if scope != "local":
        raise ValueError(f"scope must be 'global' or 'local'; got {scope!r}")
    if maxima_areas not in ("small", "large"):
        raise ValueError(f"maxima_areas must be 'small' or 'large'; got {maxima_areas!r}")
    maxima = find_local_maxima(low)
    if not maxima.any():
        return np.zeros(shape, dtype=bool)
    values = low[maxima]
    if maxima_threshold is None:
        threshold = (values.min() + values.max()) / np.float32(2)
    else:
        threshold = np.float32(maxima_threshold)
    keep = maxima & (low >= threshold)
    if maxima_areas == "large":
        cells = [grid.nearest_indices(n, N) for n, N in zip(low.shape, shape, strict=True)]
        return keep[np.ix_(*cells)]
    seeds = np.zeros(shape, dtype=bool)
    centres = [grid.centre_indices(n, N) for n, N in zip(low.shape, shape, strict=True)]
    seeds[tuple(c[i] for c, i in zip(centres, np.nonzero(keep), strict=True))] = True
    return seeds


def spread_top_k(x: np.ndarray, k: int, min_distance: int, within) -> np.ndarray:
    """The ``k`` highest pixels (or voxels) of ``x`` (ties: C order first), each at least
    ``min_distance`` from those picked before (outside the open disc, or ball, of that radius),
    among those of ``within`` (all when None or empty); a bool mask of ``x``'s shape."""
    inside = None if within is None else np.asarray(within, dtype=bool)
    if inside is not None and not inside.any():
        inside = None
    if min_distance <= 1:
        flat = x.ravel()
        candidates = np.arange(flat.size) if inside is None else np.flatnonzero(inside)
        chosen = _top_k(candidates, flat[candidates], k)
    else:
        chosen = _suppressed_maxima(x, inside, k, min_distance)
    mask = np.zeros(x.size, dtype=bool)
    mask[chosen] = True
    return mask.reshape(x.shape)


def _suppressed_maxima(x, inside, k, min_distance) -> list[int]:
    """Greedy non-maximum suppression as repeated argmax: take the highest pixel left (the first
    in C order among equals), rule out the disc (ball) ``sum(d**2) < min_distance**2`` around
    it, again. Picks exactly what scanning all pixels from the highest down would, at the cost
    of ``k`` argmax passes instead of a sort."""
    remaining = np.array(x, dtype=np.float32) if inside is None else np.where(inside, x, -np.inf)
    flat = remaining.ravel()
    r = min_distance - 1  # the disc's reach along each axis
    offsets = np.arange(-r, r + 1)
    squared = sum(np.meshgrid(*[offsets**2] * x.ndim, indexing="ij", sparse=True))
    near = squared < min_distance * min_distance
    picks: list[int] = []
    for _ in range(k):
        i = int(np.argmax(flat))
        if flat[i] == -np.inf:
            break  # fewer than k candidates lie apart
        picks.append(i)
        at = np.unravel_index(i, x.shape)
        window = tuple(
            slice(max(0, c - r), min(n, c + r + 1)) for c, n in zip(at, x.shape, strict=True)
        )
        part = tuple(
            slice(s.start - c + r, s.stop - c + r) for s, c in zip(window, at, strict=True)
        )
        remaining[window][near[part]] = -np.inf
    return picks


def _top_k(candidates, values, k, *, prefix: int = 4096):
    """The ``k`` highest ``candidates`` (flat indices) by ``values``, highest first, ties to the
    earlier index. Only the highest ``prefix`` or so are sorted (all those tied with the last of
    them included, so the order is exactly a prefix of the full one)."""
    prefix = max(prefix, 64 * k)
    if values.size > prefix:
        cut = np.partition(values, values.size - prefix)[values.size - prefix]
        top = np.flatnonzero(values >= cut)  # ascending, so a stable sort keeps index order
        candidates, values = candidates[top], values[top]
    return candidates[np.argsort(-values, kind="stable")[:k]]


# --------------------------------------------------------------------------- segment


def grow_region(edges, seeds, *, lower: float, upper: float) -> np.ndarray:
    """Step 7: threshold region growing on ``edges`` from ``seeds`` (ITK ``ConnectedThreshold``).

    ``edges``: ``(H, W)`` float; ``seeds``: ``(H, W)`` bool. Returns ``(H, W)`` bool: every pixel
    with ``lower <= edges <= upper`` that is 4-connected, through such pixels, to a seed that is
    itself in range. Seeds out of range grow nothing; NaN bounds give an empty region.

    Computed as the connected components of the in-range mask that hold a seed, so it costs
    one labelling pass however large the region is.
    """
    e = np.asarray(edges, dtype=np.float32)
    in_range = (e >= np.float32(lower)) & (e <= np.float32(upper))
    labels, count = label_components(in_range)
    if count == 0:
        return in_range
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[labels[np.asarray(seeds, dtype=bool)]] = True
    seeded[0] = False
    return seeded.take(labels)


def find_strong_edges(edges, roi, *, upper: float) -> np.ndarray:
    """The strong edges ``edges >= upper`` inside ``roi`` (``(H, W)`` bool), added to the segment."""
    return (np.asarray(edges, dtype=np.float32) >= np.float32(upper)) & np.asarray(roi, dtype=bool)


def fill_holes(mask, *, max_size: int) -> np.ndarray:
    """Step 8b: fill the holes of ``mask`` up to ``max_size`` pixels.

    ``mask``: ``(H, W)`` bool. A hole is a 4-connected component of the background that does
    not touch the image border. Returns ``(H, W)`` bool. Unlike
    ``skimage.morphology.remove_small_holes``, small background pieces at the border stay open.
    """
    m = np.asarray(mask, dtype=bool)
    out = m.copy()
    if max_size <= 0 or not m.any():
        return out
    # A hole lies inside the mask's bounding box, and any background touching the box's edge
    # reaches the image border through the all-background outside: label only the box.
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    labels, count = label_components(~m[box])
    if count == 0:
        return out
    fill = np.bincount(labels.ravel(), minlength=count + 1) <= max_size
    fill[0] = False
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        fill[edge] = False
    if fill.any():
        out[box] |= fill.take(labels)
    return out


# --------------------------------------------------------------------------- merge


def merge_maps(segment, low_resized, *, method: str = "blend", alpha: float = 0.5) -> np.ndarray:
    """Step 9: the refined CAM from the filled segment and the upsampled low-res CAM.

    ``segment``: ``(H, W)`` bool (used as 0/1); ``low_resized``: ``(H, W)`` float, normalised
    here. ``method='blend'``: ``alpha * segment + (1 - alpha) * low``; ``'multiply'``:
    ``segment * low``; ``'gate'`` (hrcam's): ``low * (1 - alpha + alpha * segment)``, which keeps
    the map's order inside and outside the segment and lowers what lies outside it. Returns
    ``(H, W)`` float32 in [0, 1].
    """
    seg = np.asarray(segment, dtype=np.float32)
    low = normalize_map(low_resized)
    if method == "blend":
        return np.float32(alpha) * seg + np.float32(1 - alpha) * low
    if method == "multiply":
        return seg * low
    if method == "gate":
        return low * (np.float32(1 - alpha) + np.float32(alpha) * seg)
    raise ValueError(f"method must be 'blend', 'multiply' or 'gate'; got {method!r}")


def mask_image(
    image,
    refined,
    *,
    filter: str = "percentage",
    keep_percentage: float = 15.0,
    threshold: float = 0.6,
) -> np.ndarray:
    """Step 10: ``image`` with only the refined CAM's strongest pixels kept (others set to 0).

    ``image``: ``(H', W')`` or ``(H', W', C)``, uint8 or float; resized bilinearly to the
    refined CAM's ``(H, W)`` when its size differs. ``refined``: ``(H, W)`` float.

    - ``filter='percentage'``: keep pixels whose refined value is positive and at least the
      k-th largest, ``k = round(keep_percentage / 100 * H * W)`` (ties at the k-th value are kept).
    - ``filter='threshold'``: keep pixels where the refined CAM, normalised to [0, 1], exceeds
      ``threshold``.

    Returns ``(H, W)`` or ``(H, W, C)`` in the image's dtype.
    """
    img = np.asarray(image)
    r = np.asarray(refined, dtype=np.float32)
    if img.shape[:2] != r.shape:
        resized = resize_bilinear(img, r.shape)
        if np.issubdtype(img.dtype, np.integer):
            info = np.iinfo(img.dtype)
            resized = np.clip(np.rint(resized), info.min, info.max)
        img = resized.astype(img.dtype)
    keep = kept_pixels(r, filter=filter, keep_percentage=keep_percentage, threshold=threshold)
    if img.ndim == 2:
        return img * keep.astype(img.dtype)
    out = np.empty_like(img)
    for c in range(img.shape[2]):  # per channel: a (H, W, 1) broadcast would be ~7x slower
        np.multiply(img[..., c], keep, out=out[..., c])
    return out


def kept_pixels(
    refined, *, filter: str = "percentage", keep_percentage: float = 15.0, threshold: float = 0.6
) -> np.ndarray:
    """The ``(H, W)`` bool mask of the pixels :func:`mask_image` keeps (see it for the filters)."""
    r = np.asarray(refined, dtype=np.float32)
    if filter == "percentage":
        k = math.floor(keep_percentage / 100 * r.size + 0.5)
        if k == 0:
            return np.zeros(r.shape, dtype=bool)
        kth = np.partition(r.ravel(), r.size - k)[r.size - k]
        return r >= kth if kth > 0 else r > 0  # (r >= kth) & (r > 0)
    if filter == "threshold":
        return normalize_map(r) > np.float32(threshold)
    raise ValueError(f"filter must be 'percentage' or 'threshold'; got {filter!r}")


# --------------------------------------------------------------------------- pipeline


def refine(
    low,
    high,
    image=None,
    *,
    options: RefineOptions | None = None,
    nan_policy: str = "raise",
    **option_overrides,
) -> RefineSteps:
    """The whole postprocessing pipeline on one image; returns every step (:class:`RefineSteps`).

    ``low``: ``(h, w)`` low-res CAM; ``high``: ``(H, W)`` high-res CAM; ``image``: optional
    ``(H, W)`` or ``(H, W, C)`` uint8 or float image at the high-res CAM's size (C = 1, 3 or
    4). Any real dtype; any sizes (``h x w`` may differ from ``H x W`` in ratio). A map with
    NaN or infinite values raises :class:`hrcam.checks.NonFiniteError` (naming it and the
    count); ``nan_policy="zero"`` counts them as 0 instead. ``options`` (default
    ``RefineOptions()``, hrcam's preset; ``RefineOptions.preset("paper")`` for the paper's) with
    ``option_overrides`` applied, e.g. ``refine(low, high, merge="multiply")``.
    ``steps.refined`` is the refined CAM.

    Degenerate input gives a defined result, never an exception: (with ``nan_policy="zero"``)
    non-finite values count as 0; a constant (or all-zero, or 1x1) low-res CAM has an empty ROI, so the refined CAM is all
    zeros; a constant high-res CAM has no edges, so the segment covers every pixel connected
    to an in-ROI seed (all of them; with the paper's blend the refined CAM is then
    ``alpha + (1 - alpha) * low``); seeds
    outside the edge band grow nothing (the segment is then the strong ROI edges with their
    holes filled).

    Example::

        steps = refine(low_res_cam, high_res_cam, image, focal_scope="local")
        refined_cam = steps.refined
    """
    return refine_single(  # this module's steps
        sys.modules[__name__], low, high, image, options, nan_policy, option_overrides
    )
