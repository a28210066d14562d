"""Build the paper's ImageNet subset: the 398 animal classes (ImageNet-1k indices 0–397).

The paper trained and evaluated on "the 398 animal classes of ImageNet". This module turns an
ILSVRC-2012 tree into the ``train/<class>/`` + ``test/<class>/`` layout the trainers read,
with links (not copies) to the original files, and checks the image count of every class.

Sources it reads (``imagenet_root``):

- ``train/<wnid>/*.JPEG`` (or the Kaggle tree ``ILSVRC/Data/CLS-LOC/train/<wnid>/``);
- for the official validation split, either ``val/<wnid>/*.JPEG`` (class folders) or the flat
  ``val/ILSVRC2012_val_XXXXXXXX.JPEG`` folder plus a labels file: Kaggle's
  ``LOC_val_solution.csv``, a ``file,wnid`` or ``file,label`` CSV (label = ImageNet-1k index),
  or the devkit's ``ILSVRC2012_validation_ground_truth.txt`` with the devkit's ``meta.mat``
  beside it (its ids follow the devkit's own order, not the sorted-wnid order).

Class folders are named ``<wnid>_<short name>`` (``n01440764_tench``): readable, and their
sorted order is the ImageNet index order, which is what folder-based trainers use as labels.
The 398 wnids and names ship as ``hrcam/resources/imagenet_animal_wnids.txt`` (line = index).
"""

from __future__ import annotations

import csv
import errno
import math
import os
import re
import shutil
import statistics
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..utils import atomic_save_json, atomic_write

__all__ = [
    "NUM_ANIMAL_CLASSES",
    "ImageNetClass",
    "ImageNetLayout",
    "build_imagenet_animals",
    "find_imagenet_layout",
    "load_animal_classes",
    "parse_class_spec",
    "read_val_labels",
]

NUM_ANIMAL_CLASSES = 398
LINK_MODES = ("symlink", "hardlink", "copy")
FOLDER_STYLES = ("wnid_name", "wnid")

# Files taken from class folders: ImageNet's own are .JPEG; other extensions allow re-encoded copies.
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_WNID = re.compile(r"^n\d{8}$")
_VAL_NAME = "ILSVRC2012_val_{:08d}"


@dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class: its index (sorted-wnid order), WordNet id and names."""

    index: int
    wnid: str
    name: str  # all synonyms, comma separated, as in the ILSVRC class list

    @property
    def short_name(self) -> str:
        """The first synonym (``"tench"`` for ``"tench, Tinca tinca"``)."""
        return self.name.split(",")[0].strip()

    def folder_name(self, style: str = "wnid_name") -> str:
        """``n01440764_tench`` (``style="wnid_name"``) or ``n01440764`` (``style="wnid"``)."""
        if style == "wnid":
            return self.wnid
        slug = re.sub(r"[^a-z0-9]+", "_", self.short_name.lower()).strip("_")
        return f"{self.wnid}_{slug}"


@dataclass(frozen=True)
class ImageNetLayout:
    """Where an ILSVRC-2012 tree keeps its splits (see :func:`find_imagenet_layout`)."""

    train_dir: Path
    val_dir: Path | None
    val_flat: bool  # True: val/ILSVRC2012_val_*.JPEG with a labels file; False: val/<wnid>/
    val_labels: Path | None  # the labels file found for a flat val folder


def load_animal_classes() -> list[ImageNetClass]:
    """The 398 animal classes, index 0 (``n01440764`` tench) to 397 (``n02655020`` puffer)."""
    text = resources.files("hrcam").joinpath("resources/imagenet_animal_wnids.txt").read_text()
    classes = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        wnid, name = line.split(" ", 1)
        classes.append(ImageNetClass(len(classes), wnid, name.strip()))
    # The resource is a shipped fact; a broken edit must fail here, not shift every label.
    wnids = [c.wnid for c in classes]
    if len(classes) != NUM_ANIMAL_CLASSES or wnids != sorted(wnids):
        raise RuntimeError("hrcam/resources/imagenet_animal_wnids.txt is damaged: reinstall hrcam")
    return classes


def parse_class_spec(
    spec: str | Iterable[int] | None, *, num_classes: int = NUM_ANIMAL_CLASSES
) -> list[int]:
    """Parse ``"0-397"``, ``"0-9,15,20-29"`` (inclusive ranges) or a list of ints into sorted indices.

    Raises:
        ValueError: a malformed item, or an index outside ``0..num_classes-1``.
    """
    if spec is None:
        return list(range(num_classes))
    if isinstance(spec, str):
        indices: set[int] = set()
        for item in filter(None, (s.strip() for s in spec.split(","))):
            m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
            if not m:
                raise ValueError(
                    f"--classes: cannot read {item!r}; write indices and ranges like '0-9,15'"
                )
            lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
            if hi < lo:
                raise ValueError(f"--classes: range {item!r} runs backwards")
            indices.update(range(lo, hi + 1))
    else:
        indices = {int(i) for i in spec}
    bad = sorted(i for i in indices if not 0 <= i < num_classes)
    if bad:
        raise ValueError(
            f"class indices {bad[:5]} are outside 0-{num_classes - 1}: only the animal classes "
            f"(ImageNet-1k indices 0-{num_classes - 1}) are known to this builder"
        )
    if not indices:
        raise ValueError("no class selected")
    return sorted(indices)


def find_imagenet_layout(
    root: str | os.PathLike, *, val_labels: str | os.PathLike | None = None
) -> ImageNetLayout:
    """Locate ``train/`` and ``val/`` in an ILSVRC-2012 tree, plain or as Kaggle ships it.

    A flat validation folder needs a labels file: ``val_labels`` if given, else the first of
    ``LOC_val_solution.csv`` (in the root or beside ``val/``) and the devkit's
    ``ILSVRC2012_validation_ground_truth.txt`` (in the root or ``ILSVRC2012_devkit_t12/data/``).

    Raises:
        FileNotFoundError: no root, or no ``train/`` folder under it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: ImageNet root folder not found")
    bases = [root, root / "ILSVRC" / "Data" / "CLS-LOC", root / "Data" / "CLS-LOC"]
    base = next((b for b in bases if (b / "train").is_dir()), None)
    if base is None:
        raise FileNotFoundError(
            f"{root}: no train/ folder (looked in {', '.join(str(b / 'train') for b in bases)}); "
            "pass the folder that holds train/<wnid>/ and val/"
        )
    val_dir = base / "val" if (base / "val").is_dir() else None
    val_flat = False
    found_labels = Path(val_labels) if val_labels is not None else None
    if val_dir is not None:
        with os.scandir(val_dir) as it:
            val_flat = not any(e.is_dir() and _WNID.match(e.name) for e in it)
        if val_flat and found_labels is None:
            candidates = [
                root / "LOC_val_solution.csv",
                val_dir.parent / "LOC_val_solution.csv",
                val_dir / "LOC_val_solution.csv",
                root / "ILSVRC2012_validation_ground_truth.txt",
                root / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt",
            ]
            found_labels = next((p for p in candidates if p.is_file()), None)
    return ImageNetLayout(base / "train", val_dir, val_flat, found_labels)


