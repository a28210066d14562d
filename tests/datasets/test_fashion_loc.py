"""The Fashion-MNIST localization benchmark: layout, exact masks, boxes, clutter, determinism."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from hrcam.data.annotations import LocalizationDataset
from hrcam.datasets.fashion_loc import (
    CLASS_FOLDERS,
    DEFAULT_SOURCE,
    FASHION_MNIST_CLASSES,
    _encode_png,
    item_mask,
    load_fashion_mnist,
    make_fashion_loc,
    resize_item,
)

SMALL = {
    "canvas": 64,
    "item_size": (28, 40),
    "train_per_class": 2,
    "test_per_class": 3,
    "workers": 1,
}


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write ``images`` (N, 28, 28) and ``labels`` (N,) as gzipped idx files."""
    folder.mkdir(parents=True, exist_ok=True)
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in images.shape)
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + images.tobytes())
    )
    header = (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big")
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(header + labels.astype(np.uint8).tobytes())
    )


def make_fake_fashion(folder: Path, per_class: int = 4) -> Path:
    """Blocky bright items, some with a dark enclosed hole, ``per_class`` per class and split."""
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        labels = np.repeat(np.arange(10), per_class)
        images = np.zeros((len(labels), 28, 28), np.uint8)
        for i in range(len(labels)):
            y, x = rng.integers(2, 8, 2)
            images[i, y : y + 18, x : x + 16] = rng.integers(90, 255)
            images[i, y + 6 : y + 10, x + 5 : x + 9] = 3  # a hole that the mask must fill
        write_idx(folder, prefix, images, labels)
    return folder


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The Debian package's files when installed, else a tiny fake set of the same format."""
    if (DEFAULT_SOURCE / "t10k-images-idx3-ubyte.gz").is_file():
        return DEFAULT_SOURCE
    return make_fake_fashion(tmp_path_factory.mktemp("fashion-src"))


@pytest.fixture(scope="module")
def bench(tmp_path_factory, source) -> Path:
    out = tmp_path_factory.mktemp("fl") / "bench"
    make_fashion_loc(out, source=source, seed=7, clutter=4, progress=False, **SMALL)
    return out


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _items(bench: Path, split: str = "test") -> list[dict]:
    with open(bench / "items.csv") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def _expected_mask(item: np.ndarray, size: int, x: int, y: int, canvas: int) -> np.ndarray:
    """The documented definition, computed independently of the generator's code."""
    resized = np.asarray(Image.fromarray(item).resize((size, size), Image.Resampling.BILINEAR))
    mask = np.zeros((canvas, canvas), bool)
    mask[y : y + size, x : x + size] = ndi.binary_fill_holes(resized >= 32)
    return mask, resized


def test_layout_and_metadata(bench):
    meta = json.loads((bench / "meta.json").read_text())
    assert meta["classes"] == list(FASHION_MNIST_CLASSES) and meta["folders"] == list(CLASS_FOLDERS)
    assert meta["counts"]["train"] == dict.fromkeys(CLASS_FOLDERS, 2)
    assert meta["counts"]["test"] == dict.fromkeys(CLASS_FOLDERS, 3)
    assert meta["seed"] == 7 and meta["canvas"] == 64
    for split, n in (("train", 2), ("test", 3)):
        assert sorted(p.name for p in (bench / split).iterdir()) == list(CLASS_FOLDERS)
        assert all(len(list((bench / split / f).iterdir())) == n for f in CLASS_FOLDERS)
    image = Image.open(bench / "test" / CLASS_FOLDERS[4] / "00012.png")
    assert (image.mode, image.size) == ("RGB", (64, 64))
    eval_images = sorted(p.name for p in (bench / "eval" / "images").iterdir())
    assert eval_images == [f"{i:05d}.png" for i in range(30)]
    assert sorted(p.name for p in (bench / "eval" / "trimaps").iterdir()) == eval_images
    assert _png(bench / "eval" / "images" / "00012.png").tobytes() == np.asarray(image).tobytes()
    with open(bench / "eval" / "labels.csv") as f:
        labels = list(csv.DictReader(f))
    assert labels[12] == {"file": "00012.png", "label": "4", "name": "Coat"}
    assert not list(bench.parent.glob(".bench.*"))  # no work folder left behind


