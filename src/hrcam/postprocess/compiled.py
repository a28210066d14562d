"""The refinement steps compiled with Numba: the reference's arithmetic, fused into loops.

Every function here has the name, the keywords and the result of its namesake in
:mod:`.reference`, and computes the same float32 operations in the same order (no fast-math:
no reassociation, no fused multiply-add), so the maps are the reference's bit for bit and the
masks are identical (``tests/postprocess``: every step on hand-made arrays, and the agreement
set). What changes is the cost. The reference makes a dozen NumPy passes per step over the
map, each a few tens of microseconds at 224x224; here a step is one or two loops:

- blur and Sobel: the padded sums a row at a time, in loops that compile to vector
  instructions, the normalisation in the same call;
- seeds: repeated argmax with a disc suppressed around each pick, each 16x16 tile keeping its
  best pixel, so a pick rescans only the tiles the disc touched;
- region growing and hole filling: span flood fills (a row's run at a time), not a labelling
  of the whole mask;
- merging, and masking a contiguous uint8 image: one loop each.

The percentiles (ROI, growing bounds) and the choice of the image's kept pixels stay NumPy's
(its introselect beat a compiled histogram selection; docs/tried.md), and so
do the rare options (local-maxima seeds, ``focal_min_distance=1``, the masked image of a
transposed or float image). Kernels compile on first use and are cached on disk (Numba's
``cache=True``: ``__pycache__`` beside this file, or Numba's user cache when that is
read-only), so only the first process after an install pays the compilation.
"""

from __future__ import annotations

import math
import sys

import numba
import numpy as np

from .. import arrays
from ..arrays import normalize_finite
from . import grid, reference
from .pipeline import refine_single

__all__ = [
    "blur_cam",
    "fill_holes",
    "find_focal_points",
    "find_local_maxima",
    "find_roi",
    "find_strong_edges",
    "grow_region",
    "linear_percentile",
    "mask_image",
    "merge_maps",
    "normalize_cam",
    "refine",
    "resize_bilinear",
    "sobel_edges",
    "threshold_bounds",
]

# IEEE float32 as NumPy computes it (fastmath off); the GIL released, so callers may use threads.
_jit = numba.njit(cache=True, nogil=True)

# Steps whose reference is already a pass or two, or a NumPy selection (the percentiles).
find_local_maxima = reference.find_local_maxima
find_roi = reference.find_roi
find_strong_edges = reference.find_strong_edges
linear_percentile = reference.linear_percentile
threshold_bounds = reference.threshold_bounds


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _bool(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=bool)


# --------------------------------------------------------------------------- maps


@_jit
def _range(flat):
    """``(min, max, any NaN)`` of a non-empty 1-D float32 array."""
    lo, hi, nan = flat[0], flat[0], False
    for i in range(flat.size):
        v = flat[i]
        lo = min(lo, v)
        hi = max(hi, v)
        nan |= v != v
    return lo, hi, nan


@_jit
def _normalize(x):
    """:func:`hrcam.arrays.normalize_map` of a finite, non-empty float32 array, and True; False
    (and no map) when it holds NaN or inf or its range overflows, which the caller hands to
    ``normalize_map`` itself."""
    flat = x.ravel()
    lo, hi, nan = _range(flat)
    span = hi - lo
    if nan or not np.isfinite(span):
        return x, False
    out = np.zeros(flat.size, np.float32)
    if span > 0:
        for i in range(out.size):
            out[i] = (flat[i] - lo) / span
    return out.reshape(x.shape), True


def normalize_cam(cam) -> np.ndarray:
    """As :func:`hrcam.arrays.normalize_map` (float32)."""
    x = _f32(cam)
    if x.size == 0:
        return x.copy()
    out, done = _normalize(x)
    return out if done else arrays.normalize_map(x)


@_jit
def _pad(x, rows_at, cols_at, r):
    """``x`` padded by ``r`` with the reference's indices (:func:`.grid.reflect_indices`):
    whole rows copied, only the border columns looked up."""
    H, W = x.shape
    out = np.empty((len(rows_at), W + 2 * r), np.float32)
    for p in range(len(rows_at)):
        src, dst = x[rows_at[p]], out[p]
        dst[r : r + W] = src
        for k in range(r):
            dst[k] = src[cols_at[k]]
            dst[r + W + k] = src[cols_at[r + W + k]]
    return out