def read_val_labels(
    path: str | os.PathLike, *, meta: str | os.PathLike | None = None
) -> dict[str, str]:
    """Read the ILSVRC-2012 validation labels into ``{image stem: wnid}``.

    Accepted formats:

    - Kaggle ``LOC_val_solution.csv``: ``ImageId,PredictionString`` where the string is
      ``"wnid x1 y1 x2 y2 wnid …"`` (the first wnid is the label);
    - a CSV with a header naming a file column (``file``, ``filename``, ``image``, ``ImageId``)
      and either ``wnid`` or ``label`` (ImageNet-1k index, 0-based, sorted-wnid order; only
      0–397 can be turned into wnids, other rows are non-animal and skipped);
    - the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID a line for
      images 1, 2, …); its ids are the devkit's order, so the devkit's ``meta.mat`` is needed
      (``meta=``, or ``meta.mat`` beside the file).

    Raises:
        FileNotFoundError: the file (or the devkit's ``meta.mat``) is missing.
        ValueError: an unknown format, a bad row, or an image given two different labels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: validation labels file not found")
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline().strip()
    if path.suffix.lower() == ".txt" or first.isdigit():
        return _read_devkit_ground_truth(path, meta)
    animal_wnids = [c.wnid for c in load_animal_classes()]
    labels: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        file_col = next(
            (
                fields[k]
                for k in ("file", "filename", "image", "imageid", "image_id")
                if k in fields
            ),
            None,
        )
        if file_col is None:
            raise ValueError(
                f"{path}: header {reader.fieldnames} has no file column; expected Kaggle's "
                "'ImageId,PredictionString' or 'file,wnid' / 'file,label'"
            )
        for row_no, row in enumerate(reader, start=2):
            stem = Path(row[file_col].strip()).stem
            if "predictionstring" in fields:
                tokens = (row[fields["predictionstring"]] or "").split()
                wnid = tokens[0] if tokens else ""
            elif "wnid" in fields:
                wnid = row[fields["wnid"]].strip()
            elif "label" in fields:
                try:
                    index = int(row[fields["label"]])
                except ValueError:
                    raise ValueError(
                        f"{path}:{row_no}: label {row[fields['label']]!r} is not an integer"
                    ) from None
                if not 0 <= index < 1000:
                    raise ValueError(
                        f"{path}:{row_no}: label {index} is outside 0-999 (0-based ImageNet-1k index)"
                    )
                if index >= NUM_ANIMAL_CLASSES:
                    continue  # a non-animal image: its wnid is not needed here
                wnid = animal_wnids[index]
            else:
                raise ValueError(
                    f"{path}: header {reader.fieldnames} has neither 'wnid' nor 'label'"
                )
            if not _WNID.match(wnid):
                raise ValueError(f"{path}:{row_no}: {wnid!r} is not a WordNet id like n01440764")
            _add_label(labels, stem, wnid, path)
    return labels


def _read_devkit_ground_truth(path: Path, meta: str | os.PathLike | None) -> dict[str, str]:
    """Map the devkit's ILSVRC2012_IDs to wnids with its ``meta.mat``."""
    meta_path = Path(meta) if meta is not None else path.with_name("meta.mat")
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{path} lists the devkit's ILSVRC2012_IDs, whose order is not the sorted-wnid order; "
            f"the devkit's meta.mat is needed to map them ({meta_path} not found). Put meta.mat "
            "beside it, or use Kaggle's LOC_val_solution.csv or a 'file,wnid' CSV instead"
        )
    from scipy.io import loadmat

    synsets = loadmat(meta_path, squeeze_me=True)["synsets"]
    id_to_wnid = {
        int(i): str(w) for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"], strict=True)
    }
    labels: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            ilsvrc_id = int(line)
            if ilsvrc_id not in id_to_wnid:
                raise ValueError(
                    f"{path}:{line_no}: ILSVRC2012_ID {ilsvrc_id} is not in {meta_path}"
                )
            _add_label(labels, _VAL_NAME.format(line_no), id_to_wnid[ilsvrc_id], path)
    return labels


def _add_label(labels: dict[str, str], stem: str, wnid: str, path: Path) -> None:
    if labels.setdefault(stem, wnid) != wnid:
        raise ValueError(f"{path}: {stem} is labelled both {labels[stem]} and {wnid}")


def _list_images(folder: Path) -> list[Path]:
    """Sorted image files of one class folder (hidden files and other suffixes skipped)."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as it:
        names = [
            e.name
            for e in it
            if not e.name.startswith(".")
            and Path(e.name).suffix.lower() in _IMAGE_SUFFIXES
            and e.is_file()
        ]
    return [folder / n for n in sorted(names)]


def _split_indices(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of the test images among ``n``: ``round(fraction·n)``, at least 1 per side when n ≥ 2."""
    k = int(math.floor(fraction * n + 0.5))
    if n >= 2:
        k = min(max(k, 1), n - 1)
    return np.sort(rng.permutation(n)[:k])


def _link_state(src: Path, dst: Path, mode: str) -> str:
    """``"new"``, ``"kept"`` (dst already is the right link/copy) or ``"replace"``."""
    if not os.path.lexists(dst):
        return "new"
    if mode == "symlink":
        return "kept" if dst.is_symlink() and os.readlink(dst) == str(src) else "replace"
    if dst.is_symlink():
        return "replace"
    if mode == "hardlink":
        return "kept" if os.path.samefile(src, dst) else "replace"
    s, d = src.stat(), dst.stat()
    return "kept" if (s.st_size, int(s.st_mtime)) == (d.st_size, int(d.st_mtime)) else "replace"


