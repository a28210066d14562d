"""Degenerate input gives the documented result, never an exception, in both implementations."""

import numpy as np
import pytest

from hrcam.arrays import normalize_map
from hrcam.postprocess import RefineOptions
from hrcam.postprocess.backend import one_image
from hrcam.postprocess.synthetic import make_cams

from .conftest import run_refine

resize_bilinear = one_image.resize_bilinear


@pytest.fixture(scope="module")
def cams():
    low, high, image = make_cams(np.random.default_rng(11), 1, high_shape=(64, 64))
    return low[0], high[0], image[0]


def test_all_zero_cams_give_an_all_zero_refined_cam(impl):
    image = np.full((32, 32, 3), 99, np.uint8)
    s = run_refine(impl, np.zeros((7, 7)), np.zeros((32, 32)), image)
    assert not s.roi.any() and np.isnan(s.bounds).all()
    assert not s.segmented.any() and not s.full_segment.any()
    np.testing.assert_array_equal(s.refined, 0)
    np.testing.assert_array_equal(s.masked_image, 0)  # nothing to keep


def test_constant_low_res_cam_gives_an_all_zero_refined_cam(impl, cams):
    _, high, _ = cams
    for low in (np.full((7, 7), 3.0), np.ones((1, 1))):  # a 1x1 CAM is constant too
        s = run_refine(impl, low, high)
        assert not s.roi.any()
        np.testing.assert_array_equal(s.refined, 0)


def test_constant_high_res_cam_segments_everything(impl, cams):
    low, _, _ = cams
    s = run_refine(impl, low, np.full((64, 64), -2.0))
    np.testing.assert_array_equal(s.edges, 0)
    np.testing.assert_array_equal(s.bounds, [0, 0])
    assert s.segmented.all()  # every pixel is in [0, 0] and connected to the seeds
    low_n = normalize_map(s.low_resized)
    np.testing.assert_allclose(s.refined, 0.5 + 0.5 * low_n, atol=1e-6)


def test_non_finite_values_count_as_zero(impl, cams):
    low, high, image = cams
    low_bad, high_bad = low.copy(), high.copy()
    low_bad[0, 0], low_bad[3, 4] = np.nan, np.inf
    high_bad[5:9, 5:9], high_bad[40, 40] = np.nan, -np.inf
    low_zero, high_zero = np.nan_to_num(low_bad, nan=0, posinf=0, neginf=0), high.copy()
    high_zero[5:9, 5:9] = high_zero[40, 40] = 0
    got = run_refine(impl, low_bad, high_bad, image, nan_policy="zero")
    want = run_refine(impl, low_zero, high_zero, image)
    for name, value in want.as_dict().items():
        np.testing.assert_array_equal(getattr(got, name), value, err_msg=name)
    assert np.isfinite(got.refined).all()


def test_non_finite_maps_are_refused_by_default_with_the_count(impl, cams):
    from hrcam.checks import NonFiniteError

    low, high, image = cams
    bad = high.copy()
    bad[5:9, 5:9] = np.nan  # 16 values
    with pytest.raises(NonFiniteError, match=r"high \(the high-res CAM\) holds 16 non-finite"):
        run_refine(impl, low, bad, image)
    with pytest.raises(NonFiniteError, match=r"low \(the low-res CAM\) holds 49 non-finite"):
        run_refine(impl, np.full((7, 7), np.nan), high, image)
    with pytest.raises(ValueError, match="nan_policy must be one of"):
        run_refine(impl, low, high, image, nan_policy="ignore")


@pytest.mark.parametrize("image_shape", [(32, 64, 3), (64, 64, 2), (64, 64, 5)])
def test_an_image_that_does_not_fit_the_cam_is_refused_with_both_shapes(impl, cams, image_shape):
    from hrcam.checks import ShapeError

    low, high, _ = cams  # high is 64×64
    with pytest.raises(ShapeError, match=r"does not fit the high-res CAM of shape"):
        run_refine(impl, low, high, np.zeros(image_shape, np.uint8))


def test_seeds_outside_the_edge_band_grow_nothing(impl, cams):
    low, high, _ = cams
    # A band no edge value reaches: every seed is out of range, and there are no strong edges.
    s = run_refine(impl, low, high, lower_percentile=100, upper_percentile=100)
    lower, upper = s.bounds
    assert lower == upper == s.edges[s.roi].max()
    in_band = (s.edges >= lower) & (s.edges <= upper)
    assert not (s.focal_points & in_band).any()
    assert not s.segmented.any()
    # The segment is then the strongest ROI edges with holes filled; the blend follows it.
    expected = 0.5 * s.full_segment + 0.5 * normalize_map(s.low_resized)
    np.testing.assert_allclose(s.refined, expected, atol=1e-6)


