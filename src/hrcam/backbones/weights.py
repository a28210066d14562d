"""Finding pretrained weights offline, and saying clearly when they cannot be had."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

__all__ = [
    "WeightsUnavailableError",
    "imagenet_categories",
    "load_state_file",
    "load_weights_into",
    "quiet_torch_load",
]


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
        state = quiet_torch_load(path)
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


def quiet_torch_load(path: str | os.PathLike):
    """``torch.load(path, weights_only=True)`` on the CPU without torch's warnings about the
    file (a pickle protocol it does not expect, say): hrcam says in one line what it makes of it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def load_weights_into(module: torch.nn.Module, state: dict, source: str | os.PathLike) -> None:
    """``module.load_state_dict(state)``, or one ``ValueError`` line saying how the weights do
    not fit: how many names are missing and unexpected, with the first few of each."""
    missing, unexpected = _mismatch(module, state)
    if missing or unexpected:

        def some(names: list[str]) -> str:
            return ", ".join(names[:3]) + (", …" if len(names) > 3 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({some(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({some(unexpected)})")
        raise ValueError(
            f"{source}: these weights are not for this network ({type(module).__name__}): "
            f"{'; '.join(parts)}; check --backbone and its options"
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as err:  # same names, other shapes
        first = str(err).splitlines()[1:2] or [str(err)]
        raise ValueError(
            f"{source}: these weights do not fit this network: {first[0].strip()}"
        ) from None


def _mismatch(module: torch.nn.Module, state: dict) -> tuple[list[str], list[str]]:
    expected = set(module.state_dict())
    given = set(state)
    return sorted(expected - given), sorted(given - expected)