def _make_link(src: Path, dst: Path, mode: str) -> None:
    """Create ``dst`` as a link to (or copy of) ``src``, replacing any old entry atomically."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        if mode == "symlink":
            os.symlink(src, tmp)
        elif mode == "hardlink":
            os.link(src, tmp)
        else:
            shutil.copy2(src, tmp)
    except OSError as err:
        if mode == "hardlink" and err.errno == errno.EXDEV:
            raise OSError(
                f"cannot hard-link {src} into {dst.parent}: different file systems; "
                "use --link symlink or --link copy"
            ) from None
        raise
    os.replace(tmp, dst)


def build_imagenet_animals(
    imagenet_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    classes: str | Sequence[int] | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    link: str = "symlink",
    val_labels: str | os.PathLike | None = None,
    devkit_meta: str | os.PathLike | None = None,
    folder_style: str = "wnid_name",
    few_fraction: float = 0.5,
    prune: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> dict:
    """Build ``out/train/<class>/`` and ``out/test/<class>/`` for the ImageNet animal classes.

    Test images are the official validation images (``test_fraction=None``) or a random
    ``test_fraction`` of each class's training images (seeded per class by ``(seed, index)``,
    so a class's split does not depend on which other classes are selected).

    Every selected class gets its folder even when it has no image, so the sorted folder
    order — the label order of folder-based trainers — stays the ImageNet index order.
    Re-running keeps links that are already right; entries of an earlier run that the new
    plan does not contain are reported as ``stale`` (a train/test overlap risk) and removed
    only with ``prune=True``.

    Args:
        imagenet_root: the ILSVRC-2012 tree (see :func:`find_imagenet_layout`).
        out: output folder; ``counts.csv`` and ``summary.json`` are written there too.
        classes: indices to take, ``"0-397"`` style or a sequence (default all 398).
        test_fraction: in (0, 1) to split the training images instead of using validation.
        link: ``"symlink"`` (absolute targets), ``"hardlink"`` or ``"copy"``.
        val_labels, devkit_meta: labels of a flat validation folder (see :func:`read_val_labels`).
        folder_style: ``"wnid_name"`` (``n01440764_tench``) or ``"wnid"``.
        few_fraction: a class with fewer than this fraction of the median count is flagged "few".
        dry_run: plan and count only; write nothing.

    Returns:
        The summary (also ``summary.json``): parameters, per-split totals, ``missing``
        (classes with no train or no test image), ``few``, link actions, ``stale``, seconds.

    Example::

        summary = build_imagenet_animals("/data/imagenet", "/data/animals398", test_fraction=None)
        assert not summary["missing"]
    """
    t0 = time.perf_counter()
    if link not in LINK_MODES:
        raise ValueError(f"link must be one of {LINK_MODES}, got {link!r}")
    if folder_style not in FOLDER_STYLES:
        raise ValueError(f"folder_style must be one of {FOLDER_STYLES}, got {folder_style!r}")
    if test_fraction is not None and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    all_classes = load_animal_classes()
    selected = [all_classes[i] for i in parse_class_spec(classes)]
    layout = find_imagenet_layout(imagenet_root, val_labels=val_labels)
    index_check = _check_index_order(layout.train_dir, all_classes)
    val_by_wnid: dict[str, list[Path]] = {}
    val_notes: dict[str, int] = {}
    if test_fraction is None:
        val_by_wnid, val_notes = _collect_val(layout, {c.wnid for c in selected}, devkit_meta)
    out = Path(out).absolute()
    plan, rows = _plan_links(
        selected, layout, out, val_by_wnid, test_fraction, seed, folder_style, progress
    )
    missing, few = _check_counts(rows, few_fraction)
    actions = {"new": 0, "kept": 0, "replace": 0}
    stale: list[Path] = []
    if not dry_run:
        actions, stale = _make_links(out, plan, rows, link, prune, progress)
    if stale and not prune:
        _warn_stale(out, stale)
    summary = {
        "imagenet_root": str(Path(imagenet_root).absolute()),
        "out": str(out),
        **_layout_record(layout, test_fraction),
        "test_fraction": test_fraction,
        "seed": seed,
        "link": link,
        "folder_style": folder_style,
        **_count_record(rows, missing, few),
        "index_check": index_check,
        "val_notes": val_notes,
        "links": actions,
        "stale": len(stale),
        "pruned": len(stale) if prune else 0,
        "dry_run": dry_run,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if not dry_run:
        _write_counts(out / "counts.csv", rows, missing, few)
        atomic_save_json(summary, out / "summary.json")
    return summary


def _warn_stale(out: Path, stale: list[Path]) -> None:
    warnings.warn(
        f"{out}: {len(stale)} entries from an earlier run are not in this plan (train/test may "
        "overlap, or extra classes appear); re-run with --prune to remove them",
        stacklevel=3,
    )


def _layout_record(layout, test_fraction) -> dict:
    return {
        "train_dir": str(layout.train_dir),
        "test_source": "train split" if test_fraction is not None else "official validation",
        "val_dir": str(layout.val_dir) if layout.val_dir else None,
        "val_labels": str(layout.val_labels)
        if layout.val_labels and test_fraction is None
        else None,
    }


def _count_record(rows, missing, few) -> dict:
    return {
        "num_classes": len(rows),
        "class_indices": _compact_ranges([r["index"] for r in rows]),
        "train_images": sum(r["train"] for r in rows),
        "test_images": sum(r["test"] for r in rows),
        "missing": [r["folder"] for r in rows if r["folder"] in missing],
        "few": [r["folder"] for r in rows if r["folder"] in few],
    }


def _plan_links(
    selected, layout, out: Path, val_by_wnid, test_fraction, seed, folder_style, progress
):
    """``{"train": [(source, link)], "test": [...]}`` and one count row per class."""
    plan: dict[str, list[tuple[Path, Path]]] = {"train": [], "test": []}
    rows = []
    for c in tqdm(selected, desc="scan classes", unit="class", disable=not progress):
        folder = c.folder_name(folder_style)
        train = _list_images(layout.train_dir / c.wnid)
        if test_fraction is None:
            test = val_by_wnid.get(c.wnid, [])
        else:
            chosen = set(
                _split_indices(
                    len(train), test_fraction, np.random.default_rng([seed, c.index])
                ).tolist()
            )
            test = [p for i, p in enumerate(train) if i in chosen]
            train = [p for i, p in enumerate(train) if i not in chosen]
        for split, files in (("train", train), ("test", test)):
            plan[split] += [(p.absolute(), out / split / folder / p.name) for p in files]
        rows.append(
            {
                "index": c.index,
                "wnid": c.wnid,
                "name": c.short_name,
                "folder": folder,
                "train": len(train),
                "test": len(test),
            }
        )
    return plan, rows


def _make_links(out: Path, plan, rows, link: str, prune: bool, progress: bool):
    """Create every class folder and link; the actions taken and the stale entries found."""
    actions = {"new": 0, "kept": 0, "replace": 0}
    for split in ("train", "test"):
        for r in rows:
            (out / split / r["folder"]).mkdir(parents=True, exist_ok=True)
    pairs = plan["train"] + plan["test"]
    for src, dst in tqdm(pairs, desc=f"{link} files", unit="file", disable=not progress):
        state = _link_state(src, dst, link)
        actions[state] += 1
        if state != "kept":
            _make_link(src, dst, link)
    stale = _find_stale(out, {dst for _, dst in pairs}, {r["folder"] for r in rows})
    if prune:
        _prune(out, stale)
    return actions, stale


def _check_index_order(train_dir: Path, classes: list[ImageNetClass]) -> str:
    """Compare the shipped wnids with a full 1000-class train folder's sorted order."""
    with os.scandir(train_dir) as it:
        wnids = sorted(e.name for e in it if e.is_dir() and _WNID.match(e.name))
    if len(wnids) != 1000:
        return (
            f"skipped: {len(wnids)} wnid folders (1000 needed to derive indices); shipped list used"
        )
    if wnids[: len(classes)] != [c.wnid for c in classes]:
        bad = next(i for i, (a, c) in enumerate(zip(wnids, classes, strict=False)) if a != c.wnid)
        raise ValueError(
            f"{train_dir}: its sorted wnid folders differ from ImageNet-1k at index {bad} "
            f"({wnids[bad]} instead of {classes[bad].wnid}); is this the ILSVRC-2012 (1k) tree?"
        )
    return "ok: the root's 1000 sorted wnid folders match indices 0-397"


