"""Pointing metrics of class activation maps: the pointing game (Zhang et al., ECCV 2016) and
the energy-based pointing game (Wang et al., CVPR-W 2020), on the conventions of :mod:`.base`."""

from __future__ import annotations

import numpy as np

from .base import LocalizationMetric, as_mask, score_map, split_batch

__all__ = ["EnergyPointingGame", "PointingGame", "energy_inside", "pointing_game_hit"]


def pointing_game_hit(cam, mask, *, tolerance: int = 15) -> bool | None:
    """Pointing game for one image (Zhang et al., ECCV 2016): is the map's maximum on the object?

    The point is the maximum of the map (NaN counts as 0; ties go to the first pixel in
    row-major order). It is a hit when an object pixel lies within ``tolerance`` pixels of it
    (Euclidean distance ``<= tolerance``; the paper's 15 px absorbs annotation slack). A constant
    map has no maximum and is a miss.

    ``cam``, ``mask``: ``(H, W)``, mask boolean. Returns ``True``/``False``, or ``None`` when the
    mask has no object pixel (the game is undefined; the accumulator skips the image).

    Example::

        >>> cam = np.zeros((40, 40)); cam[20, 5] = 1.0
        >>> mask = np.zeros((40, 40), bool); mask[20, 20:] = True       # 15 px to the right
        >>> pointing_game_hit(cam, mask), pointing_game_hit(cam, mask, tolerance=14)
        (True, False)
    """
    v = score_map(cam)
    m = as_mask(mask, v.shape, name="mask")
    return _pointing_game_hit(v, m, _check_tolerance(tolerance))


def _check_tolerance(tolerance) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels), got {tolerance!r}")
    return int(tolerance)


def _pointing_game_hit(v: np.ndarray, mask: np.ndarray, tolerance: int) -> bool | None:
    if not mask.any():
        return None
    if not v.any():  # constant map: normalised to zeros, no maximum
        return False
    r, c = np.unravel_index(int(np.argmax(v)), v.shape)
    r0, c0 = max(r - tolerance, 0), max(c - tolerance, 0)
    window = mask[r0 : r + tolerance + 1, c0 : c + tolerance + 1]
    dy, dx = np.ogrid[r0 - r : r0 - r + window.shape[0], c0 - c : c0 - c + window.shape[1]]
    return bool((window & (dy * dy + dx * dx <= tolerance * tolerance)).any())


def energy_inside(cam, mask, *, ignore=None) -> float | None:
    """Energy-based pointing game for one image (Wang et al., Score-CAM, CVPRW 2020).

    The share of the normalised map's energy (sum of values) that falls on the object:
    ``sum(v[mask]) / sum(v)``, both sums over scored pixels (not ``ignore``). A map with no
    energy on the scored pixels (e.g. constant) scores 0.

    ``cam``, ``mask``, ``ignore``: ``(H, W)``, masks boolean. Returns a float in ``[0, 1]``, or
    ``None`` when no scored pixel is an object pixel (the accumulator skips the image).

    Example::

        >>> cam = np.array([[0.0, 1.0], [3.0, 4.0]])      # normalised: 0, 1/4, 3/4, 1
        >>> float(energy_inside(cam, np.array([[False, True], [False, True]])))  # (1/4 + 1) / 2
        0.625
    """
    v = score_map(cam)
    m = as_mask(mask, v.shape, name="mask")
    ign = None if ignore is None else as_mask(ignore, v.shape, name="ignore")
    return _energy_inside(v, m, ign)


def _energy_inside(v: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None) -> float | None:
    if ignore is not None:
        mask = mask & ~ignore
        v = np.where(ignore, 0.0, v)
    if not mask.any():
        return None
    total = v.sum()
    return float(v[mask].sum() / total) if total > 0 else 0.0


class PointingGame(LocalizationMetric):
    """Pointing game accuracy (Zhang et al., ECCV 2016): hits / (hits + misses).

    Each image is a hit when an object pixel lies within ``tolerance`` (15) pixels of the map's
    maximum (:func:`pointing_game_hit`). For box annotations build the mask with
    :func:`boxes_to_mask`. Images without object pixels are skipped.

    ``update(cams, masks)``: one ``(H, W)`` map with a boolean mask, or a batch.
    ``compute()`` returns ``accuracy``, ``hits``, ``misses``, ``num_skipped``.

    Example::

        >>> metric = PointingGame(tolerance=0)
        >>> metric.update(np.eye(3)[::-1], np.eye(3, dtype=bool))   # maximum at (0, 2): miss
        >>> metric.compute()["accuracy"]
        0.0
    """

    _sum_state = ("hits", "misses", "num_skipped")

    def __init__(self, *, tolerance: int = 15) -> None:
        self.tolerance = _check_tolerance(tolerance)
        super().__init__()

    def _options(self) -> dict:
        return {"tolerance": self.tolerance}

    def reset(self) -> None:
        self.hits = 0
        self.misses = 0
        self.num_skipped = 0

    def update(self, cams, masks) -> None:
        """Add one image (map, boolean object mask) or a batch of them."""
        for cam, mask in split_batch(cams, masks):
            v = score_map(cam)
            hit = _pointing_game_hit(v, as_mask(mask, v.shape, name="mask"), self.tolerance)
            if hit is None:
                self.num_skipped += 1
            elif hit:
                self.hits += 1
            else:
                self.misses += 1

    def compute(self) -> dict:
        n = self.hits + self.misses
        return {
            "accuracy": self.hits / n if n else float("nan"),
            "hits": self.hits,
            "misses": self.misses,
            "num_skipped": self.num_skipped,
        }


class EnergyPointingGame(LocalizationMetric):
    """Energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020), averaged over images.

    Per image, the share of the normalised map's energy on the object (:func:`energy_inside`;
    Score-CAM uses the box region, pass :func:`boxes_to_mask` for boxes). Pixels in ``ignore`` are
    left out of both sums. Images without object pixels are skipped.

    ``update(cams, masks, ignore=None)``; ``compute()`` returns ``energy_pointing_game`` (mean
    share), ``num_images``, ``num_skipped``.

    Example::

        >>> metric = EnergyPointingGame()
        >>> metric.update(np.array([[0.0, 1.0], [3.0, 4.0]]), np.array([[0, 1], [0, 1]]))
        >>> metric.compute()["energy_pointing_game"]
        0.625
    """

    _sum_state = ("share_sum", "num_images", "num_skipped")
    _list_state = ("per_image_share",)

    def reset(self) -> None:
        self.share_sum = 0.0
        self.per_image_share: list[float] = []
        self.num_images = 0
        self.num_skipped = 0

    def update(self, cams, masks, ignore=None) -> None:
        """Add one image (map, boolean mask, optional ignore mask) or a batch of them."""
        for cam, mask, ign in split_batch(cams, masks, ignore):
            v = score_map(cam)
            m = as_mask(mask, v.shape, name="mask")
            ig = None if ign is None else as_mask(ign, v.shape, name="ignore")
            share = _energy_inside(v, m, ig)
            if share is None:
                self.num_skipped += 1
            else:
                self.share_sum += share
                self.per_image_share.append(share)
                self.num_images += 1

    def compute(self) -> dict:
        n = self.num_images
        return {
            "energy_pointing_game": self.share_sum / n if n else float("nan"),
            "num_images": n,
            "num_skipped": self.num_skipped,
        }
