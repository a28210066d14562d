"""Every bad input named, every interruption survived (docs/reliability.md's table, row by row).

A folder of bad inputs — an EXIF-rotated phone photo, a 1×500 image, a corrupt file, a text file
named like an image — plus an empty folder, outputs that cannot be written, maps with NaN, and
runs interrupted by SIGINT and SIGKILL. Mid-epoch training resume is tested bit for bit in
``tests/train/test_training.py`` (``test_stage1_resumes_mid_epoch_bit_identically``) and, with a
real SIGKILL, at the end of this file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam import export_model, upsample_cam
from hrcam.cli import main as cli
from hrcam.explain import RunSettings, explain_images
from hrcam.io import load_image

from .browser import chromium, page_height
from .conftest import output_folder

ROOT = Path(__file__).resolve().parents[1]


def _exif_rotated(path: Path) -> np.ndarray:
    """A landscape JPEG whose EXIF says 'rotate 90° clockwise to view'; returns the upright array."""
    a = np.zeros((40, 64, 3), np.uint8)
    a[:, :12] = (250, 30, 30)  # a red stripe on the left of the stored image
    image = Image.fromarray(a)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes(), quality=95)
    return np.rot90(a, k=-1)  # what a viewer shows: the stripe on top


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    _exif_rotated(folder / "phone.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (500, 1, 3), dtype=np.uint8)).save(
        folder / "thin.png"
    )
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(
        folder / "good.png"
    )
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    (folder / "notes.png").write_text("not an image")
    return folder


@pytest.fixture
def model_file(tiny_model, tmp_path) -> Path:
    tiny_model.backbone.class_names = ["disc", "square", "other"]
    return export_model(tiny_model, tmp_path / "model.safetensors")


def _explain(model_file: Path, *args: str) -> int:
    return cli(
        ["explain", *args, "--model", str(model_file), "--input-size", "32", "--no-progress"]
    )


# -- EXIF orientation ------------------------------------------------------------------------


def test_exif_rotated_photos_are_upright_everywhere(tmp_path, tiny_model):
    upright = _exif_rotated(tmp_path / "phone.jpg")
    image = load_image(tmp_path / "phone.jpg")
    assert image.size == (40, 64) and image.info["hrcam_original_size"] == (40, 64)
    got = np.asarray(image).astype(int)
    assert np.abs(got - upright).mean() < 6  # the same picture, up to JPEG noise
    assert got[:10, :, 0].mean() > 200 and got[-10:, :, 0].mean() < 60  # the stripe is on top
    # The explainer (and so explain, evaluate and the app, which decode through it) sees it upright.
    batch = tiny_model.replace(input_size=(64, 40)).prepare(tmp_path / "phone.jpg")
    assert np.abs(batch.rgb[0].astype(int) - got).mean() < 1
    # Training reads images through the same loader.
    from hrcam.data import ImageFilesDataset

    (tmp_path / "train").mkdir()
    (tmp_path / "phone.jpg").rename(tmp_path / "train" / "phone.jpg")
    assert ImageFilesDataset(tmp_path / "train")[0].size == (40, 64)


# -- output folders and flags ----------------------------------------------------------------


def test_an_output_that_is_a_file_or_cannot_be_made_fails_before_the_model_loads(
    tmp_path, bad_folder, capsys, monkeypatch
):
    import hrcam.checkpoint

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(hrcam.checkpoint, "load_model", no_model)
    (tmp_path / "a_file").write_text("x")
    assert cli(["explain", str(bad_folder), "-o", str(tmp_path / "a_file")]) == 2
    assert "a_file: exists and is not a folder" in capsys.readouterr().err
    assert cli(["explain", str(bad_folder), "-o", str(tmp_path / "a_file" / "sub")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    assert cli(["evaluate", str(bad_folder), "-o", str(tmp_path / "a_file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert cli(["explain", str(bad_folder), "-o", str(locked)]) == 2
        assert "not writable" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["explain", "x", "--batch-size", "0"], "--batch-size"),
        (["explain", "x", "--batch-size", "-3"], "--batch-size"),
        (["evaluate", "x", "--batch-size", "0"], "--batch-size"),
        (["evaluate", "x", "--limit", "0"], "--limit"),
        (["train-classifier", "x", "-o", "o", "--epochs", "0"], "--epochs"),
        (["train-expansion", "x", "-o", "o", "--classifier", "c", "--workers", "-1"], "--workers"),
        (["train-classifier", "x", "-o", "o", "--checkpoint-every", "-2"], "--checkpoint-every"),
    ],
)
def test_every_non_positive_count_is_refused_with_the_flags_name(argv, flag, capsys):
    with pytest.raises(SystemExit) as info:
        cli(argv)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def test_nothing_to_explain_is_an_error_before_the_model_loads_and_writes_nothing(
    model_file, tmp_path, capsys, caplog
):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    out = tmp_path / "out"
    assert _explain(model_file, str(empty), "-o", str(out)) == 2
    assert "empty: no image files in this folder (looked for .jpg" in caplog.text
    assert "nothing to explain: no image files in" in capsys.readouterr().err
    assert _explain(tmp_path / "no-model.pt", str(tmp_path / "nope.jpg"), "-o", str(out)) == 2
    assert "nothing to explain: " in capsys.readouterr().err  # not a missing model: it never loads
    assert not out.exists()


# -- a folder of bad files ----------------------------------------------------------------------


def test_explain_names_each_bad_file_and_writes_everything_for_the_good_ones(
    model_file, bad_folder, tmp_path, capsys
):
    out = tmp_path / "out"
    assert _explain(model_file, str(bad_folder), "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert "corrupt.jpg: not a recognised image file" in err
    assert "notes.png: not a recognised image file" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["succeeded"] == 3 and summary["failed"] == 2 and summary["state"] == "complete"
    for name in ("phone", "thin", "good"):
        folder = output_folder(out, name)
        files = {p.name for p in folder.iterdir()}
        assert {"cam_refined.jpg", "pipeline.jpg", "maps.npz", "predictions.json"} <= files
        for picture in folder.glob("*.jpg"):
            width, height = Image.open(picture).size
            assert max(width, height) <= 1200  # display size (the pipeline figure: 1164)
    phone = json.loads((output_folder(out, "phone") / "predictions.json").read_text())
    assert phone["size"] == [40, 64]  # upright
    driver = chromium()
    try:
        driver.get((out / "index.html").as_uri())
        assert page_height(driver) < 20_000  # the 1×500 image does not stretch the page
        assert len(driver.find_elements("css selector", "section.card")) == 4  # 3 + the failures
        # Each CAM covers its image exactly: both layers fill one box of the image's shape,
        # which fills the square thumbnail along the image's longer side.
        boxes = driver.execute_script(
            """return [...document.querySelectorAll('.stack')].map(stack => {
                const r = e => { const b = e.getBoundingClientRect();
                                 return [b.left, b.top, b.width, b.height]; };
                const [photo, cam] = stack.querySelectorAll('img');
                return {stack: r(stack), box: r(stack.firstElementChild), photo: r(photo),
                        cam: r(cam), natural: [photo.naturalWidth, photo.naturalHeight],
                        loaded: photo.complete && cam.complete && cam.naturalWidth > 0,
                        opacity: getComputedStyle(cam).opacity}; });"""
        )
        assert len(boxes) == 9  # three CAMs of three images
        for b in boxes:
            assert b["loaded"] and b["opacity"] == "0.5"
            assert b["photo"] == b["box"] and b["cam"] == b["box"]
            (sx, sy, sw, sh), (x, y, w, h) = b["stack"], b["box"]
            assert sw == pytest.approx(sh, abs=1)  # the square thumbnail
            assert max(w, h) == pytest.approx(sw, abs=1)  # filled along the longer side
            assert (
                sx - 0.5 <= x
                and x + w <= sx + sw + 0.5
                and sy - 0.5 <= y
                and y + h <= sy + sh + 0.5
            )
            natural_w, natural_h = b["natural"]
            if min(natural_w, natural_h) > 1:  # the 1x500 image is thinner than a pixel here
                assert w / h == pytest.approx(natural_w / natural_h, rel=0.03)
    finally:
        driver.quit()


def test_maps_with_nan_fail_that_image_and_the_run_goes_on(tiny_model, bad_folder, tmp_path):
    class Poisoned:  # an upsampler whose first map is NaN
        needs_skips = False
        calls = 0

        def upsample(self, inputs):
            high = upsample_cam(inputs.low_res, inputs.size)
            if Poisoned.calls == 0:
                high[0] = float("nan")
            Poisoned.calls += 1
            return high

        def describe(self):
            return {"name": "poisoned"}

    summary = explain_images(
        tiny_model.replace(upsampler=Poisoned()),
        [bad_folder],
        tmp_path / "out",
        run=RunSettings(batch_size=8, show_progress=False),
    )
    nan = [r for r in summary.failed if "non-finite" in (r.error or "")]
    assert len(nan) == 1 and "1024 non-finite value(s)" in nan[0].error  # the 32×32 map
    assert summary.succeeded == 2


# -- interruptions ------------------------------------------------------------------------------


def _many_images(folder: Path, n: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png"
        )
    return folder


def _start_explain(model_file: Path, inputs: Path, out: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "hrcam", "explain", str(inputs), "-o", str(out)]
    args += ["--model", str(model_file), "--input-size", "32", "--batch-size", "2", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A shell's background job starts with SIGINT ignored, and Python keeps it ignored
        # (as `nohup hrcam explain … &` should): give the child the default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_images(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(out.glob("images/*/predictions.json"))) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "explain did not get going"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigint_writes_the_final_page_saying_interrupted(model_file, tmp_path):
    inputs, out = _many_images(tmp_path / "many", 400), tmp_path / "out"
    proc = _start_explain(model_file, inputs, out)
    _wait_for_images(out, 6, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    summary = json.loads((out / "summary.json").read_text())
    on_disk = {p.parent.name for p in out.glob("images/*/predictions.json")}
    assert summary["state"] == "interrupted" and {r["name"] for r in summary["results"]} == on_disk
    assert "interrupted" in (out / "index.html").read_text()
    # --skip-existing finishes the run, and the page is complete.
    assert (
        _explain(model_file, str(inputs), "-o", str(out), "--skip-existing", "--no-pipeline") == 0
    )
    assert json.loads((out / "summary.json").read_text())["succeeded"] == 400


@pytest.mark.slow
def test_after_sigkill_finish_rebuilds_the_page_from_the_disk(model_file, tmp_path):
    inputs, out = _many_images(tmp_path / "many", 400), tmp_path / "out"
    proc = _start_explain(model_file, inputs, out)
    _wait_for_images(out, 6, proc)
    proc.kill()
    proc.communicate(timeout=60)
    on_disk = {p.parent.name for p in out.glob("images/*/predictions.json")}
    assert cli(["explain", "--finish", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {r["name"] for r in summary["results"]} == on_disk and summary["state"] == "finished"
    assert f"{len(on_disk)} explained" in (out / "index.html").read_text()


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_bit_identically(tmp_path):
    """A real SIGKILL after a mid-epoch checkpoint, then --resume: the uninterrupted weights."""
    from hrcam.checkpoint import load_checkpoint
    from tests.conftest import make_class_folders

    data = make_class_folders(tmp_path / "data", per_class=40)  # 20 steps an epoch
    common = ["--input-size", "32", "--workers", "0", "--no-progress", "--block-config", "1,1,1"]
    common += [
        "--growth-rate",
        "8",
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--checkpoint-every",
        "1",
    ]
    common += ["--drop-rate", "0.3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = [sys.executable, "-m", "hrcam", "train-classifier", str(data)]
    subprocess.run(
        [*run, "-o", str(tmp_path / "full"), *common], check=True, env=env, capture_output=True
    )
    proc = subprocess.Popen(
        [*run, "-o", str(tmp_path / "cut"), *common], env=env, stderr=subprocess.PIPE
    )
    last = tmp_path / "cut" / "last.pt"
    deadline = time.monotonic() + 120
    while True:  # kill it once a checkpoint inside epoch 2 has been written
        if last.is_file():
            try:
                loop = load_checkpoint(last)["loop"]
            except Exception:  # noqa: BLE001 - being replaced right now
                loop = {"epoch": 0, "step_in_epoch": 0}
            if loop["epoch"] == 1 and 2 <= loop["step_in_epoch"] < 19:
                break
        assert proc.poll() is None and time.monotonic() < deadline, "no mid-epoch checkpoint"
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    subprocess.run(
        [*run, "-o", str(tmp_path / "cut"), *common, "--resume"],
        check=True,
        env=env,
        capture_output=True,
    )
    a = load_checkpoint(tmp_path / "full" / "last.pt")["backbone_state"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["backbone_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # The resumed epoch's train_loss averages the whole epoch, as the uninterrupted run's does.
    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["train_loss"] for line in lines]

    assert len(losses("cut")) == len(losses("full")) == 2
    assert losses("cut") == pytest.approx(losses("full"), rel=1e-9)
