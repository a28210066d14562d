"""Each step on hand-made arrays with hand-computed answers, in both implementations."""

import inspect

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from skimage import filters, morphology

from hrcam.postprocess import RefineOptions
from hrcam.postprocess import batched as T
from hrcam.postprocess import reference as R

from .conftest import IMPLEMENTATIONS, SINGLE_IMAGE, single


def step(impl: str, name: str, *arrays, **kwargs):
    """Call step ``name`` of ``impl`` on single-image arrays; NumPy result, no batch dim."""
    if impl in SINGLE_IMAGE:
        return np.asarray(getattr(single(impl), name)(*arrays, **kwargs))
    tensors = [torch.as_tensor(np.asarray(a))[None] for a in arrays]
    kwargs = {
        k: torch.tensor([v], dtype=torch.float32) if k in ("lower", "upper") else v
        for k, v in kwargs.items()
    }
    return getattr(T, name)(*tensors, **kwargs)[0].numpy()


both = pytest.mark.parametrize("impl", IMPLEMENTATIONS)


@both
def test_normalize_cam(impl):
    out = step(impl, "normalize_cam", np.array([[0.0, 2.0], [np.nan, 4.0]]))
    np.testing.assert_array_equal(out, [[0, 0.5], [0, 1]])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(step(impl, "normalize_cam", np.full((2, 3), 7.0)), 0)
    np.testing.assert_array_equal(
        step(impl, "normalize_cam", np.array([[-np.inf, 1.0, np.inf, 2.0]])), [[0, 0.5, 0, 1]]
    )
    # max - min overflows float32: still [0, 1]
    np.testing.assert_array_equal(
        step(impl, "normalize_cam", np.array([[-3e38, 0.0, 3e38]], np.float32)), [[0, 0.5, 1]]
    )


@both
def test_resize_bilinear_half_pixel_centres(impl):
    x = np.array([[0.0, 4.0], [8.0, 12.0]])
    # Source coordinates of 4 outputs from 2 inputs: -0.25 (clamped to 0), 0.25, 0.75, 1.25
    # (clamped to 1): an axis [a, b] becomes [a, a + (b-a)/4, a + 3(b-a)/4, b].
    expected = [[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]]
    if impl in SINGLE_IMAGE:
        out = single(impl).resize_bilinear(x, (4, 4))
    else:
        out = T.resize_bilinear(torch.tensor(x)[None], (4, 4))[0].numpy()
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("src", "dst"), [((7, 7), (224, 224)), ((5, 9), (33, 20)), ((1, 1), (4, 6))]
)
def test_resize_bilinear_matches_torch_interpolate(src, dst):
    x = np.random.default_rng(0).random(src).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x)[None, None], size=dst, mode="bilinear")[0, 0]
    np.testing.assert_allclose(R.resize_bilinear(x, dst), want.numpy(), atol=1e-6)


@both
def test_blur_cam_box_filter(impl):
    x = np.zeros((5, 5))
    x[2, 2] = 1.0
    out = step(impl, "blur_cam", x, size=3)
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = 1 / 9  # the impulse spreads over its 3x3 neighbourhood
    np.testing.assert_allclose(out, expected, atol=1e-7)
    # Half-sample symmetric borders: an impulse in a 3x3 corner is counted 4 times by the
    # corner's window (row -1 = row 0, column -1 = column 0).
    corner = np.zeros((3, 3))
    corner[0, 0] = 1.0
    np.testing.assert_allclose(step(impl, "blur_cam", corner, size=3)[0, 0], 4 / 9, atol=1e-7)
    np.testing.assert_array_equal(step(impl, "blur_cam", x, size=1), x)


@pytest.mark.parametrize("shape", [(224, 224), (9, 14), (1, 1), (2, 7)])
@pytest.mark.parametrize("size", [3, 5, 7])
def test_blur_cam_matches_scipy_uniform_filter(shape, size):
    x = np.random.default_rng(1).random(shape)
    want = ndi.uniform_filter(R.normalize_cam(x).astype(np.float64), size, mode="reflect")
    np.testing.assert_allclose(R.blur_cam(x, size=size), want, atol=1e-6)


@both
def test_sobel_edges_of_a_step(impl):
    x = np.tile([0.0, 0.0, 1.0, 1.0], (4, 1))
    # gx = column-smoothed (1+2+1 = 4) difference two columns apart: [0, 4, 4, 0]; gy = 0.
    np.testing.assert_array_equal(step(impl, "sobel_edges", x), np.tile([0, 1, 1, 0], (4, 1)))
    np.testing.assert_array_equal(step(impl, "sobel_edges", np.ones((3, 3))), 0)