def test_empty_roi_leaves_only_the_low_res_cam_term(impl, cams):
    _, high, _ = cams
    s = run_refine(impl, np.zeros((7, 7)), high, merge="blend", alpha=0.3)
    assert not s.roi.any() and not s.full_segment.any()
    np.testing.assert_array_equal(s.refined, 0)


def test_one_pixel_high_res_cam(impl):
    s = run_refine(impl, np.random.default_rng(0).random((7, 7)), np.array([[5.0]]))
    assert s.refined.shape == (1, 1) and np.isfinite(s.refined).all()


@pytest.mark.parametrize(
    ("low_shape", "high_shape"), [((7, 7), (48, 80)), ((5, 9), (70, 31)), ((14, 14), (7, 7))]
)
def test_any_sizes_work(impl, low_shape, high_shape):
    low, high, _ = make_cams(
        np.random.default_rng(1), 1, low_shape=low_shape, high_shape=high_shape
    )
    s = run_refine(impl, low[0], high[0], focal_scope="local")
    assert s.refined.shape == high_shape and s.low.shape == low_shape
    assert s.focal_points.any()


def test_the_mask_step_resizes_an_image_of_another_size(cams):
    """refine() refuses an image of another size (above); its mask_image step resizes one."""
    mask_image = one_image.mask_image

    low, high, image = cams  # 64x64 CAMs
    s = run_refine("reference", low, high, image)
    small = image[::2, ::2]
    masked = mask_image(small, s.refined)
    assert masked.shape == (64, 64, 3) and masked.dtype == np.uint8
    kept = masked.any(axis=2)
    big = np.clip(np.rint(resize_bilinear(small, (64, 64))), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(masked[kept], big[kept])
    gray = mask_image(small[..., 0].astype(np.float32), s.refined)
    assert gray.shape == (64, 64) and gray.dtype == np.float32


def test_options_object_and_overrides(impl, cams):
    low, high, _ = cams
    s = run_refine(impl, low, high, options=RefineOptions(merge="multiply"), alpha=0.9)
    assert s.options == RefineOptions(merge="multiply", alpha=0.9)
    assert s.refined is s.merged
    assert s.refined.max() <= 1 and s.refined.min() >= 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"merge": "sum"}, "merge must be one of 'blend', 'multiply', 'gate'"),
        ({"focal_scope": "all"}, "focal_scope"),
        ({"roi_percentile": 120}, "roi_percentile"),
        ({"colour": 1}, "unknown refine option"),
    ],
)
def test_bad_options_raise_value_error(impl, cams, kwargs, match):
    low, high, _ = cams
    with pytest.raises(ValueError, match=match):
        run_refine(impl, low, high, **kwargs)


def test_bad_shapes_raise_value_error_saying_what_was_expected():
    from hrcam.postprocess import refine, refine_batch

    with pytest.raises(ValueError, match=r"same rank, got low of shape \(2, 7, 7\)"):
        refine(np.zeros((2, 7, 7)), np.zeros((8, 8)))  # a batch is no volume
    with pytest.raises(ValueError, match=r"low must be a non-empty \(h, w\).*got shape \(7,\)"):
        refine(np.zeros(7), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="high must be a non-empty"):
        refine(np.zeros((7, 7)), np.zeros((0, 8)))
    with pytest.raises(ValueError, match="image must be"):
        refine(np.zeros((7, 7)), np.zeros((8, 8)), np.zeros((8, 8, 3, 1)))
    with pytest.raises(ValueError, match="real numbers"):
        refine(np.array([["a"]]), np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"high must be a non-empty \(B, H, W\)"):
        refine_batch(np.zeros((7, 7)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="same number of CAMs, got 2 and 3"):
        refine_batch(np.zeros((2, 7, 7)), np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="images must be"):
        refine_batch(np.zeros((2, 7, 7)), np.zeros((2, 8, 8)), np.zeros((3, 8, 8, 3)))


@pytest.mark.parametrize("impl", ["reference", "compiled", "torch"])
def test_an_image_with_nan_is_refused_with_the_count(impl, cams):
    low, high, image = cams
    bad = image.astype(np.float32) / 255
    bad[0, :3] = np.nan
    with pytest.raises(ValueError, match=r"image holds 9 non-finite value"):
        run_refine(impl, low, high, bad)
