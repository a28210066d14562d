"""The random walk of the boundary upsamplers (:mod:`.walk`) compiled with Numba.

A walk step replaces every pixel's value by the weighted mean of itself and its eight
neighbours (weights fixed for the walk). In torch that is a dozen small tensor operations per
step, and a walk takes hundreds of steps on a small grid, so the time goes to calling them;
here one loop per image keeps the grid in cache and runs every step. Same arithmetic as the
torch loop of :func:`hrcam.upsample.walk.walk_steps` (the sums in the same order, so
the two agree to float32 rounding; ``tests/upsample``). Images run in parallel on PyTorch's
number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .guided_compiled import threads

__all__ = ["walk"]


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
def _walk(x, weights, steps):
    b, h, w = x.shape
    out = np.empty_like(x)
    for i in numba.prange(b):
        p = np.zeros((h + 2, w + 2), dtype=np.float32)
        q = np.zeros((h + 2, w + 2), dtype=np.float32)
        p[1 : h + 1, 1 : w + 1] = x[i]
        wt = weights[i]
        for _ in range(steps):
            for y in range(h):
                for c in range(w):
                    acc = wt[0, y, c] * p[y, c]
                    acc += wt[1, y, c] * p[y, c + 1]
                    acc += wt[2, y, c] * p[y, c + 2]
                    acc += wt[3, y, c] * p[y + 1, c]
                    acc += wt[4, y, c] * p[y + 1, c + 1]
                    acc += wt[5, y, c] * p[y + 1, c + 2]
                    acc += wt[6, y, c] * p[y + 2, c]
                    acc += wt[7, y, c] * p[y + 2, c + 1]
                    acc += wt[8, y, c] * p[y + 2, c + 2]
                    q[y + 1, c + 1] = acc
            p, q = q, p
        out[i] = p[1 : h + 1, 1 : w + 1]
    return out


def walk(x: torch.Tensor, weights: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` walk steps of maps ``x`` ``(B, h, w)`` with row-normalised weights
    ``(B, 9, h, w)`` (neighbours in raster order ``(dy, dx)`` for dy, dx in -1, 0, 1; those
    outside the grid weighted 0). CPU float32 tensors; returns ``(B, h, w)``."""
    xs = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
    ws = np.ascontiguousarray(weights.detach().numpy(), dtype=np.float32)
    with threads():
        return torch.from_numpy(_walk(xs, ws, int(steps)))