@pytest.mark.parametrize("shape", [(224, 224), (9, 14), (2, 3)])
def test_sobel_edges_match_skimage(shape):
    x = np.random.default_rng(2).random(shape)
    want = filters.sobel(x)
    want = (want - want.min()) / (want.max() - want.min())
    np.testing.assert_allclose(R.sobel_edges(x), want, atol=1e-5)


def test_linear_percentile_is_numpys_linear():
    assert R.linear_percentile(np.array([4.0, 1.0, 3.0, 2.0]), 50) == 2.5
    assert R.linear_percentile(np.array([5.0]), 85) == 5.0
    assert np.isnan(R.linear_percentile(np.array([]), 50))
    rng = np.random.default_rng(3)
    for n in (2, 7, 100, 5000):
        v = rng.random(n).astype(np.float32)
        for q in (0, 25, 50, 75, 85, 99.9, 100):
            assert R.linear_percentile(v, q) == pytest.approx(np.percentile(v, q), abs=1e-6)


@both
def test_find_roi(impl):
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    # 85th percentile of 0..9: position 0.85 * 9 = 7.65 -> value 7.65; the ROI is {8, 9}.
    np.testing.assert_array_equal(step(impl, "find_roi", x), x > 7.65)
    assert step(impl, "find_roi", x, percentile=0).sum() == 9  # above the minimum
    # A flat top wider than 15 %: the 85th percentile is the maximum, so the ROI is the top.
    flat_top = np.array([[0, 0, 1, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(step(impl, "find_roi", flat_top), flat_top == 1)
    assert not step(impl, "find_roi", np.full((3, 3), 0.5)).any()  # constant: empty


@both
def test_threshold_bounds(impl):
    edges = (np.arange(16, dtype=np.float32) / 15).reshape(4, 4)
    roi = np.zeros((4, 4), bool)
    roi[:2] = True  # values 0..7 / 15
    # positions 0.25 * 7 = 1.75 and 0.75 * 7 = 5.25
    np.testing.assert_allclose(step(impl, "threshold_bounds", edges, roi), [1.75 / 15, 5.25 / 15])
    np.testing.assert_array_equal(
        step(impl, "threshold_bounds", edges, roi, lower_percentile=0, upper_percentile=100),
        np.float32([0, 7 / 15]),
    )
    assert np.isnan(step(impl, "threshold_bounds", edges, np.zeros((4, 4), bool))).all()


@both
def test_global_focal_points_break_ties_in_row_major_order(impl):
    low_resized = np.array([[1, 5, 5], [5, 2, 0]], np.float32)
    kwargs = dict(shape=(2, 3), scope="global", num_points=2)
    if impl in SINGLE_IMAGE:
        seeds = single(impl).find_focal_points(np.zeros((2, 3)), low_resized=low_resized, **kwargs)
    else:
        seeds = T.find_focal_points(
            torch.zeros(1, 2, 3), low_resized=torch.from_numpy(low_resized)[None], **kwargs
        )[0].numpy()
    np.testing.assert_array_equal(seeds, [[0, 1, 1], [0, 0, 0]])


def _two_peaks() -> np.ndarray:
    low = np.zeros((5, 5))
    low[1, 1] = 1.0
    low[3, 3] = 0.4
    return low


@both
def test_local_focal_points(impl):
    low = _two_peaks()
    # Maxima 1.0 and 0.4: the default threshold 0.7 keeps the strong one. In a 10x10 map the
    # low-res cell (1, 1) covers rows/cols 2..3 and its centre is pixel (3, 3).
    small = step(impl, "find_focal_points", low, shape=(10, 10), scope="local")
    assert np.argwhere(small).tolist() == [[3, 3]]
    large = step(
        impl, "find_focal_points", low, shape=(10, 10), scope="local", maxima_areas="large"
    )
    expected = np.zeros((10, 10), bool)
    expected[2:4, 2:4] = True
    np.testing.assert_array_equal(large, expected)
    both_peaks = step(
        impl, "find_focal_points", low, shape=(10, 10), scope="local", maxima_threshold=0.3
    )
    assert np.argwhere(both_peaks).tolist() == [[3, 3], [7, 7]]
    assert not step(impl, "find_focal_points", np.ones((5, 5)), shape=(10, 10), scope="local").any()


def test_local_maxima_agree_with_skimage_on_plateaus():
    rng = np.random.default_rng(4)
    maps = rng.integers(0, 4, size=(40, 6, 7)).astype(np.float32)  # many ties and plateaus
    maps[0] = 2.0  # constant: no maxima
    maps[1] = 0.0
    maps[1, 0, :3] = 1.0  # a plateau on the border
    got = T.find_local_maxima(torch.from_numpy(maps)).numpy()
    for m, g in zip(maps, got, strict=True):
        np.testing.assert_array_equal(g, morphology.local_maxima(m, allow_borders=True))


EDGES = np.array(
    [
        [0.5, 0.5, 0.9, 0.5, 0.5],
        [0.5, 0.5, 0.9, 0.5, 0.5],
        [0.9, 0.9, 0.5, 0.9, 0.9],
        [0.5, 0.5, 0.9, 0.5, 0.5],
        [0.5, 0.1, 0.9, 0.5, 0.5],
    ],
    np.float32,
)


def _seeds(*points) -> np.ndarray:
    s = np.zeros(EDGES.shape, bool)
    for p in points:
        s[p] = True
    return s


@both
def test_grow_region_is_4_connected_threshold_growing(impl):
    kw = dict(lower=0.2, upper=0.6)
    # From (0, 0): the top-left 2x2; the centre (2, 2) touches it only diagonally.
    top_left = step(impl, "grow_region", EDGES, _seeds((0, 0)), **kw)
    np.testing.assert_array_equal(top_left, np.pad(np.ones((2, 2), bool), ((0, 3), (0, 3))))
    # Bottom-left: (4, 1) is below the band, so only three pixels.
    bottom_left = step(impl, "grow_region", EDGES, _seeds((3, 0)), **kw)
    assert np.argwhere(bottom_left).tolist() == [[3, 0], [3, 1], [4, 0]]
    # Two seeds grow two regions; a seed outside the band grows nothing.
    two = step(impl, "grow_region", EDGES, _seeds((0, 0), (0, 4), (2, 0)), **kw)
    assert two.sum() == 8
    assert not step(impl, "grow_region", EDGES, _seeds((0, 2)), **kw).any()
    assert not step(impl, "grow_region", EDGES, _seeds((0, 0)), lower=np.nan, upper=np.nan).any()


def test_grow_region_matches_flood_fill_on_random_maps():
    from skimage.segmentation import flood

    rng = np.random.default_rng(5)
    for _ in range(20):
        edges = ndi.gaussian_filter(rng.random((40, 50)), 1.5).astype(np.float32)
        lo, hi = np.percentile(edges, [30, 70])
        seeds = np.zeros(edges.shape, bool)
        seeds[tuple(rng.integers(0, 40, 3)), tuple(rng.integers(0, 50, 3))] = True
        want = np.zeros(edges.shape, bool)
        for r, c in zip(*np.nonzero(seeds), strict=True):
            if lo <= edges[r, c] <= hi:
                band = (edges >= lo) & (edges <= hi)
                want |= flood(band.astype(np.uint8), (r, c), connectivity=1)
        for impl in IMPLEMENTATIONS:
            got = step(impl, "grow_region", edges, seeds, lower=float(lo), upper=float(hi))
            np.testing.assert_array_equal(got, want)


RING = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 1, 1, 0],
        [0, 1, 0, 1, 0, 0, 1, 0],
        [0, 1, 1, 1, 0, 0, 1, 0],
        [0, 1, 1, 1, 1, 1, 1, 0],
        [1, 0, 1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0],
    ],
    bool,
)


