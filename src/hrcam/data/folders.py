"""Image-folder data sets for the two training stages.

- :class:`ClassFolderDataset`: ``root/<class name>/<image>`` (stage 1; the original code's layout,
  with ``train/`` and ``test/`` each holding one sub-folder per class). The folder names become
  the model's class names.
- :class:`ImageFilesDataset`: every image below a folder, labels ignored (stage 2 needs none).

Class folders of NIfTI volumes (``.nii``/``.nii.gz``) are read as volumes: each is windowed to
[0, 1] as ``hrcam explain`` windows it (its own window, else its 0.5th-99.5th percentiles),
giving ``(1, D, H, W)`` tensors; :func:`folder_kind` tells the two apart and
:func:`build_volume_transform` resamples and augments them.

A file that cannot be decoded is reported once by name (a warning). For training it is replaced
by the next readable sample, so one bad file among 400k does not stop a run; for evaluation
(``skip_unreadable=True``) it is left out, :func:`collate_readable` drops it from its batch, and
no other sample is counted twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..io import IMAGE_EXTENSIONS, ImageLoadError, load_image

__all__ = [
    "ClassFolderDataset",
    "ImageFilesDataset",
    "build_transform",
    "build_volume_transform",
    "collate_readable",
    "folder_kind",
    "list_class_folders",
    "load_volume",
]

VOLUME_EXTENSIONS = (".nii", ".nii.gz")

logger = logging.getLogger(__name__)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _is_volume(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(VOLUME_EXTENSIONS)


def _scan(folder: Path, *, volumes: bool = False) -> list[Path]:
    wanted = _is_volume if volumes else _is_image
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if wanted(f))
    return files


def folder_kind(root: str | os.PathLike) -> str:
    """``"volumes"`` when the files below ``root`` are NIfTI volumes, else ``"images"``.

    Raises:
        ValueError: the folder mixes photographs and volumes (one network takes one kind).
    """
    images = volumes = 0
    for _dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        images += sum(_is_image(f) for f in filenames)
        volumes += sum(_is_volume(f) for f in filenames)
        if images and volumes:
            raise ValueError(
                f"{root}: holds both images and NIfTI volumes; a network takes one kind, so "
                "keep them in separate data folders"
            )
    return "volumes" if volumes else "images"


def load_volume(path: str | os.PathLike) -> torch.Tensor:
    """A NIfTI volume as float32 ``(1, D, H, W)`` in [0, 1], windowed as ``hrcam explain``
    windows it; a :class:`~hrcam.medical.ScanError` names a file it cannot read."""
    from ..scan_input import volume_pixels

    return torch.from_numpy(volume_pixels(path))[None]


def list_class_folders(root: str | os.PathLike) -> list[str]:
    """Sorted names of the class sub-folders of ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


class _RobustImages(Dataset):
    """Shared loading: decode with :func:`hrcam.load_image`, skip unreadable files with a warning."""

    files: list[Path]

    def __init__(self, transform: Callable | None, *, skip_unreadable: bool = False) -> None:
        self.transform = transform
        self.loader: Callable = load_image
        self.skip_unreadable = skip_unreadable
        self.bad_files: set[str] = set()
        self.epoch_seed: int | None = None

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch_seed(self, seed: int | None) -> None:
        """Make each sample's random augmentation a function of ``(seed, index)`` alone.

        Then an epoch's augmentation does not depend on which samples came before or on which
        loader worker draws them, so a run resumed in the middle of an epoch sees exactly the
        images the uninterrupted run saw. None: torch's global RNG, as usual.
        """
        self.epoch_seed = seed

    def _load(self, index: int):
        """``(i, image)`` of sample ``index`` (or of the next readable one when training), or
        ``(index, None)`` when it cannot be read and ``skip_unreadable``."""
        for offset in range(1 if self.skip_unreadable else min(len(self.files), 50)):
            i = (index + offset) % len(self.files)
            path = self.files[i]
            try:
                image = self.loader(path)
            except (ImageLoadError, OSError, ValueError) as err:  # ScanError is a ValueError
                if str(path) not in self.bad_files:
                    self.bad_files.add(str(path))
                    logger.warning("skipping unreadable image: %s", err)
                if self.skip_unreadable:
                    return index, None
                continue
            if self.transform is None:
                return i, image
            if self.epoch_seed is None:
                return i, self.transform(image)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed((self.epoch_seed * 1_000_003 + i) % 2**63)
                return i, self.transform(image)
        raise ImageLoadError(
            f"50 images in a row from {self.files[index]} could not be read; check the data folder"
        )


