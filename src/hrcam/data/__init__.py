"""Data: image folders for the two training stages, and localization ground truth for evaluation.

The builders of whole data sets (the paper's ImageNet animals, the Fashion-MNIST localization
set) are in :mod:`hrcam.datasets`, outside the core import path.
"""

from .annotations import LocalizationDataset, LocalizationSample, boxes_from_mask
from .folders import ClassFolderDataset, ImageFilesDataset, build_transform

__all__ = [
    "ClassFolderDataset",
    "ImageFilesDataset",
    "LocalizationDataset",
    "LocalizationSample",
    "boxes_from_mask",
    "build_transform",
]
