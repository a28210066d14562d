"""Localization networks (the paper's "half model"): a registry and one adapter per family."""

from . import densenet, timm_models  # noqa: F401  (registers the builders)
from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone, FeatureInfo
from .registry import create_backbone, list_backbones, register_backbone
from .weights import WeightsUnavailableError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "FeatureInfo",
    "WeightsUnavailableError",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