def _collect_val(
    layout: ImageNetLayout, wanted: set[str], devkit_meta: str | os.PathLike | None
) -> tuple[dict[str, list[Path]], dict[str, int]]:
    """Validation images of the wanted wnids, and counts of unlabelled / absent files."""
    if layout.val_dir is None:
        raise FileNotFoundError(
            f"no val/ folder beside {layout.train_dir}: use --test-fraction F to split the training images"
        )
    if not layout.val_flat:
        return {w: _list_images(layout.val_dir / w) for w in wanted}, {}
    if layout.val_labels is None:
        raise FileNotFoundError(
            f"{layout.val_dir} is a flat validation folder and no labels file was found; pass "
            "--val-labels (LOC_val_solution.csv, a 'file,wnid' CSV, or the devkit ground truth)"
        )
    labels = read_val_labels(layout.val_labels, meta=devkit_meta)
    files = _list_images(layout.val_dir)
    by_wnid: dict[str, list[Path]] = {}
    unlabelled = 0
    present = set()
    for p in files:
        wnid = labels.get(p.stem)
        present.add(p.stem)
        if wnid is None:
            unlabelled += 1  # includes non-animal rows a 'file,label' CSV skipped
        elif wnid in wanted:
            by_wnid.setdefault(wnid, []).append(p)
    absent = sum(1 for stem, w in labels.items() if w in wanted and stem not in present)
    return by_wnid, {
        "val_files": len(files),
        "val_without_label": unlabelled,
        "labelled_but_absent": absent,
    }


