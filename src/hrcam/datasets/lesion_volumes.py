"""A 3-D localization benchmark with exact voxel masks: textured "lesions" in noisy volumes.

Each volume is a cube of smooth, noisy "tissue" (int16 intensities, 1 mm voxels, written as
NIfTI) holding one **lesion** — an ellipsoid whose inner texture names the class — and a few
**distractors**: ellipsoids of the same mean brightness and size range but a plain texture. A
map that lights up "anything bright" therefore loses localization score, and a classifier must
look inside the lesion to tell the classes apart:

- ``spotted``: bright speckles on a darker fill;
- ``striped``: parallel planar stripes (period 4 voxels) along a random direction;
- ``ring``: a bright shell two voxels thick around a dim core.

The mask is exact by construction: the lesion's voxels are exactly the ellipsoid's (voxel
centres inside it), and no distractor comes within two voxels of it. Every volume depends only
on ``(seed, split, index)``, so the test set does not change with the train count.

Output layout (see :func:`make_lesion_volumes`)::

    out/train/<k>_<class>/vNNNNN.nii.gz   training volumes
    out/test/<k>_<class>/vNNNNN.nii.gz    test volumes (hard links to eval/images when possible)
    out/eval/images/vNNNNN.nii.gz         the test volumes again
    out/eval/masks/vNNNNN.nii.gz          1 on the lesion, 0 elsewhere (uint8)
    out/eval/labels.csv                   file,label,name
    out/meta.json                         parameters, class names, counts, seed
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from .. import __version__
from ..utils import atomic_save_json, swap_folder_into_place

__all__ = ["LESION_CLASSES", "make_lesion_volumes", "render_volume"]

LESION_CLASSES = ("spotted", "striped", "ring")
CLASS_FOLDERS = tuple(f"{k}_{name}" for k, name in enumerate(LESION_CLASSES))
_TISSUE, _TISSUE_SD, _NOISE_SD = 400.0, 60.0, 25.0
_BRIGHT = 250.0  # mean intensity a lesion and a distractor add to the tissue
_MARGIN = 2  # voxels kept free between the lesion and a distractor, and from the border


def _ellipsoid(side: int, centre, radii) -> np.ndarray:
    """Boolean cube: voxel centres inside the axis-aligned ellipsoid ``centre``, ``radii``."""
    z, y, x = np.ogrid[:side, :side, :side]
    return (
        ((z - centre[0]) / radii[0]) ** 2
        + ((y - centre[1]) / radii[1]) ** 2
        + ((x - centre[2]) / radii[2]) ** 2
    ) <= 1.0


def _lesion_texture(label: int, side: int, centre, radii, rng: np.random.Generator) -> np.ndarray:
    """The intensity a class's lesion adds, over the whole cube (the caller keeps its mask)."""
    if label == 0:  # spotted: speckles where smooth noise peaks, about a quarter of the voxels
        noise = ndi.gaussian_filter(rng.standard_normal((side,) * 3), 1.0)
        spots = noise > np.quantile(noise, 0.75)
        return np.where(spots, 2.2 * _BRIGHT, 0.6 * _BRIGHT)
    if label == 1:  # striped: planes of period 4 along a random unit direction
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        z, y, x = np.meshgrid(*(np.arange(side),) * 3, indexing="ij")
        phase = 2 * np.pi * (z * direction[0] + y * direction[1] + x * direction[2]) / 4.0
        return _BRIGHT * (1.0 + 0.9 * np.sin(phase + rng.uniform(0, 2 * np.pi)))
    # ring: a shell two voxels thick (the ellipsoid minus its eroded core) over a dim core
    outer = _ellipsoid(side, centre, radii)
    core = _ellipsoid(side, centre, np.maximum(np.asarray(radii) - 2.0, 1.0))
    return np.where(outer & ~core, 1.9 * _BRIGHT, 0.35 * _BRIGHT)


def render_volume(
    label: int,
    rng: np.random.Generator,
    *,
    side: int = 64,
    radius: tuple[float, float] = (6.0, 11.0),
    distractors: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """One volume of class ``label`` and its lesion mask: int16 and bool ``(side,) * 3``."""
    tissue = ndi.gaussian_filter(rng.standard_normal((side,) * 3), 3.0)
    tissue *= _TISSUE_SD / max(float(tissue.std()), 1e-6)
    volume = _TISSUE + tissue + _NOISE_SD * rng.standard_normal((side,) * 3)
    radii = rng.uniform(*radius, size=3)
    low = radii + _MARGIN
    centre = rng.uniform(low, side - 1 - low)
    mask = _ellipsoid(side, centre, radii)
    volume[mask] += _lesion_texture(label, side, centre, radii, rng)[mask]
    taken = ndi.binary_dilation(mask, iterations=_MARGIN)
    for _ in range(distractors):
        for _attempt in range(20):
            d_radii = rng.uniform(radius[0] * 0.7, radius[1] * 0.9, size=3)
            d_low = d_radii + _MARGIN
            d_centre = rng.uniform(d_low, side - 1 - d_low)
            blob = _ellipsoid(side, d_centre, d_radii)
            if not (blob & taken).any():
                volume[blob] += _BRIGHT + 15.0 * rng.standard_normal(int(blob.sum()))
                taken |= ndi.binary_dilation(blob, iterations=_MARGIN)
                break
    return np.clip(np.rint(volume), 0, 4000).astype(np.int16), mask


def _rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, split_id, index])


