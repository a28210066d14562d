"""hrcam.guided_upsample: hand-made maps and guides with answers worked out by hand."""

import pytest
import torch
import torch.nn.functional as F

from hrcam import guided_upsample
from hrcam.upsample.guided import _colour_term, _levels, _neighbour_values, _triangle_filter


def _step_guide(height: int, width: int, edge: int) -> torch.Tensor:
    """A black image with a white right part from column ``edge`` on."""
    image = torch.zeros(1, 3, height, width)
    image[..., edge:] = 1.0
    return image


def test_a_step_edge_in_the_guide_moves_the_map_edge_onto_it():
    # Two cells of 16 px: cold left, hot right. Bilinear interpolation ramps over the middle 16
    # pixels; the guide's edge is at column 11, inside the left cell.
    cams = torch.tensor([[[0.0, 1.0]]])
    out = guided_upsample(cams, _step_guide(4, 32, 11), stride=1)[0, 0]
    bilinear = F.interpolate(cams[:, None], size=(4, 32), mode="bilinear", align_corners=False)
    assert out[:11].max() < 0.05 and out[11:].min() > 0.9
    assert bilinear[0, 0, 0, 10] > 0.1 and bilinear[0, 0, 0, 11] < 0.5  # bilinear ignores it
    # Move the guide's edge: the map's edge follows, one pixel at a time.
    for edge in (13, 19, 22):
        out = guided_upsample(cams, _step_guide(4, 32, edge), stride=1)[0, 0]
        assert out[edge - 1] < 0.1 and out[edge] > 0.9, edge
        # The default (stride 2) guides a grid of 2-pixel cells: the edge lands within 2 pixels.
        coarse = guided_upsample(cams, _step_guide(4, 32, edge))[0, 0]
        assert coarse[: edge - 2].max() < 0.1 and coarse[edge + 2 :].min() > 0.9, edge


def test_a_constant_guide_gives_a_smooth_bilinear_like_upsampling():
    ramp = torch.arange(7.0).view(1, 1, 7).expand(1, 7, 7).contiguous()
    grey, red = torch.full((1, 3, 224, 224), 0.5), torch.zeros(1, 3, 224, 224)
    red[:, 0] = 1.0
    out = guided_upsample(ramp, grey)
    # The colour term is the same for every cell, so the guide's colour does not matter.
    torch.testing.assert_close(guided_upsample(ramp, red), out)
    row = out[0, 100]
    assert (row[1:] >= row[:-1] - 1e-6).all()  # a ramp stays a non-decreasing ramp
    torch.testing.assert_close(out[0], row.expand(224, -1))  # constant down each column
    bilinear = F.interpolate(ramp[:, None], size=(224, 224), mode="bilinear", align_corners=False)
    # Gaussian weights over the 3×3 cells (σ = 1 cell) are not bilinear's, but within a third
    # of the step between two cells of it (the lattice filter's [1, 2, 1] / 4 adds 0.0004 at
    # the border columns, where it meets the replicated edge).
    assert (out - bilinear[:, 0]).abs().max() <= 1 / 3 + 1e-3
    without = guided_upsample(ramp, grey, lattice_filter=False)
    assert (without - bilinear[:, 0]).abs().max() <= 1 / 3 + 1e-4


def test_linear_in_the_map_and_convex():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 40, 56)
    a, b = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    up = guided_upsample(2 * a - 3 * b, image)
    torch.testing.assert_close(
        up, 2 * guided_upsample(a, image) - 3 * guided_upsample(b, image), rtol=1e-5, atol=1e-5
    )
    const = guided_upsample(torch.full((2, 5, 7), 3.0), image)
    torch.testing.assert_close(const, torch.full_like(const, 3.0))
    single = guided_upsample(a, image)
    for i in range(2):  # every value is a mix of the map's own values
        assert a[i].min() - 1e-5 <= single[i].min() and single[i].max() <= a[i].max() + 1e-5


