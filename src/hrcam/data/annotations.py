"""Readers of localization ground truth: pixel trimaps and bounding boxes.

:class:`LocalizationDataset` reads a folder in either (or both) of two layouts:

- **trimaps** (Oxford-IIIT Pet): ``root/images/NAME.jpg|png|…`` and ``root/trimaps/NAME.png``
  with 1 = object, 2 = background, 3 = ignore (the boundary; Choe et al.'s PxAP protocol
  leaves it out of pixel scores);
- **boxes**: images (in ``root/images/`` or in ``root`` itself) and a CSV
  ``file,x1,y1,x2,y2[,label]`` with one row per box (``root/boxes.csv`` by default).

The images themselves are not loaded: a :class:`LocalizationSample` carries the image's path
and size (read from the file header), and the caller loads the pixels with
:func:`hrcam.io.load_image`. Boxes use inclusive pixel corners: ``x2``/``y2`` are the last
column/row inside the box. When a sample has a mask but no box rows, its boxes are the tight
boxes of the mask's 8-connected components.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ..io import IMAGE_EXTENSIONS

__all__ = ["LocalizationDataset", "LocalizationSample", "boxes_from_mask"]

TRIMAP_OBJECT, TRIMAP_BACKGROUND, TRIMAP_IGNORE = 1, 2, 3


@dataclass(frozen=True, eq=False)
class LocalizationSample:
    """Ground truth of one image.

    Attributes:
        path: the image file (not loaded).
        name: file name without suffix; the key shared by images, trimaps and CSV rows.
        height, width: the image's size in pixels, read from its header.
        mask: bool ``(height, width)``, True on the object; None without a trimap.
        ignore: bool ``(height, width)``, True on pixels to leave out of pixel scores.
        boxes: ``(N, 4)`` ``x1, y1, x2, y2`` with inclusive corners (int64, or float64 when the
            CSV has fractional values); ``(0, 4)`` for an empty mask; None without either.
        box_labels: ``(N,)`` int64 class index per CSV box, or None.
        label: the image's class index (``labels.csv``, else the boxes' common label), or None.
        label_name: the class name given in ``labels.csv``, or None.
    """

    path: Path
    name: str
    height: int
    width: int
    mask: np.ndarray | None = None
    ignore: np.ndarray | None = None
    boxes: np.ndarray | None = None
    box_labels: np.ndarray | None = None
    label: int | None = None
    label_name: str | None = None


def boxes_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight boxes of a mask's 8-connected components, ordered by their top-left pixel.

    Args:
        mask: bool ``(H, W)``.

    Returns:
        int64 ``(N, 4)`` rows ``x1, y1, x2, y2`` with inclusive corners; ``(0, 4)`` when empty.

    Example::

        >>> m = np.zeros((5, 6), bool); m[1:3, 2:5] = True
        >>> boxes_from_mask(m).tolist()
        [[2, 1, 4, 2]]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask (H, W), got shape {mask.shape}")
    labels, n = ndi.label(mask.astype(bool), structure=np.ones((3, 3), dtype=bool))
    boxes = [
        (s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1)
        for s in ndi.find_objects(labels)
        if s
    ]
    return np.array(sorted(boxes, key=lambda b: (b[1], b[0])), dtype=np.int64).reshape(-1, 4)


class LocalizationDataset:
    """Localization ground truth of a folder of images; see the module doc for the layouts.

    Args:
        root: the folder (``images/`` + ``trimaps/``, and/or images + a boxes CSV).
        boxes_csv: ``file,x1,y1,x2,y2[,label]`` rows; default ``root/boxes.csv`` if present.
        labels_csv: ``file,label[,name]`` rows; default ``root/labels.csv`` if present.
        missing: what to do with an image that has no trimap (when ``trimaps/`` exists) or,
            without trimaps, no box row: ``"error"`` (default) raises naming them;
            ``"skip"`` leaves them out and lists them in :attr:`skipped`.

    Files are matched by name without suffix. Masks, sizes and boxes derived from masks are
    read when a sample is indexed, so opening a large set is cheap; a trimap whose size differs
    from its image's, or with values other than 1, 2, 3, raises then, naming the file.

    Raises:
        FileNotFoundError: ``root`` or a named CSV does not exist.
        ValueError: no images, neither trimaps nor boxes, unmatched annotations, a bad CSV row.

    Example::

        ds = LocalizationDataset("../shared/data/pets-dev")
        s = ds[0]                      # s.mask, s.ignore: (s.height, s.width) bool arrays
        image = load_image(s.path)     # the pixels, from hrcam.io
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        boxes_csv: str | os.PathLike | None = None,
        labels_csv: str | os.PathLike | None = None,
        missing: str = "error",
    ) -> None:
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: localization folder not found")
        self.image_dir = self.root / "images" if (self.root / "images").is_dir() else self.root
        trimap_dir = self.root / "trimaps"
        self.trimap_dir: Path | None = trimap_dir if trimap_dir.is_dir() else None
        self.boxes_csv = _default_csv(self.root, boxes_csv, "boxes.csv")
        self.labels_csv = _default_csv(self.root, labels_csv, "labels.csv")
        if self.trimap_dir is None and self.boxes_csv is None:
            raise ValueError(
                f"{self.root}: no ground truth: expected a trimaps/ folder (Oxford-pets layout) "
                "or a boxes CSV (file,x1,y1,x2,y2[,label]; pass boxes_csv= or add boxes.csv)"
            )

        images = _list_images(self.image_dir)
        if not images:
            raise ValueError(f"{self.image_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        self._trimaps = (
            _index_by_stem(_list_pngs(self.trimap_dir), "trimap") if self.trimap_dir else {}
        )
        self._boxes = _read_boxes(self.boxes_csv) if self.boxes_csv else {}
        self._labels = _read_labels(self.labels_csv) if self.labels_csv else {}
        by_stem = _index_by_stem(images, "image")

        # The annotations must all belong to some image; a typo should not pass silently.
        for what, keys, source in (
            ("box rows", self._boxes, self.boxes_csv),
            ("labels", self._labels, self.labels_csv),
        ):
            orphans = sorted(set(keys) - set(by_stem))
            if orphans:
                raise ValueError(
                    f"{source}: {what} for {len(orphans)} files not in {self.image_dir}: {_some(orphans)}"
                )

        required = self._trimaps if self.trimap_dir else self._boxes
        lacking = sorted(s for s in by_stem if s not in required)
        what = f"trimap in {self.trimap_dir}" if self.trimap_dir else f"box row in {self.boxes_csv}"
        if lacking and missing == "error":
            raise ValueError(
                f"{len(lacking)} of {len(by_stem)} images have no {what}: {_some(lacking)}; "
                "pass missing='skip' to leave them out"
            )
        self.skipped: list[str] = lacking
        self._names = [s for s in sorted(by_stem) if s in required]
        self._paths = by_stem
        if not self._names:
            raise ValueError(f"{self.root}: no image has a {what}")

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[LocalizationSample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def names(self) -> list[str]:
        """Sample names (file names without suffix), sorted."""
        return list(self._names)

    @property
    def has_masks(self) -> bool:
        return self.trimap_dir is not None

    @property
    def has_boxes(self) -> bool:
        """True when every sample has boxes (from the CSV, or derived from its mask)."""
        return self.boxes_csv is not None or self.trimap_dir is not None

    def __getitem__(self, index: int) -> LocalizationSample:
        name = self._names[index]
        path = self._paths[name]
        with Image.open(path) as image:
            width, height = image.size
        mask = ignore = None
        if name in self._trimaps:
            mask, ignore = _read_trimap(self._trimaps[name], path, (width, height))
        rows = self._boxes.get(name)
        boxes = box_labels = None
        if rows is not None:
            boxes = _as_box_array([r[:4] for r in rows])
            if all(r[4] is not None for r in rows):
                box_labels = np.array([r[4] for r in rows], dtype=np.int64)
        elif mask is not None:
            boxes = boxes_from_mask(mask)
        label, label_name = self._labels.get(name, (None, None))
        if label is None and box_labels is not None and len(set(box_labels.tolist())) == 1:
            label = int(box_labels[0])
        return LocalizationSample(
            path, name, height, width, mask, ignore, boxes, box_labels, label, label_name
        )


def _default_csv(root: Path, given: str | os.PathLike | None, default: str) -> Path | None:
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CSV file not found")
        return path
    return root / default if (root / default).is_file() else None


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _list_pngs(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")
    )


def _index_by_stem(paths: list[Path], what: str) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in paths:
        if p.stem in index:
            raise ValueError(
                f"two {what} files share the name {p.stem!r}: {index[p.stem].name} and {p.name}"
            )
        index[p.stem] = p
    return index


def _some(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names) - n} more)" if len(names) > n else "")


