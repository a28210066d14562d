"""The N-D backend (:mod:`hrcam.postprocess.volume`): bit-identical to the reference on images,
hand-made 3-D arrays with hand-computed answers for each step, and a volume end to end."""

import itertools

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from hrcam.checks import NonFiniteError, ShapeError
from hrcam.postprocess import RefineOptions
from hrcam.postprocess import reference as R
from hrcam.postprocess import volume as V
from hrcam.postprocess.synthetic import make_cams

OPTION_SETS = {
    "hrcam": RefineOptions(),
    "paper": RefineOptions.preset("paper"),
    "local-small": RefineOptions(focal_scope="local", merge="multiply"),
    "local-large": RefineOptions(focal_scope="local", maxima_areas="large", blur_size=3),
    "adjacent-seeds": RefineOptions(focal_min_distance=1, merge_base="low", blur_size=1),
}


def cell_centres(n: int) -> np.ndarray:
    """Coordinates in (0, 1) of the centres of ``n`` cells along one axis."""
    return (np.arange(n) + 0.5) / n


def sphere_cams(rng, low_side: int = 6, high_side: int = 48):
    """``(low, high, sphere)``: a Gaussian blob seen on a coarse grid, a noisy sharp sphere at the
    blob's place on a fine one, and the sphere's voxels (bool)."""
    centre = np.array([0.5, 0.45, 0.55])
    z, y, x = np.meshgrid(*[cell_centres(low_side)] * 3, indexing="ij")
    low = np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / 0.045)
    z, y, x = np.meshgrid(*[cell_centres(high_side)] * 3, indexing="ij")
    radius = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    sphere = radius < 0.25
    high = sphere * (0.8 + 0.2 * rng.random(sphere.shape)) + rng.normal(0, 0.02, sphere.shape)
    return low.astype(np.float32), high.astype(np.float32), sphere, radius


# --------------------------------------------------------------------------- 2-D = reference


@pytest.mark.parametrize("name", OPTION_SETS)
def test_images_refine_exactly_as_the_reference(name):
    options = OPTION_SETS[name]
    low, high, image = make_cams(np.random.default_rng(7), 4, high_shape=(96, 80))
    for b in range(len(low)):
        want = R.refine(low[b], high[b], image[b], options=options)
        got = V.refine_volume(low[b], high[b], image[b], options=options)
        for field, expected in want.as_dict().items():
            actual = getattr(got, field)
            assert actual.dtype == expected.dtype, field
            # Same float32 operations in the same order: equal, not merely close.
            np.testing.assert_array_equal(actual, expected, err_msg=field)


@pytest.mark.parametrize("size", [1, 3, 7])
def test_image_steps_equal_the_reference(size):
    rng = np.random.default_rng(size)
    x = rng.normal(size=(13, 17)).astype(np.float32)
    np.testing.assert_array_equal(V.blur_cam(x, size=size), R.blur_cam(x, size=size))
    np.testing.assert_array_equal(V.sobel_edges(x), R.sobel_edges(x))
    np.testing.assert_array_equal(V.resize_bilinear(x, (40, 9)), R.resize_bilinear(x, (40, 9)))
    mask = rng.random((30, 30)) < 0.6
    np.testing.assert_array_equal(
        V.fill_holes(mask, max_size=size), R.fill_holes(mask, max_size=size)
    )
    seeds = rng.random((13, 17)) < 0.05
    np.testing.assert_array_equal(
        V.grow_region(x, seeds, lower=-0.5, upper=1.0),
        R.grow_region(x, seeds, lower=-0.5, upper=1.0),
    )
    within = rng.random((26, 34)) < 0.5
    kwargs = {"num_points": 6, "min_distance": size, "within": within}
    np.testing.assert_array_equal(
        V.find_focal_points(x, (26, 34), **kwargs), R.find_focal_points(x, (26, 34), **kwargs)
    )


# --------------------------------------------------------------------------- 3-D steps


