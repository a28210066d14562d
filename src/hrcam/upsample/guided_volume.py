"""Guided upsampling of volumes: a CT or MRI CAM to the scan's resolution, along its edges.

:func:`hrcam.guided_upsample` sends a volume's maps ``(B, d, h, w)`` with their volumes
``(B, C, D, H, W)`` here. The method is the 2-D one (:mod:`.guided`) with one more axis: each
output voxel is a convex combination of the values of the 3×3×3 cells around its own cell,
weighted by ``softmax_j(-d_j² / 2σ_s² - |x - μ_j|² / 2σ_c²)`` — ``d_j`` the distance in cells
to cell ``j``'s centre, ``x`` the voxel's intensity (or channels) and ``μ_j`` the cell's mean —
doubling one level at a time, each level guided by the volume averaged to that level; the last
``stride`` factor is trilinear, smoothed by the triangle filter along every axis.

No level builds the 27 weights of every voxel: the compiled kernel (CPU, no gradient) keeps a
voxel's 27 logits in registers, and the torch path (GPUs, autograd) makes two passes over the
27 neighbours (their largest logit, then the softmax's sums), so memory stays a few copies of
the output — a 256³ map costs hundreds of megabytes, not gigabytes.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["guided_upsample_volume"]

Tensor = torch.Tensor

# The 3×3×3 neighbour cells in C order: (dz, dy, dx).
NEIGHBOURS_3D = tuple(itertools.product((-1, 0, 1), repeat=3))


def guided_upsample_volume(
    cams: Tensor,
    volumes: Tensor,
    *,
    colour_sigma: float,
    spatial_sigma: float,
    coarse_to_fine: bool,
    stride: int,
    lattice_filter: bool,
    levels,
    triangle_filter,
) -> Tensor:
    """``cams`` ``(B, d, h, w)`` upsampled to ``volumes``' ``(D, H, W)`` (checked by the
    caller, :func:`hrcam.guided_upsample`; ``levels`` and ``triangle_filter`` are its grid
    ladder and lattice filter, shared with 2-D)."""
    size = tuple(volumes.shape[-3:])
    maps = cams.to(torch.float32)[:, None]
    cells = tuple(maps.shape[-3:])
    guided = tuple(max(-(-n // stride), c) for n, c in zip(size, cells, strict=True))
    ladder = [] if guided == cells else levels(cells, guided) if coarse_to_fine else [guided]
    guide = volumes.to(torch.float32).contiguous()
    compiled = maps.device.type == "cpu" and not (maps.requires_grad and torch.is_grad_enabled())
    for level in ladder:
        level_guide = guide if level == size else F.adaptive_avg_pool3d(guide, level)
        if compiled:
            maps = _compiled_level(maps, level_guide, colour_sigma, spatial_sigma)
        else:
            maps = mix_level_torch(maps, level_guide, colour_sigma, spatial_sigma)
    if tuple(maps.shape[-3:]) != size:
        maps = F.interpolate(maps, size=size, mode="trilinear", align_corners=False)
        if lattice_filter and stride > 1:
            maps = triangle_filter(maps, stride)
    return maps[:, 0].to(cams.dtype)


def axis_tables(size: int, cells: int, sigma: float, device=None) -> tuple[Tensor, Tensor]:
    """Along one axis of ``size`` voxels split into ``cells``: each voxel's cell (adaptive
    pooling's bins) and the spatial logits ``-d² / 2σ²`` to the centres of the cell before,
    its own and the one after, in cells: ``(size,)`` int64 and ``(size, 3)`` float32."""
    index = torch.arange(size, device=device)
    cell = torch.clamp((index * cells) // size, max=cells - 1)
    position = (index.to(torch.float32) + 0.5) * cells / size - 0.5
    offsets = torch.tensor((-1.0, 0.0, 1.0), device=device)
    distance = position[:, None] - (cell.to(torch.float32)[:, None] + offsets)
    return cell, -(distance**2) / (2.0 * sigma * sigma)


def cell_terms(guide: Tensor, cells: tuple[int, ...], colour_sigma: float) -> Tensor:
    """``(B, C + 1, d, h, w)``: each cell's mean / σ² and ``-|mean|² / 2σ²`` (the colour term
    is ``x · μ/σ² - |μ|²/2σ²`` up to a per-voxel constant, which cancels in the softmax)."""
    means = F.adaptive_avg_pool3d(guide, cells)
    scale = 1.0 / colour_sigma**2
    return torch.cat([means * scale, -0.5 * scale * means.pow(2).sum(1, keepdim=True)], dim=1)


def mix_level_torch(maps: Tensor, guide: Tensor, colour_sigma: float, spatial_sigma: float):
    """One level in torch ops (differentiable, any device): ``maps`` (B, M, d, h, w) mixed at
    ``guide``'s (B, C, D, H, W) size, in two passes over the 27 neighbours."""
    cells = tuple(maps.shape[-3:])
    size = tuple(guide.shape[-3:])
    tables = [
        axis_tables(n, c, spatial_sigma, guide.device) for n, c in zip(size, cells, strict=True)
    ]
    padded_maps = F.pad(maps, (1,) * 6, mode="replicate")
    terms = None
    if colour_sigma > 0:
        terms = F.pad(cell_terms(guide, cells, colour_sigma), (1,) * 6, mode="replicate")

    def gather(t: Tensor, offset) -> Tensor:  # each voxel's neighbour ``offset`` of its cell
        for axis, ((cell, _), d) in enumerate(zip(tables, offset, strict=True)):
            t = t.index_select(2 + axis, cell + 1 + d)
        return t

    def logits(offset) -> Tensor:
        (_, tz), (_, ty), (_, tx) = tables
        dz, dy, dx = (d + 1 for d in offset)
        out = tz[:, dz, None, None] + ty[None, :, dy, None] + tx[None, None, :, dx]
        out = out.expand(maps.shape[0], 1, *size)
        if terms is not None:
            around = gather(terms, offset)
            colour = around[:, -1:] + (around[:, :-1] * guide).sum(1, keepdim=True)
            out = out + colour
        return out

    best = logits(NEIGHBOURS_3D[0])
    for offset in NEIGHBOURS_3D[1:]:
        best = torch.maximum(best, logits(offset))
    total = torch.zeros_like(best)
    mixed = None
    for offset in NEIGHBOURS_3D:
        weight = torch.exp(logits(offset) - best)
        total = total + weight
        term = weight * gather(padded_maps, offset)
        mixed = term if mixed is None else mixed + term
    return mixed / total


def _compiled_level(maps: Tensor, guide: Tensor, colour_sigma: float, spatial_sigma: float):
    from . import guided_compiled

    cells = tuple(maps.shape[-3:])
    size = tuple(guide.shape[-3:])
    tables = [axis_tables(n, c, spatial_sigma) for n, c in zip(size, cells, strict=True)]
    terms = None
    if colour_sigma > 0:
        terms = cell_terms(guide, cells, colour_sigma).contiguous().numpy()
    mixed = guided_compiled.mix_level_3d(
        maps.detach().contiguous().numpy(),
        guide.detach().numpy(),
        terms,
        [cell.numpy() for cell, _ in tables],
        [np.ascontiguousarray(table.numpy()) for _, table in tables],
    )
    return torch.from_numpy(mixed)
