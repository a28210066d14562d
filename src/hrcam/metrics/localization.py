"""Localization metrics for class activation maps: does the map point at the object?

Each metric is an accumulator (``update`` one image or a batch at a time, ``compute`` a dict,
``reset``, ``merge`` for results gathered from several processes), built on a pure per-image
function where one exists:

- :class:`MaxBoxAccV2` over :func:`max_box_iou_curve` — Choe et al., CVPR 2020, "Evaluating
  Weakly Supervised Object Localization Methods Right" (their wsolevaluation code);
- :class:`CAMLocalization` over :func:`largest_component_box` — top-1 / GT-known localization,
  Zhou et al., CVPR 2016, "Learning Deep Features for Discriminative Localization";
- :class:`PxAP` — pixel average precision, Choe et al. 2020;
- :class:`BestPixelIoU` — best mask IoU over thresholds per image, averaged;
- :class:`PointingGame` over :func:`pointing_game_hit` — Zhang et al., ECCV 2016, "Top-down
  Neural Attention by Excitation Backprop";
- :class:`EnergyPointingGame` over :func:`energy_inside` — Wang et al., CVPR workshops 2020,
  "Score-CAM".

Conventions shared by every metric here
---------------------------------------
* **Maps** are ``(H, W)`` float arrays (NumPy or torch), one per image; images of one dataset may
  differ in size. Each map is first made finite (NaN and ±inf become 0) and min-max normalised
  to ``[0, 1]`` per image (:func:`normalize_map`). A constant map (all zeros included) has no
  information and normalises to all zeros, as wsolevaluation's ``normalize_scoremap`` does: it
  localizes nothing (no component above any threshold, pointing game miss, energy share 0).
* **Map and annotation have the same size.** The protocols score the CAM at the annotation's
  resolution, so resize the CAM first: ``resize_map(cam, mask.shape)`` (bilinear).
* **Masks** are boolean ``(H, W)``: ``mask`` marks object pixels, ``ignore`` marks pixels that are
  not scored (e.g. the boundary class of a trimap: ``mask = trimap == 1``,
  ``ignore = trimap == 3`` for Oxford-IIIT Pets). Integer 0/1 arrays are accepted; other values
  are refused, so a raw trimap is never silently read as "everything is object".
* **Boxes** are ``(N, 4)`` arrays ``x1, y1, x2, y2`` in pixel coordinates with **inclusive**
  corners: the box covers columns ``x1..x2`` and rows ``y1..y2``, its width is ``x2 - x1 + 1``.
  This is wsolevaluation's convention (``calculate_multiple_iou`` adds 1 to widths), so the GT
  boxes of CUB / ImageNet / OpenImages in its metadata can be used as they are, and a box drawn
  around a set of pixels (first to last pixel) is exact. :func:`box_iou` uses it.
* **Thresholds.** ``num_thresholds = K`` gives the CAM thresholds ``t_k = k / K``,
  ``k = 0..K-1`` (0, 0.01, ..., 0.99 for K = 100, Choe et al.'s list). Box metrics keep the
  pixels *strictly above* the threshold (``v > t``: OpenCV's ``THRESH_BINARY`` in
  wsolevaluation, "above 20 % of the max" in Zhou et al.); pixel metrics count pixels *at or
  above* it (``v >= t``: wsolevaluation's histogram bins ``[t_k, t_k+1)``), and add the
  threshold ``t_K = 1.0`` so the PR curve starts at the map's maximum.
* **Connectivity** of thresholded regions is 8-connected (OpenCV's contours, which
  wsolevaluation boxes, follow 8-connected borders).
* **Results** are fractions in ``[0, 1]`` (papers print them ×100), plain Python floats or NumPy
  arrays, and NaN where a metric is undefined (no image scored).
* **Images without an object** (an empty ``mask`` after removing ``ignore``, or no GT box) are
  skipped by the per-image metrics (MaxBoxAcc, CAM localization, best IoU, both pointing games)
  and counted in ``num_skipped``; PxAP still counts their pixels as negatives, since every
  pixel of such an image is background.

Example::

    >>> import numpy as np
    >>> cam = np.zeros((8, 8)); cam[2:5, 3:7] = 1.0
    >>> metric = MaxBoxAccV2()
    >>> metric.update(cam, np.array([[3, 2, 6, 4]]))        # x1, y1, x2, y2, inclusive
    >>> metric.compute()["max_box_acc_v2"]
    1.0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, sparse
from scipy.sparse import csgraph

__all__ = [
    "BestPixelIoU",
    "CAMLocalization",
    "EnergyPointingGame",
    "LocalizationMetric",
    "MaxBoxAccV2",
    "PointingGame",
    "PxAP",
    "box_iou",
    "boxes_to_mask",
    "energy_inside",
    "largest_component_box",
    "max_box_iou_curve",
    "normalize_map",
    "pointing_game_hit",
    "resize_map",
]

# 8-connectivity for thresholded regions.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# Most row runs max_box_iou_curve holds at once (~100 bytes each); a smooth 224x224 CAM has
# ~50k over 100 thresholds, uniform noise ~1.6M.
_MAX_RUNS = 2_000_000


# --------------------------------------------------------------------------------------------
# Input checks and conversions (the public boundary)
# --------------------------------------------------------------------------------------------


def _to_numpy(x) -> np.ndarray:
    """A NumPy view of an array-like or a (possibly GPU, possibly grad-tracking) tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _as_map(cam, *, name: str = "cam") -> np.ndarray:
    """(H, W) float64 copy of a map; raises a ValueError that says how to fix a bad one."""
    arr = _to_numpy(cam)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"{name} must be one non-empty 2-D (H, W) map, got shape {arr.shape}; pass a batch "
            f"as a (B, H, W) array or a list of (H, W) maps to update()"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _as_mask(mask, shape: tuple[int, int], *, name: str) -> np.ndarray:
    """(H, W) bool mask of the map's shape; refuses values other than 0/1 (e.g. raw trimaps)."""
    arr = _to_numpy(mask)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"{name} has shape {arr.shape} but the map has shape {tuple(shape)}; resize the CAM "
            f"to the annotation's size first: resize_map(cam, {name}.shape)"
        )
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or np.any((arr != 0) & (arr != 1)):
        values = np.unique(arr)[:5] if np.issubdtype(arr.dtype, np.number) else arr.dtype
        raise ValueError(
            f"{name} must be boolean (or 0/1), got values such as {values}; for a trimap pass "
            f"mask=(trimap == object_value) and ignore=(trimap == boundary_value)"
        )
    return arr.astype(bool)


