"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022).

Pixels are removed in the order a saliency map gives and filled in by **noisy linear
imputation**: every removed pixel becomes the weighted mean of its 8 neighbours (weight 1/6 for
the 4 direct ones, 1/12 for the diagonals; removed neighbours are unknowns too, so one sparse
linear system per image fills every hole smoothly from its border), plus Gaussian noise of
standard deviation ``noise`` (0.01 in the model's input space). Unlike deletion to a constant,
the filled image carries no trace of *where* pixels were removed, so the score change measures
what the removed pixels contributed, not the shape of the hole.

The protocol pinned here is pytorch-grad-cam's (1.5.7, ``pytorch_grad_cam.metrics.road``),
which ``tests/metrics/test_road.py`` checks against on the same images:

- the map is resized bilinearly to the image and min-max normalised to [0, 1];
- **MoRF** at percentile ``p`` keeps the pixels strictly below the map's ``p``-th percentile
  (NumPy's linear percentile) and imputes the rest — the most relevant ``100 - p`` %;
  **LeRF** at ``p`` does the same with ``1 - map`` — it imputes the least relevant ``100 - p`` %;
- the score is the target's **logit** after imputation minus before;
- ``morf`` and ``lerf`` are the means over ``percentiles`` (default 20, 40, 60, 80, where
  pytorch-grad-cam's averagers default to 10, 20, …, 90: a quarter of the cost, the same range);
  **combined** = (lerf − morf) / 2, higher is better (removing the relevant pixels should hurt,
  removing the irrelevant ones should not).

Cost: ``2 × len(percentiles)`` sparse solves (SciPy's SuperLU, 0.05–0.5 s each at 224², run in
a pool of threads) and as many forward passes per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import splu

from ..arrays import normalize_map, resize_maps
from .faithfulness import memory_format_of

__all__ = ["ROAD_PERCENTILES", "dissection_order", "impute_linear", "road"]

ROAD_PERCENTILES = (20, 40, 60, 80)
# (dy, dx, weight) of the 8 neighbours in the imputation.
_NEIGHBOURS = [
    (dy, dx, 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if (dy, dx) != (0, 0)
]


def impute_linear(image: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Fill the pixels outside ``keep`` of ``image`` ``(C, H, W)`` by linear imputation (no noise).

    Each removed pixel equals the weighted mean of its in-image neighbours (removed or not):
    one sparse system ``A x = b`` over the removed pixels, every channel a right-hand side.
    """
    c, h, w = image.shape
    flat_keep = keep.ravel()
    unknown = np.flatnonzero(~flat_keep)
    if unknown.size == 0:
        return image.copy()
    var = np.full(h * w, -1, dtype=np.int64)
    var[unknown] = np.arange(unknown.size)
    rows, cols = np.divmod(unknown, w)
    values = image.reshape(c, -1).astype(np.float64)
    diagonal = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, c))
    a_rows, a_cols, a_vals = [], [], []
    for dy, dx, weight in _NEIGHBOURS:
        r, q = rows + dy, cols + dx
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        eq = np.flatnonzero(inside)
        neighbour = r[inside] * w + q[inside]
        diagonal[eq] += weight
        known = flat_keep[neighbour]
        rhs[eq[known]] += weight * values[:, neighbour[known]].T
        a_rows.append(eq[~known])
        a_cols.append(var[neighbour[~known]])
        a_vals.append(np.full(int((~known).sum()), -weight))
    a_rows.append(np.arange(unknown.size))
    a_cols.append(np.arange(unknown.size))
    a_vals.append(diagonal)
    system = sparse.csr_matrix(
        (np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))),
        shape=(unknown.size, unknown.size),
    )
    # Unknowns in nested-dissection order (each half before the line that separates it): the
    # factorisation of a grid's Laplacian fills in far less than with a generic ordering.
    order = dissection_order(rows, cols)
    permuted = system[order][:, order].tocsc()
    factor = splu(permuted, permc_spec="NATURAL", options={"SymmetricMode": True})
    solution = np.empty_like(rhs)
    solution[order] = factor.solve(rhs[order])
    out = values.copy()
    out[:, unknown] = solution.T
    return out.reshape(c, h, w).astype(image.dtype)


def dissection_order(rows: np.ndarray, cols: np.ndarray, *, leaf: int = 128) -> np.ndarray:
    """A nested-dissection order of pixels at ``(rows, cols)``: split at the median line of the
    longer axis, order the two halves (recursively) and then that line, which separates them
    for the 8-neighbour stencil. Returns the permutation (indices into ``rows``)."""

    def order(ix: np.ndarray) -> list[np.ndarray]:
        if ix.size <= leaf:
            return [ix]
        r, q = rows[ix], cols[ix]
        along = r if r.max() - r.min() >= q.max() - q.min() else q
        cut = int(np.median(along))
        line, before = along == cut, along < cut
        after = ~(line | before)
        if not before.any() or not after.any():
            return [ix]
        return [*order(ix[before]), *order(ix[after]), ix[line]]

    return np.concatenate(order(np.arange(rows.size)))


def _keep_masks(
    saliency: np.ndarray, percentiles: Sequence[float]
) -> list[tuple[str, float, np.ndarray]]:
    """``(order, p, keep)`` of every setting: MoRF and LeRF at each percentile."""
    out = []
    for order, m in (("morf", saliency), ("lerf", 1.0 - saliency)):
        for p in percentiles:
            out.append((order, p, m < np.percentile(m, p)))
    return out


def road(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    cams,
    targets,
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 64,
    workers: int = 2,
) -> dict:
    """ROAD scores per image (see the module docstring for the protocol).

    Args:
        model_fn: ``(N, C, H, W) -> (N, num_classes)`` **logits** (called under ``no_grad``).
        images: ``(B, C, H, W)`` float, normalised for the model.
        cams: ``(B, h, w)`` maps at any size.
        targets: ``(B,)`` class indices.
        percentiles: the ``p`` of every MoRF and LeRF step.
        noise: standard deviation of the imputation noise (0 for none); ``seed`` seeds it.
        workers: threads solving the imputations.

    Returns:
        ``{"morf": (B,), "lerf": (B,), "combined": (B,), "morf_by_percentile": (B, P),
        "lerf_by_percentile": (B, P), "percentiles": (P,)}``, float64 NumPy arrays in logits.
    """
    b, c, h, w = images.shape
    saliency = resize_maps(
        torch.as_tensor(np.asarray(cams) if not torch.is_tensor(cams) else cams).float().cpu(),
        (h, w),
    )
    targets = torch.as_tensor(targets, dtype=torch.long)
    base = images.detach().cpu().numpy()
    settings = [
        (i, *s) for i in range(b) for s in _keep_masks(normalize_map(saliency[i]), percentiles)
    ]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        filled = list(pool.map(lambda s: impute_linear(base[s[0]], s[3]), settings))
    generator = torch.Generator().manual_seed(seed)
    stack = torch.from_numpy(np.stack(filled))
    keep = torch.from_numpy(np.stack([s[3] for s in settings]))[:, None]
    stack = torch.where(keep, stack, stack + noise * torch.randn(stack.shape, generator=generator))
    owner = torch.tensor([s[0] for s in settings])
    with torch.no_grad():
        before = _logits_of(model_fn, images, targets.to(images.device), batch_size)
        after = _logits_of(
            model_fn,
            stack.to(images.device, images.dtype).contiguous(
                memory_format=memory_format_of(images)
            ),
            targets[owner].to(images.device),
            batch_size,
        )
    change = (after - before[owner]).reshape(b, 2, len(percentiles))
    morf, lerf = change[:, 0], change[:, 1]
    return {
        "morf": morf.mean(1),
        "lerf": lerf.mean(1),
        "combined": (lerf.mean(1) - morf.mean(1)) / 2,
        "morf_by_percentile": morf,
        "lerf_by_percentile": lerf,
        "percentiles": np.asarray(percentiles, dtype=np.float64),
    }


def _logits_of(model_fn, x: torch.Tensor, targets: torch.Tensor, batch_size: int) -> np.ndarray:
    out = []
    for i in range(0, x.shape[0], batch_size):
        logits = model_fn(x[i : i + batch_size])
        out.append(logits.gather(1, targets[i : i + batch_size, None])[:, 0].double().cpu())
    return torch.cat(out).numpy()
