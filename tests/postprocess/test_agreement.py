"""The NumPy reference, the compiled steps and the batched PyTorch implementation agree image
by image.

About 330 inputs: real-looking CAM pairs (smooth blobs, textured high-res maps) at several
sizes and options, uniform noise (the most fragmented masks), and coarsely quantised maps (many
exact ties, which all three must break the same way). Masks must be identical; the batched maps
within 1e-5 (in practice they are bit-identical: both compute the same float32 operations), the
compiled ones bit for bit (the same operations in the same order, by construction).
"""

import numpy as np
import pytest
import torch

from hrcam.postprocess import compiled, reference, refine, refine_batch
from hrcam.postprocess.steps import ARRAY_FIELDS
from hrcam.postprocess.synthetic import make_cams


def _assert_agree(low, high, images, **options):
    batch = refine_batch(low, high, images, **options)
    assert isinstance(batch.merged, np.ndarray)  # NumPy in, NumPy out
    for i in range(len(low)):
        image = None if images is None else images[i]
        ref = reference.refine(low[i], high[i], image, **options)
        fast = compiled.refine(low[i], high[i], image, **options)
        for name in ARRAY_FIELDS:
            want, got = getattr(ref, name), getattr(fast, name)
            if want is None:
                assert got is None
                continue
            assert got.shape == want.shape and got.dtype == want.dtype, (name, i)
            np.testing.assert_array_equal(got, want, err_msg=f"compiled {name} of image {i}")
        for name in ARRAY_FIELDS:
            want, got = getattr(ref, name), getattr(batch, name)
            if want is None:
                assert got is None
                continue
            got = got[i]
            assert got.shape == want.shape and got.dtype == want.dtype, (name, i)
            if want.dtype == bool or name == "masked_image":
                np.testing.assert_array_equal(got, want, err_msg=f"{name} of image {i}")
            else:
                np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"{name} of image {i}")


def test_real_looking_cams_at_224_with_default_options():
    low, high, images = make_cams(np.random.default_rng(100), 32)
    _assert_agree(low, high, images)


@pytest.mark.parametrize(
    "options",
    [
        dict(focal_scope="local"),
        dict(focal_scope="local", maxima_areas="large", merge="multiply", filter="threshold"),
        dict(roi_percentile=60, num_points=40, blur_size=3, alpha=0.8, keep_percentage=30),
        dict(merge_base="high", lower_percentile=0, upper_percentile=90, alpha=0.3),
        dict(merge="gate", merge_base="high", lower_percentile=0, alpha=0.2),
    ],
)
def test_real_looking_cams_non_square_with_other_options(options):
    seed = 101 + len(options)
    low, high, images = make_cams(
        np.random.default_rng(seed), 32, low_shape=(5, 7), high_shape=(96, 128)
    )
    _assert_agree(low, high, images, **options)


def test_uniform_noise():
    rng = np.random.default_rng(102)
    low = rng.random((48, 7, 7)).astype(np.float32)
    high = rng.standard_normal((48, 48, 48)).astype(np.float32)
    _assert_agree(low, high, None)
    _assert_agree(low, high, None, focal_scope="local", maxima_areas="large")


def test_quantised_maps_with_many_ties():
    rng = np.random.default_rng(103)
    low, high, images = make_cams(rng, 40, high_shape=(64, 64))
    low, high = np.round(low * 3) / 3, np.round(high * 4) / 4
    _assert_agree(low, high, images)
    _assert_agree(low, high, images, focal_scope="local", filter="threshold")


def test_finer_low_res_grid_and_degenerate_members_in_one_batch():
    low, high, images = make_cams(
        np.random.default_rng(104), 24, low_shape=(14, 14), high_shape=(112, 112)
    )
    low[0] = 0  # empty ROI
    high[1] = 1  # no edges
    low[2, 3, 3] = np.nan
    high[3, :10] = np.inf
    _assert_agree(low, high, images, nan_policy="zero")


def test_tensors_in_give_tensors_out():
    low, high, images = make_cams(np.random.default_rng(105), 3, high_shape=(32, 32))
    steps = refine_batch(torch.from_numpy(low), torch.from_numpy(high), torch.from_numpy(images))
    assert isinstance(steps.merged, torch.Tensor) and steps.merged.shape == (3, 32, 32)
    assert steps.bounds.shape == (3, 2) and steps.masked_image.dtype == torch.uint8
    np.testing.assert_array_equal(steps.select(1).merged, refine(low[1], high[1]).merged)


def test_compiled_steps_are_what_hrcam_refine_runs_and_take_any_layout():
    """``hrcam.refine`` is the compiled pipeline; inputs of other dtypes and memory layouts
    (float64, integers, transposed views, a float image) give the reference's result exactly."""
    import hrcam
    from hrcam.postprocess import backend

    assert backend.one_image is compiled  # what hrcam.refine runs on 2-D maps
    assert hrcam.refine is hrcam.postprocess.refine is backend.refine
    low, high, images = make_cams(np.random.default_rng(106), 4, high_shape=(80, 80))
    cases = [
        (np.round(low[0] * 100).astype(np.int64), high[0].astype(np.float64), images[0]),
        (low[1].T, high[1].T, images[1].transpose(1, 0, 2)),  # views, the image's too
        (low[2], np.asfortranarray(high[2]), images[2].astype(np.float32) / 255),
    ]
    for i, (lo, hi, image) in enumerate(cases):
        for options in ({}, {"merge": "blend", "merge_base": "low", "blur_size": 3}):
            want = reference.refine(lo, hi, image, **options)
            got = compiled.refine(lo, hi, image, **options)
            for name in ARRAY_FIELDS:
                np.testing.assert_array_equal(
                    getattr(got, name), getattr(want, name), err_msg=f"{name}, case {i}"
                )