def _padded(x: np.ndarray, r: int) -> np.ndarray:
    H, W = x.shape
    return _pad(x, grid.reflect_indices(H, r), grid.reflect_indices(W, r), r)


@_jit
def _box_blur(padded, size):
    """The reference's sums in its order: along each padded row left to right, then down the
    rows. Sizes 3 and 5 are written out: a loop over the kernel's width inside the loop over
    pixels keeps the compiled loop scalar (3x slower); here it runs on vector instructions."""
    Hp, Wp = padded.shape
    H, W = Hp - size + 1, Wp - size + 1
    sums = np.empty((Hp, W), np.float32)
    for p in range(Hp):
        b, row = padded[p], sums[p]
        if size == 5:
            for j in range(W):
                row[j] = (((b[j] + b[j + 1]) + b[j + 2]) + b[j + 3]) + b[j + 4]
        elif size == 3:
            for j in range(W):
                row[j] = (b[j] + b[j + 1]) + b[j + 2]
        else:
            for j in range(W):
                row[j] = b[j] + b[j + 1]
            for k in range(2, size):
                for j in range(W):
                    row[j] += b[j + k]
    out = np.empty((H, W), np.float32)
    area = np.float32(size * size)
    for i in range(H):
        o = out[i]
        if size == 5:
            a, b, c, d, e = sums[i], sums[i + 1], sums[i + 2], sums[i + 3], sums[i + 4]
            for j in range(W):
                o[j] = ((((a[j] + b[j]) + c[j]) + d[j]) + e[j]) / area
        elif size == 3:
            a, b, c = sums[i], sums[i + 1], sums[i + 2]
            for j in range(W):
                o[j] = ((a[j] + b[j]) + c[j]) / area
        else:
            a, b = sums[i], sums[i + 1]
            for j in range(W):
                o[j] = a[j] + b[j]
            for k in range(2, size):
                c = sums[i + k]
                for j in range(W):
                    o[j] += c[j]
            for j in range(W):
                o[j] = o[j] / area
    return out


