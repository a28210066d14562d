"""The refinement pipeline in PyTorch, for a batch of images at once, on the CPU or a GPU.

Same steps, names and meaning as :mod:`hrcam.postprocess.reference` (read that first); every
function here takes and returns tensors with a leading batch dimension ``B`` and has no Python
loop over pixels or images. The two implementations compute the same float32 operations in the
same order from the same tables (:mod:`.grid`), so their maps agree bit for bit and their
masks are identical.

Region growing and hole filling need connected components. A flood fill that dilates the
seeds one pixel per pass needs as many passes as the longest path through the region (on
CAM-like maps about 200-300 at 224x224, 500-700 at 512x512, 1000 at 1024x1024).
:func:`label_components` instead hooks trees of pixel labels onto their smallest neighbour and
halves their depth every pass (pointer jumping, after Shiloach-Vishkin and FastSV, Zhang, Azad
& Hu 2020), starting from the row runs: 6-8 passes at those sizes
(``benchmarks/bench_refine.py`` prints both counts).

Use it on a GPU. On a CPU, :func:`~hrcam.postprocess.refine` (compiled, one image at a time)
is several times faster per image, so it stays the CPU default; see the benchmark.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from . import grid
from .options import RefineOptions
from .pipeline import STEP_FUNCTIONS, check_image_and_finite, resolve_options, run_steps
from .steps import RefineSteps

__all__ = [*STEP_FUNCTIONS, "find_local_maxima", "label_components", "refine_batch"]

#: The pipeline runs this backend on a batch: maps (B, H, W).
BATCHED = True

Tensor = torch.Tensor


def _index(table: np.ndarray, device) -> Tensor:
    return torch.from_numpy(np.array(table)).to(device)


def _f32(value: float, device) -> Tensor:
    """A float32 scalar tensor: rounds ``value`` exactly as ``np.float32(value)`` does."""
    return torch.tensor(np.float32(value), device=device)


# --------------------------------------------------------------------------- maps


def normalize_cam(cam: Tensor) -> Tensor:
    """Each ``cam[b]`` as float32 scaled to [0, 1]; non-finite values count as 0; constant -> 0.

    ``cam``: ``(B, ...)`` real tensor. Returns a new float32 tensor of the same shape.
    """
    x = cam.to(torch.float32)
    x = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return _normalize_finite(x)


def _normalize_finite(x: Tensor) -> Tensor:
    """Normalise each finite float32 ``x[b]`` to [0, 1] (constant -> zeros)."""
    shape = x.shape
    flat = x.reshape(shape[0], -1)
    lo, hi = flat.amin(1), flat.amax(1)
    span = hi - lo
    overflow = ~torch.isfinite(span)
    if bool(overflow.any()):
        # max - min overflowed float32: halving is exact and brings it back in range.
        half = torch.where(overflow, _f32(0.5, x.device), _f32(1.0, x.device))
        flat, lo, hi = flat * half[:, None], lo * half, hi * half
        span = hi - lo
    scaled = (flat - lo[:, None]) / span[:, None]
    zero = torch.zeros((), dtype=flat.dtype, device=flat.device)
    return torch.where(span[:, None] > 0, scaled, zero).reshape(shape)


def resize_bilinear(array: Tensor, shape: tuple[int, int]) -> Tensor:
    """Resample dims 1 and 2 of ``array`` (``(B, h, w, ...)``) to ``shape``; float32 out.

    Half-pixel centres, as ``torch.nn.functional.interpolate(mode='bilinear',
    align_corners=False)``, computed from the reference's tables so both agree exactly.
    """
    x = array.to(torch.float32)
    (h, w), (H, W) = x.shape[1:3], shape
    dev = x.device
    i0, i1, w0, w1 = (_index(t, dev) for t in grid.bilinear_table(h, H))
    j0, j1, v0, v1 = (_index(t, dev) for t in grid.bilinear_table(w, W))
    extra = (1,) * (x.ndim - 3)
    w0, w1 = w0.view(1, H, 1, *extra), w1.view(1, H, 1, *extra)
    v0, v1 = v0.view(1, 1, W, *extra), v1.view(1, 1, W, *extra)
    cols = x.index_select(2, j0) * v0 + x.index_select(2, j1) * v1
    return cols.index_select(1, i0) * w0 + cols.index_select(1, i1) * w1


def _pad_reflect(x: Tensor, r: int) -> Tensor:
    """``(B, H, W)`` padded by ``r`` on every side, half-sample symmetric."""
    _, H, W = x.shape
    rows = _index(grid.reflect_indices(H, r), x.device)
    cols = _index(grid.reflect_indices(W, r), x.device)
    return x.index_select(1, rows).index_select(2, cols)


def blur_cam(high_res_cam: Tensor, *, size: int = 5) -> Tensor:
    """Step 1: ``(B, H, W)`` high-res CAMs normalised to [0, 1] and box-blurred (``size`` odd)."""
    x = normalize_cam(high_res_cam)
    if size == 1:
        return x
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 1, got {size}")
    _, H, W = x.shape
    p = _pad_reflect(x, size // 2)
    rows = p[:, :, 0:W] + p[:, :, 1 : W + 1]
    for k in range(2, size):
        rows = rows + p[:, :, k : k + W]
    out = rows[:, 0:H] + rows[:, 1 : H + 1]
    for k in range(2, size):
        out = out + rows[:, k : k + H]
    return out / (size * size)


def sobel_edges(blurred: Tensor) -> Tensor:
    """Step 2: ``(B, H, W)`` Sobel gradient magnitude, each normalised to [0, 1]."""
    x = blurred.to(torch.float32)
    _, H, W = x.shape
    p = _pad_reflect(x, 1)
    smooth_v = p[:, 0:H] + p[:, 1 : H + 1] * 2 + p[:, 2 : H + 2]
    gx = smooth_v[:, :, 2:] - smooth_v[:, :, :-2]
    smooth_h = p[:, :, 0:W] + p[:, :, 1 : W + 1] * 2 + p[:, :, 2 : W + 2]
    gy = smooth_h[:, 2:] - smooth_h[:, :-2]
    # torch's float32 sqrt on the CPU is not correctly rounded (NumPy's is); a float64 sqrt
    # rounded to float32 is, on every device.
    magnitude = torch.sqrt((gx * gx + gy * gy).to(torch.float64)).to(torch.float32)
    return _normalize_finite(magnitude)


# --------------------------------------------------------------------------- statistics


def _lerp(a: Tensor, b: Tensor, frac: Tensor) -> Tensor:
    """``a + (b - a) * frac`` in float32, as the reference computes it."""
    return a + (b - a) * frac.to(torch.float32)


def find_roi(low_resized: Tensor, *, percentile: float = 85.0) -> Tensor:
    """Step 4: ``(B, H, W)`` bool, pixels above each map's ``percentile`` (flat-top fallback)."""
    B = low_resized.shape[0]
    flat = low_resized.to(torch.float32).reshape(B, -1)
    n = flat.shape[1]
    lo, frac = grid.percentile_position(n, percentile)
    a = torch.kthvalue(flat, lo + 1, dim=1).values
    if lo + 1 < n:
        # The next order statistic: a again if it is repeated, else the smallest value above a.
        repeated = (flat <= a[:, None]).sum(1) > lo + 1
        inf = torch.full((), math.inf, dtype=flat.dtype, device=flat.device)
        above = torch.where(flat > a[:, None], flat, inf).amin(1)
        b = torch.where(repeated, a, above)
    else:
        b = a
    t = _lerp(a, b, _f32(frac, flat.device))[:, None]
    roi = flat > t
    flat_top = ~roi.any(1) & (flat.amax(1) > flat.amin(1))
    roi = roi | ((flat >= t) & flat_top[:, None])
    return roi.reshape(low_resized.shape)