def _read_trimap(
    path: Path, image_path: Path, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, ignore)`` from a 1/2/3 trimap, checked against its image's ``(width, height)``."""
    with Image.open(path) as image:
        if image.size != size:
            raise ValueError(
                f"{path}: trimap is {image.size[0]}×{image.size[1]} but its image {image_path.name} "
                f"is {size[0]}×{size[1]}; they must be the same size"
            )
        if image.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(
                f"{path}: a trimap must be a one-channel PNG (1, 2, 3), got mode {image.mode}"
            )
        trimap = np.asarray(image)
    if trimap.dtype == np.uint8:  # bincount is much faster than unique on large trimaps
        values = np.flatnonzero(np.bincount(trimap.ravel(), minlength=4)).tolist()
    else:
        values = np.unique(trimap).tolist()
    if not set(values) <= {TRIMAP_OBJECT, TRIMAP_BACKGROUND, TRIMAP_IGNORE}:
        raise ValueError(
            f"{path}: trimap values {values}; expected only 1 object, 2 background, 3 ignore"
        )
    return trimap == TRIMAP_OBJECT, trimap == TRIMAP_IGNORE


def _read_boxes(path: Path) -> dict[str, list[tuple]]:
    """``{stem: [(x1, y1, x2, y2, label|None), …]}`` from ``file,x1,y1,x2,y2[,label]``."""
    boxes: dict[str, list[tuple]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = ("file", "x1", "y1", "x2", "y2")
        if reader.fieldnames is None or not set(need) <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: header {reader.fieldnames}; expected file,x1,y1,x2,y2[,label]"
            )
        for row_no, row in enumerate(reader, start=2):
            try:
                x1, y1, x2, y2 = (_number(row[k]) for k in need[1:])
                label = int(row["label"]) if row.get("label") not in (None, "") else None
            except ValueError:
                raise ValueError(f"{path}:{row_no}: cannot read the box {row}") from None
            if x2 < x1 or y2 < y1:
                raise ValueError(
                    f"{path}:{row_no}: box ({x1}, {y1}, {x2}, {y2}) has x2 < x1 or y2 < y1"
                )
            boxes.setdefault(Path(row["file"].strip()).stem, []).append((x1, y1, x2, y2, label))
    return boxes


def _number(text: str) -> int | float:
    value = float(text)
    return (
        int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    )


def _as_box_array(rows: list[tuple]) -> np.ndarray:
    if all(isinstance(v, int) for r in rows for v in r):
        return np.array(rows, dtype=np.int64).reshape(-1, 4)
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _read_labels(path: Path) -> dict[str, tuple[int, str | None]]:
    """``{stem: (label, name|None)}`` from ``file,label[,name]``."""
    labels: dict[str, tuple[int, str | None]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: header {reader.fieldnames}; expected file,label[,name]")
        for row_no, row in enumerate(reader, start=2):
            try:
                label = int(row["label"])
            except ValueError:
                raise ValueError(
                    f"{path}:{row_no}: label {row['label']!r} is not an integer"
                ) from None
            labels[Path(row["file"].strip()).stem] = (label, row.get("name") or None)
    return labels