def _as_boxes(boxes, *, name: str = "gt_boxes") -> np.ndarray:
    """(N, 4) float64 inclusive boxes ``x1, y1, x2, y2``; an empty input gives (0, 4)."""
    arr = _to_numpy(boxes).astype(np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(
            f"{name} must be an (N, 4) array of x1, y1, x2, y2 boxes, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr).all(axis=1)][:3]}")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        raise ValueError(
            f"{name} must satisfy x2 >= x1 and y2 >= y1 (inclusive pixel corners x1, y1, x2, y2), "
            f"got {arr[bad][:3].tolist()}; swap the corners or convert from (x, y, w, h) first"
        )
    return arr


def _check_num_thresholds(num_thresholds: int) -> int:
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)):
        raise TypeError(f"num_thresholds must be an int, got {type(num_thresholds).__name__}")
    if not 1 <= num_thresholds <= 10_000:
        raise ValueError(f"num_thresholds must lie in [1, 10000], got {num_thresholds}")
    return int(num_thresholds)


def _is_single(cams) -> bool:
    return isinstance(cams, (np.ndarray, torch.Tensor)) and cams.ndim == 2


def _split_batch(cams, *per_image) -> Iterator[tuple]:
    """Yield ``(cam, *args)`` per image from one (H, W) map or a batch of maps.

    A batch is a (B, H, W) array/tensor or a list/tuple of (H_i, W_i) maps; each other argument
    is then a sequence of B per-image values (``None`` stays ``None`` for every image).
    """
    if _is_single(cams):
        yield (cams, *per_image)
        return
    if isinstance(cams, (np.ndarray, torch.Tensor)) and cams.ndim != 3:
        raise ValueError(
            f"cams must be one (H, W) map, a (B, H, W) batch or a list of (H, W) maps, "
            f"got an array of shape {tuple(cams.shape)}"
        )
    if not isinstance(cams, (np.ndarray, torch.Tensor, list, tuple)):
        raise TypeError(
            f"cams must be an array, a tensor or a list of maps, got {type(cams).__name__}"
        )
    n = len(cams)
    for i, arg in enumerate(per_image):
        if arg is not None and len(arg) != n:
            raise ValueError(
                f"a batch of {n} maps needs {n} per-image annotations, but argument {i + 2} of "
                f"update() has {len(arg)}"
            )
    for i in range(n):
        yield (cams[i], *(None if arg is None else arg[i] for arg in per_image))


# --------------------------------------------------------------------------------------------
# Pure per-image functions
# --------------------------------------------------------------------------------------------


def normalize_map(cam) -> np.ndarray:
    """Min-max normalise one map to ``[0, 1]`` (float64), after setting NaN and ±inf to 0.

    ``cam``: ``(H, W)`` array or tensor. A constant map (no maximum to find) becomes all zeros,
    following wsolevaluation's ``normalize_scoremap``. Returns a new ``(H, W)`` float64 array.

    Example::

        >>> normalize_map(np.array([[2.0, 4.0], [np.nan, 6.0]])).tolist()
        [[0.3333333333333333, 0.6666666666666666], [0.0, 1.0]]
    """
    arr = _as_map(cam)
    arr[~np.isfinite(arr)] = 0.0
    lo, hi = arr.min(), arr.max()
    if hi <= lo:
        return np.zeros_like(arr)
    arr -= lo
    arr /= hi - lo
    return arr


