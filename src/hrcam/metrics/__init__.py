"""Metrics for classifiers and their class activation maps.

- :mod:`~hrcam.metrics.classification` — accuracy, top-k, macro/micro precision, recall, F1;
- :mod:`~hrcam.metrics.localization` — where the map points: MaxBoxAccV2, top-1 / GT-known
  localization, PxAP, best pixel IoU, pointing game, energy-based pointing game;
- :mod:`~hrcam.metrics.faithfulness` — whether the model follows the map: deletion and
  insertion AUC (RISE), average drop and increase in confidence (Grad-CAM++).

Every localization metric is an accumulator (``update`` per image or batch, ``compute`` a dict)
over a pure per-image function; the conventions (normalisation, thresholds, inclusive boxes,
empty masks) are in :mod:`hrcam.metrics.localization`'s docstring.
"""

from .classification import (
    ClassificationMeter,
    classification_report,
    confusion_matrix,
    topk_accuracy,
)
from .faithfulness import average_drop_increase, blur_images, deletion_insertion
from .localization import (
    BestPixelIoU,
    CAMLocalization,
    EnergyPointingGame,
    LocalizationMetric,
    MaxBoxAccV2,
    PointingGame,
    PxAP,
    box_iou,
    boxes_to_mask,
    energy_inside,
    largest_component_box,
    max_box_iou_curve,
    normalize_map,
    pointing_game_hit,
    resize_map,
)

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
    "normalize_map",
    "pointing_game_hit",
    "resize_map",
    "topk_accuracy",
]
