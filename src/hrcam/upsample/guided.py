"""Guided upsampling: any low-resolution saliency map to the image's resolution, along its edges.

The CAM of a GAP + FC network lives on the feature grid (7×7 at 224×224); a user's Grad-CAM,
LayerCAM or Score-CAM map lives on its target layer's grid. :func:`guided_upsample` takes such
a map and the RGB image and returns the map at the image's resolution, with its edges moved onto
the image's edges. It needs no training and works for any model and any CAM method.

Each output pixel is a convex combination of the values of the 3×3 cells around its own cell,
with weights ``softmax_j(-d_j² / 2σ_s² - |x - μ_j|² / 2σ_c²)``: ``d_j`` the distance in cells
from the pixel to cell ``j``'s centre, ``x`` the pixel's colour and ``μ_j`` cell ``j``'s mean
colour. The spatial term alone is a smooth interpolation; with the colour term it is the joint
bilateral upsampling of Kopf et al. (SIGGRAPH 2007). Coarse to fine (the default), the map is
doubled one level at a time (7 → 14 → 28 → 56 → 112), each level guided by the image
average-pooled to that level, so values travel along regions of like colour further than one
cell; the last doubling (112 → 224) is bilinear with the default ``stride=2`` (``stride=1``
guides it too, at three times the cost of all the others), then smoothed by ``[1, 2, 1] / 4``
(``lattice_filter``) so its gradient has no 2-pixel lattice. The output is made of the input
map's own values (every step is a convex mix, bilinear included), so a class-discriminative
map stays class-discriminative, and it is linear in the map: upsampling each feature map and
then weighting it by the FC weights gives the same CAM.

Every default (``colour_sigma``, ``spatial_sigma``, ``coarse_to_fine``, ``stride``,
``lattice_filter``, and the positive CAM weights of :class:`GuidedUpsampler`) was chosen on the
first half of pets-dev; ``docs/tried.md`` has each sweep.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import ShapeError, check_finite, check_range
from .base import UpsampleInputs

__all__ = ["CAM_WEIGHTS", "GuidedUpsampler", "guided_upsample", "upsample_with_guide"]

CAM_WEIGHTS = ("positive", "all")

Tensor = torch.Tensor

# The 3×3 neighbour cells, row-major: (dy, dx).
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def guided_upsample(
    cams: Tensor,
    images: Tensor,
    *,
    colour_sigma: float = 0.1,
    spatial_sigma: float = 1.0,
    coarse_to_fine: bool = True,
    stride: int = 2,
    lattice_filter: bool = True,
) -> Tensor:
    """Upsample low-resolution saliency maps to their images' resolution, guided by colour.

    Args:
        cams: ``(B, h, w)`` maps at any resolution up to the images' (a CAM, a Grad-CAM or
            LayerCAM map, signed or not), float32, float16 or bfloat16.
        images: ``(B, 3, H, W)`` the guide, RGB in [0, 1] (not normalised for a model:
            ``explainer.prepare(images).pixels`` are these), on the device of ``cams``.
        colour_sigma: colour scale of the range kernel (RGB units); 0 turns the colour term
            off (a purely spatial, bilinear-like upsampling).
        spatial_sigma: width of the spatial kernel, in cells of the grid being upsampled.
        coarse_to_fine: upsample one doubling at a time (default) rather than in one step.
        stride: the guided levels stop at the image's size divided by ``stride`` and a bilinear
            upsampling does the last factor: the default 2 skips the costliest level (112 →
            224, three quarters of the work), placing edges to within 2 pixels; 1 guides every
            pixel.
        lattice_filter: after the bilinear step, smooth by a triangle ``stride`` pixels wide
            on each side (``[1, 2, 1] / 4`` for 2): a bilinear upsampling is piecewise linear,
            so the map's gradient steps every ``stride`` pixels, which Sobel edges (the
            refinement's, the pipeline figure's edge panel) show as a faint lattice; the
            triangle's response is 0 at that period.

    Returns:
        ``(B, H, W)`` on the same device, in ``cams``' dtype (computed in float32).

    Raises:
        ValueError: a shape, channel count, device or value range is not as above, or a map
            holds NaN or infinite values (the message says how many).

    Example::

        >>> cams = torch.tensor([[[0.0, 1.0]]])                  # (1, 1, 2): left cold, right hot
        >>> image = torch.zeros(1, 3, 4, 8); image[..., 5:] = 1  # the guide's edge is at x = 5
        >>> out = guided_upsample(cams, image, stride=1)         # every pixel guided
        >>> out.shape, bool(out[0, 0, 4] < 0.1), bool(out[0, 0, 5] > 0.9)
        (torch.Size([1, 4, 8]), True, True)
    """
    _check(cams, images, colour_sigma, spatial_sigma)
    if not (isinstance(stride, int) and not isinstance(stride, bool) and stride >= 1):
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if not isinstance(lattice_filter, bool):
        raise ValueError(f"lattice_filter must be True or False, got {lattice_filter!r}")
    if cams.ndim == 4:  # volumes
        if tuple(cams.shape[-3:]) == tuple(images.shape[-3:]):
            return cams.clone()
        from .guided_volume import guided_upsample_volume

        return guided_upsample_volume(
            cams,
            images,
            colour_sigma=colour_sigma,
            spatial_sigma=spatial_sigma,
            coarse_to_fine=coarse_to_fine,
            stride=stride,
            lattice_filter=lattice_filter,
            levels=_levels,
            triangle_filter=_triangle_filter,
        )
    size = tuple(images.shape[-2:])
    maps = cams.to(torch.float32)[:, None]
    if tuple(maps.shape[-2:]) == size:
        return cams.clone()
    cells = tuple(maps.shape[-2:])
    # The finest guided grid (the image's size for stride 1); none when it is the map's own.
    guided = tuple(max(-(-n // stride), c) for n, c in zip(size, cells, strict=True))
    levels = [] if guided == cells else _levels(cells, guided) if coarse_to_fine else [guided]
    compiled = _compiled(maps)
    pyramid = _Pyramid(images.to(torch.float32).contiguous(), compiled)
    for level in sorted(levels, reverse=True):  # finest first: coarser ones pool from it
        pyramid.at(level)
    for level in levels:
        guide, cells = pyramid.at(level), tuple(maps.shape[-2:])
        if compiled is not None:
            maps = _compiled_level(compiled, maps, guide, cells, colour_sigma, spatial_sigma)
            continue
        weights = _weights(guide, cells, colour_sigma, spatial_sigma)
        maps = _mix_neighbours(maps, weights)
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        if lattice_filter and stride > 1:
            maps = _triangle_filter(maps, stride, compiled)
    return maps[:, 0].to(cams.dtype)


@dataclass(frozen=True)
class GuidedUpsampler:
    """hrcam's default high-res CAM: the low-res CAM upsampled by :func:`guided_upsample`,
    guided by the image's colours. No training; any GAP + FC model.

    Args:
        colour_sigma, spatial_sigma, coarse_to_fine, stride, lattice_filter: options of
            :func:`guided_upsample`.
        cam_weights: which FC weights make the map that is upsampled: ``"positive"`` (default:
            only the evidence *for* the class, ``Σ_k max(w_ck, 0) A_k``, see
            :meth:`hrcam.Backbone.cam`) or ``"all"`` (the exact low-res CAM itself).

    Example::

        >>> up = GuidedUpsampler(colour_sigma=0.2)
        >>> up.describe()["colour_sigma"]
        0.2
    """

    colour_sigma: float = 0.1
    spatial_sigma: float = 1.0
    coarse_to_fine: bool = True
    stride: int = 2
    lattice_filter: bool = True
    cam_weights: str = "positive"

    needs_skips = False  # a class attribute: the protocol's flag, not an option

    def __post_init__(self) -> None:
        if self.cam_weights not in CAM_WEIGHTS:
            raise ValueError(f"cam_weights must be one of {CAM_WEIGHTS}, got {self.cam_weights!r}")
        if not (
            isinstance(self.stride, int) and not isinstance(self.stride, bool) and self.stride >= 1
        ):
            raise ValueError(f"stride must be an integer >= 1, got {self.stride!r}")
        for name in ("coarse_to_fine", "lattice_filter"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not self.colour_sigma >= 0 or not self.spatial_sigma > 0:
            raise ValueError(
                f"colour_sigma must be >= 0 and spatial_sigma > 0, got {self.colour_sigma} and "
                f"{self.spatial_sigma}"
            )

    def upsample(self, inputs: UpsampleInputs) -> torch.Tensor:
        """The guided high-res CAMs ``(B, H, W)`` (see the class docstring)."""
        source = inputs.low_res
        if self.cam_weights != "all":
            source = inputs.backbone.cam(inputs.features, inputs.targets, weights=self.cam_weights)
        return guided_upsample(source, inputs.images, **self.options())

    def options(self) -> dict[str, Any]:
        """The keyword options of :func:`guided_upsample` this upsampler passes."""
        options = asdict(self)
        options.pop("cam_weights")
        return options

    def describe(self) -> dict[str, Any]:
        return {"name": "guided", **asdict(self)}


def _compiled(maps: Tensor):
    """:mod:`.guided_compiled` for float32 CPU maps that need no gradient, else None (the torch
    path: a GPU, autograd)."""
    if maps.device.type != "cpu" or (maps.requires_grad and torch.is_grad_enabled()):
        return None
    from . import guided_compiled

    return guided_compiled


def _compiled_level(compiled, maps: Tensor, guide: Tensor, cells, colour_sigma, spatial_sigma):
    """One level by the compiled kernel: the same logits and mix as :func:`_weights` and
    :func:`_mix_neighbours`."""
    size = tuple(guide.shape[-2:])
    means = _block_mean(guide, cells, compiled) if colour_sigma > 0 else None
    prior = _spatial_prior(size, cells, spatial_sigma, guide.device)[0]
    mixed = compiled.mix_level(
        maps.detach().contiguous().numpy(),
        guide.detach().contiguous().numpy(),
        None if means is None else means.detach().numpy(),
        prior.contiguous().numpy(),
        _cell_of_pixel(size[0], cells[0], guide.device).numpy(),
        _cell_of_pixel(size[1], cells[1], guide.device).numpy(),
        float(colour_sigma),
    )
    return torch.from_numpy(mixed)


class _Pyramid:
    """The guide averaged over the cells of each grid asked for. A grid is pooled from the
    coarsest grid already made whose cells it groups into equal blocks and whose own cells are
    equal blocks of the image (then a mean of means is the image's mean), else from the image:
    the same values as pooling the image each time, with fewer passes over it."""

    def __init__(self, image: Tensor, compiled=None) -> None:
        self.size = tuple(image.shape[-2:])
        self.levels = {self.size: image}
        self.compiled = compiled

    def at(self, size: tuple[int, int]) -> Tensor:
        if size not in self.levels:
            sources = [s for s in self.levels if _divides(size, s) and _divides(s, self.size)]
            source = self.levels[min(sources, default=self.size)]
            self.levels[size] = _block_mean(source, size, self.compiled)
        return self.levels[size]


def _block_mean(x: Tensor, size: tuple[int, int], compiled=None) -> Tensor:
    """``x`` averaged over the cells of the grid ``size`` (adaptive pooling's cells); compiled
    where the cells are equal blocks (torch's pooling kernels are several times slower)."""
    if compiled is None or not _divides(size, tuple(x.shape[-2:])):
        return F.adaptive_avg_pool2d(x, size)
    return torch.from_numpy(compiled.block_means(x.detach().contiguous().numpy(), size))


def _divides(small: tuple[int, int], large: tuple[int, int]) -> bool:
    return all(b % a == 0 for a, b in zip(small, large, strict=True))


def _triangle_filter(maps: Tensor, width: int, compiled=None) -> Tensor:
    """``maps`` (B, 1, H, W) or (B, 1, D, H, W) smoothed separably by a box of ``width``
    convolved with itself
    (weights 1, 2, ..., width, ..., 2, 1, normalised), edges replicated: a convex mix of
    neighbours whose response is 0 at a period of ``width`` pixels and its harmonics.

    A weighted sum of shifted copies (the taps are few): for one channel that is several times
    cheaper than a convolution call."""
    taps = [float(min(k + 1, 2 * width - 1 - k)) for k in range(2 * width - 1)]
    total = sum(taps)
    if compiled is not None and maps.ndim == 4:
        weights = np.asarray(taps, dtype=np.float32) / np.float32(total)
        return torch.from_numpy(compiled.triangle_filter(maps.contiguous().numpy(), weights))
    r = width - 1
    out = maps
    spatial = maps.ndim - 2
    for dim in range(maps.ndim - 1, 1, -1):  # the last axis first
        pad = [0] * (2 * spatial)
        pad[2 * (maps.ndim - 1 - dim)] = pad[2 * (maps.ndim - 1 - dim) + 1] = r
        padded = F.pad(out, pad, mode="replicate")
        n = out.shape[dim]
        acc = padded.narrow(dim, 0, n) * (taps[0] / total)
        for k in range(1, len(taps)):
            acc = acc + padded.narrow(dim, k, n) * (taps[k] / total)
        out = acc
    return out


def upsample_with_guide(
    maps: Tensor, guide: Tensor, *, spatial_sigma: float = 1.0, coarse_to_fine: bool = True
) -> Tensor:
    """The same upsampling with a guide of any ``C`` channels in any units (range kernel
    ``exp(-|g(x) - μ_j|² / 2)``): ``maps`` (B, M, h, w) → (B, M, H, W), differentiable in both.

    :func:`guided_upsample` is this with ``guide = RGB / colour_sigma``; a learned guide
    (:class:`learned_guide.GuideNetwork`) passes its own features. No input checks: the
    callers check.
    """
    size = tuple(guide.shape[-2:])
    if tuple(maps.shape[-2:]) == size:
        return maps
    for level in _levels(tuple(maps.shape[-2:]), size) if coarse_to_fine else [size]:
        level_guide = guide if level == size else F.adaptive_avg_pool2d(guide, level)
        weights = _weights(level_guide, tuple(maps.shape[-2:]), 1.0, spatial_sigma)
        maps = _mix_neighbours(maps, weights)
    return maps


def _check(cams, images, colour_sigma: float, spatial_sigma: float) -> None:
    """Boundary checks of :func:`guided_upsample` (expected vs received, and how to fix it)."""
    for name, t in (("cams", cams), ("images", images)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor, got dtype {t.dtype}")
    volumes = images.ndim == 5
    if cams.ndim != (4 if volumes else 3) or 0 in cams.shape:
        hint = ""
        if not volumes and cams.ndim == 4 and cams.shape[1] == 1:
            hint = "; for (B, 1, h, w) pass cams[:, 0]"
        elif not volumes and cams.ndim == 4:
            hint = "; maps of volumes need volumes (B, C, D, H, W) as images"
        expected = "(B, d, h, w) for volumes" if volumes else "(B, h, w)"
        raise ShapeError(f"cams must be {expected}, got shape {tuple(cams.shape)}{hint}")
    if images.ndim not in (4, 5) or images.shape[1] not in (1, 2, 3, 4):
        hint = ""
        if images.ndim == 4 and images.shape[-1] in (1, 3):
            hint = "; it looks channels-last: use images.permute(0, 3, 1, 2)"
        elif images.ndim == 3:
            hint = "; add a batch dimension with images.unsqueeze(0)"
        raise ShapeError(
            "images must be (B, C, H, W) pictures (RGB or grayscale) or (B, C, D, H, W) "
            f"volumes, channels first, got shape {tuple(images.shape)}{hint}"
        )
    if images.shape[0] != cams.shape[0]:
        raise ShapeError(
            f"cams and images must hold the same number of items, got {cams.shape[0]} maps "
            f"and {images.shape[0]} images"
        )
    if cams.device != images.device:
        raise ValueError(f"cams are on {cams.device} and images on {images.device}: move one")
    small, large = cams.shape[1:], images.shape[2:]
    if any(n > N for n, N in zip(small, large, strict=True)):
        show = "×".join
        raise ShapeError(
            f"cams of {show(map(str, small))} are larger than the images "
            f"({show(map(str, large))}); guided_upsample only upsamples: resize the maps down first"
        )
    check_finite(cams, "cams", hint="a map with NaN cannot be upsampled: check what made it")
    check_range(
        images,
        "images (RGB)" if images.shape[1] == 3 else "images",
        0,
        1,
        hint="if they are a model's normalised inputs, pass the pixels instead (explainer.prepare(images).pixels)",
    )
    if not colour_sigma >= 0 or not spatial_sigma > 0:
        raise ValueError(
            f"colour_sigma must be >= 0 and spatial_sigma > 0, got {colour_sigma} and {spatial_sigma}"
        )


def _levels(cells: tuple[int, ...], size: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Grid sizes from just above ``cells`` to ``size``, one doubling apart (the last is ``size``).

    For 7×7 to 224×224: 14, 28, 56, 112, 224 (strides 16, 8, 4, 2, 1 of a 224 input). Any
    number of axes (a volume's three).
    """
    ratio = max(*(-(-n // c) for n, c in zip(size, cells, strict=True)), 1)
    stride = 1 << (ratio - 1).bit_length()  # the power of two >= the upsampling ratio
    levels, current = [], tuple(cells)
    while stride > 2:
        stride //= 2
        # Never below the current grid on any axis (maps far from square).
        level = tuple(max(-(-n // stride), c) for n, c in zip(size, current, strict=True))
        if level != current and level != tuple(size):
            levels.append(level)
            current = level
    return [*levels, tuple(size)]


def _weights(guide: Tensor, cells: tuple[int, int], colour_sigma: float, spatial_sigma: float):
    """Softmax weights (B, 9, H, W) of every pixel of ``guide`` over its 3×3 neighbour cells."""
    size = tuple(guide.shape[-2:])
    logits = _spatial_prior(size, cells, spatial_sigma, guide.device)
    if colour_sigma > 0:
        logits = logits + _colour_term(guide, cells, colour_sigma)
    else:
        logits = logits.expand(guide.shape[0], -1, -1, -1)
    return torch.softmax(logits, dim=1)


@functools.lru_cache(maxsize=32)
def _spatial_prior(size, cells, sigma: float, device) -> Tensor:
    """(1, 9, H, W): ``-d² / 2σ²`` from each pixel to each neighbour cell's centre, in cells."""
    with torch.inference_mode(False):  # cached: must stay usable outside inference mode too
        (height, width), (h, w) = size, cells
        py = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * h / height - 0.5
        px = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * w / width - 0.5
        cy = _cell_of_pixel(height, h, device).float()
        cx = _cell_of_pixel(width, w, device).float()
        scale = 1.0 / (2.0 * sigma * sigma)
        planes = [
            -scale * ((py - (cy + dy))[:, None] ** 2 + (px - (cx + dx))[None, :] ** 2)
            for dy, dx in _NEIGHBOURS
        ]
        return torch.stack(planes)[None]


def _colour_term(guide: Tensor, cells: tuple[int, int], sigma: float) -> Tensor:
    """(B, 9, H, W): ``-|x - μ_j|² / 2σ²`` up to a per-pixel constant (it cancels in the softmax).

    ``-|x - μ|²/2σ² = (x·μ - |μ|²/2)/σ² - |x|²/2σ²``; the last term is the same for all nine
    cells, so only ``x·μ_j - |μ_j|²/2`` is computed.
    """
    channels = guide.shape[1]
    means = F.adaptive_avg_pool2d(guide, cells)  # (B, C, h, w)
    terms = torch.cat([means, -0.5 * means.pow(2).sum(1, keepdim=True)], dim=1) / sigma**2
    (h, w), (height, width) = cells, guide.shape[-2:]
    batch = guide.shape[0]
    if height % h == 0 and width % w == 0:
        # Whole blocks of pixels per cell: broadcast each cell's nine neighbour terms over its
        # block, one guide channel at a time (no (B, 9, C + 1, H, W) tensor is built).
        bh, bw = height // h, width // w
        padded = F.pad(terms, (1, 1, 1, 1), mode="replicate")
        around = torch.stack(
            [padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _NEIGHBOURS],
            dim=1,
        )[:, :, :, :, None, :, None]  # (B, 9, 4, h, 1, w, 1)
        blocks = guide.view(batch, channels, 1, h, bh, w, bw)
        out = around[:, :, channels].expand(batch, 9, h, bh, w, bw).clone()
        for c in range(channels):
            out.add_(around[:, :, c] * blocks[:, c])
        return out.view(batch, 9, height, width)
    pixel = torch.cat([guide, torch.ones_like(guide[:, :1])], dim=1)  # (B, 4, H, W)
    planes = [(pixel * values).sum(1) for values in _neighbour_values(terms, (height, width))]
    return torch.stack(planes, dim=1)


def _mix_neighbours(maps: Tensor, weights: Tensor) -> Tensor:
    """``Σ_j weights_j · (neighbour j of each pixel's cell)``: (B, M, h, w), (B, 9, H, W) → (B, M, H, W)."""
    out = None
    size = tuple(weights.shape[-2:])
    for j, values in enumerate(_neighbour_values(maps, size)):
        term = values * weights[:, j : j + 1]
        out = term if out is None else out + term
    return out


def _neighbour_values(maps: Tensor, size: Sequence[int]) -> list[Tensor]:
    """For each of the 9 neighbour offsets, every pixel's value of that neighbour of its cell.

    ``maps`` (B, M, h, w) → nine (B, M, H, W) tensors, by two ``index_select`` (rows, then
    columns) on the replicate-padded grid: much cheaper than advanced indexing at full size.
    """
    h, w = maps.shape[-2:]
    padded = F.pad(maps, (1, 1, 1, 1), mode="replicate")
    rows = _cell_of_pixel(size[0], h, maps.device)
    cols = _cell_of_pixel(size[1], w, maps.device)
    by_row = {dy: padded.index_select(2, rows + 1 + dy) for dy in (-1, 0, 1)}
    return [by_row[dy].index_select(3, cols + 1 + dx) for dy, dx in _NEIGHBOURS]


def _cell_of_pixel(size: int, cells: int, device) -> Tensor:
    """The cell of each of ``size`` pixels split into ``cells`` bins (adaptive-pooling bins)."""
    return torch.clamp((torch.arange(size, device=device) * cells) // size, max=cells - 1)
