"""Paired differences between methods, with 95 % bootstrap intervals: which gaps are real.

Two methods scored on the same images see the same bootstrap resamples (the resample counts
depend only on the seed and the number of images), so the interval of ``a - b`` comes from the
same draws for both: an interval that excludes 0 is a difference the images support. Methods run
on a subset (``--max-images``) are left out, as are metrics either method lacks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics.intervals import mean_statistic, paired_difference_interval

__all__ = ["DIFFERENCE_METRICS", "paired_differences"]

# The metrics compared: localization (from LocalizationScores.statistics) and faithfulness
# (per-image records of faithfulness_scores).
DIFFERENCE_METRICS = {
    "localization": ("pxap", "best_pixel_iou", "max_box_acc_v2"),
    "faithfulness": ("road_combined", "insertion_auc", "deletion_auc", "adcc"),
}


def _statistics(run) -> dict[str, tuple[Any, int]]:
    out = {
        name: value
        for name, value in run.scores.statistics().items()
        if name in DIFFERENCE_METRICS["localization"]
    }
    for name in DIFFERENCE_METRICS["faithfulness"]:
        values = np.asarray(run.faithfulness.get(name, []), dtype=np.float64)
        if values.size:
            out[name] = (mean_statistic(values), values.size)
    return out


def paired_differences(runs, reference: str, *, seed: int = 0) -> dict[str, Any] | None:
    """``{"reference": name, "methods": {name: {metric: {"difference", "interval"}}}}``.

    ``runs`` are the evaluation's method runs (each with ``method.name``, ``names`` (None or a
    subset), ``scores`` and ``faithfulness``); every full-set run is compared with ``reference``.
    Differences are fractions (method minus reference).
    """
    by_name = {run.method.name: run for run in runs if run.names is None}
    if reference not in by_name:
        return None
    base = _statistics(by_name[reference])
    out: dict[str, Any] = {}
    for name, run in by_name.items():
        if name == reference:
            continue
        row = {}
        for metric, (stat, n) in _statistics(run).items():
            if metric not in base or base[metric][1] != n or n == 0:
                continue
            ref_stat = base[metric][0]
            counts_all = np.ones((1, n), dtype=np.int64)
            difference = float(stat(counts_all)[0] - ref_stat(counts_all)[0])
            lo, hi = paired_difference_interval(stat, ref_stat, n, seed=seed)
            row[metric] = {"difference": difference, "interval": [lo, hi]}
        out[name] = row
    return {"reference": reference, "methods": out}