def blur_cam(high_res_cam, *, size: int = 5) -> np.ndarray:
    """Step 1; see :func:`.reference.blur_cam`."""
    x = normalize_cam(high_res_cam)
    if size == 1:
        return x
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 1, got {size}")
    return _box_blur(_padded(x, size // 2), size)


@_jit
def _sobel(padded):
    """The Sobel magnitude normalised to [0, 1] (the reference's operations, a row at a time),
    and False when it is not finite (the caller then does what the reference does)."""
    Hp, Wp = padded.shape
    H, W = Hp - 2, Wp - 2
    out = np.empty((H, W), np.float32)
    two = np.float32(2)
    for i in range(H):
        r0, r1, r2, o = padded[i], padded[i + 1], padded[i + 2], out[i]
        for j in range(W):
            gx = ((r0[j + 2] + r1[j + 2] * two) + r2[j + 2]) - ((r0[j] + r1[j] * two) + r2[j])
            gy = ((r2[j] + r2[j + 1] * two) + r2[j + 2]) - ((r0[j] + r0[j + 1] * two) + r0[j + 2])
            o[j] = np.sqrt(gx * gx + gy * gy)
    flat = out.ravel()
    lo, hi, nan = _range(flat)
    span = hi - lo
    if nan or not np.isfinite(span) or not span > 0:
        return out, False
    for i in range(flat.size):
        flat[i] = (flat[i] - lo) / span
    return out, True


def sobel_edges(blurred) -> np.ndarray:
    """Step 2; see :func:`.reference.sobel_edges`."""
    magnitude, done = _sobel(_padded(_f32(blurred), 1))
    return magnitude if done else normalize_finite(magnitude)  # flat, NaN or huge values


@_jit
def _resize(x, i0, i1, w0, w1, j0, j1, v0, v1):
    h = x.shape[0]
    H, W = i0.size, j0.size
    cols = np.empty((h, W), np.float32)
    for i in range(h):
        for j in range(W):
            cols[i, j] = x[i, j0[j]] * v0[j] + x[i, j1[j]] * v1[j]
    out = np.empty((H, W), np.float32)
    for i in range(H):
        a, b, wa, wb, o = cols[i0[i]], cols[i1[i]], w0[i], w1[i], out[i]
        for j in range(W):
            o[j] = a[j] * wa + b[j] * wb
    return out


def resize_bilinear(array, shape: tuple[int, int]) -> np.ndarray:
    """See :func:`.reference.resize_bilinear` (images, ``(h, w, C)``, go through it)."""
    x = np.asarray(array)
    if x.ndim != 2:
        return reference.resize_bilinear(x, shape)
    (h, w), (H, W) = x.shape, shape
    return _resize(_f32(x), *grid.bilinear_table(h, H), *grid.bilinear_table(w, W))


# --------------------------------------------------------------------------- seeds

_TILE = 16


@_jit
def _tile_best(remaining, W, H, t, tiles_across):
    """(value, flat index) of the highest pixel of tile ``t``, the first in row-major order
    among equals."""
    r0, c0 = (t // tiles_across) * _TILE, (t % tiles_across) * _TILE
    best, value = -1, np.float32(-np.inf)
    for r in range(r0, min(H, r0 + _TILE)):
        for c in range(c0, min(W, c0 + _TILE)):
            v = remaining[r * W + c]
            if v > value:
                best, value = r * W + c, v
    return value, best


@_jit
def _spread_seeds(x, inside, k, min_distance):
    """:func:`.reference._suppressed_maxima` as a mask: repeated argmax over the pixels of
    ``inside`` (the first in row-major order among equals), ruling out a disc after each pick.
    Each tile of 16x16 pixels keeps its best pixel, so a pick costs an argmax over the tiles
    and a rescan of the few tiles the disc touched."""
    H, W = x.shape
    remaining = np.empty(H * W, np.float32)
    flat, keep = x.ravel(), inside.ravel()
    for p in range(H * W):
        remaining[p] = flat[p] if keep[p] else np.float32(-np.inf)
    across, down = (W + _TILE - 1) // _TILE, (H + _TILE - 1) // _TILE
    values = np.empty(across * down, np.float32)
    where = np.empty(across * down, np.int64)
    for t in range(across * down):
        values[t], where[t] = _tile_best(remaining, W, H, t, across)
    seeds = np.zeros(H * W, np.bool_)
    reach = min_distance - 1
    limit = min_distance * min_distance
    for _ in range(k):
        best = 0
        for t in range(1, values.size):  # ties between tiles: the lower flat index
            if values[t] > values[best] or (values[t] == values[best] and where[t] < where[best]):
                best = t
        if values[best] == -np.inf:
            break  # fewer than k candidates lie apart
        p = where[best]
        seeds[p] = True
        row, col = p // W, p % W
        r0, r1 = max(0, row - reach), min(H - 1, row + reach)
        c0, c1 = max(0, col - reach), min(W - 1, col + reach)
        for r in range(r0, r1 + 1):
            dr2 = (r - row) * (r - row)
            for c in range(c0, c1 + 1):
                if dr2 + (c - col) * (c - col) < limit:
                    remaining[r * W + c] = -np.inf
        for tr in range(r0 // _TILE, r1 // _TILE + 1):
            for tc in range(c0 // _TILE, c1 // _TILE + 1):
                t = tr * across + tc
                values[t], where[t] = _tile_best(remaining, W, H, t, across)
    return seeds.reshape(H, W)


def find_focal_points(
    low_res_cam,
    shape: tuple[int, int],
    *,
    scope: str = "global",
    num_points: int | None = None,
    min_distance: int = 1,
    maxima_areas: str = "small",
    maxima_threshold: float | None = None,
    low_resized=None,
    within=None,
) -> np.ndarray:
    """Step 5; see :func:`.reference.find_focal_points` (``scope='local'`` and
    ``min_distance=1`` are the reference's). The maps are finite, as the pipeline makes them."""
    if scope != "global" or min_distance <= 1:
        return reference.find_focal_points(
            low_res_cam,
            shape,
            scope=scope,
            num_points=num_points,
            min_distance=min_distance,
            maxima_areas=maxima_areas,
            maxima_threshold=maxima_threshold,
            low_resized=low_resized,
            within=within,
        )
    if low_resized is None:
        low_resized = resize_bilinear(normalize_cam(low_res_cam), shape)
    k = num_points if num_points is not None else max(1, round(math.sqrt(shape[0])))
    inside = None if within is None else _bool(within)
    if inside is None or not inside.any():
        inside = np.ones(shape, dtype=bool)
    return _spread_seeds(_f32(low_resized), inside, int(k), int(min_distance))


# --------------------------------------------------------------------------- segment
# Flood fills by spans: a seed grows along its row, and the runs of fillable pixels in the rows
# above and below the span become new seeds. Each pixel is read in a few tight loops over rows
# instead of once per neighbour (2-4x a pixel-by-pixel fill on the regions that cover most of
# the map). The maps are padded by a wall that nothing passes, so no bounds are checked.


@_jit
def _flood(state, row, stack, top, spans):
    """Visit every pixel reachable through 4-neighbours whose ``state`` is 1 (fillable) from
    the flat indices ``stack[:top]``, setting their state to 2; record the runs visited as
    ``spans[2 * k : 2 * k + 2]`` = first, last. ``stack`` must hold twice the map's size, and
    the map's outer ring be 0 (a wall). Returns (pixels, runs)."""
    pixels = runs = 0
    while top > 0:
        top -= 1
        p = stack[top]
        if state[p] != 1:
            continue
        first = last = p
        while state[first - 1] == 1:
            first -= 1
        while state[last + 1] == 1:
            last += 1
        state[first : last + 1] = 2
        spans[2 * runs] = first
        spans[2 * runs + 1] = last
        runs += 1
        pixels += last - first + 1
        for step in (-row, row):  # one push per run of fillable pixels beside the span
            q, end = first + step, last + step
            while q <= end:
                if state[q] == 1:
                    stack[top] = q
                    top += 1
                    while q <= end and state[q] == 1:
                        q += 1
                else:
                    q += 1
    return pixels, runs


@_jit
def _walled(shape, ring):
    """An all-0 flat uint8 map of ``shape`` padded by ``ring`` on every side, and its row length."""
    H, W = shape
    return np.zeros((H + 2 * ring) * (W + 2 * ring), np.uint8), W + 2 * ring


@_jit
def _grow(edges, seeds, lower, upper):
    H, W = edges.shape
    state, row = _walled(edges.shape, 1)
    stack = np.empty(2 * state.size, np.int32)
    top = 0
    for i in range(H):
        e, s, base = edges[i], seeds[i], (i + 1) * row + 1
        for j in range(W):
            state[base + j] = lower <= e[j] <= upper  # 0 for NaN bounds
        for j in range(W):
            if s[j] and state[base + j]:
                stack[top] = base + j
                top += 1
    _flood(state, row, stack, top, np.empty(state.size, np.int32))
    return state.reshape(H + 2, row)[1:-1, 1:-1] == 2


def grow_region(edges, seeds, *, lower: float, upper: float) -> np.ndarray:
    """Step 7; see :func:`.reference.grow_region` (here a flood fill from the seeds)."""
    return _grow(_f32(edges), _bool(seeds), np.float32(lower), np.float32(upper))


@_jit
def _bounding_box(mask):
    """``(top, bottom, left, right)``, inclusive, of a non-empty bool map's True pixels."""
    H, W = mask.shape
    top, bottom, left, right = H, -1, W, -1
    for i in range(H):
        row = mask[i]
        found = False
        for j in range(W):
            found |= row[j]
        if not found:
            continue
        top, bottom = min(top, i), i
        j = 0
        while not row[j]:
            j += 1
        left = min(left, j)
        j = W - 1
        while not row[j]:
            j -= 1
        right = max(right, j)
    return top, bottom, left, right


@_jit
def _fill(mask, max_size):
    """``mask`` (not empty) with its holes up to ``max_size`` pixels filled. A hole lies
    inside the mask's bounding box, and background that touches the box's edge reaches the
    image border through the all-background outside, so only the box is looked at."""
    top, bottom, left, right = _bounding_box(mask)
    h, w = bottom - top + 1, right - left + 1
    # The box padded by 2: the outer ring a wall, the inner one background, so one flood from
    # the inner ring visits all the background that touches the box's edge (never a hole).
    state, row = _walled((h, w), 2)
    for r in range(1, h + 3):
        state[r * row + 1] = 1
        state[r * row + w + 2] = 1
    state[row + 1 : row + w + 3] = 1
    state[(h + 2) * row + 1 : (h + 2) * row + w + 3] = 1
    for i in range(h):
        m, base = mask[top + i], (i + 2) * row + 2
        for j in range(w):
            state[base + j] = not m[left + j]
    stack = np.empty(2 * state.size, np.int32)
    spans = np.empty(state.size + 2, np.int32)
    stack[0] = row + 1
    _flood(state, row, stack, 1, spans)
    out = mask.copy()
    for p in range(state.size):
        if state[p] == 1:  # a hole: flood it, fill it if small
            stack[0] = p
            pixels, runs = _flood(state, row, stack, 1, spans)
            if pixels <= max_size:
                for k in range(runs):
                    i, j = spans[2 * k] // row - 2 + top, spans[2 * k] % row - 2 + left
                    out[i, j : j + spans[2 * k + 1] - spans[2 * k] + 1] = True
    return out


def fill_holes(mask, *, max_size: int) -> np.ndarray:
    """Step 8b; see :func:`.reference.fill_holes`."""
    m = _bool(mask)
    if max_size <= 0 or not m.any():
        return m.copy()
    return _fill(m, int(max_size))


# --------------------------------------------------------------------------- merge

_MERGES = {"blend": 0, "multiply": 1, "gate": 2}


@_jit
def _merge(segment, low, method, alpha, rest):
    s, x = segment.ravel(), low.ravel()
    out = np.empty(x.size, np.float32)
    for i in range(x.size):
        v = np.float32(1) if s[i] else np.float32(0)
        if method == 0:
            out[i] = alpha * v + rest * x[i]
        elif method == 1:
            out[i] = v * x[i]
        else:
            out[i] = x[i] * (rest + alpha * v)
    return out.reshape(low.shape)


def merge_maps(segment, low_resized, *, method: str = "blend", alpha: float = 0.5) -> np.ndarray:
    """Step 9; see :func:`.reference.merge_maps`."""
    if method not in _MERGES:
        raise ValueError(f"method must be 'blend', 'multiply' or 'gate'; got {method!r}")
    low = normalize_cam(low_resized)
    return _merge(_bool(segment), low, _MERGES[method], np.float32(alpha), np.float32(1 - alpha))


@_jit
def _keep(image, keep):
    """A C-contiguous ``(H, W, C)`` image where ``keep`` (``(H, W)`` bool), else 0."""
    H, W, C = image.shape
    img, k8 = image.ravel(), keep.ravel().view(np.uint8)
    out = np.empty(img.size, image.dtype)
    if C == 3:  # written out: a loop over the channels would keep it scalar
        for p in range(H * W):
            k = k8[p]
            out[3 * p] = img[3 * p] * k
            out[3 * p + 1] = img[3 * p + 1] * k
            out[3 * p + 2] = img[3 * p + 2] * k
    else:
        for p in range(H * W):
            for c in range(p * C, p * C + C):
                out[c] = img[c] * k8[p]
    return out.reshape(H, W, C)


def mask_image(
    image,
    refined,
    *,
    filter: str = "percentage",
    keep_percentage: float = 15.0,
    threshold: float = 0.6,
) -> np.ndarray:
    """Step 10; see :func:`.reference.mask_image`, whose choice of the kept pixels this uses.
    A C-contiguous uint8 image is then multiplied in one loop; any other (a network input made
    channels-last is a transposed view, whose channel planes NumPy multiplies 4x faster than a
    loop over pixels reads them), and an image of another size, go through the reference."""
    img = np.asarray(image)
    fast = img.ndim == 3 and img.dtype == np.uint8 and img.flags.c_contiguous
    if not fast or img.shape[:2] != np.shape(refined):
        return reference.mask_image(
            img, refined, filter=filter, keep_percentage=keep_percentage, threshold=threshold
        )
    keep = reference.kept_pixels(
        refined, filter=filter, keep_percentage=keep_percentage, threshold=threshold
    )
    return _keep(img, np.ascontiguousarray(keep))


# --------------------------------------------------------------------------- pipeline


def refine(low, high, image=None, *, options=None, nan_policy: str = "raise", **option_overrides):
    return refine_single(
        sys.modules[__name__], low, high, image, options, nan_policy, option_overrides
    )


refine.__doc__ = (
    "The whole postprocessing pipeline on one image, with the compiled steps: the result of "
    ":func:`.reference.refine`, bit for bit, in about half its time "
    "(``benchmarks/bench_refine.py``).\n\n" + (reference.refine.__doc__ or "").split("\n\n", 1)[-1]
)