def test_masks_are_exactly_the_pasted_items(bench, source):
    images, _ = load_fashion_mnist(source, "test")
    with open(bench / "eval" / "boxes.csv") as f:
        boxes = {r["file"]: r for r in csv.DictReader(f)}
    for row in _items(bench):
        name = row["file"].split("/")[1]
        size, x, y = int(row["size"]), int(row["x"]), int(row["y"])
        item = images[int(row["source_index"])]
        mask, resized = _expected_mask(item, size, x, y, 64)
        np.testing.assert_array_equal(
            item_mask(resize_item(item, size)), mask[y : y + size, x : x + size]
        )
        trimap = _png(bench / "eval" / "trimaps" / name)
        assert trimap.dtype == np.uint8 and set(np.unique(trimap)) <= {1, 2, 3}
        np.testing.assert_array_equal(trimap == 1, mask)
        ring = ndi.binary_dilation(mask, np.ones((3, 3), bool)) & ~mask
        np.testing.assert_array_equal(trimap == 3, ring)
        # Every object pixel is the item's value times one colour tint (up to rounding).
        rgb = _png(bench / "eval" / "images" / name).astype(float)
        value = resized[mask[y : y + size, x : x + size]].astype(float)
        for ch in range(3):
            tint = (rgb[..., ch][mask] @ value) / (value @ value)
            assert 0.6 <= tint <= 1.0
            assert np.abs(rgb[..., ch][mask] - value * tint).max() <= 1.0
        rows, cols = np.nonzero(mask)
        box = boxes[name]
        assert [int(box[k]) for k in ("x1", "y1", "x2", "y2")] == [
            cols.min(),
            rows.min(),
            cols.max(),
            rows.max(),
        ]
        assert int(box["label"]) == int(row["label"])


def test_clutter_stays_off_the_object_and_its_ring(bench, source, tmp_path):
    clean = tmp_path / "clean"
    make_fashion_loc(clean, source=source, seed=7, clutter=0, progress=False, **SMALL)
    meta = json.loads((bench / "meta.json").read_text())
    assert meta["clutter_placed"] > 0
    changed_somewhere = False
    for name in sorted(p.name for p in (bench / "eval" / "images").iterdir()):
        trimap = _png(bench / "eval" / "trimaps" / name)
        # The same seed without clutter draws the same objects and backgrounds.
        np.testing.assert_array_equal(trimap, _png(clean / "eval" / "trimaps" / name))
        diff = (
            _png(bench / "eval" / "images" / name) != _png(clean / "eval" / "images" / name)
        ).any(axis=2)
        near = ndi.binary_dilation(trimap == 1, np.ones((3, 3), bool), iterations=2)
        assert not (diff & near).any(), name
        changed_somewhere |= diff.any()
    assert changed_somewhere


def test_same_seed_same_files_other_seed_differs(bench, source, tmp_path):
    again = tmp_path / "again"
    make_fashion_loc(
        again, source=source, seed=7, clutter=4, progress=False, **{**SMALL, "workers": 2}
    )
    files = sorted(p.relative_to(bench) for p in bench.rglob("*.png")) + [
        Path("items.csv"),
        Path("eval/boxes.csv"),
    ]
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.png")) + files[-2:]
    for rel in files:
        assert (bench / rel).read_bytes() == (again / rel).read_bytes(), rel
    # Another seed gives other canvases; the test set does not depend on the train count.
    only_test = {**SMALL, "train_per_class": 0}
    other = tmp_path / "other"
    make_fashion_loc(other, source=source, seed=8, clutter=4, progress=False, **only_test)
    assert (other / "eval" / "boxes.csv").read_text() != (bench / "eval" / "boxes.csv").read_text()
    fewer = tmp_path / "fewer"
    make_fashion_loc(fewer, source=source, seed=7, clutter=4, progress=False, **only_test)
    for rel in [p for p in files if p.parts[0] == "eval"]:
        assert (fewer / rel).read_bytes() == (bench / rel).read_bytes(), rel