def _check_counts(rows: list[dict], few_fraction: float) -> tuple[set[str], set[str]]:
    """Mark classes with no train or test image ``missing``, and far-below-median ones ``few``."""
    missing = {r["folder"] for r in rows if r["train"] == 0 or r["test"] == 0}
    few = set()
    for split in ("train", "test"):
        counts = [r[split] for r in rows if r["folder"] not in missing]
        if counts:
            limit = few_fraction * statistics.median(counts)
            few |= {r["folder"] for r in rows if r["folder"] not in missing and r[split] < limit}
    for r in rows:
        r["status"] = "missing" if r["folder"] in missing else "few" if r["folder"] in few else "ok"
    return missing, few


def _write_counts(path: Path, rows: list[dict], missing: set[str], few: set[str]) -> None:
    with atomic_write(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["index", "wnid", "name", "folder", "train", "test", "status"])
        for r in rows:
            w.writerow(
                [r["index"], r["wnid"], r["name"], r["folder"], r["train"], r["test"], r["status"]]
            )


def _find_stale(out: Path, planned: set[Path], folders: set[str]) -> list[Path]:
    """Entries under ``out/{train,test}/`` that the current plan did not make."""
    stale = []
    for split in ("train", "test"):
        split_dir = out / split
        if not split_dir.is_dir():
            continue
        for folder in sorted(split_dir.iterdir()):
            if not folder.is_dir() or folder.is_symlink():
                stale.append(folder)
                continue
            for entry in sorted(folder.iterdir()):
                if entry not in planned:
                    stale.append(entry)
            if folder.name not in folders:
                stale.append(folder)
    return stale


def _prune(out: Path, stale: list[Path]) -> None:
    """Remove stale files and links, then stale class folders if they became empty."""
    for p in stale:
        if p.is_symlink() or p.is_file():
            p.unlink()
    for p in stale:
        if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
            p.rmdir()


def _compact_ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``."""
    parts, start = [], None
    for i, x in enumerate(indices):
        if start is None:
            start = x
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            parts.append(f"{start}-{x}" if x != start else f"{x}")
            start = None
    return ",".join(parts)