class ClassFolderDataset(_RobustImages):
    """Images in ``root/<class>/…`` with integer labels in sorted class-name order.

    Args:
        root: the folder holding one sub-folder per class.
        transform: applied to each PIL RGB image.
        classes: the class names to use (e.g. the training set's, for a test set); sub-folders
            not among them are an error, classes without a folder are allowed.
        volumes: read NIfTI volumes (:func:`load_volume`) instead of images; None: whichever
            the folder holds (:func:`folder_kind`). ``transform`` then takes ``(1, D, H, W)``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable | None = None,
        *,
        classes: Sequence[str] | None = None,
        skip_unreadable: bool = False,
        volumes: bool | None = None,
    ) -> None:
        super().__init__(transform, skip_unreadable=skip_unreadable)
        self.root = Path(root)
        found = list_class_folders(self.root)
        self.volumes = folder_kind(self.root) == "volumes" if volumes is None else volumes
        if self.volumes:
            self.loader = load_volume
        if not found:
            raise ValueError(
                f"{self.root}: no class sub-folders; expected {self.root}/<class name>/<images> "
                "(one folder per class)"
            )
        if classes is None:
            classes = found
        else:
            unknown = sorted(set(found) - set(classes))
            if unknown:
                raise ValueError(
                    f"{self.root}: class folders {unknown[:5]} are not classes of the model "
                    f"({len(classes)} classes: {list(classes)[:5]}…)"
                )
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        self.files, self.labels = [], []
        for name in found:
            for f in _scan(self.root / name, volumes=self.volumes):
                self.files.append(f)
                self.labels.append(index[name])
        if not self.files:
            kinds = VOLUME_EXTENSIONS if self.volumes else IMAGE_EXTENSIONS
            what = "volumes" if self.volumes else "images"
            raise ValueError(f"{self.root}: class folders hold no {what} ({', '.join(kinds)})")
        empty = [c for c in found if not any(lbl == index[c] for lbl in self.labels)]
        if empty:
            logger.warning("%s: class folders without images: %s", self.root, ", ".join(empty[:10]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        i, image = self._load(index)
        return None if image is None else (image, self.labels[i])


class ImageFilesDataset(_RobustImages):
    """Every image file below ``root`` (recursively) or in an explicit list; no labels."""

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        transform: Callable | None = None,
        *,
        files: Sequence[str | os.PathLike] | None = None,
        skip_unreadable: bool = False,
    ) -> None:
        super().__init__(transform, skip_unreadable=skip_unreadable)
        if files is not None:
            self.root = Path(root) if root else None
            self.files = [Path(f) for f in files]
        else:
            if root is None:
                raise ValueError("give a folder or a list of files")
            self.root = Path(root)
            if not self.root.is_dir():
                raise FileNotFoundError(f"{self.root}: image folder not found")
            self.files = _scan(self.root)
        if not self.files:
            raise ValueError(f"{self.root}: no images found ({', '.join(IMAGE_EXTENSIONS)})")

    def __getitem__(self, index: int) -> torch.Tensor | None:
        return self._load(index)[1]


def collate_readable(samples: list):
    """A batch of the readable samples (``None`` stands for an unreadable one), and how many
    were left out: ``(batch or None, unreadable)``."""
    from torch.utils.data import default_collate

    readable = [s for s in samples if s is not None]
    return (default_collate(readable) if readable else None), len(samples) - len(readable)


def _check_augment(augment: str) -> None:
    if augment not in ("none", "flip", "flip-affine"):
        raise ValueError(f"augment must be 'none', 'flip' or 'flip-affine', got {augment!r}")


def build_transform(
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    augment: str = "flip-affine",
) -> Callable:
    """PIL image → normalised tensor at ``size``×``size``.

    ``augment`` (training only): ``"none"``, ``"flip"`` (horizontal flips) or ``"flip-affine"``
    (flips plus a small random affine: ±10°, ±5 % shift, 0.9–1.1 scale), as the stage-1 trainer
    of the original code used.
    """
    from torchvision.transforms import v2

    _check_augment(augment)
    steps: list = [v2.PILToTensor(), v2.Resize((size, size), antialias=True)]
    if train and augment != "none":
        steps.append(v2.RandomHorizontalFlip())
        if augment == "flip-affine":
            steps.append(v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def build_volume_transform(
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    augment: str = "flip-affine",
) -> Callable:
    """``(1, D, H, W)`` volume in [0, 1] → normalised ``(1, size, size, size)`` tensor.

    Resampled as ``hrcam explain`` resamples a volume (block means, then trilinear). Training
    augmentation (``augment`` other than ``"none"``): a random flip along each of the three axes;
    volumes take no random affine (``"flip-affine"`` flips only).
    """
    from ..scan_input import resize_volume

    _check_augment(augment)
    mean_t = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1, 1)
    flip = train and augment != "none"

    def transform(volume: torch.Tensor) -> torch.Tensor:
        x = resize_volume(volume[None].float(), (size,) * 3)[0]
        if flip:
            axes = [axis for axis in (1, 2, 3) if torch.rand(()) < 0.5]
            if axes:
                x = x.flip(axes)
        return (x - mean_t) / std_t

    return transform