def test_blur_spreads_a_hot_voxel_over_its_cube():
    x = np.zeros((5, 5, 5))
    x[2, 2, 2] = 1.0
    out = V.blur_cam(x, size=3)
    expected = np.zeros((5, 5, 5))
    expected[1:4, 1:4, 1:4] = 1 / 27
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-7)
    # Half-sample symmetric borders: a corner impulse is counted 2 x 2 x 2 times at the corner.
    x = np.zeros((4, 4, 4))
    x[0, 0, 0] = 1.0
    assert V.blur_cam(x, size=3)[0, 0, 0] == pytest.approx(8 / 27)
    x = np.random.default_rng(0).normal(size=(6, 7, 8))
    want = ndi.uniform_filter(R.normalize_cam(x).astype(np.float64), size=5, mode="reflect")
    np.testing.assert_allclose(V.blur_cam(x, size=5), want, atol=1e-6)
    np.testing.assert_array_equal(V.blur_cam(x, size=1), R.normalize_cam(x))
    with pytest.raises(ValueError, match="odd"):
        V.blur_cam(x, size=4)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_sobel_finds_a_step_along_each_axis(axis):
    x = np.zeros((8, 8, 8), np.float32)
    index = [slice(None)] * 3
    index[axis] = slice(4, None)
    x[tuple(index)] = 1.0
    edges = V.sobel_edges(x)
    # The step lies between planes 3 and 4: only they see it, all of their voxels equally.
    profile = edges.max(axis=tuple(a for a in range(3) if a != axis))
    np.testing.assert_array_equal(profile, [0, 0, 0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(edges.min(axis=tuple(a for a in range(3) if a != axis)), profile)


def test_sobel_matches_scipy_in_3d():
    x = np.random.default_rng(1).random((7, 9, 6)).astype(np.float32)
    g = [ndi.sobel(x.astype(np.float64), axis=a, mode="reflect") for a in range(3)]
    want = np.sqrt(sum(gi**2 for gi in g))
    want = (want - want.min()) / (want.max() - want.min())
    np.testing.assert_allclose(V.sobel_edges(x), want, atol=1e-6)


@pytest.mark.parametrize(("src", "dst"), [((6, 6, 6), (48, 48, 48)), ((3, 4, 5), (7, 9, 4))])
def test_trilinear_resize_matches_torch_interpolate(src, dst):
    x = np.random.default_rng(0).random(src).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x)[None, None], size=dst, mode="trilinear")[0, 0]
    out = V.resize_bilinear(x, dst)
    assert out.shape == dst and out.dtype == np.float32
    np.testing.assert_allclose(out, want.numpy(), atol=1e-6)
    # A trailing channel axis is carried along.
    stacked = V.resize_bilinear(np.stack([x, 2 * x], axis=-1), dst)
    np.testing.assert_allclose(stacked[..., 1], 2 * out, atol=1e-6)


def test_local_maxima_use_26_connectivity():
    low = np.zeros((5, 5, 5))
    low[1, 1, 1] = 1.0
    low[2, 2, 2] = 0.8  # touches (1, 1, 1) at a corner only: a neighbour, so no maximum
    low[4, 0, 4] = 0.6
    seeds = V.find_focal_points(low, (10, 10, 10), scope="local", maxima_threshold=0.0)
    # A 5-cell axis on 10 voxels: cell i's centre is voxel 2i + 1.
    assert np.argwhere(seeds).tolist() == [[3, 3, 3], [9, 1, 9]]
    # The default threshold, midway between 0.6 and 1, keeps the strongest only.
    seeds = V.find_focal_points(low, (10, 10, 10), scope="local")
    assert np.argwhere(seeds).tolist() == [[3, 3, 3]]
    cells = V.find_focal_points(low, (10, 10, 10), scope="local", maxima_areas="large")
    expected = np.zeros((10, 10, 10), bool)
    expected[2:4, 2:4, 2:4] = True  # the whole cell of the maximum
    np.testing.assert_array_equal(cells, expected)
    assert not V.find_focal_points(np.ones((3, 3, 3)), (6, 6, 6), scope="local").any()


def greedy_spread(x, k, min_distance, within):
    """The seeds by the definition: scan every voxel from the highest down (ties in C order),
    keep one when it lies at least ``min_distance`` from every one kept."""
    order = np.argsort(-x.ravel(), kind="stable")
    order = order[within.ravel()[order]]
    kept: list[np.ndarray] = []
    for i in order:
        p = np.array(np.unravel_index(i, x.shape))
        if all(((p - q) ** 2).sum() >= min_distance**2 for q in kept):
            kept.append(p)
            if len(kept) == k:
                break
    return sorted(map(tuple, (p.tolist() for p in kept)))


@pytest.mark.parametrize("min_distance", [1, 2, 5])
def test_global_seeds_keep_their_distance_in_3d(min_distance):
    rng = np.random.default_rng(min_distance)
    x = ndi.gaussian_filter(rng.random((14, 12, 10)), 1.5).astype(np.float32)
    x = np.round(x, 3)  # some ties
    within = rng.random(x.shape) < 0.7
    seeds = V.find_focal_points(
        x, x.shape, num_points=8, min_distance=min_distance, low_resized=x, within=within
    )
    points = np.argwhere(seeds)
    assert sorted(map(tuple, points.tolist())) == greedy_spread(x, 8, min_distance, within)
    assert within[seeds].all()
    for p, q in itertools.combinations(points, 2):
        assert ((p - q) ** 2).sum() >= min_distance**2
    # Ties go to the first voxel in C order; an empty `within` means everywhere.
    flat = np.zeros((4, 4, 4), np.float32)
    first = V.find_focal_points(
        flat, flat.shape, num_points=2, min_distance=2, low_resized=flat, within=flat > 0
    )
    assert np.argwhere(first).tolist() == [[0, 0, 0], [0, 0, 2]]