def test_coarse_to_fine_levels_double_until_the_image_size():
    assert _levels((7, 7), (224, 224)) == [(14, 14), (28, 28), (56, 56), (112, 112), (224, 224)]
    assert _levels((8, 8), (240, 240)) == [(15, 15), (30, 30), (60, 60), (120, 120), (240, 240)]
    assert _levels((28, 28), (224, 224)) == [(56, 56), (112, 112), (224, 224)]
    # A map far from square never shrinks along an axis on the way.
    assert all(h >= 100 for h, _ in _levels((100, 7), (224, 224)))
    assert _levels((4, 4), (4, 9)) == [(4, 5), (4, 9)]  # 9 / 4 = 2.25: one doubling, then the rest
    assert _levels((4, 4), (4, 7)) == [(4, 7)]


def test_stride_guides_up_to_a_coarser_grid_then_interpolates():
    torch.manual_seed(0)
    cams, images = torch.rand(2, 7, 7), torch.rand(2, 3, 224, 224)
    half = guided_upsample(cams, F.avg_pool2d(images, 2), stride=1)  # guided to 112, as stride 2
    want = F.interpolate(half[:, None], size=(224, 224), mode="bilinear", align_corners=False)
    got = guided_upsample(cams, images, stride=2, lattice_filter=False)
    torch.testing.assert_close(got, want[:, 0])
    # The default then smooths by [1, 2, 1] / 4 along each axis, edges replicated.
    taps = torch.tensor([0.25, 0.5, 0.25])
    smooth = F.conv2d(F.pad(want, (1, 1, 0, 0), mode="replicate"), taps.view(1, 1, 1, 3))
    smooth = F.conv2d(F.pad(smooth, (0, 0, 1, 1), mode="replicate"), taps.view(1, 1, 3, 1))
    torch.testing.assert_close(guided_upsample(cams, images, stride=2), smooth[:, 0])
    # A stride that leaves no guided level is plain bilinear interpolation.
    plain = F.interpolate(cams[:, None], size=(224, 224), mode="bilinear", align_corners=False)
    torch.testing.assert_close(
        guided_upsample(cams, images, stride=64, lattice_filter=False), plain[:, 0]
    )
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="stride"):
            guided_upsample(cams, images, stride=bad)
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match="lattice_filter must be True or False"):
            guided_upsample(cams, images, lattice_filter=bad)


@pytest.mark.parametrize("stride", [2, 4])
def test_the_lattice_filter_cancels_the_strides_period_and_is_a_convex_mix(stride):
    """Issue: at stride 2 the Sobel edges of the high-res CAM showed a 2-pixel lattice (a
    bilinear upsampling is piecewise linear, so its gradient steps every ``stride`` pixels)."""
    columns = torch.arange(32) % stride == 0  # a pattern of period ``stride``
    pattern = columns.float().expand(1, 1, 16, 32)
    out = _triangle_filter(pattern, stride)[0, 0]
    interior = out[:, stride:-stride]
    torch.testing.assert_close(interior, torch.full_like(interior, 1 / stride))
    torch.manual_seed(1)
    maps = torch.rand(2, 1, 20, 20)
    smoothed = _triangle_filter(maps, stride)
    assert smoothed.min() >= maps.min() and smoothed.max() <= maps.max()
    torch.testing.assert_close(
        _triangle_filter(torch.full((1, 1, 9, 9), 3.0), stride), torch.full((1, 1, 9, 9), 3.0)
    )


