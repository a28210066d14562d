"""hrcam explain never loses, mixes up or overwrites results: outputs tied to their sources,
folders hrcam did not make left alone, its own output never explained, the run's files there
from the first second, SIGTERM finishing like Ctrl-C, sizes checked before memory runs out."""

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
from PIL import Image

from hrcam import export_model
from hrcam.cli import main as cli


@pytest.fixture
def model_file(tiny_model, tmp_path):
    tiny_model.backbone.class_names = ["disc", "square", "other"]
    return export_model(tiny_model, tmp_path / "model.safetensors")


def _picture(path: Path, seed: int, size=(40, 48)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _explain(model_file: Path, *args) -> int:
    return cli(
        ["explain", *map(str, args), "--model", str(model_file), "--input-size", "32"]
        + ["--no-progress", "--no-pipeline"]
    )


def _results(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["results"]


def test_resume_never_takes_one_images_results_for_anothers(model_file, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _picture(photos / "a_b.jpg", 0)
    _picture(photos / "é.png", 1)
    assert _explain(model_file, photos, "-o", out) == 0
    # Files whose safe names are the same as those above, added later.
    _picture(photos / "a b.jpg", 2)
    _picture(photos / "ü.png", 3)
    _picture(photos / "a_b.png", 4)
    assert _explain(model_file, photos, "-o", out, "--skip-existing") == 0
    results = _results(out)
    sources = sorted(Path(r["source"]).name for r in results)
    assert sources == sorted(["a_b.jpg", "a b.jpg", "a_b.png", "é.png", "ü.png"])
    assert len({r["name"] for r in results}) == 5 and all(r["ok"] for r in results)
    for r in results:  # each folder holds its own source's maps
        record = json.loads((out / "images" / r["name"] / "predictions.json").read_text())
        assert record["source"] == r["source"]
    # A file changed since it was explained is explained again, not taken from the disk.
    first = next(r for r in results if r["source"].endswith("a_b.jpg"))
    maps = out / "images" / first["name"] / "maps.npz"
    before = np.load(maps)["high_res_cam"].copy()
    _picture(photos / "a_b.jpg", 9)
    os.utime(photos / "a_b.jpg", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert _explain(model_file, photos, "-o", out, "--skip-existing") == 0
    assert not np.array_equal(np.load(maps)["high_res_cam"], before)


def test_a_folder_hrcam_did_not_make_is_refused_and_its_files_never_overwritten(
    model_file, tmp_path, capsys
):
    photo = _picture(tmp_path / "in" / "x.png", 0)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("my own page")
    (mine / "summary.json").write_text('{"mine": true}')
    assert _explain(model_file, photo, "-o", mine) == 2
    assert "holds files hrcam did not write" in capsys.readouterr().err
    assert _explain(model_file, photo, "-o", mine, "--force") == 2  # it would overwrite them
    assert "index.html, summary.json exists and was not written by hrcam" in capsys.readouterr().err
    assert (mine / "index.html").read_text() == "my own page"
    assert (mine / "summary.json").read_text() == '{"mine": true}'
    # --force writes beside other files, never over them.
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    assert _explain(model_file, photo, "-o", notes) == 2
    assert _explain(model_file, photo, "-o", notes, "--force") == 0
    assert (notes / "notes.txt").read_text() == "keep me" and (notes / "index.html").is_file()
    # hrcam's own output folder, and an empty one, are fine without --force.
    assert _explain(model_file, photo, "-o", notes) == 0
    (tmp_path / "empty").mkdir()
    assert _explain(model_file, photo, "-o", tmp_path / "empty") == 0


def test_the_output_inside_the_input_is_never_explained(model_file, tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        _picture(photos / f"{i}.png", i)
    out = photos / "report"
    assert _explain(model_file, photos, "-o", out) == 0
    assert _explain(model_file, photos, "-o", out, "--skip-existing") == 0
    assert len(_results(out)) == 3
    # Nor is another hrcam output lying among the photos.
    assert _explain(model_file, photos, "-o", tmp_path / "second") == 0
    assert len(_results(tmp_path / "second")) == 3


def test_sizes_are_checked_before_anything_runs(model_file, tmp_path, capsys, monkeypatch):
    photo = _picture(tmp_path / "x.png", 0)
    for flag, value in (("--input-size", "100000"), ("--input-size", "4"), ("--batch-size", "0")):
        with pytest.raises(SystemExit) as info:
            cli(["explain", str(photo), flag, value])
        assert info.value.code == 2
        assert f"argument {flag}: expected an integer in" in capsys.readouterr().err
    # A size the machine's memory cannot hold is refused in one line, before the run.
    from hrcam.commands import model_args

    monkeypatch.setattr(model_args, "available_memory", lambda: 200 * 2**20)
    out = tmp_path / "out"
    assert (
        cli(["explain", str(photo), "-o", str(out), "--model", str(model_file)]
            + ["--input-size", "2048", "--batch-size", "64", "--no-progress"])
        == 2
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "needs about" in err and "lower --input-size or --batch-size" in err
    assert not out.exists()  # the run wrote nothing, so it leaves no folder behind


def test_the_runs_files_are_there_before_the_first_image_is_done(model_file, tmp_path, monkeypatch):
    from hrcam.explain import run as run_module

    photos, out = tmp_path / "photos", tmp_path / "out"
    for i in range(3):
        _picture(photos / f"{i}.png", i)
    seen = []
    real = run_module.explain_batch

    def first_batch(*args, **kwargs):
        seen.append(((out / "summary.json").is_file(), (out / "index.html").is_file()))
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "explain_batch", first_batch)
    assert _explain(model_file, photos, "-o", out, "--batch-size", "1") == 0
    assert seen[0] == (True, True) and len(seen) == 3
    assert json.loads((out / "summary.json").read_text())["state"] == "complete"


@pytest.mark.slow
def test_sigterm_finishes_like_ctrl_c_and_exits_143(model_file, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    for i in range(300):
        _picture(photos / f"{i:03d}.png", i)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrcam", "explain", str(photos), "-o", str(out), "--model",
         str(model_file), "--input-size", "32", "--no-progress", "--batch-size", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(out.glob("images/*/predictions.json"))) < 4:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err
    summary = json.loads((out / "summary.json").read_text())
    on_disk = {p.parent.name for p in out.glob("images/*/predictions.json")}
    assert summary["state"] == "interrupted" and {r["name"] for r in summary["results"]} == on_disk
    assert "interrupted" in (out / "index.html").read_text()


def test_a_file_that_cannot_be_read_says_so(tmp_path, monkeypatch, caplog):
    from hrcam import io

    photo = _picture(tmp_path / "x.png", 0)
    monkeypatch.setattr(io.os, "access", lambda path, mode: False)
    with pytest.raises(io.ImageLoadError, match=r"x\.png: permission denied"):
        io.load_image(photo)
    monkeypatch.undo()
    (tmp_path / "locked").mkdir()

    def walk(top, onerror=None):  # os.walk as it goes on a folder it may not list
        onerror(PermissionError(13, "Permission denied", str(tmp_path / "locked")))
        yield str(tmp_path), ["locked"], ["x.png"]

    monkeypatch.setattr(io.os, "walk", walk)
    assert [p.name for p in io.find_images([tmp_path])] == ["x.png"]
    assert "locked: folder skipped, it cannot be read (Permission denied)" in caplog.text


def test_big_images_up_to_the_limit_decode_quietly_and_larger_are_refused_in_one_line(tmp_path):
    import warnings

    from hrcam.io import ImageLoadError, load_image

    big = tmp_path / "big.png"
    Image.new("1", (14142, 14142)).save(big)  # 200 Mpx: under hrcam's 268
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        assert load_image(big, max_side=448).size == (14142, 14142)
    Image.new("1", (17000, 17000)).save(big)  # 289 Mpx
    with pytest.raises(ImageLoadError) as info:
        load_image(big)
    message = str(info.value)
    assert "17000×17000 pixels is more than hrcam decodes (268 Mpx" in message
    assert "178956970" not in message
