"""Metrics for classifiers and their class activation maps.

- :mod:`~hrcam.metrics.classification` — accuracy, top-k, macro/micro precision, recall, F1;
- where the map points, by family: :mod:`~hrcam.metrics.boxes` (MaxBoxAccV2, top-1 / GT-known
  localization), :mod:`~hrcam.metrics.pixels` (PxAP, best pixel IoU),
  :mod:`~hrcam.metrics.pointing` (pointing game, energy-based pointing game);
- :mod:`~hrcam.metrics.faithfulness` — whether the model follows the map: deletion and
  insertion AUC (RISE), average drop and increase in confidence (Grad-CAM++).

Every localization metric is an accumulator (``update`` per image or batch, ``compute`` a dict)
over a pure per-image function; the conventions (normalisation, thresholds, inclusive boxes,
empty masks) are in :mod:`hrcam.metrics.base`'s docstring.
"""

from .base import LocalizationMetric, resize_map, score_map
from .boxes import (
    CAMLocalization,
    MaxBoxAccV2,
    box_iou,
    boxes_to_mask,
    largest_component_box,
    max_box_iou_curve,
)
from .classification import (
    ClassificationMeter,
    classification_report,
    confusion_matrix,
    topk_accuracy,
)
from .faithfulness import average_drop_increase, blur_images, deletion_insertion
from .pixels import BestPixelIoU, PxAP
from .pointing import EnergyPointingGame, PointingGame, energy_inside, pointing_game_hit

__all__ = [
    "BestPixelIoU",
    "CAMLocalization",
    "ClassificationMeter",
    "EnergyPointingGame",
    "LocalizationMetric",
    "MaxBoxAccV2",
    "PointingGame",
    "PxAP",
    "average_drop_increase",
    "blur_images",
    "box_iou",
    "boxes_to_mask",
    "classification_report",
    "confusion_matrix",
    "deletion_insertion",
    "energy_inside",
    "largest_component_box",
    "max_box_iou_curve",
    "score_map",
    "pointing_game_hit",
    "resize_map",
    "topk_accuracy",
]