@pytest.mark.parametrize(
    ("size", "cells", "options"),
    [
        ((224, 224), (7, 7), {}),
        ((224, 224), (7, 7), {"stride": 1, "lattice_filter": False}),
        ((375, 500), (7, 7), {"stride": 2}),
        ((333, 251), (5, 9), {"stride": 1}),
        ((64, 96), (8, 12), {"coarse_to_fine": False}),
        ((128, 128), (7, 7), {"colour_sigma": 0.0}),
        ((128, 128), (7, 7), {"colour_sigma": 0.3, "spatial_sigma": 0.5, "stride": 4}),
    ],
)
def test_the_compiled_cpu_path_computes_the_torch_paths_maps(size, cells, options):
    """CPU maps without gradients take the compiled levels (guided_compiled); with gradients,
    the torch ops. The two sum in other orders, so they agree to float32 rounding."""
    torch.manual_seed(2)
    images = torch.rand(3, 3, *size)
    cams = torch.randn(3, *cells)
    compiled = guided_upsample(cams, images, **options)
    with torch.enable_grad():
        reference = guided_upsample(cams.clone().requires_grad_(), images, **options).detach()
    torch.testing.assert_close(compiled, reference, rtol=1e-5, atol=1e-5 * float(cams.abs().max()))


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_the_compiled_lattice_filter_is_the_torch_one(stride):
    from hrcam.upsample import guided_compiled

    torch.manual_seed(3)
    maps = torch.rand(2, 1, 30, 41)
    torch.testing.assert_close(
        _triangle_filter(maps, stride, guided_compiled), _triangle_filter(maps, stride)
    )


def test_output_shape_device_and_dtype():
    torch.manual_seed(0)
    image = torch.rand(3, 3, 64, 48)
    cams = torch.randn(3, 4, 3)
    out = guided_upsample(cams, image)
    assert out.shape == (3, 64, 48) and out.dtype == torch.float32
    for dtype in (torch.float16, torch.bfloat16):
        half = guided_upsample(cams.to(dtype), image.to(dtype))
        assert half.dtype == dtype and half.shape == (3, 64, 48)
        # Computed in float32: only the inputs' and the output's rounding differ.
        torch.testing.assert_close(half.float(), out, rtol=2e-2, atol=2e-2)
    # Already at the image's size: returned as it is.
    same = torch.randn(3, 64, 48)
    torch.testing.assert_close(guided_upsample(same, image), same)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    torch.manual_seed(0)
    image, cams = torch.rand(2, 3, 224, 224), torch.randn(2, 7, 7)
    gpu = guided_upsample(cams.cuda(), image.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), guided_upsample(cams, image), rtol=1e-4, atol=1e-5)


