"""Localization metrics on hand-made maps with hand-computed answers, plus edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from hrcam.metrics import (
    BestPixelIoU,
    CAMLocalization,
    EnergyPointingGame,
    MaxBoxAccV2,
    PointingGame,
    PxAP,
    box_iou,
    boxes_to_mask,
    energy_inside,
    largest_component_box,
    max_box_iou_curve,
    pointing_game_hit,
    resize_map,
    score_map,
)


def box_map(shape, *boxes, values=None):
    """A map that is ``values[i]`` inside inclusive box i (later boxes drawn on top), 0 outside."""
    cam = np.zeros(shape)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        cam[y1 : y2 + 1, x1 : x2 + 1] = 1.0 if values is None else values[i]
    return cam


def reference_box_iou_curve(cam, gt, num_thresholds):
    """Per-threshold scipy labelling: the slow, obvious version of max_box_iou_curve."""
    v = score_map(cam)
    out = np.zeros(num_thresholds)
    for k in range(num_thresholds):
        labels, n = ndimage.label(v > k / num_thresholds, structure=np.ones((3, 3)))
        boxes = [
            [s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1]
            for s in ndimage.find_objects(labels)
        ]
        if boxes:
            out[k] = box_iou(np.array(boxes), gt).max()
    return out


# ------------------------------------------------------------------ normalisation and resizing


def test_normalize_map_min_max_and_non_finite_become_zero():
    cam = np.array([[2.0, 4.0], [np.nan, 6.0], [np.inf, -np.inf]])
    np.testing.assert_allclose(score_map(cam), [[1 / 3, 2 / 3], [0, 1], [0, 0]])
    assert np.isnan(cam[1, 0])  # the input is not modified


@pytest.mark.parametrize("value", [0.0, 3.5, np.nan])
def test_constant_map_normalises_to_zeros(value):
    np.testing.assert_array_equal(score_map(np.full((3, 4), value)), np.zeros((3, 4)))


def test_normalize_map_accepts_tensors_and_refuses_non_2d():
    np.testing.assert_allclose(score_map(torch.tensor([[1.0, 3.0]])), [[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"2-D \(H, W\) map, got shape \(2, 3, 4\)"):
        score_map(np.zeros((2, 3, 4)))


def test_resize_map_is_bilinear_with_half_pixel_centres():
    np.testing.assert_allclose(resize_map(np.array([[0.0, 1.0]]), (1, 4)), [[0, 0.25, 0.75, 1]])
    np.testing.assert_allclose(resize_map(np.ones((7, 7)), (224, 300)), np.ones((224, 300)))
    with pytest.raises(ValueError, match="shape must be"):
        resize_map(np.ones((2, 2)), (0, 4))


@pytest.mark.parametrize("k", [1, 7, 100, 1000])
def test_threshold_levels_match_searchsorted_even_on_the_thresholds(k):
    from hrcam.metrics.base import threshold_levels

    grid = np.arange(k + 1) / k
    v = np.concatenate(
        [
            np.random.default_rng(k).random(5000),
            grid,  # values exactly on a threshold: strict and inclusive differ here
            np.nextafter(grid, 2.0).clip(0, 1),
            np.nextafter(grid, -1.0).clip(0, 1),
            (np.arange(k + 1) * 0.01).clip(0, 1),  # 0.29 * 100 = 28.999...: floor is off by one
        ]
    )
    np.testing.assert_array_equal(
        threshold_levels(v, k, inclusive=False), np.searchsorted(grid[:k], v, side="left")
    )
    np.testing.assert_array_equal(
        threshold_levels(v, k, inclusive=True), np.searchsorted(grid, v, side="right")
    )


# ------------------------------------------------------------------------------------- boxes


def test_box_iou_uses_inclusive_corners():
    a = np.array([[0, 0, 9, 9]])
    np.testing.assert_allclose(box_iou(a, a), [[1.0]])
    np.testing.assert_allclose(box_iou(a, [[5, 0, 14, 9]]), [[50 / 150]])
    np.testing.assert_allclose(box_iou(a, [[10, 0, 19, 9]]), [[0.0]])  # adjacent, no overlap
    # A one-pixel box is a pixel, not empty: 1 / 4 of a 2x2 box.
    np.testing.assert_allclose(box_iou([[0, 0, 0, 0]], [[0, 0, 1, 1]]), [[0.25]])


def test_box_iou_refuses_swapped_corners():
    with pytest.raises(ValueError, match="x2 >= x1"):
        box_iou([[5, 0, 1, 3]], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(np.zeros((2, 3)), [[0, 0, 1, 1]])


def test_boxes_to_mask_union_clipped():
    mask = boxes_to_mask([[1, 0, 2, 1], [3, 2, 9, 9]], (3, 4))
    np.testing.assert_array_equal(mask.astype(int), [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]])


# ------------------------------------------------------------------------- max_box_iou_curve


def test_map_equal_to_the_box_scores_one_at_every_threshold():
    cam = box_map((20, 30), (4, 3, 12, 15))
    np.testing.assert_allclose(max_box_iou_curve(cam, [[4, 3, 12, 15]]), np.ones(100))


def test_box_shifted_by_three_pixels_has_known_iou():
    cam = box_map((10, 20), (3, 0, 12, 9))  # the 10x10 GT box shifted right by 3
    np.testing.assert_allclose(max_box_iou_curve(cam, [[0, 0, 9, 9]]), np.full(100, 70 / 130))


def test_thresholds_keep_values_strictly_above():
    # Outer box 0.5 (IoU 16 / 36 with the GT), inner box 1.0 (IoU 1). t_k = k / 100 and v > t_k:
    # the outer box survives up to t = 0.49 and is gone at t = 0.50.
    cam = box_map((10, 10), (2, 2, 7, 7), (3, 3, 6, 6), values=[0.5, 1.0])
    curve = max_box_iou_curve(cam, [[3, 3, 6, 6]])
    np.testing.assert_allclose(curve[:50], 16 / 36)
    np.testing.assert_allclose(curve[50:], 1.0)


def test_every_component_is_a_candidate_box():
    # The GT matches the small, dim blob exactly; the big bright one is elsewhere.
    cam = box_map((30, 30), (0, 0, 14, 14), (20, 20, 24, 24), values=[1.0, 0.6])
    curve = max_box_iou_curve(cam, [[20, 20, 24, 24]])
    np.testing.assert_allclose(curve[:60], 1.0)  # both blobs above t < 0.6
    np.testing.assert_allclose(curve[60:], 0.0)  # only the big one left


def test_best_gt_box_is_taken():
    cam = box_map((10, 10), (0, 0, 4, 4))
    gt = [[5, 5, 9, 9], [0, 0, 4, 9]]  # disjoint, then IoU 25 / 50
    np.testing.assert_allclose(max_box_iou_curve(cam, gt, num_thresholds=5), np.full(5, 0.5))


def test_diagonal_neighbours_are_one_component():
    cam = np.zeros((4, 4))
    cam[0, 0] = cam[1, 1] = 1.0
    # 8-connected: one 2x2 box (IoU 1). 4-connected would give two pixels (IoU 1/4).
    np.testing.assert_allclose(max_box_iou_curve(cam, [[0, 0, 1, 1]], num_thresholds=3), 1.0)


@pytest.mark.parametrize("cam", [np.zeros((6, 6)), np.full((6, 6), 2.0), np.full((6, 6), np.nan)])
def test_constant_map_finds_no_box(cam):
    np.testing.assert_array_equal(max_box_iou_curve(cam, [[0, 0, 5, 5]]), np.zeros(100))


def test_nan_pixels_count_as_zero():
    cam = box_map((8, 8), (2, 2, 5, 5))
    cam[0, 0] = np.nan
    np.testing.assert_allclose(max_box_iou_curve(cam, [[2, 2, 5, 5]]), 1.0)


@pytest.mark.parametrize("seed", range(6))
def test_matches_per_threshold_labelling(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 60, 2)
    low = rng.random((rng.integers(2, 8), rng.integers(2, 8))) ** 3
    cam = resize_map(low, (int(h), int(w))) + 0.1 * rng.random((h, w)) * (seed % 2)
    gt = np.sort(rng.integers(0, min(h, w), (3, 2, 2)), axis=1).reshape(3, 4)  # x1 y1 x2 y2
    k = [7, 100][seed % 2]
    np.testing.assert_allclose(
        max_box_iou_curve(cam, gt, num_thresholds=k), reference_box_iou_curve(cam, gt, k)
    )


def test_noisy_maps_are_done_in_threshold_bands_with_the_same_answer(monkeypatch):
    import hrcam.metrics.boxes as loc

    rng = np.random.default_rng(7)
    cam = rng.random((30, 40))
    gt = [[3, 4, 20, 25], [10, 0, 39, 9]]
    whole = max_box_iou_curve(cam, gt)
    monkeypatch.setattr(loc, "_MAX_RUNS", 500)  # forces tens of bands
    np.testing.assert_array_equal(max_box_iou_curve(cam, gt), whole)
    np.testing.assert_allclose(whole, reference_box_iou_curve(cam, np.array(gt), 100))


def test_max_box_iou_curve_needs_a_box():
    with pytest.raises(ValueError, match="at least one GT box"):
        max_box_iou_curve(np.ones((3, 3)), np.zeros((0, 4)))


# ------------------------------------------------------------------------------- MaxBoxAccV2


def test_max_box_acc_v2_on_four_images_with_known_ious():
    gt = [[0, 0, 9, 9]]
    # Maps are wider than the box: a map equal to 1 everywhere would be constant (no box).
    maps = [
        box_map((10, 12), (0, 0, 9, 9)),  # IoU 1
        box_map((10, 12), (0, 0, 5, 9)),  # 60 / 100
        box_map((10, 12), (0, 0, 3, 9)),  # 40 / 100
        box_map((10, 20), (12, 0, 19, 9)),  # disjoint
    ]
    metric = MaxBoxAccV2()
    for cam in maps:
        metric.update(cam, gt)
    out = metric.compute()
    np.testing.assert_allclose(out["max_box_acc"], [3 / 4, 2 / 4, 1 / 4])
    assert out["max_box_acc_v2"] == pytest.approx(0.5)
    assert out["curve"].shape == (3, 100) and out["num_images"] == 4


def test_max_box_acc_picks_the_dataset_best_threshold():
    gt = [[3, 3, 6, 6]]
    inner_only_above_half = box_map((12, 12), (0, 0, 9, 9), (3, 3, 6, 6), values=[0.5, 1.0])
    metric = MaxBoxAccV2(iou_thresholds=(0.5,))
    metric.update(inner_only_above_half, gt)
    out = metric.compute()
    np.testing.assert_array_equal(out["curve"][0, :50], 0.0)  # IoU 16 / 100 below t = 0.5
    np.testing.assert_array_equal(out["curve"][0, 50:], 1.0)
    assert out["best_cam_threshold"][0] == 0.5 and out["max_box_acc_v2"] == 1.0


def test_max_box_acc_batches_lists_skips_and_merges():
    a = box_map((10, 12), (0, 0, 9, 9))
    b = box_map((10, 12), (0, 0, 3, 9))
    single = MaxBoxAccV2()
    single.update(a, [[0, 0, 9, 9]])
    single.update(b, [[0, 0, 9, 9]])
    batched = MaxBoxAccV2()
    batched.update(torch.from_numpy(np.stack([a, b])), [[[0, 0, 9, 9]], np.array([[0, 0, 9, 9]])])
    np.testing.assert_array_equal(single.compute()["curve"], batched.compute()["curve"])

    # Different sizes in one list; an image without boxes is skipped, not scored 0.
    mixed = MaxBoxAccV2()
    mixed.update([a, box_map((5, 7), (0, 0, 6, 4))], [[[0, 0, 9, 9]], np.zeros((0, 4))])
    assert mixed.compute()["num_skipped"] == 1 and mixed.compute()["max_box_acc_v2"] == 1.0

    merged = MaxBoxAccV2()
    merged.update(a, [[0, 0, 9, 9]])
    other = MaxBoxAccV2()
    other.update(b, [[0, 0, 9, 9]])
    merged.merge(other)
    np.testing.assert_array_equal(merged.compute()["curve"], single.compute()["curve"])
    with pytest.raises(ValueError, match="can only merge"):
        merged.merge(MaxBoxAccV2(num_thresholds=10))


def test_max_box_acc_reports_nan_before_any_image_and_checks_batch_lengths():
    metric = MaxBoxAccV2()
    assert np.isnan(metric.compute()["max_box_acc_v2"])
    with pytest.raises(ValueError, match="needs 2 per-image annotations"):
        metric.update(np.zeros((2, 4, 4)), [[[0, 0, 1, 1]]])
    with pytest.raises(ValueError, match="iou_thresholds"):
        MaxBoxAccV2(iou_thresholds=(0.0, 0.5))


# --------------------------------------------------------------------------- CAMLocalization


def test_largest_component_wins_over_brighter_smaller_one():
    cam = box_map((20, 20), (0, 0, 1, 1), (8, 8, 17, 15), values=[1.0, 0.5])
    np.testing.assert_array_equal(largest_component_box(cam), [8, 8, 17, 15])


def test_twenty_percent_threshold_is_strict():
    # A halo at exactly 20 % of the max is not "above 20 %"; at 21 % it is.
    at = box_map((12, 12), (0, 0, 9, 9), (3, 3, 6, 6), values=[0.2, 1.0])
    above = box_map((12, 12), (0, 0, 9, 9), (3, 3, 6, 6), values=[0.21, 1.0])
    np.testing.assert_array_equal(largest_component_box(at), [3, 3, 6, 6])
    np.testing.assert_array_equal(largest_component_box(above), [0, 0, 9, 9])
    assert largest_component_box(np.ones((4, 4))) is None  # constant: nothing above


def test_gt_known_and_top1_localization():
    gt = [[0, 0, 9, 9]]
    half = box_map((10, 10), (0, 0, 4, 9))  # IoU exactly 0.5: counts (>=)
    third = box_map((10, 10), (0, 0, 2, 9))  # IoU 0.3
    metric = CAMLocalization()
    metric.update([half, half, third], [gt, gt, gt], correct=[True, False, True])
    out = metric.compute()
    assert out["gt_known_loc"] == pytest.approx(2 / 3)
    assert out["top1_loc"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="correct= with every update"):
        metric.update(half, gt)

    gt_only = CAMLocalization()
    gt_only.update(half, gt)
    assert gt_only.compute()["gt_known_loc"] == 1.0 and np.isnan(gt_only.compute()["top1_loc"])


# --------------------------------------------------------------------------------------- PxAP


def test_pxap_of_a_map_equal_to_the_mask_is_one():
    mask = box_map((16, 16), (3, 4, 10, 12)).astype(bool)
    metric = PxAP()
    metric.update(mask.astype(float), mask)
    assert metric.compute()["pxap"] == pytest.approx(1.0)


def test_pxap_hand_computed():
    # Positives at 1, 1, 0.5; negatives at 0.5, 0, 0.
    # t = 1: P = 1, R = 2/3; t in (0, 0.5]: P = 3/4, R = 1; AP = 2/3 + 3/4 * 1/3 = 11/12.
    metric = PxAP()
    metric.update(np.array([[1.0, 1.0, 0.5], [0.5, 0.0, 0.0]]), np.array([[1, 1, 1], [0, 0, 0]]))
    out = metric.compute()
    assert out["pxap"] == pytest.approx(11 / 12)
    assert out["recall"][0] == 1.0 and out["precision"][0] == pytest.approx(0.5)
    assert out["thresholds"][-1] == 1.0 and out["precision"].shape == (101,)


def test_pxap_of_an_inverted_map_is_the_positive_rate():
    mask = box_map((10, 10), (0, 0, 2, 9)).astype(bool)  # 30 of 100 pixels
    metric = PxAP()
    metric.update((~mask).astype(float), mask)
    assert metric.compute()["pxap"] == pytest.approx(0.3)


def test_pxap_is_dataset_wide_not_a_mean_of_images():
    # Image 1 alone: AP 1. Image 2 alone (inverted): AP 1/2. Mean 3/4, but pooled pixels give
    # P = 1/2 at every threshold: AP 1/2.
    metric = PxAP()
    metric.update(np.array([[1.0, 0.0]]), np.array([[True, False]]))
    metric.update(np.array([[0.0, 1.0]]), np.array([[True, False]]))
    assert metric.compute()["pxap"] == pytest.approx(0.5)


def test_pxap_empty_mask_adds_negatives_only_and_ignore_is_not_scored():
    metric = PxAP()
    metric.update(np.array([[1.0, 0.0]]), np.array([[True, False]]))
    metric.update(np.array([[1.0, 0.0]]), np.zeros((1, 2), bool))  # no object: a false alarm
    assert metric.compute()["pxap"] == pytest.approx(0.5)
    assert metric.compute()["num_negative_pixels"] == 3

    ignored = PxAP()
    # The map is wrong only on the ignored boundary pixel.
    ignored.update(np.array([[1.0, 1.0, 0.0]]), np.array([[1, 0, 0]]), ignore=np.array([[0, 1, 0]]))
    assert ignored.compute()["pxap"] == pytest.approx(1.0)


def test_pxap_without_object_pixels_is_nan_and_trimaps_are_refused():
    metric = PxAP()
    metric.update(np.ones((2, 2)), np.zeros((2, 2), bool))
    assert np.isnan(metric.compute()["pxap"])
    trimap = np.array([[1, 2], [3, 2]], dtype=np.uint8)
    with pytest.raises(ValueError, match="trimap"):
        metric.update(np.ones((2, 2)), trimap)
    with pytest.raises(ValueError, match=r"resize_map\(cam, mask.shape\)"):
        metric.update(np.ones((2, 2)), np.ones((4, 4), bool))


def test_pxap_of_a_constant_map_is_the_positive_rate():
    metric = PxAP()
    metric.update(np.zeros((2, 2)), np.array([[1, 0], [0, 0]]))
    assert metric.compute()["pxap"] == pytest.approx(0.25)


# ------------------------------------------------------------------------------ BestPixelIoU


def test_best_pixel_iou_of_the_mask_itself_is_one():
    mask = box_map((12, 12), (2, 2, 7, 9)).astype(bool)
    metric = BestPixelIoU()
    metric.update(mask.astype(float), mask)
    out = metric.compute()
    assert out["best_pixel_iou"] == 1.0
    assert out["best_thresholds"].tolist() == [0.01]  # lowest threshold reaching IoU 1


def test_best_pixel_iou_hand_computed_and_empty_masks_skipped():
    # Mask 1 1 0 0, map 1 .5 .5 0: t = 0 -> 2/4; t in (0, .5] -> 2/3; t > .5 -> 1/2.
    metric = BestPixelIoU()
    metric.update(np.array([[1.0, 0.5, 0.5, 0.0]]), np.array([[1, 1, 0, 0]]))
    metric.update(np.ones((1, 4)), np.zeros((1, 4), bool))
    out = metric.compute()
    assert out["best_pixel_iou"] == pytest.approx(2 / 3)
    assert out["num_images"] == 1 and out["num_skipped"] == 1
    assert out["curve"][0] == pytest.approx(0.5) and out["curve"][-1] == pytest.approx(0.5)
    assert out["best_threshold"] == 0.01 and out["iou_at_best_threshold"] == pytest.approx(2 / 3)


def test_best_pixel_iou_is_a_per_image_best_then_a_mean():
    # Image 1 is best at t > 0.5, image 2 at t <= 0.5: per-image bests 1 and 1.
    a = np.array([[1.0, 0.5, 0.0]])
    metric = BestPixelIoU()
    metric.update([a, a], [np.array([[1, 0, 0]]), np.array([[1, 1, 0]])])
    out = metric.compute()
    assert out["best_pixel_iou"] == 1.0
    assert out["best_thresholds"].tolist() == [0.51, 0.01]
    assert out["iou_at_best_threshold"] == pytest.approx(0.75)  # one threshold for both


def test_best_pixel_iou_ignore_region():
    metric = BestPixelIoU()
    metric.update(np.array([[1.0, 1.0, 0.0]]), np.array([[1, 0, 0]]), ignore=np.array([[0, 1, 0]]))
    assert metric.compute()["best_pixel_iou"] == 1.0


# ----------------------------------------------------------------------------- pointing games


@pytest.mark.parametrize(
    ("dy", "dx", "hit"),
    [(0, 15, True), (0, 16, False), (12, 9, True), (12, 10, False), (-15, 0, True)],
)
def test_pointing_game_tolerance_is_euclidean_and_inclusive(dy, dx, hit):
    cam = np.zeros((50, 50))
    cam[25, 25] = 1.0
    mask = np.zeros((50, 50), bool)
    mask[25 + dy, 25 + dx] = True
    assert pointing_game_hit(cam, mask) is hit


def test_pointing_game_edge_cases():
    mask = np.zeros((5, 5), bool)
    mask[4, 4] = True
    assert pointing_game_hit(np.ones((5, 5)), mask) is False  # constant map: no maximum
    assert pointing_game_hit(np.eye(5), np.zeros((5, 5), bool)) is None  # no object
    tie = np.zeros((5, 5))
    tie[0, 0] = tie[4, 4] = 1.0  # first maximum in row-major order: (0, 0)
    assert pointing_game_hit(tie, mask, tolerance=0) is False
    nan = np.full((5, 5), -1.0)
    nan[0, 0] = np.nan  # NaN counts as 0, which is the maximum here
    nan[4, 4] = -0.5
    assert pointing_game_hit(nan, mask, tolerance=0) is False


def test_pointing_game_accumulator():
    cam = np.zeros((40, 40))
    cam[0, 0] = 1.0  # corner: the tolerance window is clipped at the border
    near = np.zeros((40, 40), bool)
    near[10, 10] = True  # 14.1 px away
    far = np.zeros((40, 40), bool)
    far[11, 11] = True  # 15.6 px away
    metric = PointingGame()
    metric.update(np.stack([cam, cam, cam]), np.stack([near, far, np.zeros((40, 40), bool)]))
    assert metric.compute() == {"accuracy": 0.5, "hits": 1, "misses": 1, "num_skipped": 1}
    with pytest.raises(ValueError, match="tolerance"):
        PointingGame(tolerance=-1)


def test_energy_inside_hand_computed():
    cam = np.array([[0.0, 1.0], [3.0, 4.0]])  # normalised 0, 1/4, 3/4, 1: energy 2
    mask = np.array([[False, True], [False, True]])
    assert energy_inside(cam, mask) == pytest.approx(1.25 / 2)
    # Ignoring the 3/4 pixel leaves energy 1.25, all of it on the object.
    assert energy_inside(cam, mask, ignore=np.array([[0, 0], [1, 0]])) == pytest.approx(1.0)
    assert energy_inside(np.full((2, 2), 7.0), mask) == 0.0  # constant map: no energy
    assert energy_inside(cam, np.zeros((2, 2), bool)) is None


def test_energy_pointing_game_accumulator():
    cam = np.array([[0.0, 1.0], [3.0, 4.0]])
    metric = EnergyPointingGame()
    metric.update(cam, np.array([[0, 1], [0, 1]]))
    metric.update(cam, np.ones((2, 2), bool))  # share 1
    metric.update(cam, np.zeros((2, 2), bool))  # skipped
    out = metric.compute()
    assert out["energy_pointing_game"] == pytest.approx((0.625 + 1.0) / 2)
    assert out["num_images"] == 2 and out["num_skipped"] == 1


def test_reset_forgets_everything():
    metric = PointingGame()
    metric.update(np.eye(3), np.eye(3, dtype=bool))
    metric.reset()
    assert metric.compute()["hits"] == 0 and np.isnan(metric.compute()["accuracy"])