def resize_map(cam, shape: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize one ``(h, w)`` map to ``shape = (H, W)``; returns float64 ``(H, W)``.

    Pixel centres are aligned as in OpenCV's ``cv2.resize`` and ``torch``'s
    ``align_corners=False``, without antialiasing (CAMs are upsampled). NaN propagates; the
    metrics treat it as 0. Use it to bring a CAM to its annotation's size before scoring.

    Example::

        >>> resize_map(np.array([[0.0, 1.0]]), (1, 4)).tolist()
        [[0.0, 0.25, 0.75, 1.0]]
    """
    arr = _as_map(cam)
    if (
        len(shape) != 2
        or not all(isinstance(s, (int, np.integer)) for s in shape)
        or min(shape) < 1
    ):
        raise ValueError(f"shape must be (H, W) with positive ints, got {shape!r}")
    if arr.shape == tuple(shape):
        return arr
    out = F.interpolate(
        torch.from_numpy(arr)[None, None],
        size=tuple(int(s) for s in shape),
        mode="bilinear",
        align_corners=False,
    )
    return out[0, 0].numpy()


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """IoU of every box in ``boxes_a`` ``(N, 4)`` with every box in ``boxes_b`` ``(M, 4)``.

    Boxes are ``x1, y1, x2, y2`` with inclusive corners, so areas are
    ``(x2 - x1 + 1) * (y2 - y1 + 1)`` (wsolevaluation's ``calculate_multiple_iou``). Returns
    ``(N, M)`` float64.

    Example::

        >>> box_iou(np.array([[0, 0, 9, 9]]), np.array([[5, 0, 14, 9]])).tolist()  # 50 / 150
        [[0.3333333333333333]]
    """
    a = _as_boxes(boxes_a, name="boxes_a")
    b = _as_boxes(boxes_b, name="boxes_b")
    return _iou_matrix(a[:, 0], a[:, 1], a[:, 2], a[:, 3], b)


def _iou_matrix(x1, y1, x2, y2, gt: np.ndarray) -> np.ndarray:
    """(N, G) inclusive-corner IoU of boxes given as four (N,) coordinate arrays against gt."""
    iw = np.minimum(x2[:, None], gt[None, :, 2]) - np.maximum(x1[:, None], gt[None, :, 0]) + 1
    ih = np.minimum(y2[:, None], gt[None, :, 3]) - np.maximum(y1[:, None], gt[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = ((x2 - x1 + 1) * (y2 - y1 + 1))[:, None]
    gt_area = ((gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1))[None, :]
    return inter / (area + gt_area - inter)


def boxes_to_mask(boxes, shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the union of inclusive boxes, clipped to the image.

    For the pointing games on box-annotated data (Zhang et al. and Wang et al. score inside the
    boxes). Fractional corners are rounded to the nearest pixel.

    Example::

        >>> boxes_to_mask(np.array([[1, 0, 2, 1]]), (3, 4)).astype(int).tolist()
        [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    b = np.rint(_as_boxes(boxes, name="boxes")).astype(np.int64)
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in b:
        mask[max(y1, 0) : max(y2 + 1, 0), max(x1, 0) : max(x2 + 1, 0)] = True
    return mask


def _threshold_levels(v: np.ndarray, k_total: int, *, inclusive: bool) -> np.ndarray:
    """Per pixel, how many thresholds ``t_k = k / K`` lie below it: ``t_k < v`` (or ``<= v``).

    Strict counts run over ``k = 0..K-1`` (box metrics), inclusive ones over ``k = 0..K``
    (pixel metrics). Same answer as ``np.searchsorted(np.arange(n) / K, v)`` but about 8x
    faster: ``floor(v * K)`` is within one of the answer's index despite rounding, so three
    exact comparisons against the float thresholds around it settle it.
    """
    n = k_total + 1 if inclusive else k_total
    thresholds = np.arange(n + 2) / k_total  # two sentinels above 1 keep the window in range
    low = np.clip(np.floor(v * k_total).astype(np.int64) - 1, 0, n - 1)
    below = np.less_equal if inclusive else np.less
    return low + sum(below(thresholds[low + i], v) for i in range(3))


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts (n,): the owner index and the 0-based offset of each of sum(counts) items."""
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _component_boxes_all_thresholds(
    levels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of the 8-connected components of ``levels > k`` for every threshold index k at once.

    ``levels``: (H, W) int64, the number of thresholds strictly below each pixel's value, so a
    pixel is foreground at threshold index k iff ``k < levels``. Returns ``(k, x1, y1, x2, y2)``,
    one entry per component over all thresholds, inclusive corners.

    Instead of labelling the image once per threshold (K full passes), it works on row runs:
    a pixel starts a run at every k in ``[left neighbour's level, own level)`` and ends one at every
    k in ``[right neighbour's level, own level)``, so all runs of all thresholds come from two
    vectorised expansions whose size is the map's total variation along rows, not K * H * W.
    Runs of one threshold in adjacent rows touch (8-connectivity) when their column ranges
    overlap after widening by one; one ``connected_components`` call then labels every
    threshold's components together. Tested against per-threshold ``scipy.ndimage.label``.
    """
    h, w = levels.shape
    zeros = np.zeros((h, 1), dtype=levels.dtype)
    left = np.hstack([zeros, levels[:, :-1]])
    right = np.hstack([levels[:, 1:], zeros])
    # Sort key (k, row, column + 1) packed into one int64; row h and columns -1 and w fit too.
    row_stride = w + 2
    level_stride = (h + 1) * row_stride
    flat = levels.ravel()

    def run_keys(neighbour: np.ndarray) -> np.ndarray:
        counts = np.maximum(flat - neighbour.ravel(), 0)
        pixel, offset = _expand(counts)
        k = neighbour.ravel()[pixel] + offset
        return np.sort(k * level_stride + (pixel // w) * row_stride + pixel % w + 1)

    start_keys = run_keys(left)
    end_keys = run_keys(right)  # the i-th end closes the i-th start: same (k, row), same order
    k = start_keys // level_stride
    row = start_keys % level_stride // row_stride
    first = start_keys % row_stride - 1
    last = end_keys % row_stride - 1

    # Runs of the same k in row + 1 that touch [first - 1, last + 1]: a contiguous index range.
    below = k * level_stride + (row + 1) * row_stride
    lo = np.searchsorted(end_keys, below + first, side="left")  # end >= first - 1
    hi = np.searchsorted(start_keys, below + last + 2, side="right")  # start <= last + 1
    src, offset = _expand(np.maximum(hi - lo, 0))
    dst = lo[src] + offset
    n = start_keys.size
    graph = sparse.coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n))
    num_components, label = csgraph.connected_components(graph, directed=False)

    comp_k = np.empty(num_components, dtype=np.int64)
    comp_k[label] = k
    x1 = np.full(num_components, w, dtype=np.int64)
    y1 = np.full(num_components, h, dtype=np.int64)
    x2 = np.full(num_components, -1, dtype=np.int64)
    y2 = np.full(num_components, -1, dtype=np.int64)
    np.minimum.at(x1, label, first)
    np.minimum.at(y1, label, row)
    np.maximum.at(x2, label, last)
    np.maximum.at(y2, label, row)
    return comp_k, x1, y1, x2, y2


def max_box_iou_curve(cam, gt_boxes, *, num_thresholds: int = 100) -> np.ndarray:
    """Best box IoU at every CAM threshold: the per-image step of MaxBoxAccV2 (Choe et al.).

    For each threshold ``t_k = k / K`` (``k = 0..K-1``, ``K = num_thresholds``) the normalised
    map is thresholded (``v > t_k``), every 8-connected component gets its bounding box, and the
    best IoU between any of those boxes and any GT box is kept ("boxes of all connected
    components", the V2 change over the largest-box MaxBoxAcc). A threshold with no component
    scores 0.

    ``cam``: ``(H, W)`` map at the annotation's resolution. ``gt_boxes``: ``(G, 4)`` inclusive
    ``x1, y1, x2, y2``, ``G >= 1``. Returns ``(K,)`` float64.

    Differences from wsolevaluation's OpenCV code, which boxes contours: holes are not boxes
    here, boxes are the exact pixel extents (OpenCV's ``x + w`` corner is one pixel wider), and
    the map is not quantised to 8 bits first.

    Example::

        >>> cam = np.zeros((10, 10)); cam[0:10, 0:5] = 1.0
        >>> max_box_iou_curve(cam, np.array([[0, 0, 9, 9]]), num_thresholds=4).tolist()
        [0.5, 0.5, 0.5, 0.5]
    """
    k_total = _check_num_thresholds(num_thresholds)
    v = normalize_map(cam)
    gt = _as_boxes(gt_boxes)
    if gt.shape[0] == 0:
        raise ValueError("gt_boxes is empty; max_box_iou_curve needs at least one GT box")
    return _max_box_iou_curve(v, gt, k_total)


def _max_box_iou_curve(v: np.ndarray, gt: np.ndarray, k_total: int) -> np.ndarray:
    """Core of max_box_iou_curve on a normalised map and checked, non-empty boxes."""
    levels = _threshold_levels(v, k_total, inclusive=False)
    best = np.zeros(k_total)
    # Runs (and memory) grow with the map's variation along rows; a noisy or very large map is
    # done in bands of thresholds so that no band holds more than _MAX_RUNS runs.
    num_runs = int(levels[:, 0].sum() + np.maximum(np.diff(levels, axis=1), 0).sum())
    bands = np.linspace(0, k_total, min(k_total, -(-num_runs // _MAX_RUNS)) + 1).astype(int)
    for k0, k1 in zip(bands[:-1], bands[1:], strict=True):
        band = np.clip(levels - k0, 0, k1 - k0)
        if not band.any():
            continue
        comp_k, x1, y1, x2, y2 = _component_boxes_all_thresholds(band)
        iou = _iou_matrix(x1, y1, x2, y2, gt).max(axis=1)
        np.maximum.at(best, comp_k + k0, iou)
    return best


def largest_component_box(cam, *, threshold: float = 0.2) -> np.ndarray | None:
    """Box of the largest 8-connected region above ``threshold`` (Zhou et al. 2016, CAM).

    "We first segment the regions of which the value is above 20 % of the max value of the CAM.
    Then we take the bounding box that covers the largest connected component." The threshold is
    applied to the min-max normalised map (``v > threshold``), which equals 20 % of the maximum
    for a CAM whose minimum is 0 (e.g. after ReLU). Ties in size go to the component met first in
    row-major order.

    ``cam``: ``(H, W)``. Returns an ``(4,)`` int64 inclusive box ``x1, y1, x2, y2``, or ``None``
    when no pixel is above the threshold (e.g. a constant map).

    Example::

        >>> cam = np.zeros((6, 6)); cam[0, 0] = 1.0; cam[2:5, 1:4] = 0.5
        >>> largest_component_box(cam).tolist()
        [1, 2, 3, 4]
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(
            f"threshold is a fraction of the normalised map in [0, 1), got {threshold}"
        )
    labels, n = ndimage.label(normalize_map(cam) > threshold, structure=_EIGHT_CONNECTED)
    if n == 0:
        return None
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    rows, cols = ndimage.find_objects(labels, max_label=largest)[largest - 1]
    return np.array([cols.start, rows.start, cols.stop - 1, rows.stop - 1], dtype=np.int64)


def _pixel_histograms(
    v: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None, k_total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of object and background pixels per level (K + 2,), level = #{k <= K: t_k <= v}.

    A pixel is predicted positive at threshold index k (``v >= k / K``) iff its level > k.
    """
    levels = _threshold_levels(v, k_total, inclusive=True)
    scored = np.ones_like(mask) if ignore is None else ~ignore
    pos = np.bincount(levels[mask & scored], minlength=k_total + 2)
    neg = np.bincount(levels[~mask & scored], minlength=k_total + 2)
    return pos, neg


def _counts_at_or_above(hist: np.ndarray) -> np.ndarray:
    """From per-level counts (K + 2,), the count predicted positive at each threshold (K + 1,)."""
    return np.cumsum(hist[::-1])[::-1][1:]


def pointing_game_hit(cam, mask, *, tolerance: int = 15) -> bool | None:
    """Pointing game for one image (Zhang et al., ECCV 2016): is the map's maximum on the object?

    The point is the maximum of the map (NaN counts as 0; ties go to the first pixel in
    row-major order). It is a hit when an object pixel lies within ``tolerance`` pixels of it
    (Euclidean distance ``<= tolerance``; the paper's 15 px absorbs annotation slack). A constant
    map has no maximum and is a miss.

    ``cam``, ``mask``: ``(H, W)``, mask boolean. Returns ``True``/``False``, or ``None`` when the
    mask has no object pixel (the game is undefined; the accumulator skips the image).

    Example::

        >>> cam = np.zeros((40, 40)); cam[20, 5] = 1.0
        >>> mask = np.zeros((40, 40), bool); mask[20, 20:] = True       # 15 px to the right
        >>> pointing_game_hit(cam, mask), pointing_game_hit(cam, mask, tolerance=14)
        (True, False)
    """
    v = normalize_map(cam)
    m = _as_mask(mask, v.shape, name="mask")
    return _pointing_game_hit(v, m, _check_tolerance(tolerance))


def _check_tolerance(tolerance) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels), got {tolerance!r}")
    return int(tolerance)


def _pointing_game_hit(v: np.ndarray, mask: np.ndarray, tolerance: int) -> bool | None:
    if not mask.any():
        return None
    if not v.any():  # constant map: normalised to zeros, no maximum
        return False
    r, c = np.unravel_index(int(np.argmax(v)), v.shape)
    r0, c0 = max(r - tolerance, 0), max(c - tolerance, 0)
    window = mask[r0 : r + tolerance + 1, c0 : c + tolerance + 1]
    dy, dx = np.ogrid[r0 - r : r0 - r + window.shape[0], c0 - c : c0 - c + window.shape[1]]
    return bool((window & (dy * dy + dx * dx <= tolerance * tolerance)).any())


def energy_inside(cam, mask, *, ignore=None) -> float | None:
    """Energy-based pointing game for one image (Wang et al., Score-CAM, CVPRW 2020).

    The share of the normalised map's energy (sum of values) that falls on the object:
    ``sum(v[mask]) / sum(v)``, both sums over scored pixels (not ``ignore``). A map with no
    energy on the scored pixels (e.g. constant) scores 0.

    ``cam``, ``mask``, ``ignore``: ``(H, W)``, masks boolean. Returns a float in ``[0, 1]``, or
    ``None`` when no scored pixel is an object pixel (the accumulator skips the image).

    Example::

        >>> cam = np.array([[0.0, 1.0], [3.0, 4.0]])      # normalised: 0, 1/4, 3/4, 1
        >>> float(energy_inside(cam, np.array([[False, True], [False, True]])))  # (1/4 + 1) / 2
        0.625
    """
    v = normalize_map(cam)
    m = _as_mask(mask, v.shape, name="mask")
    ign = None if ignore is None else _as_mask(ignore, v.shape, name="ignore")
    return _energy_inside(v, m, ign)


def _energy_inside(v: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None) -> float | None:
    if ignore is not None:
        mask = mask & ~ignore
        v = np.where(ignore, 0.0, v)
    if not mask.any():
        return None
    total = v.sum()
    return float(v[mask].sum() / total) if total > 0 else 0.0


# --------------------------------------------------------------------------------------------
# Accumulators
# --------------------------------------------------------------------------------------------


class LocalizationMetric:
    """Base of the dataset-wide accumulators: ``update`` per image or batch, then ``compute``.

    Subclasses set their state in ``reset`` and name it in ``_sum_state`` (counts added by
    :meth:`merge`) and ``_list_state`` (per-image records concatenated by :meth:`merge`), so that
    results gathered from several processes (e.g. with ``torch.distributed.all_gather_object``)
    combine into one. Only small counts and per-image scalars are kept, never maps.
    """

    _sum_state: tuple[str, ...] = ()
    _list_state: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        raise NotImplementedError

    def compute(self) -> dict:
        """The metric over every image seen so far, as a dict (see the class docstring)."""
        raise NotImplementedError

    def merge(self, other: LocalizationMetric) -> LocalizationMetric:
        """Add the images accumulated by ``other`` (same class and options) to this one."""
        if type(other) is not type(self) or self._options() != other._options():
            raise ValueError(
                f"can only merge a {type(self).__name__} with options {self._options()}, got "
                f"a {type(other).__name__} with options {other._options()}"
            )
        for name in self._sum_state:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in self._list_state:
            getattr(self, name).extend(getattr(other, name))
        return self

    def _options(self) -> dict:
        return {}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({options})"


class MaxBoxAccV2(LocalizationMetric):
    """MaxBoxAccV2 (Choe et al., CVPR 2020, "Evaluating WSOL Methods Right").

    For every CAM threshold ``t_k = k / K`` (0, 0.01, ..., 0.99 for ``num_thresholds=100``),
    ``BoxAcc(δ, t_k)`` is the share of images where some component box at ``t_k`` has IoU ``>= δ``
    with some GT box (:func:`max_box_iou_curve`). ``MaxBoxAcc(δ)`` takes the best threshold,
    chosen over the whole dataset, and MaxBoxAccV2 averages it over ``δ`` in
    ``iou_thresholds`` (0.3, 0.5, 0.7).

    ``update(cams, gt_boxes)``: ``cams`` one ``(H, W)`` map with ``gt_boxes`` ``(G, 4)``
    inclusive ``x1, y1, x2, y2``; or a batch (``(B, H, W)`` or a list of maps) with a list of
    B box arrays. An image with no GT box is skipped.

    ``compute()`` returns ``max_box_acc_v2`` (float), ``iou_thresholds`` ``(D,)``,
    ``max_box_acc`` ``(D,)``, ``best_cam_threshold`` ``(D,)`` (first threshold reaching the max),
    ``curve`` ``(D, K)`` (BoxAcc at every CAM threshold, for plots), ``cam_thresholds`` ``(K,)``,
    ``num_images``, ``num_skipped``.

    Example::

        >>> metric = MaxBoxAccV2()
        >>> cam = np.zeros((20, 20)); cam[5:15, 5:15] = 1.0
        >>> metric.update(cam, np.array([[5, 5, 14, 14]]))
        >>> metric.update(cam, np.array([[0, 0, 9, 9]]))                 # IoU 25 / 175
        >>> metric.compute()["max_box_acc"].tolist()
        [0.5, 0.5, 0.5]
    """

    _sum_state = ("hits", "num_images", "num_skipped")

    def __init__(
        self, *, iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7), num_thresholds: int = 100
    ) -> None:
        iou = np.asarray(iou_thresholds, dtype=np.float64).ravel()
        if iou.size == 0 or not ((iou > 0) & (iou <= 1)).all():
            raise ValueError(f"iou_thresholds must be values in (0, 1], got {iou_thresholds!r}")
        self.iou_thresholds = iou
        self.num_thresholds = _check_num_thresholds(num_thresholds)
        super().__init__()

    def _options(self) -> dict:
        return {
            "iou_thresholds": tuple(self.iou_thresholds.tolist()),
            "num_thresholds": self.num_thresholds,
        }

    def reset(self) -> None:
        self.hits = np.zeros((self.iou_thresholds.size, self.num_thresholds), dtype=np.int64)
        self.num_images = 0
        self.num_skipped = 0

    def update(self, cams, gt_boxes) -> None:
        """Add one image (``(H, W)`` map, ``(G, 4)`` boxes) or a batch (maps, list of boxes)."""
        for cam, boxes in _split_batch(cams, gt_boxes):
            v = normalize_map(cam)
            gt = _as_boxes(boxes)
            if gt.shape[0] == 0:
                self.num_skipped += 1
                continue
            curve = _max_box_iou_curve(v, gt, self.num_thresholds)
            self.hits += curve[None, :] >= self.iou_thresholds[:, None]
            self.num_images += 1

    def compute(self) -> dict:
        n = self.num_images
        curve = self.hits / n if n else np.full(self.hits.shape, np.nan)
        max_acc = curve.max(axis=1)
        thresholds = np.arange(self.num_thresholds) / self.num_thresholds
        best = thresholds[curve.argmax(axis=1)] if n else np.full(max_acc.shape, np.nan)
        return {
            "max_box_acc_v2": float(max_acc.mean()),
            "iou_thresholds": self.iou_thresholds.copy(),
            "max_box_acc": max_acc,
            "best_cam_threshold": best,
            "curve": curve,
            "cam_thresholds": thresholds,
            "num_images": n,
            "num_skipped": self.num_skipped,
        }


class CAMLocalization(LocalizationMetric):
    """Top-1 and GT-known localization accuracy (Zhou et al., CVPR 2016, the CAM paper).

    The box of the largest component above ``threshold`` (20 %) of the normalised map
    (:func:`largest_component_box`) is correct when its IoU with some GT box is ``>=
    iou_threshold`` (0.5). GT-known loc. counts correct boxes; top-1 loc. also needs the top-1
    class to be right.

    ``update(cams, gt_boxes, *, correct=None)``: pass the CAM of the **ground-truth** class.
    Top-1 loc. uses the CAM of the predicted class, but it only counts when the prediction is
    right, and then the two CAMs are the same map; so the GT class's CAM plus ``correct`` (top-1
    prediction == label; a bool, or B bools for a batch) gives both numbers. Without ``correct``
    only GT-known loc. is computed (``top1_loc`` is NaN). Give ``correct`` always or never.

    ``compute()`` returns ``gt_known_loc``, ``top1_loc``, ``num_images``, ``num_skipped``.

    Example::

        >>> metric = CAMLocalization()
        >>> cam = np.zeros((20, 20)); cam[5:15, 5:15] = 1.0
        >>> metric.update(cam, np.array([[5, 5, 14, 14]]), correct=False)
        >>> metric.compute()["gt_known_loc"], metric.compute()["top1_loc"]
        (1.0, 0.0)
    """

    _sum_state = (
        "num_localized",
        "num_top1_localized",
        "num_images",
        "num_with_class",
        "num_skipped",
    )

    def __init__(self, *, threshold: float = 0.2, iou_threshold: float = 0.5) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
        self.threshold = float(threshold)
        self.iou_threshold = float(iou_threshold)
        super().__init__()

    def _options(self) -> dict:
        return {"threshold": self.threshold, "iou_threshold": self.iou_threshold}

    def reset(self) -> None:
        self.num_localized = 0
        self.num_top1_localized = 0
        self.num_images = 0
        self.num_with_class = 0
        self.num_skipped = 0

    def update(self, cams, gt_boxes, *, correct=None) -> None:
        """Add one image or a batch; ``correct``: top-1 class right (bool, or B bools)."""
        if correct is not None and not _is_single(cams):
            correct = np.asarray(_to_numpy(correct), dtype=bool).ravel()
        for cam, boxes, is_correct in _split_batch(cams, gt_boxes, correct):
            if self.num_images > 0 and (is_correct is not None) != (self.num_with_class > 0):
                raise ValueError(
                    "pass correct= with every update() or with none: top-1 loc. needs the "
                    "classification result of every image"
                )
            gt = _as_boxes(boxes)
            if gt.shape[0] == 0:
                self.num_skipped += 1
                continue
            box = largest_component_box(cam, threshold=self.threshold)
            hit = box is not None and box_iou(box[None], gt).max() >= self.iou_threshold
            self.num_images += 1
            self.num_localized += int(hit)
            if is_correct is not None:
                self.num_with_class += 1
                self.num_top1_localized += int(hit and bool(is_correct))

    def compute(self) -> dict:
        n = self.num_images
        return {
            "gt_known_loc": self.num_localized / n if n else float("nan"),
            "top1_loc": (
                self.num_top1_localized / n if n and self.num_with_class == n else float("nan")
            ),
            "num_images": n,
            "num_skipped": self.num_skipped,
        }


class PxAP(LocalizationMetric):
    """Pixel average precision, PxAP (Choe et al., CVPR 2020, for mask-annotated data).

    Every scored pixel of the dataset is one sample: positive if in ``mask``, negative otherwise,
    skipped if in ``ignore``. At each threshold ``t_k = k / K`` (``k = 0..K``, so 0, 0.01, ...,
    1.0) the pixels with normalised value ``>= t_k`` are predicted positive; precision and recall
    are computed **over the whole dataset** (counts are summed over images before dividing), and
    PxAP is the area under the PR curve as average precision,
    ``sum_k P(t_k) * (R(t_k) - R(t_k+1))`` with ``R(t_K+1) = 0``, which is wsolevaluation's
    ``MaskEvaluator``. Per image the map is histogrammed into the K + 1 threshold bins, so the
    state is two ``(K + 2,)`` count vectors.

    ``update(cams, masks, ignore=None)``: one ``(H, W)`` map with boolean ``(H, W)`` masks, or a
    batch with B masks (and B ignore masks or ``None``). An image without object pixels adds
    negatives only.

    ``compute()`` returns ``pxap`` (NaN if no object pixel was seen), ``precision``, ``recall``,
    ``thresholds`` (each ``(K + 1,)``, ascending thresholds; precision is 1 where nothing is
    predicted), ``num_images``, ``num_positive_pixels``, ``num_negative_pixels``.

    Example::

        >>> metric = PxAP()
        >>> mask = np.array([[True, True, True], [False, False, False]])
        >>> metric.update(np.array([[1.0, 1.0, 0.5], [0.5, 0.0, 0.0]]), mask)
        >>> round(metric.compute()["pxap"], 6)              # 1 * 2/3 + 3/4 * 1/3
        0.916667
    """

    _sum_state = ("positive_hist", "negative_hist", "num_images")

    def __init__(self, *, num_thresholds: int = 100) -> None:
        self.num_thresholds = _check_num_thresholds(num_thresholds)
        super().__init__()

    def _options(self) -> dict:
        return {"num_thresholds": self.num_thresholds}

    def reset(self) -> None:
        self.positive_hist = np.zeros(self.num_thresholds + 2, dtype=np.int64)
        self.negative_hist = np.zeros(self.num_thresholds + 2, dtype=np.int64)
        self.num_images = 0

    def update(self, cams, masks, ignore=None) -> None:
        """Add one image (map, boolean mask, optional ignore mask) or a batch of them."""
        for cam, mask, ign in _split_batch(cams, masks, ignore):
            v = normalize_map(cam)
            m = _as_mask(mask, v.shape, name="mask")
            ig = None if ign is None else _as_mask(ign, v.shape, name="ignore")
            pos, neg = _pixel_histograms(v, m, ig, self.num_thresholds)
            self.positive_hist += pos
            self.negative_hist += neg
            self.num_images += 1

    def compute(self) -> dict:
        tp = _counts_at_or_above(self.positive_hist).astype(np.float64)
        fp = _counts_at_or_above(self.negative_hist).astype(np.float64)
        num_pos = float(self.positive_hist.sum())
        predicted = tp + fp
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted > 0, tp / predicted, 1.0)
            recall = tp / num_pos if num_pos else np.full(tp.shape, np.nan)
        # Thresholds ascend, so recall falls with k; R(t_K+1) = 0 closes the curve.
        if num_pos:
            pxap = float(np.sum(precision * (recall - np.append(recall[1:], 0.0))))
        else:
            pxap = float("nan")
        return {
            "pxap": pxap,
            "precision": precision,
            "recall": recall,
            "thresholds": np.arange(self.num_thresholds + 1) / self.num_thresholds,
            "num_images": self.num_images,
            "num_positive_pixels": int(num_pos),
            "num_negative_pixels": int(self.negative_hist.sum()),
        }


class BestPixelIoU(LocalizationMetric):
    """Best mask IoU over thresholds, per image, averaged over images.

    For each image, the pixels with normalised value ``>= t_k`` (``t_k = k / K``, ``k = 0..K``)
    form the predicted mask; its IoU with ``mask`` (pixels in ``ignore`` left out of both) is
    ``TP / (P + FP)``, computed for every threshold at once from the image's histogram. The
    image's score is its best IoU (the threshold is tuned per image, an upper bound on what one
    dataset-wide threshold gets); the dataset's is their mean. The mean IoU curve over images
    is kept too, with the single best dataset-wide threshold.

    ``update(cams, masks, ignore=None)`` as in :class:`PxAP`; images without object pixels are
    skipped.

    ``compute()`` returns ``best_pixel_iou`` (mean of per-image bests), ``best_thresholds``
    ``(N,)`` (per image, the lowest threshold reaching its best), ``curve`` ``(K + 1,)`` (mean IoU
    at each threshold), ``thresholds`` ``(K + 1,)``, ``best_threshold`` and
    ``iou_at_best_threshold`` (the curve's argmax and max), ``num_images``, ``num_skipped``.

    Example::

        >>> metric = BestPixelIoU()
        >>> mask = np.array([[True, True, False, False]])
        >>> metric.update(np.array([[1.0, 0.5, 0.5, 0.0]]), mask)   # IoU 2/3 for t in (0, 0.5]
        >>> round(metric.compute()["best_pixel_iou"], 6), metric.compute()["best_thresholds"]
        (0.666667, array([0.01]))
    """

    _sum_state = ("curve_sum", "num_images", "num_skipped")
    _list_state = ("per_image_best", "per_image_threshold")

    def __init__(self, *, num_thresholds: int = 100) -> None:
        self.num_thresholds = _check_num_thresholds(num_thresholds)
        super().__init__()

    def _options(self) -> dict:
        return {"num_thresholds": self.num_thresholds}

    def reset(self) -> None:
        self.curve_sum = np.zeros(self.num_thresholds + 1)
        self.per_image_best: list[float] = []
        self.per_image_threshold: list[float] = []
        self.num_images = 0
        self.num_skipped = 0

    def update(self, cams, masks, ignore=None) -> None:
        """Add one image (map, boolean mask, optional ignore mask) or a batch of them."""
        for cam, mask, ign in _split_batch(cams, masks, ignore):
            v = normalize_map(cam)
            m = _as_mask(mask, v.shape, name="mask")
            ig = None if ign is None else _as_mask(ign, v.shape, name="ignore")
            pos, neg = _pixel_histograms(v, m, ig, self.num_thresholds)
            num_pos = pos.sum()
            if num_pos == 0:
                self.num_skipped += 1
                continue
            iou = _counts_at_or_above(pos) / (num_pos + _counts_at_or_above(neg))
            best = int(np.argmax(iou))
            self.per_image_best.append(float(iou[best]))
            self.per_image_threshold.append(best / self.num_thresholds)
            self.curve_sum += iou
            self.num_images += 1

    def compute(self) -> dict:
        n = self.num_images
        thresholds = np.arange(self.num_thresholds + 1) / self.num_thresholds
        curve = self.curve_sum / n if n else np.full(thresholds.shape, np.nan)
        best = int(np.argmax(curve)) if n else 0
        return {
            "best_pixel_iou": float(np.mean(self.per_image_best)) if n else float("nan"),
            "best_thresholds": np.asarray(self.per_image_threshold, dtype=np.float64),
            "curve": curve,
            "thresholds": thresholds,
            "best_threshold": float(thresholds[best]) if n else float("nan"),
            "iou_at_best_threshold": float(curve[best]) if n else float("nan"),
            "num_images": n,
            "num_skipped": self.num_skipped,
        }


class PointingGame(LocalizationMetric):
    """Pointing game accuracy (Zhang et al., ECCV 2016): hits / (hits + misses).

    Each image is a hit when an object pixel lies within ``tolerance`` (15) pixels of the map's
    maximum (:func:`pointing_game_hit`). For box annotations build the mask with
    :func:`boxes_to_mask`. Images without object pixels are skipped.

    ``update(cams, masks)``: one ``(H, W)`` map with a boolean mask, or a batch.
    ``compute()`` returns ``accuracy``, ``hits``, ``misses``, ``num_skipped``.

    Example::

        >>> metric = PointingGame(tolerance=0)
        >>> metric.update(np.eye(3)[::-1], np.eye(3, dtype=bool))   # maximum at (0, 2): miss
        >>> metric.compute()["accuracy"]
        0.0
    """

    _sum_state = ("hits", "misses", "num_skipped")

    def __init__(self, *, tolerance: int = 15) -> None:
        self.tolerance = _check_tolerance(tolerance)
        super().__init__()

    def _options(self) -> dict:
        return {"tolerance": self.tolerance}

    def reset(self) -> None:
        self.hits = 0
        self.misses = 0
        self.num_skipped = 0

    def update(self, cams, masks) -> None:
        """Add one image (map, boolean object mask) or a batch of them."""
        for cam, mask in _split_batch(cams, masks):
            v = normalize_map(cam)
            hit = _pointing_game_hit(v, _as_mask(mask, v.shape, name="mask"), self.tolerance)
            if hit is None:
                self.num_skipped += 1
            elif hit:
                self.hits += 1
            else:
                self.misses += 1

    def compute(self) -> dict:
        n = self.hits + self.misses
        return {
            "accuracy": self.hits / n if n else float("nan"),
            "hits": self.hits,
            "misses": self.misses,
            "num_skipped": self.num_skipped,
        }


class EnergyPointingGame(LocalizationMetric):
    """Energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020), averaged over images.

    Per image, the share of the normalised map's energy on the object (:func:`energy_inside`;
    Score-CAM uses the box region, pass :func:`boxes_to_mask` for boxes). Pixels in ``ignore`` are
    left out of both sums. Images without object pixels are skipped.

    ``update(cams, masks, ignore=None)``; ``compute()`` returns ``energy_pointing_game`` (mean
    share), ``num_images``, ``num_skipped``.

    Example::

        >>> metric = EnergyPointingGame()
        >>> metric.update(np.array([[0.0, 1.0], [3.0, 4.0]]), np.array([[0, 1], [0, 1]]))
        >>> metric.compute()["energy_pointing_game"]
        0.625
    """

    _sum_state = ("share_sum", "num_images", "num_skipped")

    def reset(self) -> None:
        self.share_sum = 0.0
        self.num_images = 0
        self.num_skipped = 0

    def update(self, cams, masks, ignore=None) -> None:
        """Add one image (map, boolean mask, optional ignore mask) or a batch of them."""
        for cam, mask, ign in _split_batch(cams, masks, ignore):
            v = normalize_map(cam)
            m = _as_mask(mask, v.shape, name="mask")
            ig = None if ign is None else _as_mask(ign, v.shape, name="ignore")
            share = _energy_inside(v, m, ig)
            if share is None:
                self.num_skipped += 1
            else:
                self.share_sum += share
                self.num_images += 1

    def compute(self) -> dict:
        n = self.num_images
        return {
            "energy_pointing_game": self.share_sum / n if n else float("nan"),
            "num_images": n,
            "num_skipped": self.num_skipped,
        }