def test_region_growing_connects_faces_not_diagonals():
    edges = np.ones((3, 3, 3), np.float32)
    in_band = [(0, 0, 0), (0, 0, 1), (1, 1, 0), (1, 1, 2)]  # a face pair, then two diagonals
    for p in in_band:
        edges[p] = 0.0
    seeds = np.zeros((3, 3, 3), bool)
    seeds[0, 0, 0] = True
    grown = V.grow_region(edges, seeds, lower=0.0, upper=0.5)
    assert sorted(map(tuple, np.argwhere(grown).tolist())) == [(0, 0, 0), (0, 0, 1)]
    assert not V.grow_region(edges, seeds, lower=np.nan, upper=np.nan).any()
    # A seed outside the band grows nothing.
    assert not V.grow_region(edges, ~seeds & (edges > 0), lower=0.0, upper=0.5).any()


def hollow_cube(side: int = 9) -> np.ndarray:
    """A 5-voxel cube with walls one voxel thick and a 3 x 3 x 3 (27-voxel) cavity."""
    mask = np.zeros((side,) * 3, bool)
    mask[2:7, 2:7, 2:7] = True
    mask[3:6, 3:6, 3:6] = False
    return mask


def test_fill_holes_fills_an_enclosed_cavity_up_to_max_size():
    mask = hollow_cube()
    solid = np.zeros_like(mask)
    solid[2:7, 2:7, 2:7] = True
    np.testing.assert_array_equal(V.fill_holes(mask, max_size=27), solid)
    np.testing.assert_array_equal(V.fill_holes(mask, max_size=26), mask)
    np.testing.assert_array_equal(V.fill_holes(mask, max_size=0), mask)
    # A hole in the wall opens the cavity to the outside: no longer a hole.
    opened = mask.copy()
    opened[4, 4, 6] = False
    np.testing.assert_array_equal(V.fill_holes(opened, max_size=1000), opened)
    # A cavity at the map's border stays open too, however small.
    full = np.ones((5, 5, 5), bool)
    full[0, 2, 2] = False
    full[2, 2, 2] = False
    expected = full.copy()
    expected[2, 2, 2] = True
    np.testing.assert_array_equal(V.fill_holes(full, max_size=10), expected)


def test_mask_image_keeps_the_strongest_voxels_of_a_volume():
    refined = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    image = np.full((10, 10, 10), 200, np.uint8)
    out = V.mask_image(image, refined, keep_percentage=15.0)
    assert out.dtype == np.uint8 and out.shape == (10, 10, 10)
    np.testing.assert_array_equal(out.ravel() > 0, np.arange(1000) >= 850)
    # An image of another size is resized (uint8 rounded); channels last are kept.
    small = np.full((5, 5, 5, 3), 100, np.uint8)
    out = V.mask_image(small, refined, filter="threshold", threshold=0.5)
    assert out.shape == (10, 10, 10, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 2] == 100, refined / 999 > 0.5)


# --------------------------------------------------------------------------- 3-D end to end


def test_volume_refines_to_the_sharp_sphere():
    low, high, sphere, radius = sphere_cams(np.random.default_rng(0))
    image = (255 * np.clip(high, 0, 1)).astype(np.uint8)
    steps = V.refine_volume(low, high, image)
    assert steps.low.shape == (6, 6, 6) and steps.low.dtype == np.float32
    for field in ("blurred", "edges", "low_resized", "merged"):
        value = getattr(steps, field)
        assert value.shape == (48, 48, 48) and value.dtype == np.float32, field
        assert value.min() >= 0 and value.max() <= 1, field
    for field in ("roi", "focal_points", "segmented", "full_segment"):
        assert getattr(steps, field).shape == (48, 48, 48), field
        assert getattr(steps, field).dtype == bool, field
    assert steps.bounds.shape == (2,) and steps.bounds.dtype == np.float32
    assert steps.masked_image.shape == image.shape and steps.masked_image.dtype == np.uint8
    assert steps.focal_points.sum() == 7  # round(sqrt(48)) seeds, all in the ROI
    assert steps.roi[steps.focal_points].all()
    # The segment is the sphere and its blurred rim; the refined map is higher inside.
    assert steps.full_segment[sphere].all()
    assert steps.full_segment[radius > 0.32].mean() < 0.01
    assert steps.refined[sphere].min() > steps.refined[radius > 0.3].max()
    paper = V.refine_volume(low, high, options=RefineOptions.preset("paper"))
    assert paper.refined[sphere].mean() > 5 * paper.refined[radius > 0.3].mean()