@both
def test_fill_holes_by_size_not_touching_the_border(impl):
    # Holes: (2, 2) and (5, 1) of one pixel (enclosed by its 4 neighbours; (5, 1) leaks
    # diagonally, which 4-connectivity ignores) and the 2x2 at rows 2-3, columns 4-5. The
    # corner (6, 0) is enclosed too but touches the border: not a hole.
    one = step(impl, "fill_holes", RING, max_size=1)
    expected = RING.copy()
    expected[2, 2] = expected[5, 1] = True
    np.testing.assert_array_equal(one, expected)
    four = step(impl, "fill_holes", RING, max_size=4)
    expected[2:4, 4:6] = True
    np.testing.assert_array_equal(four, expected)
    np.testing.assert_array_equal(step(impl, "fill_holes", RING, max_size=0), RING)
    assert not step(impl, "fill_holes", np.zeros((4, 4), bool), max_size=9).any()


# scikit-image 0.26 renamed area_threshold (fill < n) to max_size (fill <= n).
if "max_size" in inspect.signature(morphology.remove_small_holes).parameters:
    HOLES_UP_TO_20 = {"max_size": 20}
else:
    HOLES_UP_TO_20 = {"area_threshold": 21}


def test_fill_holes_matches_skimage_for_interior_holes():
    rng = np.random.default_rng(6)
    for _ in range(20):
        mask = ndi.gaussian_filter(rng.random((60, 60)), 2) > 0.5
        mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True  # no border pieces
        want = morphology.remove_small_holes(mask, **HOLES_UP_TO_20)
        for impl in IMPLEMENTATIONS:
            np.testing.assert_array_equal(step(impl, "fill_holes", mask, max_size=20), want)