def test_localization_dataset_reads_the_eval_folder(bench):
    ds = LocalizationDataset(bench / "eval")
    assert len(ds) == 30 and ds.has_masks
    s = ds[12]
    assert (s.name, s.height, s.width, s.label, s.label_name) == ("00012", 64, 64, 4, "Coat")
    rows, cols = np.nonzero(s.mask)
    assert s.boxes.tolist() == [[cols.min(), rows.min(), cols.max(), rows.max()]]


def test_overwrite_and_bad_arguments(bench, source, tmp_path):
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_fashion_loc(bench, source=source, progress=False, **SMALL)
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("x")
    make_fashion_loc(
        out, source=source, overwrite=True, progress=False, **{**SMALL, "train_per_class": 0}
    )
    assert not (out / "old.txt").exists() and (out / "meta.json").is_file()
    for bad in ({"item_size": (28, 80)}, {"clutter": -1}, {"mask_threshold": 0}, {"canvas": 4}):
        with pytest.raises(ValueError):
            make_fashion_loc(tmp_path / "bad", source=source, progress=False, **{**SMALL, **bad})


def test_load_fashion_mnist_reads_idx_and_explains_a_missing_package(tmp_path, source):
    images, labels = load_fashion_mnist(source, "test")
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    assert (
        labels.dtype == np.int64
        and len(labels) == len(images)
        and set(labels.tolist()) == set(range(10))
    )
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(source, "val")
    broken = tmp_path / "broken"
    make_fake_fashion(broken, per_class=1)
    (broken / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\x00\x00\x08\x01" + bytes(20))
    )
    with pytest.raises(ValueError, match="not an idx images file"):
        load_fashion_mnist(broken, "train")


def test_fake_source_with_reused_items(tmp_path):
    src = make_fake_fashion(tmp_path / "src", per_class=2)
    meta = make_fashion_loc(
        tmp_path / "out", source=src, progress=False, **{**SMALL, "test_per_class": 3}
    )
    assert meta["reused_items"]  # 3 canvases from 2 items a class
    ds = LocalizationDataset(tmp_path / "out" / "eval")
    # The fake items' dark enclosed hole is part of the object (holes are filled), and pasted.
    for s in ds:
        np.testing.assert_array_equal(ndi.binary_fill_holes(s.mask), s.mask)
        assert np.asarray(Image.open(s.path))[s.mask].min() < 20


def test_cli(source, tmp_path, capsys):
    from hrcam.cli import main as cli

    out = tmp_path / "cli"
    args = [
        "data",
        "fashion-loc",
        "--out",
        str(out),
        "--source",
        str(source),
        "--canvas",
        "48",
        "--item-size",
        "28",
        "30",
        "--train-per-class",
        "1",
        "--test-per-class",
        "1",
        "--clutter",
        "2",
        "--workers",
        "1",
        "--no-progress",
    ]
    assert cli(args) == 0
    assert "10 train and 10 test canvases of 48x48" in capsys.readouterr().out
    assert json.loads((out / "meta.json").read_text())["item_size"] == [28, 30]
    assert cli(args) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err


def test_png_encoder_round_trips_through_pillow():
    rng = np.random.default_rng(0)
    for array in (
        rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
        rng.integers(1, 4, (9, 3), dtype=np.uint8),
    ):
        image = Image.open(io.BytesIO(_encode_png(array)))
        assert image.mode == ("RGB" if array.ndim == 3 else "L")
        np.testing.assert_array_equal(np.asarray(image), array)
    with pytest.raises(ValueError, match="uint8"):
        _encode_png(np.zeros((2, 2), np.float32))
