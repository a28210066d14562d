"""Box metrics of class activation maps: MaxBoxAccV2 (Choe et al., CVPR 2020) and top-1 /
GT-known localization (Zhou et al., CVPR 2016), on the conventions of :mod:`.base`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from ..arrays import to_numpy
from .base import (
    LocalizationMetric,
    as_boxes,
    check_num_thresholds,
    is_single_map,
    score_map,
    split_batch,
    threshold_levels,
)

__all__ = [
    "CAMLocalization",
    "MaxBoxAccV2",
    "box_iou",
    "boxes_to_mask",
    "largest_component_box",
    "max_box_iou_curve",
]


# 8-connectivity for thresholded regions.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# Most row runs max_box_iou_curve holds at once (~100 bytes each); a smooth 224x224 CAM has
# ~50k over 100 thresholds, uniform noise ~1.6M.
_MAX_RUNS = 2_000_000


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """IoU of every box in ``boxes_a`` ``(N, 4)`` with every box in ``boxes_b`` ``(M, 4)``.

    Boxes are ``x1, y1, x2, y2`` with inclusive corners, so areas are
    ``(x2 - x1 + 1) * (y2 - y1 + 1)`` (wsolevaluation's ``calculate_multiple_iou``). Returns
    ``(N, M)`` float64.

    Example::

        >>> box_iou(np.array([[0, 0, 9, 9]]), np.array([[5, 0, 14, 9]])).tolist()  # 50 / 150
        [[0.3333333333333333]]
    """
    a = as_boxes(boxes_a, name="boxes_a")
    b = as_boxes(boxes_b, name="boxes_b")
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
    b = np.rint(as_boxes(boxes, name="boxes")).astype(np.int64)
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in b:
        mask[max(y1, 0) : max(y2 + 1, 0), max(x1, 0) : max(x2 + 1, 0)] = True
    return mask


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
    k_total = check_num_thresholds(num_thresholds)
    v = score_map(cam)
    gt = as_boxes(gt_boxes)
    if gt.shape[0] == 0:
        raise ValueError("gt_boxes is empty; max_box_iou_curve needs at least one GT box")
    return _max_box_iou_curve(v, gt, k_total)


def _max_box_iou_curve(v: np.ndarray, gt: np.ndarray, k_total: int) -> np.ndarray:
    """Core of max_box_iou_curve on a normalised map and checked, non-empty boxes."""
    levels = threshold_levels(v, k_total, inclusive=False)
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
    labels, n = ndimage.label(score_map(cam) > threshold, structure=_EIGHT_CONNECTED)
    if n == 0:
        return None
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    rows, cols = ndimage.find_objects(labels, max_label=largest)[largest - 1]
    return np.array([cols.start, rows.start, cols.stop - 1, rows.stop - 1], dtype=np.int64)


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
        self.num_thresholds = check_num_thresholds(num_thresholds)
        super().__init__()

    def _options(self) -> dict:
        return {
            "iou_thresholds": tuple(self.iou_thresholds.tolist()),
            "num_thresholds": self.num_thresholds,
        }

    _list_state = ("per_image_hits",)

    def reset(self) -> None:
        self.hits = np.zeros((self.iou_thresholds.size, self.num_thresholds), dtype=np.int64)
        self.per_image_hits: list[np.ndarray] = []  # (n_iou, K) bool, for the bootstrap
        self.num_images = 0
        self.num_skipped = 0

    def bootstrap_statistic(self):
        """MaxBoxAccV2 of resampled images: ``statistic(counts (n_boot, N)) -> (n_boot,)``."""
        hits = np.stack(self.per_image_hits).astype(np.float64)  # (N, n_iou, K)

        def statistic(counts: np.ndarray) -> np.ndarray:
            summed = (counts @ hits.reshape(hits.shape[0], -1)).reshape(-1, *hits.shape[1:])
            accuracy = summed / counts.sum(axis=1)[:, None, None]
            return accuracy.max(axis=2).mean(axis=1)

        return statistic

    def update(self, cams, gt_boxes) -> None:
        """Add one image (``(H, W)`` map, ``(G, 4)`` boxes) or a batch (maps, list of boxes)."""
        for cam, boxes in split_batch(cams, gt_boxes):
            v = score_map(cam)
            gt = as_boxes(boxes)
            if gt.shape[0] == 0:
                self.num_skipped += 1
                continue
            curve = _max_box_iou_curve(v, gt, self.num_thresholds)
            hit = curve[None, :] >= self.iou_thresholds[:, None]
            self.hits += hit
            self.per_image_hits.append(hit)
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
        if correct is not None and not is_single_map(cams):
            correct = np.asarray(to_numpy(correct), dtype=bool).ravel()
        for cam, boxes, is_correct in split_batch(cams, gt_boxes, correct):
            if self.num_images > 0 and (is_correct is not None) != (self.num_with_class > 0):
                raise ValueError(
                    "pass correct= with every update() or with none: top-1 loc. needs the "
                    "classification result of every image"
                )
            gt = as_boxes(boxes)
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