def test_colour_term_equals_the_direct_formula_with_and_without_whole_blocks():
    torch.manual_seed(0)
    for size, cells in [((64, 64), (4, 4)), ((66, 70), (5, 6))]:
        image = torch.rand(2, 3, *size)
        means = F.adaptive_avg_pool2d(image, cells)
        direct = torch.stack(
            [-(image - v).pow(2).sum(1) for v in _neighbour_values(means, size)], 1
        )
        ours = _colour_term(image, cells, 0.1)
        # Equal up to a per-pixel constant (|x|²), which the softmax removes.
        torch.testing.assert_close(
            ours.softmax(1), (direct / (2 * 0.1**2)).softmax(1), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize(
    ("cams", "images", "match"),
    [
        (
            torch.rand(1, 1, 7, 7),
            torch.rand(1, 3, 32, 32),
            r"cams must be \(B, h, w\).*cams\[:, 0\]",
        ),
        (torch.rand(1, 7, 7), torch.rand(1, 32, 32, 3), "channels-last"),
        (torch.rand(1, 7, 7), torch.rand(1, 5, 32, 32), r"images must be \(B, C, H, W\)"),
        (torch.rand(1, 7, 7, 7), torch.rand(1, 1, 32, 32), "maps of volumes need volumes"),
        (torch.rand(1, 7, 7), torch.rand(1, 1, 16, 32, 32), r"cams must be \(B, d, h, w\)"),
        (torch.rand(1, 9, 7, 7), torch.rand(1, 1, 8, 32, 32), "larger than the images"),
        (torch.rand(1, 7, 7), torch.rand(3, 32, 32), "batch dimension"),
        (torch.rand(2, 7, 7), torch.rand(1, 3, 32, 32), "2 maps and 1 images"),
        (torch.rand(1, 40, 7), torch.rand(1, 3, 32, 32), "larger than the images"),
        (torch.rand(1, 7, 7), torch.rand(1, 3, 32, 32) * 4 - 2, r"lie in \[0, 1\].*pixels"),
        (torch.ones(1, 7, 7, dtype=torch.long), torch.rand(1, 3, 32, 32), "float tensor"),
        ([[0.0]], torch.rand(1, 3, 32, 32), "torch.Tensor"),
    ],
)
def test_bad_input_says_what_was_expected(cams, images, match):
    with pytest.raises(ValueError, match=match):
        guided_upsample(cams, images)


def test_non_finite_maps_are_refused_with_their_count():
    cams = torch.rand(2, 7, 7)
    cams[0, 1, 1] = float("nan")
    cams[1, 2, :3] = float("inf")
    with pytest.raises(ValueError, match=r"4 non-finite value\(s\)"):
        guided_upsample(cams, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="spatial_sigma"):
        guided_upsample(torch.rand(1, 7, 7), torch.rand(1, 3, 32, 32), spatial_sigma=0)


def test_errors_have_one_type_per_kind():
    from hrcam.checks import NonFiniteError, RangeError, ShapeError

    with pytest.raises(ShapeError):
        guided_upsample(torch.rand(1, 7), torch.rand(1, 3, 32, 32))
    with pytest.raises(NonFiniteError):
        guided_upsample(torch.full((1, 7, 7), float("nan")), torch.rand(1, 3, 32, 32))
    with pytest.raises(RangeError):
        guided_upsample(torch.rand(1, 7, 7), torch.rand(1, 3, 32, 32) + 2)


def test_a_grayscale_guide_works_like_the_same_gray_in_rgb():
    torch.manual_seed(4)
    cams, gray = torch.randn(2, 7, 7), torch.rand(2, 1, 56, 56)
    # One channel x with σ equals three equal channels x with σ·√3 (|x - μ|² triples).
    torch.testing.assert_close(
        guided_upsample(cams, gray, colour_sigma=0.1),
        guided_upsample(cams, gray.expand(-1, 3, -1, -1), colour_sigma=0.1 * 3**0.5),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("size", "cells", "options"),
    [
        ((24, 24, 24), (3, 3, 3), {}),
        ((20, 28, 16), (4, 5, 3), {"stride": 1}),
        ((16, 16, 16), (2, 2, 2), {"colour_sigma": 0.0, "coarse_to_fine": False}),
    ],
)
def test_volumes_compiled_and_torch_paths_agree(size, cells, options):
    torch.manual_seed(5)
    volumes = torch.rand(2, 1, *size)
    cams = torch.randn(2, *cells)
    compiled = guided_upsample(cams, volumes, **options)
    with torch.enable_grad():
        reference = guided_upsample(cams.clone().requires_grad_(), volumes, **options).detach()
    assert compiled.shape == (2, *size)
    torch.testing.assert_close(compiled, reference, rtol=1e-5, atol=1e-5 * float(cams.abs().max()))


def test_a_volumes_edge_moves_the_maps_edge_onto_it_and_values_stay_in_range():
    """A bright cube in a dark volume and a coarse map hot over it: upsampled with the volume
    as guide, the map's edge lands on the cube's faces, not halfway between cells."""
    volume = torch.zeros(1, 1, 32, 32, 32)
    volume[..., 8:20, 8:20, 8:20] = 1.0  # the cube: voxels 8..19 on every axis
    cams = torch.zeros(1, 4, 4, 4)
    cams[:, 1:3, 1:3, 1:3] = 1.0  # cells 1-2 (voxels 8..23)
    out = guided_upsample(cams, volume, stride=1)[0]
    guided = out[14, 14]  # a line through the cube along the last axis
    plain = F.interpolate(cams[:, None], size=(32, 32, 32), mode="trilinear")[0, 0, 14, 14]
    assert float(guided[18]) > 0.8 and float(guided[21]) < 0.2  # the edge sits at voxel 20
    assert float(plain[21]) > 0.3  # a plain trilinear upsampling smears across it
    assert float(out.min()) >= -1e-6 and float(out.max()) <= 1 + 1e-6  # a convex mix