def test_label_components_matches_scipy():
    rng = np.random.default_rng(7)
    masks = rng.random((6, 37, 53)) > 0.45  # fragmented: the hard case
    masks[0] = ndi.gaussian_filter(rng.random((37, 53)), 3) > 0.5
    masks[1] = True
    masks[2] = False
    for connectivity in (4, 8):
        labels, slots = T.label_components(torch.from_numpy(masks), connectivity=connectivity)
        labels = labels.numpy()
        assert labels.max() < slots
        structure = ndi.generate_binary_structure(2, 1 if connectivity == 4 else 2)
        for m, lab in zip(masks, labels, strict=True):
            want, count = ndi.label(m, structure=structure)
            # Same partition: a one-to-one map between the two labellings.
            pairs = set(zip(want[m].tolist(), lab[m].tolist(), strict=True))
            assert len(pairs) == count == len({b for _, b in pairs})
            assert (lab[~m] == slots - 1).all()


def test_label_components_of_a_long_snake_converges():
    # A one-pixel path that winds through the whole image: 1000+ pixels long, one component.
    snake = np.zeros((41, 41), bool)
    snake[::2] = True
    snake[1::4, -1] = True
    snake[3::4, 0] = True
    labels, _ = T.label_components(torch.from_numpy(snake)[None])
    assert len(np.unique(labels[0].numpy()[snake])) == 1


@both
def test_merge_maps(impl):
    seg = np.array([[1, 0]], bool)
    low = np.array([[0.0, 2.0]])  # normalised to [0, 1]
    np.testing.assert_array_equal(step(impl, "merge_maps", seg, low), [[0.5, 0.5]])
    np.testing.assert_array_equal(step(impl, "merge_maps", seg, low, alpha=0.25), [[0.25, 0.75]])
    np.testing.assert_array_equal(step(impl, "merge_maps", seg, low, method="multiply"), [[0, 0]])
    np.testing.assert_array_equal(
        step(impl, "merge_maps", np.ones((1, 2), bool), low, method="multiply"), [[0, 1]]
    )


@both
def test_mask_image(impl):
    image = np.arange(1, 13, dtype=np.uint8).reshape(2, 2, 3)
    refined = np.array([[0.9, 0.1], [0.5, 0.0]], np.float32)
    # 50 % of 4 pixels: the two strongest (0.9 and 0.5).
    half = step(impl, "mask_image", image, refined, keep_percentage=50)
    np.testing.assert_array_equal(half[..., 0], [[1, 0], [7, 0]])
    assert half.dtype == np.uint8
    # threshold 0.6 on the normalised CAM [[1, 1/9], [5/9, 0]]: only the first pixel.
    thr = step(impl, "mask_image", image, refined, filter="threshold", threshold=0.6)
    np.testing.assert_array_equal(thr[..., 0], [[1, 0], [0, 0]])
    assert not step(impl, "mask_image", image, refined, keep_percentage=0).any()
    # Zero pixels are never kept, even at 100 %.
    np.testing.assert_array_equal(
        step(impl, "mask_image", image, refined, keep_percentage=100)[..., 0], [[1, 4], [7, 0]]
    )
    # A smaller image is resized to the CAM: one colour everywhere.
    tiny = np.full((1, 1, 3), 200, np.uint8)
    np.testing.assert_array_equal(
        step(impl, "mask_image", tiny, refined, keep_percentage=25)[..., 1], [[200, 0], [0, 0]]
    )


