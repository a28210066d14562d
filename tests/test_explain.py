"""hrcam explain / demo end to end on a tiny model: outputs, report, bad input, sharding."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrcam import export_model, viz
from hrcam.cli import main as cli
from hrcam.explain import OutputSettings, RunSettings, explain_images, merge_shards

from .conftest import output_folder


@pytest.fixture
def model_file(tiny_model, tmp_path):
    tiny_model.backbone.class_names = ["disc", "square", "other"]
    return export_model(tiny_model, tmp_path / "model.safetensors")


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), "L").save(
        folder / "nested" / "tiny_gray.png"
    )
    Image.new("RGBA", (50, 30), (255, 0, 0, 100)).save(folder / "nested" / "rgba.png")
    Image.new("RGB", (30, 30), (0, 90, 0)).convert("P").save(folder / "palette.png")
    Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)).save(
        folder / "deep16.png"
    )
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.png").write_text("a text file named like an image")
    data = (folder / "rgb.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return folder


def test_explain_writes_every_output_and_reports_bad_files(model_file, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    status = cli(
        [
            "explain",
            str(inputs),
            str(tmp_path / "missing.png"),
            "-o",
            str(out),
            "--model",
            str(model_file),
            "--batch-size",
            "2",
            "--input-size",
            "32",
            "--no-progress",
        ]
    )
    assert status == 1  # something failed, and the exit status says so
    summary = json.loads((out / "summary.json").read_text())
    assert summary["succeeded"] == 5 and summary["failed"] == 4
    errors = " ".join(r["error"] for r in summary["results"] if not r["ok"])
    assert "broken.jpg: truncated or corrupt" in errors  # JPEG magic, then garbage
    assert "truncated.jpg: truncated or corrupt" in errors
    assert "missing.png: no such file" in errors
    assert "notes.png: not a recognised image" in errors
    ok = [r for r in summary["results"] if r["ok"]]
    # Output folders are named after the images without their extensions, and a hash of each
    # file's path that ties the folder to it.
    assert len({r["name"] for r in ok}) == 5
    assert {r["name"].rsplit("-", 1)[0] for r in ok} == {
        "rgb",
        "palette",
        "deep16",
        "nested__tiny_gray",
        "nested__rgba",
    }
    for r in ok:
        folder = out / "images" / r["name"]
        for f in (
            "image.jpg",
            "cam_low.jpg",
            "cam_high.jpg",
            "cam_refined.jpg",
            "masked.jpg",
            "pipeline.jpg",
            "maps.npz",
            "predictions.json",
        ):
            assert (folder / f).is_file(), (r["name"], f)
        assert len(r["top5"]) == 3 and abs(sum(t["probability"] for t in r["top5"]) - 1) < 1e-4
        maps = np.load(folder / "maps.npz")
        assert maps["high_res_cam"].shape == (32, 32) and maps["low_res_cam"].shape == (4, 4)
        assert maps["refined_cam"].shape == (32, 32) and np.isfinite(maps["refined_cam"]).all()
        assert maps["high_res_cam"].dtype == np.float16 and maps["roi"].dtype == bool
        # The coloured CAMs are the maps' own pixels; the blended overlays are not written.
        coloured = np.asarray(Image.open(folder / "cam_high.jpg"))
        expected = viz.colorize(maps["high_res_cam"].astype(np.float32))
        assert coloured.shape == (32, 32, 3)
        assert np.abs(coloured.astype(int) - expected).mean() < 6  # JPEG's error
        assert not list(folder.glob("overlay_*"))
    tiny = next(r for r in ok if r["name"].startswith("nested__tiny_gray-"))
    assert tiny["size"] == [8, 8]
    html = (out / "index.html").read_text()
    assert html.count('<section class="card"') == 5 and "4 file(s) could not be explained" in html
    # Each CAM lies over its image, at the run's opacity, in a box of the image's shape.
    rgb = next(r for r in ok if r["name"].startswith("rgb-"))
    folder = f"images/{rgb['name']}"
    layers = (
        f'<img loading="lazy" src="{folder}/image.jpg" alt=""><img loading="lazy" '
        f'src="{folder}/cam_refined.jpg" alt="refined CAM" style="opacity:0.5">'
    )
    assert f'<span style="aspect-ratio:60/40;width:100%">{layers}</span>' in html
    # A click opens the same layers large, at the photograph's own shape.
    assert f'id="zoom-{rgb["name"]}-refined"' in html and html.count(layers) == 2
    mode = summary["options"]["upsampler"]["name"]  # the page says how its high-res CAMs were made
    assert mode in ("paper", "guided") and f"high-res CAM: {mode}" in html
    assert "refinement: hrcam preset" in html and summary["state"] == "complete"
    # Each overlay states the raw range its colours stand for.
    low, high = rgb["ranges"]["low_res"]
    assert low <= high and f"range [{low:.3g}, {high:.3g}]" in html
    assert not list(out.rglob("*.tmp"))  # no half-written files
    assert "report:" in capsys.readouterr().out


def test_target_by_name_and_unknown_name(model_file, inputs, tmp_path):
    out = tmp_path / "out"

    def explain(target: str) -> int:
        args = ["explain", str(inputs / "rgb.jpg"), "-o", str(out), "--model", str(model_file)]
        return cli(
            [*args, "--target", target, "--input-size", "32", "--no-progress", "--no-pipeline"]
        )

    assert explain("square") == 0
    result = json.loads((output_folder(out, "rgb") / "predictions.json").read_text())
    assert result["target"]["name"] == "square"
    assert explain("sqare") == 2  # a misspelt class name is a usage error


def test_shards_cover_the_folder_once_and_merge(tiny_model, inputs, tmp_path):
    out = tmp_path / "sharded"
    for i in range(3):
        explain_images(
            tiny_model,
            [inputs],
            out,
            run=RunSettings(shard=(i, 3), show_progress=False),
            outputs=OutputSettings(pipeline_figure=False),
        )
    assert not (out / "summary.json").exists()
    merged = merge_shards(out)
    names = [r.name for r in merged.results]
    assert len(names) == len(set(names)) == 8
    assert (out / "index.html").is_file()
    # Re-running with --skip-existing keeps finished images instead of redoing them.
    # An image with an empty file (what a power cut can leave: per-image files are not fsynced)
    # is done again.
    rgb = output_folder(out, "rgb")
    stamp = (rgb / "cam_low.jpg").stat().st_mtime_ns
    other = next(p for p in sorted((out / "images").iterdir()) if p != rgb)
    (other / "maps.npz").write_bytes(b"")
    again = explain_images(
        tiny_model, [inputs], out, run=RunSettings(skip_existing=True, show_progress=False)
    )
    assert (rgb / "cam_low.jpg").stat().st_mtime_ns == stamp
    assert sum(r.ok for r in again.results) == 5
    assert (other / "maps.npz").stat().st_size > 0 and (other / "pipeline.jpg").is_file()
    assert not (rgb / "pipeline.jpg").exists()  # kept as it was


def test_demo_uses_bundled_photographs(model_file, tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "-o", str(out), "--model", str(model_file)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["succeeded"] == 5
    # The photographs the default model knows come first; the one it gets wrong last.
    sources = [Path(r["source"]).stem for r in summary["results"]]
    assert sources == ["1-chelsea", "2-coffee", "3-motorcycle", "4-camera", "5-astronaut"]
    printed = capsys.readouterr().out
    assert "1-chelsea:" in printed and "report:" in printed
    assert "a map explains the class it names, right or wrong" in (out / "index.html").read_text()
    # Run again into the same folder: it is hrcam's own output, so that is allowed.
    assert cli(["demo", "-o", str(out), "--model", str(model_file)]) == 0


def test_a_model_without_expansion_network_gets_every_map(tiny_backbone, inputs, tmp_path):
    from hrcam import Explainer

    tiny_backbone.class_names = ["disc", "square", "other"]
    path = export_model(Explainer(tiny_backbone), tmp_path / "no_expansion.safetensors")
    out = tmp_path / "out"
    args = ["explain", str(inputs / "rgb.jpg"), "-o", str(out), "--model", str(path)]
    assert cli([*args, "--input-size", "32", "--no-progress"]) == 0
    folder = output_folder(out, "rgb")
    maps = np.load(folder / "maps.npz")
    assert maps["high_res_cam"].shape == maps["refined_cam"].shape == (32, 32)
    assert (folder / "pipeline.jpg").is_file() and (folder / "cam_high.jpg").is_file()
    # The paper's high-res CAM is the one map that needs the expansion network: said so, exit 2.
    assert cli([*args, "--high-res", "paper", "--no-progress"]) == 2
    # --boundary-mix sets the boundary CAM's mix, which this model has not: said so, exit 2.
    assert cli([*args, "--boundary-mix", "0", "--no-progress"]) == 2


def test_boundary_mix_sets_the_share_of_the_guided_map(tiny_backbone, inputs, tmp_path, capsys):
    import torch

    from hrcam import Explainer
    from hrcam.upsample import ExpansionNetwork

    tiny_backbone.class_names = ["disc", "square", "other"]
    torch.manual_seed(0)
    expansion = ExpansionNetwork.from_backbone(
        tiny_backbone, decoder_channels=(16, 12, 8, 8), boundary_width=8
    )
    model = Explainer(tiny_backbone, expansion=expansion)
    # exported to load with the guided map, as the default model is: the flag implies boundary
    path = export_model(model, tmp_path / "m.safetensors", high_res="guided")
    args = ["explain", str(inputs / "rgb.jpg"), "--model", str(path), "--input-size", "32"]
    assert cli([*args, "-o", str(tmp_path / "plain"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert summary["options"]["upsampler"]["name"] == "guided"
    maps = {}
    for mix in ("0", "0.5", "1"):
        out = tmp_path / f"mix{mix}"
        assert cli([*args, "-o", str(out), "--boundary-mix", mix, "--no-progress"]) == 0
        recorded = json.loads((out / "summary.json").read_text())["options"]["upsampler"]
        assert recorded["name"] == "boundary" and recorded["mix"] == float(mix)
        maps[mix] = np.load(output_folder(out, "rgb") / "maps.npz")["high_res_cam"].astype(float)
    np.testing.assert_allclose(maps["0.5"], (maps["0"] + maps["1"]) / 2, atol=2e-3)
    assert not np.allclose(maps["0"], maps["1"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        cli([*args, "-o", str(tmp_path / "bad"), "--boundary-mix", "1.5"])
    assert refused.value.code == 2
    assert "--boundary-mix: expected a number in [0, 1], got 1.5" in capsys.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_writer_threads_yield_to_the_model():
    import threading

    from hrcam.explain.run import _background_priority

    seen = {}

    def writer():
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        _background_priority()
        seen["before"] = before
        seen["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join()
    assert seen["after"] == max(10, seen["before"])  # lowered to nice 10, never raised
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == seen["before"]


def test_output_settings_refuse_a_quality_outside_1_to_100():
    from hrcam.explain import OutputSettings

    for bad in ({"jpeg_quality": 0}, {"figure_quality": 101}, {"jpeg_quality": 80.5}):
        with pytest.raises(ValueError, match="quality"):
            OutputSettings(**bad)


def test_display_image_averages_areas_and_enlarges_tiny_images():
    from hrcam.viz import display_image

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    halved = display_image(Image.fromarray(pixels), 200)
    blocks = pixels.reshape(150, 2, 200, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert halved.shape == (150, 200, 3) and halved.dtype == np.uint8
    assert np.abs(halved - blocks).max() <= 0.5 + 1e-9  # each pixel its 2x2 block's mean, rounded
    odd = display_image(Image.fromarray(pixels), 333)  # a non-integer factor keeps the range
    assert odd.shape == (250, 333, 3) and odd.min() >= pixels.min() and odd.max() <= pixels.max()
    gray = display_image(Image.fromarray(pixels[..., 0]), 100)
    assert gray.shape == (75, 100)
    np.testing.assert_array_equal(display_image(Image.fromarray(pixels), 400), pixels)  # fits
    tiny = display_image(Image.fromarray(pixels[:10, :20]), 448)  # enlarged, pixels kept
    assert tiny.shape == (40, 80, 3)
    np.testing.assert_array_equal(tiny[::4, ::4], pixels[:10, :20])


def test_overlay_files_on_request_and_the_report_links_them(model_file, inputs, tmp_path):
    out = tmp_path / "out"
    args = ["explain", str(inputs / "rgb.jpg"), "-o", str(out), "--model", str(model_file)]
    assert (
        cli([*args, "--input-size", "32", "--no-progress", "--overlay-files", "--opacity", "0.3"])
        == 0
    )
    folder = output_folder(out, "rgb")
    for name in ("low", "high", "refined"):
        overlay = np.asarray(Image.open(folder / f"overlay_{name}.jpg"))
        assert overlay.shape == np.asarray(Image.open(folder / "image.jpg")).shape
        assert (folder / f"cam_{name}.jpg").is_file()
    assert (folder / "masked.jpg").is_file()
    html = (out / "index.html").read_text()
    href = f"images/{folder.name}/overlay_high.jpg"
    assert f'<a class="file" href="{href}">blended picture</a>' in html
    assert 'style="opacity:0.3"' in html and "overlays at 30% opacity" in html
    result = json.loads((folder / "predictions.json").read_text())
    assert result["files"]["overlay_low"] == f"images/{folder.name}/overlay_low.jpg"


def test_report_of_an_older_run_shows_its_blended_overlays(tmp_path):
    from hrcam.explain.html_page import write_report

    files = {k: f"images/a/{k}.jpg" for k in ("image", "overlay_low", "overlay_high", "masked")}
    result = {"source": "a.jpg", "name": "a", "ok": True, "top5": [], "files": files}
    html = write_report({"results": [result], "options": {}}, tmp_path / "index.html").read_text()
    assert '<img loading="lazy" src="images/a/overlay_high.jpg" alt="high-res CAM">' in html
    assert "refined CAM: not produced" in html and 'class="stack"' not in html


def test_report_of_coloured_cams_without_ranges_leaves_the_range_out(tmp_path):
    from hrcam.explain.html_page import write_report

    files = {k: f"images/a/{k}.jpg" for k in ("image", "cam_low", "cam_high", "cam_refined")}
    result = {"source": "a.jpg", "name": "a", "ok": True, "top5": [], "files": files}
    html = write_report({"results": [result], "options": {}}, tmp_path / "index.html").read_text()
    assert html.count('<a class="stack" href="#zoom-a-') == 3 and "range [" not in html