def threshold_bounds(
    edges: Tensor, roi: Tensor, *, lower_percentile: float = 25.0, upper_percentile: float = 75.0
) -> Tensor:
    """Step 6: ``(B, 2)`` float32 ``[lower, upper]`` percentiles of ``edges[b][roi[b]]``; NaN if empty."""
    B = edges.shape[0]
    flat = edges.to(torch.float32).reshape(B, -1)
    inside = roi.reshape(B, -1)
    count = inside.sum(1)
    widest = int(count.max())
    if widest == 0:
        return torch.full((B, 2), math.nan, dtype=torch.float32, device=edges.device)
    # Pack each image's ROI values to the left of a row (the rest +inf), then sort the rows:
    # the ROI is a small share of the image, so this sorts far fewer values than the image has.
    slot = torch.where(inside, inside.cumsum(1) - 1, widest)
    packed = torch.full((B, widest + 1), math.inf, dtype=torch.float32, device=edges.device)
    packed.scatter_(1, slot, flat)
    ordered = packed[:, :widest].sort(dim=1).values
    last = (count - 1).clamp(min=0)
    bounds = []
    for q in (lower_percentile, upper_percentile):
        pos = (count - 1).to(torch.float64) * (q / 100.0)
        lo = torch.minimum(pos.floor().to(torch.int64), last).clamp(min=0)
        frac = pos - lo.to(torch.float64)
        hi = torch.minimum(lo + 1, last)
        a = ordered.gather(1, lo[:, None])[:, 0]
        b = ordered.gather(1, hi[:, None])[:, 0]
        bounds.append(_lerp(a, b, frac))
    out = torch.stack(bounds, dim=1)
    return torch.where(count[:, None] > 0, out, torch.full_like(out, math.nan))


