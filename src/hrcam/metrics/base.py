"""What the localization metrics share: conventions, input checks, normalisation, resizing, and
:class:`LocalizationMetric`, the accumulator each metric is.

The metrics answer "does the map point at the object?" and live by family in :mod:`.boxes`,
:mod:`.pixels` and :mod:`.pointing`. Each is an accumulator (``update`` one image or a batch at
a time, ``compute`` a dict, ``reset``, ``merge`` for results gathered from several processes),
built on a pure per-image function where one exists:

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
  to ``[0, 1]`` per image (:func:`score_map`). A constant map (all zeros included) has no
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
    >>> from hrcam.metrics import MaxBoxAccV2
    >>> cam = np.zeros((8, 8)); cam[2:5, 3:7] = 1.0
    >>> metric = MaxBoxAccV2()
    >>> metric.update(cam, np.array([[3, 2, 6, 4]]))        # x1, y1, x2, y2, inclusive
    >>> metric.compute()["max_box_acc_v2"]
    1.0
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .. import arrays
from ..arrays import to_numpy

__all__ = ["LocalizationMetric", "score_map", "resize_map"]


# --------------------------------------------------------------------------------------------
# Input checks and conversions (the public boundary)
# --------------------------------------------------------------------------------------------


def as_map(cam, *, name: str = "cam") -> np.ndarray:
    """(H, W) float64 copy of a map; raises a ValueError that says how to fix a bad one."""
    arr = to_numpy(cam)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"{name} must be one non-empty 2-D (H, W) map, got shape {arr.shape}; pass a batch "
            f"as a (B, H, W) array or a list of (H, W) maps to update()"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def as_mask(mask, shape: tuple[int, int], *, name: str) -> np.ndarray:
    """(H, W) bool mask of the map's shape; refuses values other than 0/1 (e.g. raw trimaps)."""
    arr = to_numpy(mask)
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


def as_boxes(boxes, *, name: str = "gt_boxes") -> np.ndarray:
    """(N, 4) float64 inclusive boxes ``x1, y1, x2, y2``; an empty input gives (0, 4)."""
    arr = to_numpy(boxes).astype(np.float64)
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


def check_num_thresholds(num_thresholds: int) -> int:
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)):
        raise TypeError(f"num_thresholds must be an int, got {type(num_thresholds).__name__}")
    if not 1 <= num_thresholds <= 10_000:
        raise ValueError(f"num_thresholds must lie in [1, 10000], got {num_thresholds}")
    return int(num_thresholds)


def is_single_map(cams) -> bool:
    return isinstance(cams, (np.ndarray, torch.Tensor)) and cams.ndim == 2


def split_batch(cams, *per_image) -> Iterator[tuple]:
    """Yield ``(cam, *args)`` per image from one (H, W) map or a batch of maps.

    A batch is a (B, H, W) array/tensor or a list/tuple of (H_i, W_i) maps; each other argument
    is then a sequence of B per-image values (``None`` stays ``None`` for every image).
    """
    if is_single_map(cams):
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


def score_map(cam) -> np.ndarray:
    """One map as the metrics read it: checked, float64, min-max scaled to ``[0, 1]``.

    :func:`hrcam.arrays.normalize_map` in float64 after the metrics' input check: NaN and ±inf
    count as 0; ``cam``: ``(H, W)`` array or tensor. A constant map (no maximum to find) becomes all zeros,
    following wsolevaluation's ``normalize_scoremap``. Returns a new ``(H, W)`` float64 array.

    Example::

        >>> score_map(np.array([[2.0, 4.0], [np.nan, 6.0]])).tolist()
        [[0.3333333333333333, 0.6666666666666666], [0.0, 1.0]]
    """
    return arrays.normalize_map(as_map(cam), dtype=np.float64)


def resize_map(cam, shape: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize one ``(h, w)`` map to ``shape = (H, W)``; returns float64 ``(H, W)``.

    Pixel centres are aligned as in OpenCV's ``cv2.resize`` and ``torch``'s
    ``align_corners=False``, without antialiasing (CAMs are upsampled). NaN propagates; the
    metrics treat it as 0. Use it to bring a CAM to its annotation's size before scoring.

    Example::

        >>> resize_map(np.array([[0.0, 1.0]]), (1, 4)).tolist()
        [[0.0, 0.25, 0.75, 1.0]]
    """
    arr = as_map(cam)
    if (
        len(shape) != 2
        or not all(isinstance(s, (int, np.integer)) for s in shape)
        or min(shape) < 1
    ):
        raise ValueError(f"shape must be (H, W) with positive ints, got {shape!r}")
    if arr.shape == tuple(shape):
        return arr
    return arrays.resize_maps(torch.from_numpy(arr), shape).numpy()


def threshold_levels(v: np.ndarray, k_total: int, *, inclusive: bool) -> np.ndarray:
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
