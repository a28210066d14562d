"""The choices an evaluation offers, without importing torch (the command's ``--help`` reads
them): the splits, the target classes, and the methods run when none are named."""

from __future__ import annotations

__all__ = ["DEFAULT_METHODS", "SPLITS", "TARGETS"]

SPLITS = ("all", "first-half", "second-half")
TARGETS = ("predicted", "label")
DEFAULT_METHODS = (
    "low_res",
    "high_res",
    "refined",
    "gradcam",
    "gradcampp",
    "hirescam",
    "layercam",
    "layercam_fused",
    "eigencam",
)
