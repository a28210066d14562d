"""Bootstrap intervals over images: they hold the value, cover the truth, and pair methods."""

from __future__ import annotations

import numpy as np
import pytest

from hrcam.metrics import PxAP
from hrcam.metrics.boxes import MaxBoxAccV2
from hrcam.metrics.intervals import (
    bootstrap_interval,
    mean_statistic,
    paired_difference_interval,
    resample_counts,
)


def test_resamples_draw_n_images_each_and_depend_only_on_the_seed():
    counts = resample_counts(50, n_boot=200, seed=3)
    assert counts.shape == (200, 50) and (counts.sum(1) == 50).all()
    np.testing.assert_array_equal(counts, resample_counts(50, n_boot=200, seed=3))
    assert not np.array_equal(counts, resample_counts(50, n_boot=200, seed=4))


def test_the_interval_of_a_mean_covers_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(200):
        values = rng.normal(1.0, 2.0, size=60)
        lo, hi = bootstrap_interval(mean_statistic(values), values.size, n_boot=400, seed=trial)
        covered += lo <= 1.0 <= hi
    assert 0.88 <= covered / 200 <= 0.99  # percentile bootstrap: slightly under 95 % at n = 60


def test_the_interval_narrows_as_images_are_added():
    rng = np.random.default_rng(1)
    widths = []
    for n in (25, 100, 400):
        values = rng.uniform(size=n)
        lo, hi = bootstrap_interval(mean_statistic(values), n)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # About 2 * 1.96 * sd / sqrt(n) for a mean (sd of U(0, 1) = 0.289).
    assert widths[2] == pytest.approx(2 * 1.96 * 0.289 / 20, rel=0.2)


def test_nan_values_are_left_out_of_the_mean():
    values = np.array([1.0, np.nan, 3.0, np.nan])
    stat = mean_statistic(values)
    assert stat(np.ones((1, 4), dtype=np.int64))[0] == 2.0


def test_paired_differences_see_the_same_resamples():
    rng = np.random.default_rng(2)
    a = rng.normal(size=80)
    # A method that is a's score plus 0.1 on every image: the paired interval is exactly 0.1,
    # although each method's own interval is much wider than 0.1.
    lo, hi = paired_difference_interval(mean_statistic(a + 0.1), mean_statistic(a), 80)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    own_lo, own_hi = bootstrap_interval(mean_statistic(a), 80)
    assert own_hi - own_lo > 0.3


def _pxap_of(maps, masks) -> PxAP:
    metric = PxAP(num_thresholds=20)
    for cam, mask in zip(maps, masks, strict=True):
        metric.update(cam, mask)
    return metric


def test_pxap_and_maxboxacc_statistics_with_every_image_once_are_the_scores():
    rng = np.random.default_rng(4)
    masks = [np.zeros((16, 16), bool) for _ in range(6)]
    maps = []
    for k, mask in enumerate(masks):
        mask[4 + k % 3 : 11, 3:12] = True
        maps.append(mask * 0.6 + rng.uniform(0, 0.7, size=mask.shape))
    pxap = _pxap_of(maps, masks)
    once = np.ones((1, 6), dtype=np.int64)
    assert pxap.bootstrap_statistic()(once)[0] == pytest.approx(pxap.compute()["pxap"])
    lo, hi = bootstrap_interval(pxap.bootstrap_statistic(), 6)
    assert lo <= pxap.compute()["pxap"] <= hi

    boxes = MaxBoxAccV2(num_thresholds=20)
    for cam, mask in zip(maps, masks, strict=True):
        ys, xs = np.nonzero(mask)
        boxes.update(cam, np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]))
    assert boxes.bootstrap_statistic()(once)[0] == pytest.approx(boxes.compute()["max_box_acc_v2"])
