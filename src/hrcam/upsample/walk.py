"""The random walk that spreads a CAM over an object: IRNet's inference (Ahn et al., CVPR 2019).

A step replaces each pixel's value by the affinity-weighted mean of itself and its eight
neighbours; the affinity of two pixels is ``(1 - max(b_i, b_j)) ** beta`` for boundary
probabilities ``b``, so the CAM spreads from the most discriminative part of an object over the
rest of it and stops at its outline. Both boundary upsamplers walk: :mod:`.boundary_head`
(boundaries the expansion network learned) and :mod:`.hed_walk` (HED's). A walk needs hundreds
to thousands of steps on a small grid; on a CPU they run compiled (:mod:`.walk_compiled`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["boundary_walk", "walk_multiscale", "walk_steps", "walk_weights"]

_SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _neighbours(padded: torch.Tensor) -> torch.Tensor:
    """``(B, 9, h, w)``: each pixel's value and its eight neighbours' (raster order) from a map
    ``(B, 1, h + 2, w + 2)`` padded by one pixel."""
    h, w = padded.shape[-2] - 2, padded.shape[-1] - 2
    return torch.cat(
        [padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _SHIFTS], dim=1
    )


def _log_affinities(b: torch.Tensor, neighbours: torch.Tensor, beta: float) -> torch.Tensor:
    """``beta * log(1 - max(b_i, b_j))`` ``(B, 9, h, w)`` of boundaries ``b`` ``(B, 1, h, w)``
    and their :func:`_neighbours`; normalised by a softmax, a pixel on a boundary of probability
    near 1 still averages its neighbours rather than fading."""
    return beta * torch.log((1 - torch.maximum(b, neighbours)).clamp_min(1e-30))


def walk_weights(boundaries: torch.Tensor, beta: float) -> torch.Tensor:
    """Transition weights ``(B, 9, h, w)`` of boundaries ``(B, h, w)``: a pixel's and its eight
    neighbours' (raster order) ``(1 - max(b_i, b_j)) ** beta``, neighbours outside the grid
    weighted 0, each pixel's nine summing to 1 (normalised in log space, so a pixel on a
    boundary of probability near 1 still averages its neighbours rather than fading)."""
    b = boundaries[:, None]
    neighbours = _neighbours(F.pad(b, (1, 1, 1, 1), value=2.0))  # 2: outside the grid
    logits = _log_affinities(b, neighbours, beta).masked_fill(neighbours > 1, -torch.inf)
    return torch.softmax(logits, dim=1)


def walk_steps(maps: torch.Tensor, weights: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` steps of the walk of maps ``(B, h, w)`` with :func:`walk_weights` ``(B, 9, h,
    w)``: compiled on a CPU (:mod:`.walk_compiled`), torch operations elsewhere or when a
    gradient is needed."""
    if maps.device.type == "cpu" and not (maps.requires_grad or weights.requires_grad):
        from .walk_compiled import walk

        return walk(maps.float(), weights.float(), steps)
    x = maps[:, None]
    for _ in range(int(steps)):
        neighbours = _neighbours(F.pad(x, (1, 1, 1, 1)))
        x = (weights * neighbours).sum(1, keepdim=True)
    return x[:, 0]


def walk_multiscale(
    maps: torch.Tensor, boundaries: torch.Tensor, *, beta: float = 6.0,
    steps: Sequence[int] = (64, 256),
) -> torch.Tensor:  # fmt: skip
    """Spread maps ``(B, H, W)`` by random walks over boundaries ``(B, h, w)`` in [0, 1] (on a
    grid ``h × w`` coarser than the maps), coarse to fine: ``steps[-1]`` steps on the
    boundaries' grid, each earlier entry on a grid twice coarser than the next (boundaries
    max-pooled, so thin outlines survive). The map starts average-pooled to the coarsest grid
    and ends bilinearly resized back to ``(H, W)``. Values stay within the map's range."""
    if maps.ndim != 3 or boundaries.ndim != 3 or maps.shape[0] != boundaries.shape[0]:
        raise ValueError(
            f"maps must be (B, H, W) and boundaries (B, h, w), got {tuple(maps.shape)} and "
            f"{tuple(boundaries.shape)}"
        )
    if not steps or any(int(s) < 0 for s in steps):
        raise ValueError(f"steps must be one or more counts >= 0, got {steps!r}")
    size = maps.shape[-2:]
    levels = [boundaries[:, None].float().clamp(0, 1)]
    for _ in range(len(steps) - 1):
        levels.insert(0, F.max_pool2d(levels[0], 2, ceil_mode=True))
    x = F.adaptive_avg_pool2d(maps[:, None].float(), levels[0].shape[-2:])
    for level, count in zip(levels, steps, strict=True):
        if x.shape[-2:] != level.shape[-2:]:
            x = F.interpolate(x, size=level.shape[-2:], mode="bilinear", align_corners=False)
        x = walk_steps(x[:, 0], walk_weights(level[:, 0], beta), int(count))[:, None]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[:, 0]


def boundary_walk(
    maps: torch.Tensor, boundaries: torch.Tensor, *, beta: float = 6.0, steps: int = 4096,
    scale: int = 2,
) -> torch.Tensor:  # fmt: skip
    """Spread maps ``(B, H, W)`` by a walk of ``steps`` steps that boundaries ``(B, H, W)`` in
    [0, 1] cut, on a grid ``scale`` times coarser than the maps (the map average-pooled, the
    boundaries max-pooled so thin outlines survive), resized back; returns ``(B, H, W)``. At the
    grid's edge a missing neighbour is the nearest pixel inside (replicate padding). A step is a
    weighted mean, so values stay within the map's minimum and maximum."""
    if maps.shape != boundaries.shape or maps.ndim != 3:
        raise ValueError(
            f"maps and boundaries must both be (B, H, W), got {tuple(maps.shape)} and "
            f"{tuple(boundaries.shape)}"
        )
    size = maps.shape[-2:]
    x, b = maps[:, None].float(), boundaries[:, None].float().clamp(0, 1)
    if scale > 1:
        x, b = F.avg_pool2d(x, scale, ceil_mode=True), F.max_pool2d(b, scale, ceil_mode=True)
    h, w = b.shape[-2:]
    neighbours = _neighbours(F.pad(b, (1, 1, 1, 1), mode="replicate"))
    weights = torch.softmax(_log_affinities(b, neighbours, beta), dim=1)
    # replicate padding: a neighbour outside the grid is the nearest pixel inside it, so its
    # weight moves to that pixel's shift (the same walk, run by walk_steps)
    ys = torch.arange(h, device=b.device)[:, None]
    xs = torch.arange(w, device=b.device)[None, :]
    target = torch.stack(
        [
            ((ys + dy).clamp(0, h - 1) - ys + 1) * 3 + ((xs + dx).clamp(0, w - 1) - xs + 1)
            for dy, dx in _SHIFTS
        ]
    )
    weights = torch.zeros_like(weights).scatter_add_(1, target[None].expand_as(weights), weights)
    x = walk_steps(x[:, 0], weights, steps)[:, None]
    if scale > 1:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x[:, 0]
