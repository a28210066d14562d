"""LocalizationDataset: trimap and box layouts, derived boxes, and the errors it promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrcam.data.annotations import LocalizationDataset, boxes_from_mask

from ..conftest import SHARED_DATA

PETS = SHARED_DATA / "pets-dev"


def _trimap(h: int, w: int, objects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Background 2; each (y0, y1, x0, x1) rectangle object 1 with a 1-pixel ignore rim 3."""
    t = np.full((h, w), 2, np.uint8)
    for y0, y1, x0, x1 in objects:
        t[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = 3
        t[y0:y1, x0:x1] = 1
    return t


def make_fake_pets(root: Path) -> Path:
    """Three images like the real set's odd ones: RGB JPEG, palette PNG, RGBA PNG (empty mask)."""
    (root / "images").mkdir(parents=True)
    (root / "trimaps").mkdir()
    Image.new("RGB", (30, 20), (200, 10, 10)).save(root / "images" / "cat_1.jpg")
    Image.new("P", (16, 12)).save(root / "images" / "cat_2.png")
    Image.new("RGBA", (10, 8), (0, 0, 0, 0)).save(root / "images" / "dog_1.png")
    Image.fromarray(_trimap(20, 30, [(2, 6, 3, 9), (10, 15, 20, 28)])).save(
        root / "trimaps" / "cat_1.png"
    )
    Image.fromarray(_trimap(12, 16, [(3, 9, 4, 12)])).save(root / "trimaps" / "cat_2.png")
    Image.fromarray(_trimap(8, 10, [])).save(root / "trimaps" / "dog_1.png")
    return root


def test_boxes_from_mask_hand_made():
    m = np.zeros((8, 10), bool)
    m[1:3, 2:5] = True  # rows 1-2, columns 2-4
    m[3, 5] = True  # touches the first block diagonally: same 8-connected component
    m[6, 0:2] = True
    assert boxes_from_mask(m).tolist() == [[2, 1, 5, 3], [0, 6, 1, 6]]
    assert boxes_from_mask(np.zeros((4, 4), bool)).shape == (0, 4)
    with pytest.raises(ValueError, match="2-D"):
        boxes_from_mask(np.zeros((2, 2, 2)))


def test_trimap_layout(tmp_path):
    ds = LocalizationDataset(make_fake_pets(tmp_path / "pets"))
    assert ds.names == ["cat_1", "cat_2", "dog_1"] and ds.has_masks and ds.has_boxes
    cat = ds[0]
    assert (cat.height, cat.width) == (20, 30) and cat.mask.shape == (20, 30)
    assert cat.mask.sum() == 4 * 6 + 5 * 8 and cat.mask.dtype == bool
    assert cat.ignore.sum() == (6 * 8 - 4 * 6) + (7 * 10 - 5 * 8)
    assert cat.boxes.tolist() == [[3, 2, 8, 5], [20, 10, 27, 14]]  # inclusive corners
    assert cat.label is None and cat.box_labels is None
    palette = ds[1]
    assert (palette.height, palette.width) == (12, 16) and palette.boxes.tolist() == [[4, 3, 11, 8]]
    empty = ds[2]  # a trimap with no object pixel is valid
    assert (empty.height, empty.width) == (8, 10)
    assert not empty.mask.any() and not empty.ignore.any() and empty.boxes.shape == (0, 4)


def test_missing_trimap_errors_or_skips(tmp_path):
    root = make_fake_pets(tmp_path / "pets")
    (root / "trimaps" / "cat_2.png").unlink()
    with pytest.raises(ValueError, match=r"1 of 3 images have no trimap.*cat_2"):
        LocalizationDataset(root)
    ds = LocalizationDataset(root, missing="skip")
    assert ds.names == ["cat_1", "dog_1"] and ds.skipped == ["cat_2"]


def test_bad_trimaps_name_the_file(tmp_path):
    root = make_fake_pets(tmp_path / "pets")
    Image.fromarray(_trimap(12, 15, [])).save(root / "trimaps" / "cat_2.png")
    Image.fromarray(np.full((8, 10), 7, np.uint8)).save(root / "trimaps" / "dog_1.png")
    ds = LocalizationDataset(root)
    with pytest.raises(
        ValueError, match=r"cat_2.png: trimap is 15×12 but its image cat_2.png is 16×12"
    ):
        ds[1]
    with pytest.raises(ValueError, match=r"dog_1.png: trimap values \[7\]"):
        ds[2]


def test_boxes_csv_layout_with_labels(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for name in ("a.jpg", "b.png"):
        Image.new("RGB", (40, 30)).save(root / name)
    (root / "boxes.csv").write_text(
        "file,x1,y1,x2,y2,label\na.jpg,1,2,10,20,3\na.jpg,5,5,6,6,3\nb.png,0.5,1,9.5,4,1\n"
    )
    (root / "labels.csv").write_text("file,label,name\nb.png,1,trouser\n")
    ds = LocalizationDataset(root)
    assert not ds.has_masks and len(ds) == 2
    a, b = ds
    assert a.boxes.dtype == np.int64 and a.boxes.tolist() == [[1, 2, 10, 20], [5, 5, 6, 6]]
    assert a.box_labels.tolist() == [3, 3] and a.label == 3 and a.mask is None
    assert b.boxes.dtype == np.float64 and b.boxes.tolist() == [[0.5, 1, 9.5, 4]]
    assert (b.label, b.label_name, b.height, b.width) == (1, "trouser", 30, 40)
    # A CSV elsewhere, and rows for files that do not exist.
    other = tmp_path / "boxes2.csv"
    other.write_text("file,x1,y1,x2,y2\nc.jpg,0,0,1,1\n")
    with pytest.raises(ValueError, match=r"box rows for 1 files not in .*: c"):
        LocalizationDataset(root, boxes_csv=other)
    other.write_text("file,x1,y1,x2,y2\na.jpg,9,0,1,1\n")
    with pytest.raises(ValueError, match="x2 < x1"):
        LocalizationDataset(root, boxes_csv=other)
    other.write_text("file,x1,y1,x2,y2\na.jpg,0,0,4,4\n")
    with pytest.raises(ValueError, match=r"1 of 2 images have no box row in .*: b;"):
        LocalizationDataset(root, boxes_csv=other)
    assert LocalizationDataset(root, boxes_csv=other, missing="skip").names == ["a"]


def test_trimaps_and_boxes_together_take_the_csv_boxes(tmp_path):
    root = make_fake_pets(tmp_path / "pets")
    (root / "boxes.csv").write_text("file,x1,y1,x2,y2,label\ncat_1.jpg,0,0,29,19,5\n")
    ds = LocalizationDataset(root)
    assert ds[0].boxes.tolist() == [[0, 0, 29, 19]] and ds[0].label == 5
    assert ds[1].boxes.tolist() == [[4, 3, 11, 8]]  # no CSV row: derived from the mask


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        LocalizationDataset(tmp_path / "none")
    (tmp_path / "bare").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "bare" / "x.png")
    with pytest.raises(ValueError, match="no ground truth"):
        LocalizationDataset(tmp_path / "bare")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "trimaps").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        LocalizationDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="CSV"):
        LocalizationDataset(tmp_path / "bare", boxes_csv=tmp_path / "nope.csv")


@pytest.mark.skipif(not PETS.is_dir(), reason="shared pets-dev data not present")
def test_real_pets_dev():
    ds = LocalizationDataset(PETS)
    assert len(ds) == 570
    index = {name: i for i, name in enumerate(ds.names)}
    palette = ds[index["Abyssinian_34"]]  # palette-mode JPEG whose trimap has no animal pixel
    assert (palette.width, palette.height) == (250, 202)
    assert (
        palette.mask.shape == (202, 250)
        and not palette.mask.any()
        and palette.boxes.shape == (0, 4)
    )
    rgba = ds[index["Abyssinian_5"]]
    assert (
        (rgba.width, rgba.height) == (200, 150)
        and rgba.mask.shape == (150, 200)
        and rgba.mask.any()
    )
    for i in (0, 200, 569):
        s = ds[i]
        with Image.open(s.path) as image:
            assert image.size == (s.width, s.height) == s.mask.shape[::-1]
        assert (
            len(s.boxes) >= 1
            and (s.boxes[:, 2] < s.width).all()
            and (s.boxes[:, 3] < s.height).all()
        )
        assert not (s.mask & s.ignore).any()
