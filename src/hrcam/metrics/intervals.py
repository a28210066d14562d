"""95 % bootstrap intervals over images, for every metric, so a table says which differences
are real.

A data set's score is a statistic of per-image records (a mean of per-image values, or, for
PxAP and MaxBoxAccV2, a function of summed per-image counts). The bootstrap resamples the
images with replacement ``n_boot`` times — every resample at once, as a ``(n_boot, N)`` matrix
of how often each image is drawn — recomputes the statistic on each, and reports the
percentile interval (Efron & Tibshirani 1993). The resamples depend only on ``seed`` and
``N``, so two methods scored on the same images see the same resamples and
:func:`paired_difference_interval` gives the interval of their difference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "DEFAULT_BOOTSTRAPS",
    "bootstrap_interval",
    "mean_statistic",
    "paired_difference_interval",
    "resample_counts",
]

DEFAULT_BOOTSTRAPS = 1000


def resample_counts(n: int, *, n_boot: int = DEFAULT_BOOTSTRAPS, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` int counts: how often each of ``n`` images is drawn in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.int64)
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1)
    return counts


def mean_statistic(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The statistic "mean of per-image ``values``" of weighted resamples (NaN values left out)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    v = np.where(ok, v, 0.0)

    def statistic(counts: np.ndarray) -> np.ndarray:
        weight = counts @ ok.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(weight > 0, (counts @ v) / weight, np.nan)

    return statistic


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    n_boot: int = DEFAULT_BOOTSTRAPS,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The ``level`` percentile interval of ``statistic`` over bootstrap resamples of ``n`` images.

    ``statistic(counts)`` takes the ``(n_boot, n)`` resample counts and returns ``(n_boot,)``.

    Example::

        >>> lo, hi = bootstrap_interval(mean_statistic(np.arange(100.0)), 100)
        >>> 40 < lo < 49.5 < hi < 60
        True
    """
    if n == 0:
        return float("nan"), float("nan")
    values = np.asarray(statistic(resample_counts(n, n_boot=n_boot, seed=seed)), dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_difference_interval(
    statistic_a: Callable[[np.ndarray], np.ndarray],
    statistic_b: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    n_boot: int = DEFAULT_BOOTSTRAPS,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Interval of ``a - b`` for two methods scored on the same ``n`` images (same resamples)."""
    return bootstrap_interval(
        lambda counts: np.asarray(statistic_a(counts)) - np.asarray(statistic_b(counts)),
        n,
        n_boot=n_boot,
        level=level,
        seed=seed,
    )
