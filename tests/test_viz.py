import struct

import numpy as np
import pytest
import torch

from hrcam import viz
from hrcam.arrays import normalize_map
from hrcam.postprocess import refine, refine_batch
from hrcam.postprocess.synthetic import make_cams

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def example():
    low, high, image = make_cams(np.random.default_rng(0), 2, high_shape=(96, 96))
    return low, high, image


def test_plot_pipeline_renders_a_png(tmp_path, example):
    low, high, image = example
    steps = refine(low[0], high[0], image[0])
    path = tmp_path / "figs" / "pipeline.png"
    fig = viz.plot_pipeline(steps, image[0], path=path, title="example")
    width, height = _png_size(path)
    assert (width, height) == (1600, 700)
    assert path.stat().st_size > 20_000  # ten drawn panels, not an empty canvas
    assert len(fig.axes) >= 10
    assert not list(tmp_path.glob("figs/.*.tmp"))  # the atomic write left nothing behind
    from PIL import Image

    pixels = np.asarray(Image.open(path))
    assert pixels.std() > 10  # something was drawn


def test_plot_pipeline_of_a_batch_item_and_without_image(tmp_path, example):
    low, high, image = example
    batch = refine_batch(torch.from_numpy(low), torch.from_numpy(high))
    with pytest.raises(ValueError, match="select"):
        viz.plot_pipeline(batch, image[1])
    fig = viz.plot_pipeline(batch.select(1), None)
    assert fig is not None
    # Degenerate steps (empty ROI, no seeds) still draw.
    viz.plot_pipeline(refine(np.zeros((7, 7)), np.zeros((32, 32))), None, path=tmp_path / "z.png")
    assert _png_size(tmp_path / "z.png") == (1600, 700)


def test_colorize_and_overlay():
    cam = np.array([[0.0, 1.0]])
    rgb = viz.colorize(cam, cmap="jet")
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 127])  # jet: dark blue at 0
    np.testing.assert_array_equal(rgb[0, 1], [127, 0, 0])  # and dark red at 1
    inferno = viz.colorize(cam)  # the default: perceptually uniform, black to pale yellow
    assert viz.DEFAULT_CMAP == "inferno"
    assert inferno[0, 0].sum() < 20 and inferno[0, 1].min() > 150
    image = np.full((4, 4, 3), 100, np.uint8)
    out = viz.overlay_cam(image, np.ones((2, 2)), alpha=0.0)
    np.testing.assert_array_equal(out, image)
    out = viz.overlay_cam(image, np.array([[0.0, 1.0], [0.0, 1.0]]), alpha=1.0, cmap="jet")
    assert out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[:, 0], np.tile([0, 0, 127], (4, 1)))
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay_cam(image, np.ones((2, 2)), alpha=2)
    with pytest.raises(ValueError, match="colour map"):
        viz.colorize(cam, cmap="no-such-map")


@pytest.mark.parametrize("alpha", [0.0, 0.123456, 0.5, 0.7, 1.0])
def test_overlay_is_pillows_palette_and_blend_byte_for_byte(alpha):
    """The compiled table lookup is the Pillow path's result exactly: every colour index from
    NaN, below-0 and above-1 values, every image byte, odd sizes."""
    from PIL import Image

    rng = np.random.default_rng(7)
    for height, width in [(1, 1), (3, 250), (97, 61)]:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        cam = rng.random((height, width), dtype=np.float32) * 1.4 - 0.2
        cam[rng.random((height, width)) < 0.05] = np.nan
        v = normalize_map(cam)  # overlay_cam's normalisation (NaN as 0)
        for cmap in ("inferno", "jet"):
            pillow = np.asarray(Image.blend(Image.fromarray(image), viz._coloured(v, cmap), alpha))
            np.testing.assert_array_equal(
                viz.overlay_cam(image, cam, alpha=alpha, cmap=cmap), pillow
            )
            # the kernel itself on values outside [0, 1] and NaN, which it clips as _coloured
            table = viz._blend_table(cmap, alpha)
            raw = np.asarray(Image.blend(Image.fromarray(image), viz._coloured(cam, cmap), alpha))
            np.testing.assert_array_equal(viz._blend_by_table(image, cam, table), raw)


def test_save_png_round_trips(tmp_path):
    from PIL import Image

    image = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    viz.save_png(image, tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), image)
    viz.save_png(np.array([[0.0, 0.5, 1.0]]), tmp_path / "b.png")  # floats in [0, 1]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), [[0, 128, 255]])
    with pytest.raises(ValueError, match="image"):
        viz.save_png(np.zeros((3, 5, 5)), tmp_path / "c.png")


def test_save_image_jpeg_keeps_colours_in_rgb_order(tmp_path):
    from PIL import Image

    image = np.zeros((16, 24, 4), dtype=np.uint8)  # RGBA: the alpha channel is dropped
    image[:, :8, 0] = image[:, 8:16, 1] = image[:, 16:, 2] = 255
    viz.save_image(image, tmp_path / "a.jpg", quality=95)
    back = np.asarray(Image.open(tmp_path / "a.jpg"))
    assert back.shape == (16, 24, 3)
    for column, channel in ((3, 0), (11, 1), (20, 2)):
        assert back[8, column].argmax() == channel and back[8, column].max() > 230
    viz.save_image(np.full((8, 8), 0.5), tmp_path / "g.jpg")  # grey stays one channel
    assert np.asarray(Image.open(tmp_path / "g.jpg")).shape == (8, 8)


def test_viz_and_metrics_load_on_first_attribute_access():
    import hrcam

    assert hrcam.viz.plot_pipeline is viz.plot_pipeline  # as the README's example uses it
    from hrcam.metrics import MaxBoxAccV2

    assert hrcam.metrics.MaxBoxAccV2 is MaxBoxAccV2
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        hrcam.nonexistent  # noqa: B018


def test_pipeline_image_draws_every_panel_with_colour_bars(example):
    low, high, image = example
    steps = refine(low[0], high[0], image[0])
    picture = viz.pipeline_image(steps, image[0], title="a title", ranges={"low": (-1.5, 3.0)})
    assert picture.dtype == np.uint8 and picture.ndim == 3
    assert picture.shape[0] > 2 * 200 and picture.shape[1] > 5 * 200  # two rows of five panels
    assert picture.std() > 20
    # Degenerate steps (empty ROI, no seeds) and no image still draw.
    blank = viz.pipeline_image(refine(np.zeros((7, 7)), np.zeros((32, 32))), None)
    assert blank.shape == viz.pipeline_image(steps, None).shape
    with pytest.raises(ValueError, match="select"):
        viz.pipeline_image(refine_batch(low, high), None)
