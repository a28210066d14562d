"""Index and weight tables shared by the NumPy and the PyTorch pipeline.

Both implementations take their padding indices, bilinear weights and nearest-neighbour indices
from here, so the two compute the same numbers in the same order (they agree bit for bit up to
the region growing). Tables depend only on sizes and are cached; they are read-only.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=64)
def reflect_indices(n: int, pad: int) -> np.ndarray:
    """Source index of each of ``n + 2*pad`` padded positions, half-sample symmetric.

    ``a b c`` padded by 2 reads ``b a | a b c | c b`` (SciPy's ``mode='reflect'``, NumPy's
    ``np.pad(mode='symmetric')``); it repeats for pads wider than ``n``.
    """
    i = np.arange(-pad, n + pad) % (2 * n)
    i = np.where(i >= n, 2 * n - 1 - i, i)
    return _frozen(i.astype(np.int64))[0]


@lru_cache(maxsize=64)
def bilinear_table(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, w0, w1)`` for bilinear resampling of one axis, half-pixel centres.

    Output ``j`` reads ``w0[j] * x[i0[j]] + w1[j] * x[i1[j]]`` at the source coordinate
    ``(j + 0.5) * n_in / n_out - 0.5``, clamped at 0 (and at ``n_in - 1`` through ``i1``) —
    ``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)``, also PIL's
    bilinear upsampling that the original code used. Weights are float32.
    """
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    w1[i1 == i0] = 0.0
    w0 = (1.0 - w1.astype(np.float64)).astype(np.float32)
    return _frozen(i0, i1, w0, w1)


@lru_cache(maxsize=64)
def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output position for nearest-neighbour resampling, half-pixel centres."""
    i = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return _frozen(np.minimum(i, n_in - 1))[0]


@lru_cache(maxsize=64)
def centre_indices(n_in: int, n_out: int) -> np.ndarray:
    """For each of ``n_in`` source cells, the output position that holds its centre."""
    i = np.floor((np.arange(n_in) + 0.5) * (n_out / n_in)).astype(np.int64)
    return _frozen(np.minimum(i, n_out - 1))[0]


def percentile_position(n: int, q: float) -> tuple[int, float]:
    """``(lo, frac)``: the ``q``-th percentile of ``n`` sorted values is ``v[lo] + frac*(v[lo+1]-v[lo])``.

    NumPy's default ``method='linear'``: position ``q/100 * (n-1)``. ``n`` must be >= 1.
    """
    pos = q / 100.0 * (n - 1)
    lo = min(int(np.floor(pos)), n - 1)
    return lo, pos - lo
