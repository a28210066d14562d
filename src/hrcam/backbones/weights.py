"""Finding pretrained weights offline, and saying clearly when they cannot be had."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["WeightsUnavailableError", "imagenet_categories", "load_state_file"]


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in the order of the classifiers' outputs (torchvision's)."""
    from torchvision.models import DenseNet121_Weights

    return list(DenseNet121_Weights.IMAGENET1K_V1.meta["categories"])


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be downloaded or found on disk."""


def load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt`` or ``.safetensors`` file (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(
            f"{path}: not a readable weights file: truncated or corrupt, or it holds more than "
            "tensors (hrcam loads weights only, never code from a file)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found a {type(state).__name__}")
    return state
