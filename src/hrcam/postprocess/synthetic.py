"""Realistic-looking synthetic CAMs for tests and benchmarks of the refinement pipeline.

A CAM of a trained network is a few smooth blobs over the object; the low-res one is that seen
through a coarse grid, the high-res one adds detail (texture, sharper borders, noise, negative
values). :func:`make_cams` draws such pairs from a seeded generator, vectorised over a batch.
"""

from __future__ import annotations

import numpy as np

from . import grid

__all__ = ["make_cams"]


def make_cams(
    rng: np.random.Generator,
    batch: int = 1,
    *,
    low_shape: tuple[int, int] = (7, 7),
    high_shape: tuple[int, int] = (224, 224),
    blobs: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, high, image)``: ``(B, h, w)`` and ``(B, H, W)`` float32 CAMs, ``(B, H, W, 3)`` uint8.

    Each image gets ``blobs`` Gaussian blobs (centres in the middle 70 %, widths 6-20 % of the
    side, the first the strongest). The low-res CAM samples the mixture at the ``h x w`` cell
    centres plus a little noise; the high-res CAM samples a sharper version modulated by a
    smooth random texture, plus pixel noise and an offset that makes part of it negative.

    Example::

        low, high, image = make_cams(np.random.default_rng(0), 8)
    """
    B = batch
    centres = rng.uniform(0.15, 0.85, size=(B, blobs, 2))
    widths = rng.uniform(0.06, 0.2, size=(B, blobs))
    weights = rng.uniform(0.3, 0.9, size=(B, blobs))
    weights[:, 0] = 1.0

    low = _mixture(low_shape, centres, widths, weights)
    low += rng.normal(0.0, 0.03, size=low.shape)
    sharp = _mixture(high_shape, centres, 0.7 * widths, weights)
    texture = rng.uniform(0.0, 1.0, size=(B, 12, 12))
    i0, i1, w0, w1 = grid.bilinear_table(12, high_shape[0])
    j0, j1, v0, v1 = grid.bilinear_table(12, high_shape[1])
    rows = texture[:, i0] * w0[:, None] + texture[:, i1] * w1[:, None]
    texture = rows[:, :, j0] * v0 + rows[:, :, j1] * v1
    high = sharp * (0.5 + texture) + rng.normal(0.0, 0.02, size=sharp.shape) - 0.1

    shade = np.clip(0.3 + 0.7 * high / max(float(high.max()), 1e-6), 0, 1)
    tint = rng.uniform(0.4, 1.0, size=(B, 1, 1, 3))
    image = shade[..., None] * tint * 255 + rng.normal(0, 8, size=(*high.shape, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    # Broadcasting can leave an odd memory order; real images and CAMs arrive C-contiguous.
    as_c = np.ascontiguousarray
    return as_c(low, dtype=np.float32), as_c(high, dtype=np.float32), as_c(image)


def _mixture(shape, centres, widths, weights) -> np.ndarray:
    """Sum of Gaussian blobs sampled at the pixel centres of ``shape`` -> ``(B, *shape)``."""
    h, w = shape
    y = (np.arange(h) + 0.5) / h
    x = (np.arange(w) + 0.5) / w
    # Separable: exp(-(dy^2 + dx^2) / 2s^2) = exp(-dy^2 / 2s^2) * exp(-dx^2 / 2s^2).
    s2 = 2 * widths[..., None] ** 2
    gy = np.exp(-((y[None, None, :] - centres[..., 0, None]) ** 2) / s2)  # (B, k, h)
    gx = np.exp(-((x[None, None, :] - centres[..., 1, None]) ** 2) / s2)  # (B, k, w)
    return np.einsum("bk,bki,bkj->bij", weights, gy, gx)