def test_constant_low_res_volume_gives_an_empty_segment():
    high = np.random.default_rng(0).random((12, 12, 12))
    steps = V.refine_volume(np.ones((3, 3, 3)), high, options=RefineOptions.preset("paper"))
    assert not steps.roi.any() and not steps.full_segment.any()
    assert np.isnan(steps.bounds).all()
    np.testing.assert_array_equal(steps.refined, 0)


def test_options_and_overrides_apply():
    low, high, _, _ = sphere_cams(np.random.default_rng(2), 4, 16)
    steps = V.refine_volume(low, high, merge="multiply", num_points=3)
    assert steps.options == RefineOptions(merge="multiply", num_points=3)
    assert steps.focal_points.sum() == 3
    np.testing.assert_array_equal(steps.refined, steps.full_segment * V.normalize_cam(high))
    with pytest.raises(ValueError, match="unknown refine option"):
        V.refine_volume(low, high, merg="multiply")


def test_nan_policy():
    low, high, _, _ = sphere_cams(np.random.default_rng(3), 4, 16)
    bad = high.copy()
    bad[0, 0, :3] = [np.nan, np.inf, -np.inf]
    with pytest.raises(NonFiniteError, match="high .* 3 non-finite"):
        V.refine_volume(low, bad)
    zeroed = bad.copy()
    zeroed[0, 0, :3] = 0
    got = V.refine_volume(low, bad, nan_policy="zero")
    np.testing.assert_array_equal(got.refined, V.refine_volume(low, zeroed).refined)
    with pytest.raises(ValueError, match="nan_policy"):
        V.refine_volume(low, high, nan_policy="ignore")
    image = np.zeros(high.shape, np.float32)
    image[1, 1, 1] = np.nan
    with pytest.raises(NonFiniteError, match="image"):
        V.refine_volume(low, high, image, nan_policy="zero")


@pytest.mark.parametrize(
    ("low_shape", "high_shape", "image_shape", "message"),
    [
        ((4, 4), (16, 16, 16), None, "same rank"),
        ((4, 4, 4), (16, 16), None, "same rank"),
        ((2, 4, 4, 4), (2, 16, 16, 16), None, r"low must be a non-empty \(h, w\) or \(d, h, w\)"),
        ((4, 4, 4), (2, 16, 16, 16), None, r"high must be a non-empty \(H, W\) or \(D, H, W\)"),
        ((4,), (16,), None, "low must be a non-empty"),
        ((4, 0, 4), (16, 16, 16), None, "low must be a non-empty"),
        ((4, 4, 4), (16, 16, 16), (16, 16, 8), r"image of shape \(16, 16, 8\) does not fit"),
        ((4, 4, 4), (16, 16, 16), (16, 16, 16, 2), "1, 3 or 4 channels"),
        ((4, 4, 4), (16, 16, 16), (16, 16, 16, 1, 1), "does not fit"),
        ((4, 4), (16, 16), (16, 16, 16), "does not fit"),
    ],
)
def test_bad_shapes_say_what_was_expected(low_shape, high_shape, image_shape, message):
    image = None if image_shape is None else np.zeros(image_shape, np.uint8)
    with pytest.raises(ShapeError, match=message) as info:
        V.refine_volume(np.ones(low_shape), np.ones(high_shape), image)
    assert "\n" not in str(info.value)


def test_inputs_of_other_types():
    low, high, _, _ = sphere_cams(np.random.default_rng(4), 4, 16)
    want = V.refine_volume(low, high).refined
    got = V.refine_volume(torch.from_numpy(low), torch.from_numpy(high).double()).refined
    np.testing.assert_array_equal(got, want)
    image = np.ones((16, 16, 16, 3), np.float32)  # channels last are accepted too
    assert V.refine_volume(low, high, image).masked_image.shape == image.shape
    with pytest.raises(ValueError, match="real numbers"):
        V.refine_volume(low.astype(np.complex64), high)
    with pytest.raises(ValueError, match="options must be a RefineOptions"):
        V.refine_volume(low, high, options={"merge": "gate"})


def test_backend_has_every_step():
    from hrcam.postprocess.pipeline import STEP_FUNCTIONS

    assert set(STEP_FUNCTIONS) <= set(V.__all__)
    assert all(callable(getattr(V, name)) for name in STEP_FUNCTIONS)
