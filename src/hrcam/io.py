"""Reading images from disk into what the networks take.

Real image collections hold palette, grayscale, RGBA, 16-bit and CMYK files, truncated downloads
and files that are not images at all. :func:`load_image` turns every decodable one into 8-bit RGB
and raises :class:`ImageLoadError` naming the file and the problem for the rest.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

logger = logging.getLogger("hrcam.io")

__all__ = [
    "DEMO_IMAGES",
    "DISPLAY_SIDE",
    "IMAGE_EXTENSIONS",
    "ImageLoadError",
    "decode_side",
    "find_images",
    "load_image",
    "resize_for_network",
    "write_demo_images",
]

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)

#: Medical scans a walk also finds (with ``scans=True``): NIfTI volumes and DICOM files; a
#: folder of two or more DICOM files is one series, found as the folder.
SCAN_SUFFIXES = (".nii", ".nii.gz", ".dcm", ".dicom")

#: The longest side of an image as hrcam shows it (reports, the app); larger ones are reduced.
DISPLAY_SIDE = 448

# Refuse decompression bombs well above any photograph (≈ 16k × 16k) rather than at PIL's level.
_MAX_PIXELS = 268_435_456
# Pillow warns above its MAX_IMAGE_PIXELS and refuses above twice that; hrcam raises it above its
# own limit and refuses larger images itself, with one line naming the file and its size (no
# Pillow warning on stderr).
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 2 * _MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = 2 * _MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageLoadError(ValueError):
    """An image file could not be read; the message names the file and why."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited over white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit or float gray: stretch its own range to 8 bits rather than clipping at 255.
        a = np.asarray(image, dtype=np.float64)
        finite = np.isfinite(a)
        lo, hi = (a[finite].min(), a[finite].max()) if finite.any() else (0.0, 0.0)
        scaled = np.zeros_like(a) if hi <= lo else (np.where(finite, a, lo) - lo) / (hi - lo)
        return Image.fromarray((scaled * 255 + 0.5).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(
    source: str | os.PathLike | Image.Image, *, max_side: int | None = None
) -> Image.Image:
    """Open an image file (or take a PIL image) and return it as 8-bit RGB, upright.

    Palette, grayscale, 16-bit, CMYK and transparent images are converted (transparency is
    composited over white; 16-bit and float images are scaled by their own range). A JPEG's EXIF
    orientation (every phone photo) is applied, so the image is upright as a viewer shows it.
    ``max_side`` lets JPEG decoding skip detail that a later resize would throw away (the
    returned image may still be larger than ``max_side``); ``image.info["hrcam_original_size"]``
    keeps the file's own (width, height), upright.

    Raises:
        FileNotFoundError: the path does not exist.
        ImageLoadError: the file is not an image, is truncated or corrupt, or is too large.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image file")
    if not os.access(path, os.R_OK):
        raise ImageLoadError(f"{path}: permission denied: the file cannot be read")
    try:
        with Image.open(path) as image:
            if image.width * image.height > _MAX_PIXELS:
                raise ImageLoadError(_too_large(path, image.size))
            size = image.size
            if max_side and image.format == "JPEG":
                image.draft("RGB", (max_side, max_side))
            # Force a full decode here so truncation is caught now, with the file's name.
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            image.load()
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            upright = ImageOps.exif_transpose(image)
            if upright.size != image.size:  # rotated by a quarter turn
                size = size[::-1]
            rgb = _to_rgb(upright)
            rgb.info["hrcam_original_size"] = size
            return rgb
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not a recognised image file") from None
    except PermissionError:
        raise ImageLoadError(f"{path}: permission denied: the file cannot be read") from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageLoadError):
            raise
        raise ImageLoadError(f"{path}: truncated or corrupt image file ({err})") from None
    except Image.DecompressionBombError:
        raise ImageLoadError(_too_large(path)) from None


def _too_large(path: Path, size: tuple[int, int] | None = None) -> str:
    what = f"{size[0]}×{size[1]} pixels is" if size else "it is"
    return (
        f"{path}: refused: {what} more than hrcam decodes ({_MAX_PIXELS // 1_000_000} Mpx, a "
        "guard against decompression bombs); downscale it first"
    )


def decode_side(input_size: int | Sequence[int]) -> int:
    """The side a JPEG may be decoded at (``load_image(max_side=...)``) when it is to be shown
    at :data:`DISPLAY_SIDE` and fed to a network of ``input_size``: enough pixels for both."""
    sides = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    return max(DISPLAY_SIDE, *(int(s) for s in sides))


def resize_for_network(image: Image.Image | np.ndarray, size: Sequence[int]) -> np.ndarray:
    """An image stretched to ``size = (H, W)``, as the networks take it: ``(H, W, 3)`` uint8.

    Accepts a PIL image of any mode (converted as :func:`load_image` does) or an ``(H, W)`` /
    ``(H, W, 3)`` array (uint8, or floats in [0, 1] or [0, 255]). Bilinear, antialiased when
    reducing (Pillow's), as the models were trained.
    """
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(
                f"expected an (H, W) or (H, W, 3) image array, got shape {image.shape}"
            )
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        image = Image.fromarray(image if image.dtype == np.uint8 else _float_to_uint8(image))
    image = _to_rgb(image)
    h, w = int(size[0]), int(size[1])
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(image)


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a.astype(np.float64))
    if a.max() > 1.0:
        return np.clip(a, 0, 255).astype(np.uint8)
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def find_images(
    sources: Iterable[str | os.PathLike],
    *,
    recursive: bool = True,
    exclude: Iterable[str | os.PathLike] = (),
    skip_if_contains: str | None = None,
    scans: bool = False,
) -> Iterator[Path]:
    """Yield image files from files and folders, folders walked in sorted order.

    A named file is yielded whatever its extension (so a bad one is reported by the loader);
    inside folders only files with an image extension are taken, hidden ones skipped. Folders in
    ``exclude`` (e.g. the run's own output), and folders holding a file named
    ``skip_if_contains`` (another run's output), are not entered; a folder that cannot be read
    is named in a warning. With ``scans``, NIfTI and DICOM files are taken too, and a folder of
    two or more DICOM files is yielded itself, as one series (a named folder that is one
    series too).

    Raises:
        FileNotFoundError: a named file or folder does not exist.
    """
    excluded = {Path(e).resolve() for e in exclude}
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_file():
            yield path
            continue
        yield from sorted(_walk(path, recursive, excluded, skip_if_contains, scans))


def _walk(folder: Path, recursive: bool, excluded: set[Path], marker: str | None, scans: bool):
    def unreadable(err: OSError) -> None:
        logger.warning("%s: folder skipped, it cannot be read (%s)", err.filename, err.strerror)

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        here = Path(dirpath)
        if here.resolve() in excluded or (marker is not None and marker in filenames):
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        names = sorted(n for n in filenames if not n.startswith("."))
        dicom = [n for n in names if n.lower().endswith((".dcm", ".dicom"))] if scans else []
        if len(dicom) >= 2 or (scans and names and not dicom and _unnamed_series(here, names)):
            yield here  # one DICOM series
        for name in names:
            lowered = name.lower()
            if os.path.splitext(lowered)[1] in IMAGE_EXTENSIONS:
                yield here / name
            elif (
                scans
                and lowered.endswith(SCAN_SUFFIXES)
                and not (len(dicom) >= 2 and name in dicom)
            ):
                yield here / name


def _unnamed_series(folder: Path, names: list[str]) -> bool:
    """A folder of files without extensions that carry the DICOM marker (scanners' exports:
    ``IM000001``...), checked only where no file has a name hrcam knows."""
    if any(os.path.splitext(n)[1] for n in names):
        return False
    from .medical import is_scan_path

    return is_scan_path(folder)


#: Photographs bundled with scikit-image (no download), what ``hrcam demo`` and the app offer:
#: first four whose class the default model knows (cat, espresso, motorcycle, the cameraman's
#: tripod), then one it gets wrong (the astronaut, "bobsled"), to show that a map explains the
#: class it names, right or wrong.
DEMO_IMAGES = ("chelsea", "coffee", "motorcycle", "camera", "astronaut")


def _demo_picture(name: str) -> np.ndarray:
    from skimage import data

    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def write_demo_images(folder: str | os.PathLike) -> list[Path]:
    """Save the :data:`DEMO_IMAGES` as PNG files into ``folder`` (kept if already there), named
    ``1-chelsea.png`` ... so that a folder listing shows them in this order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(DEMO_IMAGES, start=1):
        path = folder / f"{i}-{name}.png"
        if not path.exists():
            Image.fromarray(_demo_picture(name)).save(path)
        paths.append(path)
    return paths
