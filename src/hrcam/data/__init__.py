"""Data sets: image folders for training, localization ground truth, and data-set builders."""

from .fashion_loc import load_fashion_mnist, make_fashion_loc
from .folders import ClassFolderDataset, ImageFilesDataset, build_transform
from .imagenet_animals import build_imagenet_animals
from .localization import LocalizationDataset, LocalizationSample, boxes_from_mask

__all__ = [
    "ClassFolderDataset",
    "ImageFilesDataset",
    "LocalizationDataset",
    "LocalizationSample",
    "boxes_from_mask",
    "build_imagenet_animals",
    "build_transform",
    "load_fashion_mnist",
    "make_fashion_loc",
]
