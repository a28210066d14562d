"""One level of the guided upsampling compiled with Numba: the torch path's arithmetic, fused.

:func:`hrcam.upsample.guided.guided_upsample` refines a map one doubling at a time; at each
level every pixel mixes the map's values at its cell's 3×3 neighbour cells, weighted by a
softmax of a spatial prior and a colour term. The torch path builds that as a dozen full-size
tensors (the nine logits, their softmax, nine gathered neighbour values) per level; here one
loop per pixel computes its nine logits, their softmax and the mix in registers. The values
agree with the torch path to float32 rounding (``tests/upsample``), not bit for bit: the sums
run in another order. CPU maps that need no gradient take this path.

The loops run in parallel on as many threads as PyTorch's (``torch.get_num_threads()``), one
call at a time (a lock: Numba's fallback thread pool must not be entered from two threads).
"""

from __future__ import annotations

import contextlib
import math
import threading

import numba
import numpy as np
import torch

__all__ = ["block_means", "mix_level", "mix_level_3d", "threads", "triangle_filter"]

_jit = numba.njit(cache=True, nogil=True)
_parallel = numba.njit(cache=True, nogil=True, parallel=True)
_LOCK = threading.Lock()


@contextlib.contextmanager
def threads():
    """One parallel call at a time, on PyTorch's number of threads."""
    with _LOCK:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        yield


