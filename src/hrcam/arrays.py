"""Small array utilities every layer uses: to NumPy, normalise a map, resize maps. One
definition each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["normalize_map", "resize_maps", "to_numpy"]


def to_numpy(x) -> np.ndarray:
    """A NumPy array of an array-like or a tensor (on any device, tracking gradients or not).

    Half-precision tensors come back as float32 (NumPy has no bfloat16).
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (_torch().float32, _torch().float64):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def normalize_map(cam, *, dtype=np.float32) -> np.ndarray:
    """``cam`` scaled to [0, 1] as ``(x - min) / (max - min)``; NaN and ±inf count as 0.

    ``cam``: any shape, any real dtype (or a tensor). A constant map normalises to zeros. Returns
    a new array of ``dtype`` (float32 by default; the metrics use float64), same shape. In
    float32 a ``max - min`` that overflows is handled exactly (both halved).

    >>> normalize_map(np.array([[0.0, 2.0], [np.nan, 4.0]])).tolist()
    [[0.0, 0.5], [0.0, 1.0]]
    """
    x = np.array(to_numpy(cam), dtype=dtype)
    if x.size == 0:
        return x
    lo, hi = x.min(), x.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):  # a NaN or an inf somewhere
        x[~np.isfinite(x)] = 0
        lo, hi = x.min(), x.max()
    return normalize_finite(x, lo, hi)


def normalize_finite(x: np.ndarray, lo=None, hi=None) -> np.ndarray:
    """:func:`normalize_map` of a finite float array whose range ``lo, hi`` may be given."""
    if x.size == 0:
        return x
    if lo is None:
        lo, hi = x.min(), x.max()
    with np.errstate(over="ignore"):
        span = hi - lo
    if not np.isfinite(span):
        # max - min overflowed: halving is exact and brings it back in range.
        half = x.dtype.type(0.5)
        x, lo, hi = x * half, lo * half, hi * half
        span = hi - lo
    if span > 0:
        out = np.subtract(x, lo, dtype=x.dtype)
        out /= span
        return out
    return np.zeros(x.shape, dtype=x.dtype)


def resize_maps(maps, size: Sequence[int], *, mode: str = "bilinear"):
    """Resize maps ``(B, h, w)`` or ``(h, w)`` (tensor) to ``size = (H, W)``, float32 (float64
    stays float64).

    Bilinear with half-pixel centres (``align_corners=False``, no antialiasing: maps are
    upsampled), as ``torch.nn.functional.interpolate`` and OpenCV's ``cv2.resize``.
    """
    import torch.nn.functional as F

    squeeze = maps.ndim == 2
    x = maps[None, None] if squeeze else maps[:, None]
    if x.dtype != _torch().float64:
        x = x.float()
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(x, size=tuple(int(s) for s in size), mode=mode, **kwargs)
    return out[0, 0] if squeeze else out[:, 0]


def _torch():
    import torch

    return torch
