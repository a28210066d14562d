"""The app's computations without the page: loading, caching, errors, downloads."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hrcam import Explainer
from hrcam.app import AppError, ExplainerSession
from hrcam.postprocess import RefineOptions


@pytest.fixture
def session(tiny_model):
    return ExplainerSession(tiny_model, display_side=64)


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(96, 120, 3), dtype=np.uint8)
    pixels[20:60, 30:80] = 250  # a bright square the tiny model has learned to look at
    return Image.fromarray(pixels)


def _count_calls(monkeypatch, obj, name):
    calls = []
    original = getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


def test_a_new_image_gives_its_top_classes_and_a_display_copy(session, photo):
    loaded = session.load(photo, name="square")
    assert [c.index for c in loaded.top5] == np.argsort(-loaded.probabilities)[:3].tolist()
    assert loaded.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert loaded.display.shape == (51, 64, 3)  # at most 64 a side, aspect kept
    assert loaded.original_size == (120, 96) and loaded.name == "square"
    assert session.load(photo).key == loaded.key  # the same pixels: the same entry


def test_a_huge_image_is_downscaled_for_the_page(tiny_model, tmp_path):
    path = tmp_path / "huge.png"
    Image.new("RGB", (3000, 2000), (120, 30, 200)).save(path)
    loaded = ExplainerSession(tiny_model).load(path)
    assert max(loaded.display.shape[:2]) == 448 and loaded.original_size == (3000, 2000)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is text, not pixels", "photo.png: not a recognised image file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "photo.png:"),
    ],
)
def test_an_unreadable_upload_is_one_line_naming_the_file(session, tmp_path, content, message):
    path = tmp_path / "upload-1234.png"
    path.write_bytes(content)
    with pytest.raises(AppError, match=message) as info:
        session.load(path, name="photo.png")
    assert "\n" not in str(info.value) and "upload-1234" not in str(info.value)


def test_cams_are_cached_per_image_and_class(session, photo, monkeypatch):
    loaded = session.load(photo)
    generate = _count_calls(monkeypatch, Explainer, "cams")
    refine = _count_calls(monkeypatch, Explainer, "refine")
    top = loaded.top5[0].index
    other = loaded.top5[1].index
    session.views(loaded.key, top)  # the predicted class's CAMs came with the prediction
    assert (len(generate), len(refine)) == (0, 1)
    session.views(loaded.key, top, opacity=0.9, cmap="jet")  # a re-draw: nothing recomputed
    assert (len(generate), len(refine)) == (0, 1)
    session.views(loaded.key, top, RefineOptions().replace(alpha=0.7))
    assert (len(generate), len(refine)) == (0, 2)  # another option: refine again, CAMs kept
    session.views(loaded.key, other)
    assert (len(generate), len(refine)) == (1, 3)  # another class: its CAMs once


def test_other_options_and_classes_change_the_maps(session, photo):
    loaded = session.load(photo)
    top, other = loaded.top5[0].index, loaded.top5[1].index
    base = session.views(loaded.key, top, RefineOptions.preset("paper"))
    multiplied = session.views(
        loaded.key, top, RefineOptions.preset("paper").replace(merge="multiply")
    )
    assert np.array_equal(base.low, multiplied.low)  # the low-res CAM does not depend on them
    assert not np.array_equal(base.refined, multiplied.refined)
    assert not np.array_equal(base.low, session.views(loaded.key, other).low)
    faint = session.views(loaded.key, top, RefineOptions.preset("paper"), opacity=0.0)
    assert np.array_equal(faint.low, loaded.display)  # opacity 0: the photograph itself


def test_classes_by_index_name_or_as_the_page_lists_them(session):
    names = session.class_names
    assert session.class_index(names[1]) == 1
    assert session.class_index(f"{names[2].upper()} (12.5%)") == 2
    with pytest.raises(AppError, match="unknown class name 'zebra'"):
        session.class_index("zebra")


def test_a_forgotten_image_asks_for_a_new_upload(tiny_model, photo):
    session = ExplainerSession(tiny_model, max_images=1)
    first = session.load(photo)
    session.load(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    with pytest.raises(AppError, match="upload it again"):
        session.views(first.key, 0)


def test_downloads_hold_the_maps_and_the_overlays(session, photo, tmp_path):
    loaded = session.load(photo, name="square")
    views = session.views(loaded.key, loaded.top5[0].index)
    paths = session.export(loaded.key, views, tmp_path)
    assert [p.suffix for p in paths] == [".npz", ".png", ".png", ".png"]
    with np.load(paths[0]) as maps:
        np.testing.assert_array_equal(maps["refined_cam"], views.steps.refined)
        assert int(maps["target"]) == views.target.index
    assert Image.open(paths[3]).size == (loaded.display.shape[1], loaded.display.shape[0])
    figure = session.pipeline_figure(loaded.key, views)
    assert figure.ndim == 3 and figure.shape[2] == 3


@pytest.fixture
def volume_session():
    import torch

    from hrcam.backbones import create_backbone

    torch.manual_seed(0)
    net = create_backbone(
        "tiny_densenet", num_classes=3, spatial_dims=3, in_chans=1, input_size=32, growth_rate=4
    )
    return ExplainerSession(Explainer(net.eval()))


@pytest.fixture
def nifti(tmp_path):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 10, (40, 32, 24)).astype(np.float32)
    volume[10:20, 8:16, 6:14] += 200
    path = tmp_path / "knee.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.5, 1.0])), path)
    return path


def test_a_volume_is_shown_as_slices_through_a_point_the_page_moves(volume_session, nifti):
    loaded = volume_session.load(nifti)
    assert loaded.name == "knee" and loaded.is_volume and loaded.display.shape == (32, 32, 32)
    # the network's voxels cover the scan's extent: 40, 32 and 24 voxels of 1, 1, 2.5 mm
    assert loaded.spacing == pytest.approx((1.25, 1.0, 1.875))
    views = volume_session.views(loaded.key, loaded.top5[0].index)
    refined = views.explanation.steps[0].refined
    assert refined.shape == (32, 32, 32)
    assert views.point == tuple(np.unravel_index(int(np.argmax(refined)), refined.shape))
    assert views.refined.shape == views.low.shape == views.masked.shape
    moved = volume_session.views(loaded.key, loaded.top5[0].index, point=(0, 99, -5))
    assert moved.point == (0, 31, 0)  # clipped into the volume
    assert not np.array_equal(moved.refined, views.refined)
    with pytest.raises(AppError, match="pipeline figure is drawn for images"):
        volume_session.pipeline_figure(loaded.key, views)


def test_a_scan_that_does_not_fit_the_network_is_one_line(
    volume_session, session, nifti, photo, tmp_path
):
    photo.save(tmp_path / "photo.png")
    with pytest.raises(AppError, match="^photo.png: a 2-D image, but this network takes volumes"):
        volume_session.load(tmp_path / "photo.png", name="photo.png")
    with pytest.raises(AppError, match="knee.nii.gz: .*volume"):
        session.load(nifti, name="knee.nii.gz")


def test_the_page_handlers_show_a_volume_and_move_its_slices(volume_session, nifti):
    pytest.importorskip("gradio")
    from hrcam.app.page import OPTION_CONTROLS, _Handlers, build_page, control_values

    page = build_page(
        volume_session
    )  # a page of a network of volumes builds (its 4×4×4 CAM grid named)
    assert "4×4×4" in str(page.config)
    handlers = _Handlers(volume_session, nifti.parent)
    values = control_values(RefineOptions())
    out = handlers.scan(str(nifti), 0.5, "inferno", "hrcam", *values)
    assert len(out) == 12 and len(values) == len(OPTION_CONTROLS)
    state, status, sliders = out[0], out[8], out[9:]
    assert status == "" and all(s["visible"] for s in sliders)
    assert [s["maximum"] for s in sliders] == [31, 31, 31]
    moved = handlers.slice_moved(state, 3, 4, 5, 0.5, "inferno", "hrcam", *values)
    assert moved[0]["point"] == [3, 4, 5] and [s["value"] for s in moved[9:]] == [3, 4, 5]
    assert "through voxel (3, 4, 5)" in moved[6]