# --------------------------------------------------------------------------- components


def label_components(
    mask: Tensor, *, values: Tensor | None = None, connectivity: int = 4
) -> tuple[Tensor, int]:
    """Connected components of every ``mask[b]`` at once, without a pass per pixel of width.

    ``mask``: ``(B, H, W)`` bool. Pixels are linked to their 4 (or 8, ``connectivity=8``)
    neighbours inside the mask and, when ``values`` (``(B, H, W)``) is given, of equal value.
    Returns ``(labels, slots)``: ``labels`` ``(B, H, W)`` int32 (int64 past 2**31 pixels),
    equal for exactly the pixels of one component (its smallest index in an internal padded
    layout), and ``slots``, an upper bound on labels; pixels outside the mask all get label
    ``slots - 1``. Use ``labels`` to index per-component tables of length ``slots``.

    Each pass hooks every tree onto the smallest grandparent label found around its pixels,
    then jumps pointers once; it stops when a pass changes nothing, which happens only when
    labels are equal across every link (so the result is exact, whatever the pass count).
    """
    labels, slots, _ = _label_components(mask, values=values, connectivity=connectivity)
    return labels, slots


def _label_components(
    mask: Tensor, *, values: Tensor | None, connectivity: int
) -> tuple[Tensor, int, int]:
    """:func:`label_components`, plus the number of passes it took (for the benchmark)."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    B, H, W = mask.shape
    dev = mask.device
    Hp, Wp = H + 2, W + 2
    n = B * Hp * Wp
    outside = n  # label of background and padding: larger than every pixel index
    # int32 labels halve the memory traffic and vectorise min/max (AVX2 has no int64 min).
    dtype = torch.int32 if n < 2**31 - 1 else torch.int64
    # A one-pixel frame of background around every image keeps neighbours of different rows
    # and images apart in the flat layout.
    framed = torch.zeros((B, Hp, Wp), dtype=torch.bool, device=dev)
    framed[:, 1:-1, 1:-1] = mask
    fm = framed.view(-1)
    fv = None
    if values is not None:
        framed_values = torch.full((B, Hp, Wp), math.nan, dtype=torch.float32, device=dev)
        framed_values[:, 1:-1, 1:-1] = values.to(torch.float32)
        fv = framed_values.view(-1)

    # Start from the row runs: each pixel points at the first pixel of its run.
    linked_left = framed[:, :, 1:] & framed[:, :, :-1]
    if fv is not None:
        fvv = fv.view(B, Hp, Wp)
        linked_left &= fvv[:, :, 1:] == fvv[:, :, :-1]
    starts = framed.clone()
    starts[:, :, 1:] &= ~linked_left
    index = torch.arange(n, dtype=dtype, device=dev).view(B, Hp, Wp)
    runs = torch.where(starts, index, 0).cummax(dim=2).values
    parent = torch.full((n + 1,), outside, dtype=dtype, device=dev)
    parent[:n] = torch.where(framed, runs, outside).view(-1)

    # Every real pixel lies in [first, last), so shifting by up to Wp + 1 stays in range.
    first, last = Wp + 1, n - Wp - 1
    offsets = [1, Wp] if connectivity == 4 else [1, Wp - 1, Wp, Wp + 1]
    shifts = [s for o in offsets for s in (o, -o)]
    links = None
    if fv is not None:
        inner_m, inner_v = fm[first:last], fv[first:last]
        links = [
            inner_m & fm[first + s : last + s] & (inner_v == fv[first + s : last + s])
            for s in shifts
        ]
    big = torch.full((), outside, dtype=dtype, device=dev)
    # Raises every background pixel's candidate to `outside` (a max is cheaper than a where).
    background_floor = torch.where(fm[first:last], 0, big)
    passes = 0
    while True:
        passes += 1
        grand = parent.index_select(0, parent)
        smallest = grand[first:last]
        for i, s in enumerate(shifts):
            around = grand[first + s : last + s]
            if links is not None:
                # Binary masks need no link test: background and padding hold `outside`.
                around = torch.where(links[i], around, big)
            smallest = torch.minimum(smallest, around)
        smallest = torch.maximum(smallest, background_floor)
        # Hook each pixel's parent and the pixel itself onto the smallest label around it.
        grand.scatter_reduce_(0, parent[first:last].long(), smallest, reduce="amin")
        grand[first:last] = torch.minimum(grand[first:last], smallest)
        updated = grand.index_select(0, grand)
        if torch.equal(updated, parent):
            break
        parent = updated
    labels = parent[:n].view(B, Hp, Wp)[:, 1:-1, 1:-1]
    return labels, n + 1, passes


def find_local_maxima(low_res_cam: Tensor) -> Tensor:
    """``(B, h, w)`` bool: plateaus (8-connected) whose every neighbour is strictly lower.

    As ``skimage.morphology.local_maxima(allow_borders=True)``: pixels outside the map are
    ignored, and a constant map has no maxima.
    """
    x = low_res_cam.to(torch.float32)
    B, h, w = x.shape
    labels, slots = label_components(torch.ones_like(x, dtype=torch.bool), values=x, connectivity=8)
    framed = torch.full((B, h + 2, w + 2), math.nan, dtype=torch.float32, device=x.device)
    framed[:, 1:-1, 1:-1] = x
    higher = torch.zeros_like(x, dtype=torch.bool)
    lower = torch.zeros_like(x, dtype=torch.bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                around = framed[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                higher |= around > x  # NaN (outside) compares False
                lower |= around < x
    plateau_higher = torch.zeros(slots, dtype=torch.bool, device=x.device)
    plateau_lower = torch.zeros(slots, dtype=torch.bool, device=x.device)
    plateau_higher[labels[higher]] = True
    plateau_lower[labels[lower]] = True
    return ~plateau_higher[labels] & plateau_lower[labels]


def _spread_top_k(x: Tensor, k: int, min_distance: int, within: Tensor | None) -> Tensor:
    """Per image, the ``k`` highest pixels at least ``min_distance`` apart (the reference's
    greedy order: repeated first-occurrence argmax, suppressing a disc around each pick)."""
    B, H, W = x.shape
    flat = x.reshape(B, -1)
    valid = torch.ones_like(flat, dtype=torch.bool)
    if within is not None:
        inside = within.reshape(B, -1)
        valid = torch.where(inside.any(1, keepdim=True), inside, valid)
    neg = torch.full((), -math.inf, dtype=flat.dtype, device=flat.device)
    values = torch.where(valid, flat, neg)
    index = torch.arange(H * W, device=flat.device)
    rows, cols = index // W, index % W
    seeds = torch.zeros_like(valid)
    r2 = min_distance * min_distance
    for _ in range(min(k, H * W)):
        pick = values.argmax(1)  # the first maximum, as the reference's stable order
        found = torch.isfinite(values.gather(1, pick[:, None]))[:, 0]
        if not bool(found.any()):
            break
        seeds[found, pick[found]] = True
        if min_distance <= 1:
            near = index[None, :] == pick[:, None]
        else:
            d2 = (rows[None] - rows[pick][:, None]) ** 2 + (cols[None] - cols[pick][:, None]) ** 2
            near = d2 < r2
        values = torch.where(near & found[:, None], neg, values)
    return seeds.reshape(B, H, W)


def find_focal_points(
    low_res_cam: Tensor,
    shape: tuple[int, int],
    *,
    scope: str = "global",
    num_points: int | None = None,
    min_distance: int = 1,
    maxima_areas: str = "small",
    maxima_threshold: float | None = None,
    low_resized: Tensor | None = None,
    within: Tensor | None = None,
) -> Tensor:
    """Step 5: ``(B, H, W)`` bool seeds; see the reference :func:`~.reference.find_focal_points`."""
    H, W = shape
    low = normalize_cam(low_res_cam)
    if scope == "global":
        x = resize_bilinear(low, shape) if low_resized is None else low_resized
        k = num_points if num_points is not None else max(1, round(math.sqrt(H)))
        return _spread_top_k(x.to(torch.float32), int(k), int(min_distance), within)
    if scope != "local":
        raise ValueError(f"scope must be 'global' or 'local'; got {scope!r}")
    if maxima_areas not in ("small", "large"):
        raise ValueError(f"maxima_areas must be 'small' or 'large'; got {maxima_areas!r}")
    B, h, w = low.shape
    dev = low.device
    maxima = find_local_maxima(low)
    if maxima_threshold is None:
        inf = torch.full((), math.inf, dtype=torch.float32, device=dev)
        strongest = torch.where(maxima, low, -inf).amax((1, 2))
        weakest = torch.where(maxima, low, inf).amin((1, 2))
        threshold = (weakest + strongest) / 2  # NaN without maxima: keeps nothing
    else:
        threshold = _f32(maxima_threshold, dev).expand(B)
    keep = maxima & (low >= threshold[:, None, None])
    if maxima_areas == "large":
        rows = _index(grid.nearest_indices(h, H), dev)
        cols = _index(grid.nearest_indices(w, W), dev)
        return keep.index_select(1, rows).index_select(2, cols)
    rows = _index(grid.centre_indices(h, H), dev)
    cols = _index(grid.centre_indices(w, W), dev)
    target = (rows[:, None] * W + cols[None, :]).reshape(1, -1).expand(B, -1)
    hits = torch.zeros((B, H * W), dtype=torch.int32, device=dev)
    hits.scatter_add_(1, target, keep.reshape(B, -1).to(torch.int32))
    return (hits > 0).reshape(B, H, W)


# --------------------------------------------------------------------------- segment


def grow_region(edges: Tensor, seeds: Tensor, *, lower: Tensor, upper: Tensor) -> Tensor:
    """Step 7: ``(B, H, W)`` bool, the in-range pixels 4-connected to an in-range seed.

    ``edges``: ``(B, H, W)`` float; ``seeds``: ``(B, H, W)`` bool; ``lower``, ``upper``: ``(B,)``.
    """
    e = edges.to(torch.float32)
    in_range = (e >= lower[:, None, None]) & (e <= upper[:, None, None])
    labels, slots = label_components(in_range)
    seeded = torch.zeros(slots, dtype=torch.bool, device=e.device)
    seeded[labels[seeds & in_range]] = True
    return in_range & seeded[labels]


def find_strong_edges(edges: Tensor, roi: Tensor, *, upper: Tensor) -> Tensor:
    """``(B, H, W)`` bool, ``edges >= upper`` inside ``roi`` (``upper``: ``(B,)``)."""
    return (edges.to(torch.float32) >= upper[:, None, None]) & roi


def fill_holes(mask: Tensor, *, max_size: int) -> Tensor:
    """Step 8b: fill 4-connected background components of at most ``max_size`` pixels that do
    not touch the image border. ``mask``: ``(B, H, W)`` bool -> ``(B, H, W)`` bool."""
    if max_size <= 0:
        return mask.clone()
    background = ~mask
    labels, slots = label_components(background)
    sizes = torch.bincount(labels.reshape(-1), minlength=slots)
    at_border = torch.zeros(slots, dtype=torch.bool, device=mask.device)
    for edge in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
        at_border[edge.reshape(-1)] = True
    holes = background & ~at_border[labels] & (sizes[labels] <= max_size)
    return mask | holes


# --------------------------------------------------------------------------- merge


def merge_maps(
    segment: Tensor, low_resized: Tensor, *, method: str = "blend", alpha: float = 0.5
) -> Tensor:
    """Step 9: ``(B, H, W)`` float32 refined CAMs: blend, product or gate (see the NumPy one)."""
    seg = segment.to(torch.float32)
    low = normalize_cam(low_resized)
    if method == "blend":
        return _f32(alpha, seg.device) * seg + _f32(1 - alpha, seg.device) * low
    if method == "multiply":
        return seg * low
    if method == "gate":
        return low * (_f32(1 - alpha, seg.device) + _f32(alpha, seg.device) * seg)
    raise ValueError(f"method must be 'blend', 'multiply' or 'gate'; got {method!r}")


def mask_image(
    images: Tensor,
    refined: Tensor,
    *,
    filter: str = "percentage",
    keep_percentage: float = 15.0,
    threshold: float = 0.6,
) -> Tensor:
    """Step 10: ``(B, H', W'[, C])`` images keeping only the refined CAM's strongest pixels.

    Resized bilinearly to ``refined``'s ``(B, H, W)`` when needed; the dtype is kept. See the
    reference :func:`~.reference.mask_image` for the two filters.
    """
    r = refined.to(torch.float32)
    B, H, W = r.shape
    img = images
    if tuple(img.shape[1:3]) != (H, W):
        resized = resize_bilinear(img, (H, W))
        if not img.is_floating_point() and img.dtype != torch.bool:
            info = torch.iinfo(img.dtype)
            resized = resized.round().clamp(info.min, info.max)
        img = resized.to(images.dtype)
    flat = r.reshape(B, -1)
    n = flat.shape[1]
    if filter == "percentage":
        k = math.floor(keep_percentage / 100 * n + 0.5)
        if k == 0:
            keep = torch.zeros_like(r, dtype=torch.bool)
        else:
            kth = torch.kthvalue(flat, n - k + 1, dim=1).values
            keep = (r >= kth[:, None, None]) & (r > 0)
    elif filter == "threshold":
        keep = normalize_cam(r) > _f32(threshold, r.device)
    else:
        raise ValueError(f"filter must be 'percentage' or 'threshold'; got {filter!r}")
    if img.ndim == 4:
        keep = keep[..., None]
    return img * keep.to(img.dtype)


# --------------------------------------------------------------------------- pipeline


@torch.no_grad()
def refine_batch(
    low,
    high,
    images=None,
    *,
    options: RefineOptions | None = None,
    device=None,
    nan_policy: str = "raise",
    **option_overrides,
) -> RefineSteps:
    """The whole postprocessing pipeline on a batch; every step with a leading batch dimension.

    ``low``: ``(B, h, w)`` low-res CAMs; ``high``: ``(B, H, W)`` high-res CAMs; ``images``:
    optional ``(B, H', W')`` or ``(B, H', W', C)`` channels-last images (uint8 or float),
    resized to ``H x W`` when needed. NumPy arrays or tensors. ``device``: where to compute
    (default: ``high``'s device, or the CPU for arrays). Returns :class:`RefineSteps` of
    tensors on ``device`` — or of NumPy arrays when no input was a tensor. ``bounds`` is
    ``(B, 2)``. Options and degenerate cases as in :func:`~.reference.refine`; the results
    equal ``refine`` image by image.

    Example::

        steps = refine_batch(low_cams, high_cams, images, device="cuda")
        refined_cams = steps.refined          # (B, H, W)
    """
    opts = resolve_options(options, option_overrides)
    as_numpy = not any(isinstance(t, Tensor) for t in (low, high, images))
    if device is None:
        device = high.device if isinstance(high, Tensor) else torch.device("cpu")
    low, high, images = _check_batch(low, high, images, device)
    check_image_and_finite(low, high, images, nan_policy, batched=True)
    steps = run_steps(sys.modules[__name__], low, high, images, opts)  # this module's steps
    return steps.numpy() if as_numpy else steps


def _as_tensor(x, name: str, device) -> Tensor:
    if not isinstance(x, Tensor):
        a = np.asarray(x)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.iscomplexobj(a):
            raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(a))
    elif x.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    return x.detach().to(device)


def _check_batch(low, high, images, device):
    low = _as_tensor(low, "low", device)
    high = _as_tensor(high, "high", device)
    if high.ndim != 3 or 0 in high.shape:
        raise ValueError(
            f"high must be a non-empty (B, H, W) batch of high-res CAMs, got shape "
            f"{tuple(high.shape)}; for one image use refine() or add a batch dimension"
        )
    if low.ndim != 3 or 0 in low.shape:
        raise ValueError(
            f"low must be a non-empty (B, h, w) batch of low-res CAMs, got shape "
            f"{tuple(low.shape)}; for one image use refine() or add a batch dimension"
        )
    if low.shape[0] != high.shape[0]:
        raise ValueError(
            f"low and high must hold the same number of CAMs, got {low.shape[0]} and "
            f"{high.shape[0]}"
        )
    if images is not None:
        images = _as_tensor(images, "images", device)
        if images.ndim not in (3, 4) or images.shape[0] != high.shape[0] or 0 in images.shape:
            raise ValueError(
                f"images must be (B, H', W') or (B, H', W', C) channels-last with B = "
                f"{high.shape[0]}, got shape {tuple(images.shape)}"
            )
    return low, high, images
