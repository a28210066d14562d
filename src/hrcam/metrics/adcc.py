"""Coherency, Complexity and ADCC (Poppi, Cornia, Baraldi & Cucchiara, CVPR-W 2021, "Revisiting
the Evaluation of Class Activation Mapping for Explainability"), the protocol FeatUp and JAFAR
report upsampled maps with.

With ``E(x)`` a method's map for image ``x`` (resized to it, min-max normalised to [0, 1]) and
``x ⊙ E(x)`` the explanation image (every channel of the model's normalised input multiplied by
the map, as Grad-CAM++'s average drop and the authors' code do):

- **Coherency** = ``(ρ(E(x), E(x ⊙ E(x))) + 1) / 2``, ρ the Pearson correlation: the method,
  run again on its own explanation image, should give the same map (0 when a map is constant,
  as the authors' code treats NaN);
- **Complexity** = ``mean |E(x)|``: a simpler (sparser) map is better;
- **Average drop** = ``max(0, Y - O) / Y`` (:func:`~.faithfulness.average_drop_increase`);
- **ADCC** = ``3 / (1 / Coherency + 1 / (1 - Complexity) + 1 / (1 - AverageDrop))`` per image,
  the harmonic mean; the data set's score is the mean over images. Higher is better.

All are fractions in [0, 1] (the papers print them ×100).
"""

from __future__ import annotations

import numpy as np
import torch

from ..arrays import resize_maps

__all__ = ["adcc", "coherency", "complexity", "explanation_images", "normalized_maps"]


def normalized_maps(cams, size: tuple[int, int]) -> torch.Tensor:
    """``(B, h, w)`` maps resized bilinearly to ``size`` and min-max normalised per image (float32);
    NaN and ±inf count as 0, a constant map becomes 0."""
    t = torch.as_tensor(np.asarray(cams) if not torch.is_tensor(cams) else cams).float().cpu()
    t = torch.nan_to_num(resize_maps(t, size), nan=0.0, posinf=0.0, neginf=0.0)
    flat = t.reshape(t.shape[0], -1)
    lo = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - lo
    return torch.where(span > 0, (flat - lo) / span.clamp_min(1e-30), 0.0).reshape(t.shape)


def explanation_images(images: torch.Tensor, cams) -> torch.Tensor:
    """``x ⊙ E(x)``: each image (the model's normalised input) times its normalised map."""
    maps = normalized_maps(cams, tuple(images.shape[-2:])).to(images.device, images.dtype)
    return images * maps[:, None]


def coherency(cams_a, cams_b, size: tuple[int, int]) -> np.ndarray:
    """``(ρ + 1) / 2`` per image between two ``(B, h, w)`` map batches (at ``size``); 0 if either
    map is constant."""
    a = normalized_maps(cams_a, size).reshape(len(cams_a), -1).double()
    b = normalized_maps(cams_b, size).reshape(len(cams_b), -1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    rho = torch.where(denominator > 0, (a * b).sum(1) / denominator.clamp_min(1e-300), -1.0)
    return ((rho + 1) / 2).numpy()


def complexity(cams, size: tuple[int, int]) -> np.ndarray:
    """Mean of each normalised map ``(B,)`` (its L1 norm over the number of pixels)."""
    return normalized_maps(cams, size).reshape(len(cams), -1).double().mean(1).numpy()


def adcc(coherency_: np.ndarray, complexity_: np.ndarray, average_drop: np.ndarray) -> np.ndarray:
    """The per-image harmonic mean of coherency, 1 - complexity and 1 - average drop (0 when a
    term is 0).

    >>> adcc(np.array([1.0, 0.0]), np.array([0.0, 0.2]), np.array([0.0, 0.1])).round(3).tolist()
    [1.0, 0.0]
    """
    terms = np.stack([coherency_, 1 - complexity_, 1 - average_drop]).astype(np.float64)
    with np.errstate(divide="ignore"):
        out = 3 / (1 / terms).sum(0)
    return np.where((terms > 0).all(0), out, 0.0)
