"""The ImageNet animal subset builder, on a fake ILSVRC-2012 tree made in the test."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrcam.cli import main as cli
from hrcam.datasets.imagenet_animals import (
    build_imagenet_animals,
    find_imagenet_layout,
    load_animal_classes,
    parse_class_spec,
    read_val_labels,
)

ANIMALS = [c.wnid for c in load_animal_classes()]
# 602 made-up non-animal wnids that sort after the last animal one, so indices stay 0-397 animal.
OTHERS = [f"n03{i:06d}" for i in range(602)]
TRAIN_COUNTS = {0: 6, 1: 5, 2: 4, 3: 7}  # images per class in the fake train/
VAL_COUNTS = {0: 2, 1: 3, 2: 1, 3: 2}


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def make_fake_imagenet(root: Path, *, flat_val: bool = True) -> Path:
    """train/ with all 1000 wnid folders (images in classes 0-3 and one non-animal), and val/."""
    data = _jpeg()
    for wnid in ANIMALS + OTHERS:
        (root / "train" / wnid).mkdir(parents=True)
    for index, n in TRAIN_COUNTS.items():
        for i in range(n):
            (root / "train" / ANIMALS[index] / f"{ANIMALS[index]}_{i}.JPEG").write_bytes(data)
    (root / "train" / OTHERS[0] / f"{OTHERS[0]}_0.JPEG").write_bytes(data)
    (root / "val").mkdir()
    rows, number = [], 0
    for index, n in VAL_COUNTS.items():
        for _ in range(n):
            number += 1
            rows.append((f"ILSVRC2012_val_{number:08d}", ANIMALS[index]))
    rows.append((f"ILSVRC2012_val_{number + 1:08d}", OTHERS[5]))  # a non-animal image
    for name, wnid in rows:
        folder = root / "val" if flat_val else root / "val" / wnid
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.JPEG").write_bytes(data)
    if flat_val:
        (root / "val" / f"ILSVRC2012_val_{number + 2:08d}.JPEG").write_bytes(data)  # no label
        with open(root / "LOC_val_solution.csv", "w") as f:
            f.write("ImageId,PredictionString\n")
            for name, wnid in rows:
                f.write(f"{name},{wnid} 1 2 3 4 {wnid} 0 0 2 2 \n")
    return root


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    return make_fake_imagenet(tmp_path_factory.mktemp("imagenet"))


def _tree(split_dir: Path) -> dict[str, list[str]]:
    return {d.name: sorted(f.name for f in d.iterdir()) for d in sorted(split_dir.iterdir())}


def test_shipped_class_list_is_imagenet_indices_0_to_397():
    classes = load_animal_classes()
    assert len(classes) == 398
    assert (classes[0].wnid, classes[0].short_name) == ("n01440764", "tench")
    assert (classes[397].wnid, classes[397].short_name) == ("n02655020", "puffer")
    assert classes[0].folder_name() == "n01440764_tench"
    assert classes[0].folder_name("wnid") == "n01440764"
    # Readable folder names must sort exactly like the indices (folder-based trainers' labels).
    folders = [c.folder_name() for c in classes]
    assert folders == sorted(folders) and len(set(folders)) == 398


def test_parse_class_spec():
    assert parse_class_spec("0-2, 5,2") == [0, 1, 2, 5]
    assert parse_class_spec([3, 1]) == [1, 3]
    assert parse_class_spec(None) == list(range(398))
    for bad in ("398", "3-1", "a", ""):
        with pytest.raises(ValueError):
            parse_class_spec(bad)


def test_official_val_split_from_flat_folder(imagenet, tmp_path):
    out = tmp_path / "animals"
    summary = build_imagenet_animals(imagenet, out, classes="0-3", progress=False)
    folders = [load_animal_classes()[i].folder_name() for i in range(4)]
    assert sorted(os.listdir(out / "train")) == folders == sorted(os.listdir(out / "test"))
    for index, folder in enumerate(folders):
        train = _tree(out / "train")[folder]
        assert len(train) == TRAIN_COUNTS[index]
        assert len(_tree(out / "test")[folder]) == VAL_COUNTS[index]
        link = out / "train" / folder / train[0]
        assert link.is_symlink() and os.readlink(link) == str(
            imagenet / "train" / ANIMALS[index] / train[0]
        )
    assert summary["train_images"] == sum(TRAIN_COUNTS.values())
    assert summary["test_images"] == sum(VAL_COUNTS.values())
    assert summary["missing"] == [] and summary["index_check"].startswith("ok")
    assert summary["val_notes"] == {
        "val_files": 10,
        "val_without_label": 1,
        "labelled_but_absent": 0,
    }
    with open(out / "counts.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["index"]), int(r["train"]), int(r["test"])) for r in rows] == [
        (i, TRAIN_COUNTS[i], VAL_COUNTS[i]) for i in range(4)
    ]
    total = summary["train_images"] + summary["test_images"]
    assert json.loads((out / "summary.json").read_text())["links"]["new"] == total

    strict = build_imagenet_animals(
        imagenet, out, classes="0-3", few_fraction=0.8, dry_run=True, progress=False
    )
    assert strict["few"] == [folders[2]]  # 4 train < 0.8 x 5.5 and 1 test < 0.8 x 2

    # Idempotent: a re-run keeps every link, and repairs one that points elsewhere.
    again = build_imagenet_animals(imagenet, out, classes="0-3", progress=False)
    assert again["links"] == {"new": 0, "kept": total, "replace": 0}
    link = out / "train" / folders[0] / f"{ANIMALS[0]}_0.JPEG"
    link.unlink()
    link.symlink_to(imagenet / "train" / ANIMALS[1] / f"{ANIMALS[1]}_0.JPEG")
    repaired = build_imagenet_animals(imagenet, out, classes="0-3", progress=False)
    assert repaired["links"]["replace"] == 1
    assert os.readlink(link) == str(imagenet / "train" / ANIMALS[0] / f"{ANIMALS[0]}_0.JPEG")


def test_test_fraction_split_is_disjoint_seeded_and_per_class(imagenet, tmp_path):
    a = tmp_path / "a"
    build_imagenet_animals(imagenet, a, classes="0-3", test_fraction=0.5, seed=3, progress=False)
    for index, folder in enumerate(sorted(os.listdir(a / "train"))):
        train, test = set(_tree(a / "train")[folder]), set(_tree(a / "test")[folder])
        assert not train & test
        assert train | test == set(os.listdir(imagenet / "train" / ANIMALS[index]))
        assert len(test) == int(np.floor(0.5 * TRAIN_COUNTS[index] + 0.5))
    # A class's split depends on (seed, class index) only, not on the other classes selected.
    b = tmp_path / "b"
    build_imagenet_animals(imagenet, b, classes="2", test_fraction=0.5, seed=3, progress=False)
    folder = load_animal_classes()[2].folder_name()
    assert _tree(b / "test")[folder] == _tree(a / "test")[folder]


def test_reseeding_reports_stale_links_and_prune_removes_them(imagenet, tmp_path):
    out = tmp_path / "animals"
    build_imagenet_animals(imagenet, out, classes="3", test_fraction=0.3, seed=0, progress=False)
    with pytest.warns(UserWarning, match="--prune"):
        stale = build_imagenet_animals(
            imagenet, out, classes="3", test_fraction=0.3, seed=1, progress=False
        )
    assert stale["stale"] > 0
    pruned = build_imagenet_animals(
        imagenet, out, classes="3", test_fraction=0.3, seed=1, prune=True, progress=False
    )
    assert pruned["pruned"] == stale["stale"]
    folder = load_animal_classes()[3].folder_name()
    train, test = _tree(out / "train")[folder], _tree(out / "test")[folder]
    assert not set(train) & set(test) and len(train) + len(test) == TRAIN_COUNTS[3]


@pytest.mark.parametrize("link", ["hardlink", "copy"])
def test_hardlink_and_copy_modes(imagenet, tmp_path, link):
    out = tmp_path / link
    build_imagenet_animals(imagenet, out, classes="1", link=link, progress=False)
    folder = load_animal_classes()[1].folder_name()
    made = out / "train" / folder / f"{ANIMALS[1]}_0.JPEG"
    source = imagenet / "train" / ANIMALS[1] / made.name
    assert not made.is_symlink() and made.read_bytes() == source.read_bytes()
    assert os.path.samefile(made, source) == (link == "hardlink")
    again = build_imagenet_animals(imagenet, out, classes="1", link=link, progress=False)
    assert again["links"]["kept"] == TRAIN_COUNTS[1] + VAL_COUNTS[1]


def test_missing_class_keeps_its_folder_and_fails_the_cli(imagenet, tmp_path, capsys):
    out = tmp_path / "animals"
    code = cli(["data", "imagenet-animals", "--imagenet-root", str(imagenet), "--out", str(out),
                "--classes", "2-4", "--no-progress"])  # fmt: skip
    assert code == 1
    assert "1 classes with no train or no test image" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing"] == [load_animal_classes()[4].folder_name()]
    # The empty folder keeps the sorted folder order equal to the index order.
    assert sorted(os.listdir(out / "train")) == [
        load_animal_classes()[i].folder_name() for i in (2, 3, 4)
    ]
    assert "missing" in (out / "counts.csv").read_text().splitlines()[-1]


def test_cli_success_and_dry_run(imagenet, tmp_path, capsys):
    out = tmp_path / "animals"
    args = [
        "data",
        "imagenet-animals",
        "--imagenet-root",
        str(imagenet),
        "--out",
        str(out),
        "--classes",
        "0-3",
    ]
    assert cli([*args, "--dry-run", "--no-progress"]) == 0
    assert not out.exists() and "dry run" in capsys.readouterr().out
    assert cli([*args, "--no-progress", "--folder-names", "wnid"]) == 0
    assert sorted(os.listdir(out / "train")) == ANIMALS[:4]
    assert (
        cli(
            [
                "data",
                "imagenet-animals",
                "--imagenet-root",
                str(tmp_path / "none"),
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_val_class_folders_and_no_val(tmp_path):
    root = make_fake_imagenet(tmp_path / "imagenet", flat_val=False)
    layout = find_imagenet_layout(root)
    assert layout.val_dir == root / "val" and not layout.val_flat
    summary = build_imagenet_animals(root, tmp_path / "out", classes="0-3", progress=False)
    assert summary["test_images"] == sum(VAL_COUNTS.values())
    for name in ("val",):
        for p in sorted((root / name).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (root / name).rmdir()
    with pytest.raises(FileNotFoundError, match="--test-fraction"):
        build_imagenet_animals(root, tmp_path / "out2", classes="0", progress=False)


def test_flat_val_without_labels_is_a_clear_error(tmp_path):
    root = make_fake_imagenet(tmp_path / "imagenet")
    (root / "LOC_val_solution.csv").unlink()
    with pytest.raises(FileNotFoundError, match="--val-labels"):
        build_imagenet_animals(root, tmp_path / "out", classes="0", progress=False)


def test_non_imagenet_order_is_refused(tmp_path):
    root = tmp_path / "imagenet"
    for wnid in ["n00000001", *ANIMALS[1:], *OTHERS]:
        (root / "train" / wnid).mkdir(parents=True)
    with pytest.raises(ValueError, match="index 0"):
        build_imagenet_animals(
            root, tmp_path / "out", classes="0", test_fraction=0.5, progress=False
        )


def test_read_val_labels_formats(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("file,wnid\nILSVRC2012_val_00000001.JPEG,n01440764\n")
    assert read_val_labels(plain) == {"ILSVRC2012_val_00000001": "n01440764"}
    by_index = tmp_path / "labels.csv"
    by_index.write_text("file,label,name\na.JPEG,1,goldfish\nb.JPEG,500,cliff\n")
    assert read_val_labels(by_index) == {"a": ANIMALS[1]}  # index 500 is not an animal: skipped
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.JPEG,1000\n")
    with pytest.raises(ValueError, match="0-999"):
        read_val_labels(bad)
    conflict = tmp_path / "conflict.csv"
    conflict.write_text("file,wnid\na.JPEG,n01440764\na.JPEG,n01443537\n")
    with pytest.raises(ValueError, match="labelled both"):
        read_val_labels(conflict)


def test_devkit_ground_truth_needs_meta_mat(tmp_path):
    from scipy.io import savemat

    gt = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("2\n1\n")
    with pytest.raises(FileNotFoundError, match="meta.mat"):
        read_val_labels(gt)
    # The devkit's ids are its own order: here id 1 is goldfish, id 2 tench.
    synsets = np.zeros((2, 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    synsets[0, 0] = (1, "n01443537")
    synsets[1, 0] = (2, "n01440764")
    savemat(tmp_path / "meta.mat", {"synsets": synsets})
    assert read_val_labels(gt) == {
        "ILSVRC2012_val_00000001": "n01440764",
        "ILSVRC2012_val_00000002": "n01443537",
    }