@_jit
def _cell_terms(means, inv_sigma2):
    """(B, C + 1, h, w): each cell's mean colour / σ² and -|mean|² / 2σ²."""
    b, c, h, w = means.shape
    out = np.empty((b, c + 1, h, w), dtype=np.float32)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                norm = np.float32(0.0)
                for k in range(c):
                    m = means[i, k, y, x]
                    out[i, k, y, x] = m * inv_sigma2
                    norm += m * m
                out[i, c, y, x] = np.float32(-0.5) * norm * inv_sigma2
    return out


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
def _mix(maps, guide, terms, prior, cell_y, cell_x, colour):
    b, m, h, w = maps.shape
    c = guide.shape[1]
    height, width = prior.shape[1], prior.shape[2]
    out = np.empty((b, m, height, width), dtype=np.float32)
    # Each cell's neighbour columns, once: nx[j % 3, x] for every pixel column x.
    nx = np.empty((3, width), dtype=np.int64)
    for d in range(3):
        for x in range(width):
            nx[d, x] = min(max(cell_x[x] + d - 1, 0), w - 1)
    for row in numba.prange(b * height):
        i, y = row // height, row % height
        logits = np.empty((9, width), dtype=np.float32)
        best = np.full(width, -3.0e38, dtype=np.float32)  # finite: fastmath assumes no inf
        for j in range(9):
            yy = min(max(cell_y[y] + j // 3 - 1, 0), h - 1)
            for x in range(width):
                xx = nx[j % 3, x]
                v = prior[j, y, x]
                if colour:
                    s = terms[i, c, yy, xx]
                    for k in range(c):
                        s += guide[i, k, y, x] * terms[i, k, yy, xx]
                    v += s
                logits[j, x] = v
                best[x] = max(best[x], v)
        total = np.zeros(width, dtype=np.float32)
        for j in range(9):
            for x in range(width):
                e = np.float32(math.exp(logits[j, x] - best[x]))
                logits[j, x] = e
                total[x] += e
        for q in range(m):
            acc = np.zeros(width, dtype=np.float32)
            for j in range(9):
                yy = min(max(cell_y[y] + j // 3 - 1, 0), h - 1)
                for x in range(width):
                    acc[x] += logits[j, x] * maps[i, q, yy, nx[j % 3, x]]
            for x in range(width):
                out[i, q, y, x] = acc[x] / total[x]
    return out


def mix_level(
    maps: np.ndarray,
    guide: np.ndarray,
    means: np.ndarray | None,
    prior: np.ndarray,
    cell_y: np.ndarray,
    cell_x: np.ndarray,
    colour_sigma: float,
) -> np.ndarray:
    """``maps`` (B, M, h, w) mixed at the size of ``guide`` (B, C, H, W): every pixel the
    softmax-weighted mean of its cell's 3×3 neighbours (cells replicated at the border), the
    logits ``prior`` (9, H, W) plus, with ``means`` (B, C, h, w, the guide averaged over the
    cells), the colour term ``(x·μ_j - |μ_j|²/2) / σ²``. ``cell_y``/``cell_x``: each pixel's
    cell. float32 throughout."""
    colour = means is not None and colour_sigma > 0
    if colour:
        terms = _cell_terms(means, np.float32(1.0 / colour_sigma**2))
    else:
        terms = np.zeros((1, 1, 1, 1), dtype=np.float32)
    with threads():
        return _mix(maps, guide, terms, prior, cell_y, cell_x, colour)


@_parallel
def _block_means(x, fh, fw):
    b, c, height, width = x.shape
    h, w = height // fh, width // fw
    out = np.empty((b, c, h, w), dtype=np.float32)
    scale = np.float32(1.0 / (fh * fw))
    for plane in numba.prange(b * c):
        i, k = plane // c, plane % c
        for y in range(h):
            row = np.zeros(w, dtype=np.float32)
            for dy in range(fh):
                for x_ in range(w):
                    for dx in range(fw):
                        row[x_] += x[i, k, y * fh + dy, x_ * fw + dx]
            for x_ in range(w):
                out[i, k, y, x_] = row[x_] * scale
    return out


def block_means(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``x`` (B, C, H, W) averaged over the blocks of a grid ``size`` that divides (H, W)."""
    height, width = x.shape[-2:]
    with threads():
        return _block_means(x, height // size[0], width // size[1])


@_parallel
def _triangle(x, taps):
    b, m, height, width = x.shape
    r = (taps.size - 1) // 2
    out = np.empty_like(x)
    for plane in numba.prange(b * m):
        i, q = plane // m, plane % m
        rows = np.empty((height, width), dtype=np.float32)
        for y in range(height):
            for x_ in range(width):
                acc = np.float32(0.0)
                for t in range(taps.size):
                    acc += taps[t] * x[i, q, y, min(max(x_ + t - r, 0), width - 1)]
                rows[y, x_] = acc
        for y in range(height):
            for x_ in range(width):
                out[i, q, y, x_] = 0.0
            for t in range(taps.size):
                source = min(max(y + t - r, 0), height - 1)
                for x_ in range(width):
                    out[i, q, y, x_] += taps[t] * rows[source, x_]
    return out


def triangle_filter(maps: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``maps`` (B, M, H, W) filtered by the symmetric ``taps`` along rows, then columns, edges
    replicated."""
    with threads():
        return _triangle(maps, taps.astype(np.float32))


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
def _mix_3d(maps, guide, terms, cz, cy, cx, tz, ty, tx, colour):
    b, m, d, h, w = maps.shape
    c = guide.shape[1]
    depth, height, width = cz.size, cy.size, cx.size
    out = np.empty((b, m, depth, height, width), dtype=np.float32)
    nx = np.empty((3, width), dtype=np.int64)
    for k in range(3):
        for x in range(width):
            nx[k, x] = min(max(cx[x] + k - 1, 0), w - 1)
    for row in numba.prange(b * depth * height):
        i = row // (depth * height)
        z = (row // height) % depth
        y = row % height
        logits = np.empty((27, width), dtype=np.float32)
        best = np.full(width, -3.0e38, dtype=np.float32)  # finite: fastmath assumes no inf
        for j in range(27):
            a, bb, k = j // 9, (j // 3) % 3, j % 3
            zz = min(max(cz[z] + a - 1, 0), d - 1)
            yy = min(max(cy[y] + bb - 1, 0), h - 1)
            base = tz[z, a] + ty[y, bb]
            for x in range(width):
                xx = nx[k, x]
                v = base + tx[x, k]
                if colour:
                    s = terms[i, c, zz, yy, xx]
                    for q in range(c):
                        s += guide[i, q, z, y, x] * terms[i, q, zz, yy, xx]
                    v += s
                logits[j, x] = v
                best[x] = max(best[x], v)
        total = np.zeros(width, dtype=np.float32)
        for j in range(27):
            for x in range(width):
                e = np.float32(math.exp(logits[j, x] - best[x]))
                logits[j, x] = e
                total[x] += e
        for q in range(m):
            acc = np.zeros(width, dtype=np.float32)
            for j in range(27):
                a, bb, k = j // 9, (j // 3) % 3, j % 3
                zz = min(max(cz[z] + a - 1, 0), d - 1)
                yy = min(max(cy[y] + bb - 1, 0), h - 1)
                for x in range(width):
                    acc[x] += logits[j, x] * maps[i, q, zz, yy, nx[k, x]]
            for x in range(width):
                out[i, q, z, y, x] = acc[x] / total[x]
    return out


def mix_level_3d(maps, guide, terms, cells, tables) -> np.ndarray:
    """One level of the volume upsampling (:mod:`.guided_volume`): ``maps`` (B, M, d, h, w)
    mixed at ``guide``'s (B, C, D, H, W) size over each voxel's 3×3×3 neighbour cells.
    ``terms``: (B, C + 1, d, h, w), the cells' colour terms, or None for the spatial term
    alone; ``cells``: each voxel's cell along each axis; ``tables``: each axis's spatial logits
    (n, 3) to the cell before, its own and the one after."""
    colour = terms is not None
    if not colour:
        terms = np.zeros((1, 1, 1, 1, 1), dtype=np.float32)
    (cz, cy, cx), (tz, ty, tx) = cells, tables
    with threads():
        return _mix_3d(maps, guide, terms, cz, cy, cx, tz, ty, tx, colour)