def test_merge_base_high_blends_the_segment_with_the_high_res_cam():
    low = np.zeros((2, 2), np.float32)
    low[0, 0] = 1.0
    high = np.tile(np.linspace(0, 4, 8, dtype=np.float32), (8, 1))  # a horizontal ramp
    options = RefineOptions.preset("paper")
    paper = R.refine(low, high, options=options, alpha=0.5)
    ours = R.refine(low, high, options=options, alpha=0.5, merge_base="high")
    segment = ours.full_segment.astype(np.float32)
    np.testing.assert_allclose(ours.merged, 0.5 * segment + 0.5 * high / 4, atol=1e-6)
    np.testing.assert_allclose(paper.merged, 0.5 * segment + 0.5 * paper.low_resized, atol=1e-6)


def test_gate_merge_by_hand_and_presets():
    from hrcam.postprocess import RefineOptions

    segment = np.array([[True, False], [False, True]])
    base = np.array([[0.0, 2.0], [4.0, 4.0]], np.float32)  # normalised: 0, .5, 1, 1
    want = np.array([[0.0, 0.5 * 0.8], [1.0 * 0.8, 1.0]], np.float32)
    np.testing.assert_allclose(
        R.merge_maps(segment, base, method="gate", alpha=0.2), want, atol=1e-6
    )
    np.testing.assert_allclose(
        T.merge_maps(
            torch.from_numpy(segment)[None], torch.from_numpy(base)[None], method="gate", alpha=0.2
        )[0].numpy(),
        want,
        atol=1e-6,
    )
    assert RefineOptions.preset("hrcam") == RefineOptions()
    tuned = RefineOptions.preset("hrcam")
    assert (tuned.merge, tuned.merge_base, tuned.alpha, tuned.lower_percentile) == (
        "gate",
        "high",
        0.2,
        0.0,
    )
    with pytest.raises(ValueError, match="preset must be one of"):
        RefineOptions.preset("best")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_focal_points_are_distinct_points_inside_the_roi(impl):
    """Issue: the global seeds were the 15 highest pixels of one plateau, adjacent in a column."""
    from hrcam.postprocess.synthetic import make_cams

    low, high, image = make_cams(np.random.default_rng(5), 1)
    steps = (
        single(impl).refine(low[0], high[0], image[0])
        if impl in SINGLE_IMAGE
        else T.refine_batch(low, high, image).select(0)
    )
    points = np.argwhere(steps.focal_points)
    assert len(points) == 15
    assert steps.roi[tuple(points.T)].all()
    distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    assert distances[np.triu_indices(len(points), 1)].min() >= 11  # the default at 224x224
    # min_distance=1 gives back the 15 highest pixels of the ROI, adjacent or not.
    plain = R.find_focal_points(
        steps.low, (224, 224), num_points=15, min_distance=1, within=steps.roi
    )
    values = steps.low_resized[steps.roi]
    assert np.sort(steps.low_resized[plain])[0] >= np.sort(values)[-15]


@pytest.mark.parametrize("min_distance", [1, 4, 11, 40])
def test_spread_focal_points_equal_the_plain_greedy(min_distance):
    # Repeated argmax with a suppressed disc must pick exactly what the textbook greedy picks
    # (scan all candidates from the highest, keep those far from every pick so far), ties
    # (coarse values), candidates cut by a mask and the image border included.
    from hrcam.postprocess.reference import _suppressed_maxima, spread_top_k

    rng = np.random.default_rng(min_distance)
    for trial in range(20):
        x = np.round(rng.random((60, 70)).astype(np.float32) * (4 if trial % 2 else 1000)) / 10
        inside = rng.random((60, 70)) < 0.6 if trial % 3 else np.ones((60, 70), dtype=bool)
        within = np.flatnonzero(inside)
        k = int(rng.integers(1, 30))
        order = within[np.argsort(-x.ravel()[within], kind="stable")]
        alive, expected = np.ones(order.size, dtype=bool), []
        while len(expected) < k and alive.any():
            j = int(np.argmax(alive))
            expected.append(order[j])
            dy, dx = order // 70 - order[j] // 70, order % 70 - order[j] % 70
            alive &= dy * dy + dx * dx >= max(min_distance, 1) ** 2
            alive[j] = False
        mask = spread_top_k(x, k, min_distance, inside)
        np.testing.assert_array_equal(np.flatnonzero(mask), np.sort(expected))
        if min_distance > 1:
            np.testing.assert_array_equal(_suppressed_maxima(x, inside, k, min_distance), expected)
