"""Score one method's maps against masks and boxes: every localization metric, one image at a time.

Protocol: a map at the network's input size (e.g. 224×224, the image stretched to it) is resized
bilinearly to the image's **original** size (:func:`hrcam.metrics.resize_map`, half-pixel
centres), which undoes the stretch, and scored there against the annotation. Each metric then
min-max normalises the map (:mod:`hrcam.metrics.base`'s conventions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import (
    BestPixelIoU,
    CAMLocalization,
    EnergyPointingGame,
    MaxBoxAccV2,
    PointingGame,
    PxAP,
    boxes_to_mask,
    resize_map,
)
from ..metrics.intervals import DEFAULT_BOOTSTRAPS, bootstrap_interval, mean_statistic

__all__ = ["GroundTruth", "LocalizationScores", "ground_truth"]

MASK_BOXES = ("components", "union")


@dataclass(frozen=True)
class GroundTruth:
    """What one image is scored against, at its original size ``shape`` = (H, W)."""

    name: str
    shape: tuple[int, int]
    mask: np.ndarray | None  # (H, W) bool object pixels; None with boxes only
    ignore: np.ndarray | None  # (H, W) bool pixels left out of pixel scores
    boxes: np.ndarray  # (N, 4) inclusive x1, y1, x2, y2
    point_mask: np.ndarray  # (H, W) bool: the mask, or the boxes' union (pointing games)


def ground_truth(sample, *, mask_boxes: str = "components") -> GroundTruth:
    """A :class:`GroundTruth` from a :class:`~hrcam.data.annotations.LocalizationSample`.

    ``mask_boxes``: for samples whose boxes come from their mask, ``"components"`` keeps one box
    per 8-connected component (the dataset's boxes), ``"union"`` one box around every object
    pixel. Boxes from a CSV are used as they are.
    """
    if mask_boxes not in MASK_BOXES:
        raise ValueError(f"mask_boxes must be one of {MASK_BOXES}, got {mask_boxes!r}")
    shape = (int(sample.height), int(sample.width))
    boxes = sample.boxes if sample.boxes is not None else np.zeros((0, 4), np.int64)
    if mask_boxes == "union" and sample.mask is not None and sample.mask.any():
        rows, cols = np.nonzero(sample.mask)
        boxes = np.array([[cols.min(), rows.min(), cols.max(), rows.max()]], dtype=np.int64)
    point_mask = sample.mask if sample.mask is not None else boxes_to_mask(boxes, shape)
    return GroundTruth(sample.name, shape, sample.mask, sample.ignore, boxes, point_mask)


class LocalizationScores:
    """Every localization metric of one method over a data set, fed one map at a time.

    Pixel metrics (PxAP, best pixel IoU) need masks; box metrics (MaxBoxAccV2, GT-known loc.)
    use the boxes; the pointing games use the mask (or, with boxes only, the boxes' union).

    Args:
        has_masks: whether the data set has pixel masks.
        num_thresholds: CAM thresholds of PxAP, best IoU and MaxBoxAccV2 (100: 0, 0.01, ...).
        top1: pass ``correct`` with every update, for top-1 localization.
    """

    def __init__(self, *, has_masks: bool, num_thresholds: int = 100, top1: bool = False) -> None:
        self.has_masks = has_masks
        self.top1 = top1
        self.pxap = PxAP(num_thresholds=num_thresholds) if has_masks else None
        self.best_iou = BestPixelIoU(num_thresholds=num_thresholds) if has_masks else None
        self.box_acc = MaxBoxAccV2(num_thresholds=num_thresholds)
        self.cam_loc = CAMLocalization()
        self.pointing = PointingGame()
        self.energy = EnergyPointingGame()
        self.num_images = 0
        self.per_image: dict[str, dict[str, Any]] = {}
        self.pointing_hits: list[bool] = []  # per image with an object

    @staticmethod
    def resize(cam, truth: GroundTruth) -> np.ndarray:
        """The map (at the network's input size) bilinearly resized to the image's original size."""
        return resize_map(cam, truth.shape)

    def update(
        self, full_map: np.ndarray, truth: GroundTruth, *, correct: bool | None = None
    ) -> None:
        """Add one image: ``full_map`` ``(H, W)`` already at the original size (see :meth:`resize`)."""
        record: dict[str, Any] = {}
        if self.has_masks:
            self.pxap.update(full_map, truth.mask, truth.ignore)
            before = len(self.best_iou.per_image_best)
            self.best_iou.update(full_map, truth.mask, truth.ignore)
            if len(self.best_iou.per_image_best) > before:
                record["best_pixel_iou"] = self.best_iou.per_image_best[-1]
                record["best_threshold"] = self.best_iou.per_image_threshold[-1]
        self.box_acc.update(full_map, truth.boxes)
        if self.top1:
            self.cam_loc.update(full_map, truth.boxes, correct=bool(correct))
        else:
            self.cam_loc.update(full_map, truth.boxes)
        hits = self.pointing.hits
        self.pointing.update(full_map, truth.point_mask)
        if truth.point_mask.any():
            record["pointing_hit"] = self.pointing.hits > hits
            self.pointing_hits.append(record["pointing_hit"])
        self.energy.update(full_map, truth.point_mask, truth.ignore)
        self.num_images += 1
        self.per_image[truth.name] = record

    def statistics(self) -> dict[str, tuple[Callable[[np.ndarray], np.ndarray], int]]:
        """``{metric: (statistic of resample counts, number of images)}``, for the bootstrap."""
        statistics = {
            "max_box_acc_v2": (self.box_acc.bootstrap_statistic(), self.box_acc.num_images),
            "pointing_game": (mean_statistic(self.pointing_hits), len(self.pointing_hits)),
            "energy_pointing_game": (
                mean_statistic(self.energy.per_image_share),
                len(self.energy.per_image_share),
            ),
        }
        if self.has_masks:
            statistics["pxap"] = (self.pxap.bootstrap_statistic(), self.pxap.num_images)
            best = self.best_iou.per_image_best
            statistics["best_pixel_iou"] = (mean_statistic(best), len(best))
        return statistics

    def intervals(self, *, n_boot: int = DEFAULT_BOOTSTRAPS, seed: int = 0) -> dict[str, list]:
        """95 % bootstrap intervals over images, ``{metric: [low, high]}`` (fractions)."""
        return {
            name: list(bootstrap_interval(stat, n, n_boot=n_boot, seed=seed)) if n else [None, None]
            for name, (stat, n) in self.statistics().items()
        }

    def compute(self) -> dict[str, Any]:
        """``{"metrics": scalars, "curves": arrays, "per_image": {name: record}}`` (fractions)."""
        nan = float("nan")
        box = self.box_acc.compute()
        loc = self.cam_loc.compute()
        metrics: dict[str, Any] = {
            "pxap": nan,
            "best_pixel_iou": nan,
            "max_box_acc_v2": box["max_box_acc_v2"],
            "max_box_acc": {
                f"{d:g}": float(v)
                for d, v in zip(box["iou_thresholds"], box["max_box_acc"], strict=True)
            },
            "best_cam_threshold": {
                f"{d:g}": float(v)
                for d, v in zip(box["iou_thresholds"], box["best_cam_threshold"], strict=True)
            },
            "gt_known_loc": loc["gt_known_loc"],
            "top1_loc": loc["top1_loc"],
            "pointing_game": self.pointing.compute()["accuracy"],
            "energy_pointing_game": self.energy.compute()["energy_pointing_game"],
            "num_images": self.num_images,
            "num_images_without_object": loc["num_skipped"],
        }
        curves: dict[str, Any] = {
            "box_acc": {
                "cam_thresholds": box["cam_thresholds"],
                "iou_thresholds": box["iou_thresholds"],
                "box_acc": box["curve"],
            },
        }
        if self.has_masks:
            px = self.pxap.compute()
            iou = self.best_iou.compute()
            metrics["pxap"] = px["pxap"]
            metrics["best_pixel_iou"] = iou["best_pixel_iou"]
            metrics["dataset_best_threshold"] = iou["best_threshold"]
            metrics["iou_at_dataset_best_threshold"] = iou["iou_at_best_threshold"]
            curves["pr"] = {
                "thresholds": px["thresholds"],
                "precision": px["precision"],
                "recall": px["recall"],
            }
            curves["pixel_iou"] = {"thresholds": iou["thresholds"], "mean_iou": iou["curve"]}
        return {"metrics": metrics, "curves": curves, "per_image": self.per_image}