def _write(path: Path, array: np.ndarray) -> None:
    import nibabel

    image = nibabel.Nifti1Image(array, np.eye(4))
    image.header.set_xyzt_units("mm")
    nibabel.save(image, path)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_split(work: Path, split, split_id, per_class, seed, options, bar) -> dict[str, int]:
    """Render one split's volumes into ``work`` (and, for the test split, eval/); the counts."""
    counts = dict.fromkeys(CLASS_FOLDERS, 0)
    for folder in CLASS_FOLDERS:
        (work / split / folder).mkdir(parents=True)
    rows = []
    if split == "test":
        (work / "eval" / "images").mkdir(parents=True)
        (work / "eval" / "masks").mkdir(parents=True)
    for index in range(per_class * len(LESION_CLASSES)):
        label = index % len(LESION_CLASSES)
        volume, mask = render_volume(label, _rng(seed, split_id, index), **options)
        name = f"v{index:05d}.nii.gz"
        target = work / split / CLASS_FOLDERS[label] / name
        if split == "test":
            _write(work / "eval" / "images" / name, volume)
            _write(work / "eval" / "masks" / name, mask.astype(np.uint8))
            _link_or_copy(work / "eval" / "images" / name, target)
            rows.append((name, label, LESION_CLASSES[label]))
        else:
            _write(target, volume)
        counts[CLASS_FOLDERS[label]] += 1
        bar.update()
    if rows:
        with open(work / "eval" / "labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "label", "name"])
            writer.writerows(rows)
    return counts


def make_lesion_volumes(
    out: str | os.PathLike,
    *,
    side: int = 64,
    train_per_class: int = 120,
    test_per_class: int = 40,
    distractors: int = 3,
    radius: tuple[float, float] = (6.0, 11.0),
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generate the lesion-volume benchmark in ``out`` (layout and design in the module doc).

    The whole folder is written beside ``out`` and renamed into place at the end, so a crash
    leaves no half-made benchmark.

    Args:
        out: output folder; must not exist unless ``overwrite``.
        side: the cube's side in voxels (at least 24).
        train_per_class, test_per_class: volumes per class and split (0 skips a split).
        distractors: plain ellipsoids tried per volume (fewer fit in small cubes).
        radius: ``(min, max)`` semi-axis of a lesion in voxels.

    Returns:
        The contents of ``meta.json``.

    Example::

        make_lesion_volumes("lesions", side=32, train_per_class=4, test_per_class=2)
    """
    t0 = time.perf_counter()
    out = Path(out).absolute()
    if side < 24:
        raise ValueError(f"side must be at least 24 voxels, got {side}")
    if not 2.0 <= radius[0] <= radius[1] <= side / 2 - _MARGIN - 1:
        raise ValueError(
            f"radius must be (min, max) with 2 <= min <= max <= {side / 2 - _MARGIN - 1:g} for "
            f"a cube of {side}, got {tuple(radius)}"
        )
    for name, value in (
        ("train_per_class", train_per_class),
        ("test_per_class", test_per_class),
        ("distractors", distractors),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    if work.exists():
        shutil.rmtree(work)
    counts: dict[str, dict[str, int]] = {}
    options = {"side": side, "radius": tuple(radius), "distractors": distractors}
    try:
        total = (train_per_class + test_per_class) * len(LESION_CLASSES)
        with tqdm(total=total, desc="lesion volumes", unit="vol", disable=not progress) as bar:
            for split_id, (split, per_class) in enumerate(
                (("train", train_per_class), ("test", test_per_class))
            ):
                counts[split] = _write_split(work, split, split_id, per_class, seed, options, bar)
        meta = {
            "dataset": "lesion-volumes",
            "hrcam_version": __version__,
            "classes": list(LESION_CLASSES),
            "class_folders": list(CLASS_FOLDERS),
            "seed": seed,
            "side": side,
            "radius": list(radius),
            "distractors": distractors,
            "spacing_mm": [1.0, 1.0, 1.0],
            "counts": counts,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        atomic_save_json(meta, work / "meta.json")
        swap_folder_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return meta
