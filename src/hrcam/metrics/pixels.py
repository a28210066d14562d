"""Pixel metrics of class activation maps against masks: PxAP (Choe et al., CVPR 2020) and the
best pixel IoU over thresholds, on the conventions of :mod:`.base`."""

from __future__ import annotations

import numpy as np

from .base import (
    LocalizationMetric,
    as_mask,
    check_num_thresholds,
    score_map,
    split_batch,
    threshold_levels,
)

__all__ = ["BestPixelIoU", "PxAP"]


def _pixel_histograms(
    v: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None, k_total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of object and background pixels per level (K + 2,), level = #{k <= K: t_k <= v}.

    A pixel is predicted positive at threshold index k (``v >= k / K``) iff its level > k.
    """
    levels = threshold_levels(v, k_total, inclusive=True)
    scored = np.ones_like(mask) if ignore is None else ~ignore
    pos = np.bincount(levels[mask & scored], minlength=k_total + 2)
    neg = np.bincount(levels[~mask & scored], minlength=k_total + 2)
    return pos, neg


def _counts_at_or_above(hist: np.ndarray) -> np.ndarray:
    """From per-level counts (K + 2,), the count predicted positive at each threshold (K + 1,)."""
    return np.cumsum(hist[::-1])[::-1][1:]


def _precision_recall(positive_hist: np.ndarray, negative_hist: np.ndarray):
    """Precision and recall at each threshold from ``(..., K + 2)`` threshold-bin counts."""
    tp = np.cumsum(positive_hist[..., ::-1], axis=-1)[..., ::-1][..., 1:].astype(np.float64)
    fp = np.cumsum(negative_hist[..., ::-1], axis=-1)[..., ::-1][..., 1:].astype(np.float64)
    num_pos = positive_hist.sum(axis=-1, keepdims=True).astype(np.float64)
    predicted = tp + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 1.0)
        recall = np.where(num_pos > 0, tp / num_pos, np.nan)
    return precision, recall


def average_precision(positive_hist: np.ndarray, negative_hist: np.ndarray):
    """PxAP from ``(..., K + 2)`` per-threshold-bin counts of positive and negative pixels:
    ``sum_k P(t_k) (R(t_k) - R(t_k+1))``; NaN without positives. Any leading dimensions."""
    precision, recall = _precision_recall(positive_hist, negative_hist)
    # Thresholds ascend, so recall falls with k; R(t_K+1) = 0 closes the curve.
    following = np.concatenate([recall[..., 1:], np.zeros_like(recall[..., :1])], axis=-1)
    return np.sum(precision * (recall - following), axis=-1)


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
    _list_state = ("per_image_hist",)

    def __init__(self, *, num_thresholds: int = 100) -> None:
        self.num_thresholds = check_num_thresholds(num_thresholds)
        super().__init__()

    def _options(self) -> dict:
        return {"num_thresholds": self.num_thresholds}

    def reset(self) -> None:
        self.positive_hist = np.zeros(self.num_thresholds + 2, dtype=np.int64)
        self.negative_hist = np.zeros(self.num_thresholds + 2, dtype=np.int64)
        self.per_image_hist: list[np.ndarray] = []  # (2, K + 2) counts, for the bootstrap
        self.num_images = 0

    def bootstrap_statistic(self):
        """PxAP of resampled images: ``statistic(counts (n_boot, N)) -> (n_boot,)``."""
        hists = np.stack(self.per_image_hist).astype(np.float64)  # (N, 2, K + 2)

        def statistic(counts: np.ndarray) -> np.ndarray:
            summed = (counts @ hists.reshape(hists.shape[0], -1)).reshape(-1, *hists.shape[1:])
            return average_precision(summed[:, 0], summed[:, 1])

        return statistic

    def update(self, cams, masks, ignore=None) -> None:
        """Add one image (map, boolean mask, optional ignore mask) or a batch of them."""
        for cam, mask, ign in split_batch(cams, masks, ignore):
            v = score_map(cam)
            m = as_mask(mask, v.shape, name="mask")
            ig = None if ign is None else as_mask(ign, v.shape, name="ignore")
            pos, neg = _pixel_histograms(v, m, ig, self.num_thresholds)
            self.positive_hist += pos
            self.negative_hist += neg
            self.per_image_hist.append(np.stack([pos, neg]))
            self.num_images += 1

    def compute(self) -> dict:
        precision, recall = _precision_recall(self.positive_hist, self.negative_hist)
        num_pos = float(self.positive_hist.sum())
        pxap = float(average_precision(self.positive_hist, self.negative_hist))
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
        self.num_thresholds = check_num_thresholds(num_thresholds)
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
        for cam, mask, ign in split_batch(cams, masks, ignore):
            v = score_map(cam)
            m = as_mask(mask, v.shape, name="mask")
            ig = None if ign is None else as_mask(ign, v.shape, name="ignore")
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
