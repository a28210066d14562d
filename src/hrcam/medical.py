"""Reading medical images — DICOM files and series, NIfTI volumes, 16-bit PNG/TIFF — and writing
maps back as NIfTI.

A classifier sees a picture; a radiologist's file holds physical values (CT in Hounsfield units,
MR in scanner units) on a grid placed in the patient. :func:`read_scan` keeps both: a
:class:`Scan` holds the values as float32, the voxel size, and the affine from array index to
RAS+ millimetres (NIfTI's convention), so a CAM computed on ``scan.windowed()`` can be written
back with :func:`write_nifti` and laid over the scan in any viewer.

Every read error is a :class:`ScanError`: one line that starts with the path, says what is wrong
and how to fix it. Patient data (names, IDs, dates) never goes into a description or an error.

Example::

    scan = read_scan("ct_series/")          # a folder of DICOM slices
    pixels = scan.windowed()                # (D, H, W) float32 in [0, 1] for the network
    write_nifti("cam.nii.gz", cam, scan.affine)
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import secrets
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import ShapeError, check_finite
from .io import IMAGE_EXTENSIONS

__all__ = [
    "Scan",
    "ScanError",
    "is_scan_path",
    "read_dicom",
    "read_dicom_series",
    "read_image16",
    "read_nifti",
    "read_scan",
    "write_nifti",
]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_DICOM_SUFFIXES = (".dcm", ".dicom")
_IMAGE16_SUFFIXES = (".png", ".tif", ".tiff")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# The functional group of a multi-frame file that holds RescaleSlope/Intercept.
_VALUE_GROUP = "PixelValueTransformationSequence"
# DICOM stores LPS+ (x to the patient's left, y to the back); NIfTI and hrcam use RAS+.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Two slices closer than this along the slice normal are the same slice (mm).
_SAME_POSITION_MM = 1e-3
# Largest gap / smallest gap above which a series counts as unevenly spaced.
_GAP_RATIO = 1.01
# ITU-R 601-2 luma weights, as Pillow's convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ScanError(ValueError):
    """A scan could not be read; the one-line message starts with the path and says why."""


@dataclass(frozen=True, eq=False)
class Scan:
    """One medical image or volume as read from disk.

    Attributes:
        array: float32 physical values (e.g. Hounsfield units after the DICOM rescale), ``(H, W)``
            for one image or ``(D, H, W)`` for a volume, in the file's own index order (DICOM:
            slice, row, column; NIfTI: i, j, k as stored).
        spacing: voxel size in mm along each array axis (1.0 where the file does not say).
        affine: ``(4, 4)`` float64 from array index ``(axis0, axis1, axis2, 1)`` to RAS+ world
            mm; for a 2-D scan it maps ``(axis0, axis1, 0, 1)``.
        window: ``(centre, width)`` display window from the file (DICOM WindowCenter/Width, the
            first when several), else None.
        source: the path read.
        kind: ``"dicom"``, ``"nifti"`` or ``"image"``.
        description: a short human string such as ``"CT, 12 slices of 512×512 pixels,
            0.7×0.7 mm, 2.5 mm apart"``; never patient data.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    window: tuple[float, float] | None
    source: str
    kind: str
    description: str

    @property
    def ndim(self) -> int:
        """2 for an image, 3 for a volume."""
        return self.array.ndim

    def windowed(self, window: tuple[float, float] | None = None) -> np.ndarray:
        """The scan as float32 in [0, 1], the way a viewer shows it: values clipped to ``window``
        ``(centre, width)`` and scaled linearly.

        ``window`` defaults to the scan's own, else to the 0.5th to 99.5th percentile of its
        finite values (a constant scan then gives zeros). Same shape as :attr:`array`.

        Example: ``scan.windowed((40, 400))`` is CT's soft-tissue window, -160 to 240 HU.
        """
        if window is None and self.window is None:
            finite = self.array[np.isfinite(self.array)]
            if finite.size == 0:
                return np.zeros(self.array.shape, np.float32)
            low, high = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
        else:
            centre, width = window if window is not None else self.window
            if not (np.isfinite(centre) and np.isfinite(width) and width > 0):
                raise ValueError(
                    f"window must be (centre, width) with a finite width > 0, got {window!r}"
                )
            low, high = centre - width / 2, centre + width / 2
        if not high > low:
            return np.zeros(self.array.shape, np.float32)
        scaled = (self.array.astype(np.float32) - np.float32(low)) / np.float32(high - low)
        np.clip(scaled, 0.0, 1.0, out=scaled)
        return np.nan_to_num(scaled, copy=False, nan=0.0)


# --------------------------------------------------------------------------- dispatch


def is_scan_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names something :func:`read_scan` reads as a medical scan rather than a
    photograph: a ``.nii``/``.nii.gz``/``.dcm``/``.dicom`` name, a file with the DICOM marker
    (``DICM`` at byte 128), or a folder holding at least one such DICOM file (not recursive).

    Cheap: names and at most 132 bytes per file are looked at. 16-bit PNG/TIFF files are not
    scans by this test (they are images; :func:`read_scan` still reads them at full depth).
    """
    path = Path(path)
    if path.is_dir():
        with contextlib.suppress(OSError):
            return next(_dicom_files_in(path), None) is not None
        return False
    name = path.name.lower()
    if name.endswith(_NIFTI_SUFFIXES + _DICOM_SUFFIXES):
        return True
    return path.is_file() and _has_dicom_marker(path)


def read_scan(path: str | os.PathLike) -> Scan:
    """Read a medical image or volume, whatever its format.

    A folder is read as one DICOM series (:func:`read_dicom_series`); ``.nii``/``.nii.gz`` as
    NIfTI (:func:`read_nifti`); ``.png``/``.tif``/``.tiff`` at full bit depth
    (:func:`read_image16`); any other file with a ``.dcm``/``.dicom`` name or the DICOM marker as
    one DICOM file (:func:`read_dicom`).

    Raises:
        ScanError: the path does not exist, is of no kind above, or cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise ScanError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_dicom_series(path)
    name = path.name.lower()
    if name.endswith(_NIFTI_SUFFIXES):
        return read_nifti(path)
    if name.endswith(_IMAGE16_SUFFIXES):
        return read_image16(path)
    if name.endswith(_DICOM_SUFFIXES) or _has_dicom_marker(path):
        return read_dicom(path)
    raise ScanError(
        f"{path}: not a scan hrcam reads; give a DICOM file or series folder, a .nii or .nii.gz "
        "file, or a .png or .tif image"
    )


# --------------------------------------------------------------------------- NIfTI


def read_nifti(path: str | os.PathLike) -> Scan:
    """Read a NIfTI file (``.nii`` or ``.nii.gz``) with nibabel.

    Values are float32 with the header's scl_slope/scl_inter applied; the affine is nibabel's
    (sform, else qform); spacing is the header's voxel size. A 2-D image, or a 3-D one with a
    singleton axis, keeps its stored shape; a 4-D file with one volume is read as 3-D.

    Raises:
        ScanError: unreadable or not NIfTI, more than one volume, or NaN/±inf values.
    """
    nibabel = _require("nibabel", "reading NIfTI")
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    try:
        image = nibabel.load(path, mmap=False)
        shape = tuple(int(n) for n in image.shape)
        volumes = int(np.prod(shape[3:], dtype=np.int64))
        if volumes > 1:
            raise ScanError(
                f"{path}: {len(shape)}-D series of {volumes} volumes; give one volume "
                "(e.g. with nibabel: img.slicer[..., 0])"
            )
        if len(shape) < 2:
            raise ScanError(f"{path}: a {len(shape)}-D array, not an image or a volume")
        data = image.get_fdata(dtype=np.float32).reshape(shape[:3])
        zooms = image.header.get_zooms()[: data.ndim]
        affine = np.array(image.affine, dtype=np.float64)
    except OSError as err:
        raise ScanError(_os_problem(path, err)) from None
    except (ImageFileError, EOFError, ValueError, zlib.error) as err:
        if isinstance(err, ScanError):
            raise
        reason = _one_line(err, path)
        raise ScanError(f"{path}: not a readable NIfTI file ({reason})") from None
    spacing = tuple(float(z) if np.isfinite(z) and z > 0 else 1.0 for z in zooms)
    voxels = "pixels" if data.ndim == 2 else "voxels"
    description = f"NIfTI, {_by(data.shape)} {voxels} of {_by(spacing, '.3g')} mm"
    return _checked_scan(path, data, spacing, affine, None, "nifti", description)


def write_nifti(
    path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, *, durable: bool = True
) -> None:
    """Write ``array`` as a float32 NIfTI file, gzipped when ``path`` ends in ``.nii.gz``.

    ``array``: ``(H, W)`` or ``(D, H, W)`` (any float or int dtype), in the index order that
    ``affine`` (4, 4: index to RAS+ mm, e.g. ``Scan.affine``) describes; a 2-D array is stored as
    3-D with a singleton last axis. The file is written beside ``path`` under a temporary name
    and renamed over it, so a failure leaves any earlier file intact and no partial file.
    ``durable``: flush to the disk before the rename (see :func:`hrcam.utils.atomic_write`).

    Raises:
        ValueError: ``path`` does not end in ``.nii`` or ``.nii.gz``.
        ShapeError: ``array`` is not 2-D or 3-D, or ``affine`` is not 4×4.
        NonFiniteError: ``array`` or ``affine`` holds NaN or ±inf.
    """
    nibabel = _require("nibabel", "writing NIfTI")
    path = Path(path)
    suffix = next((s for s in (".nii.gz", ".nii") if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    data = np.asarray(array, dtype=np.float32)
    matrix = np.asarray(affine, dtype=np.float64)
    if data.ndim not in (2, 3):
        raise ShapeError(f"expected an (H, W) or (D, H, W) array, got shape {data.shape}")
    if matrix.shape != (4, 4):
        raise ShapeError(f"expected a (4, 4) affine, got shape {matrix.shape}")
    check_finite(data, "the array", hint="NIfTI maps hrcam reads back must be finite")
    check_finite(matrix, "the affine")
    if data.ndim == 2:
        data = data[..., np.newaxis]
    image = nibabel.Nifti1Image(data, matrix)
    image.set_data_dtype(np.float32)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name[: -len(suffix)]
    temporary = path.with_name(f".{stem}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        nibabel.save(image, temporary)
        if durable:
            with open(temporary, "r+b") as f:
                os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------- 16-bit images


def read_image16(path: str | os.PathLike) -> Scan:
    """Read a PNG or TIFF keeping its full range: 16-bit files give values up to 65535, 8-bit
    ones up to 255, float TIFFs their floats.

    A colour image becomes its luminance (ITU-R 601-2, as Pillow's ``convert("L")``) rather than
    being refused: X-rays and slides are often saved as grey RGB. Spacing is 1 and the affine
    the identity (image files carry no patient geometry).

    Raises:
        ScanError: unreadable, not an image, several pages, or NaN/±inf values.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            pages = getattr(image, "n_frames", 1)
            if pages > 1:
                raise ScanError(
                    f"{path}: holds {pages} pages; hrcam reads one-page images: save the page "
                    "you want as its own file, or the stack as NIfTI"
                )
            image.load()
            array, depth, converted = _grey_values(image)
            file_format = image.format or "image"
    except UnidentifiedImageError:
        raise ScanError(f"{path}: not a recognised image file") from None
    except Image.DecompressionBombError:
        raise ScanError(f"{path}: refused: too many pixels (a decompression bomb?)") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        raise ScanError(_os_problem(path, err)) from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ScanError):
            raise
        raise ScanError(
            f"{path}: truncated or corrupt image file ({_one_line(err, path)})"
        ) from None
    description = f"{depth} {file_format}, {_by(array.shape)} pixels"
    if converted:
        description += f", luminance of {converted}"
    affine = np.eye(4)
    return _checked_scan(path, array, (1.0, 1.0), affine, None, "image", description)


def _grey_values(image) -> tuple[np.ndarray, str, str]:
    """(float32 values, bit depth in words, the colour mode converted from or "")."""
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32), "16-bit", ""
    if mode in ("I", "F"):
        return np.asarray(image).astype(np.float32), "32-bit", ""
    if mode == "L":
        return np.asarray(image).astype(np.float32), "8-bit", ""
    if mode == "1":
        return np.asarray(image.convert("L")).astype(np.float32), "1-bit", ""
    return np.asarray(image.convert("L")).astype(np.float32), "8-bit", mode


# --------------------------------------------------------------------------- DICOM


def read_dicom(path: str | os.PathLike) -> Scan:
    """Read one DICOM file: an ``(H, W)`` image, or a ``(D, H, W)`` volume when it holds several
    frames (an enhanced CT/MR, a legacy multi-frame).

    Stored values go through RescaleSlope/RescaleIntercept (per frame when the file says so), so
    CT comes out in Hounsfield units. The affine comes from ImagePositionPatient,
    ImageOrientationPatient and PixelSpacing (converted from DICOM's LPS to RAS); without them it
    is the identity scaled by the spacing. Frames with their own positions are sorted along the
    slice normal and must be evenly spaced; otherwise SpacingBetweenSlices (else SliceThickness)
    is the slice step.

    Raises:
        ScanError: not DICOM, unreadable, no pixel data, a compression no decoder here reads,
        frames that do not form one evenly spaced volume, or NaN/±inf values.
    """
    path = Path(path)
    return _scan_from_dataset(_dcmread(path), path, source=path)


def read_dicom_series(folder: str | os.PathLike) -> Scan:
    """Read a folder of single-frame DICOM slices as one ``(D, H, W)`` volume.

    Takes every ``.dcm``/``.dicom`` file and every file with the DICOM marker in ``folder`` (not
    its subfolders); files without pixel data (DICOMDIR, reports) are passed over. Slices are
    sorted by position along the slice normal, rescaled one by one (slopes may differ), and
    placed by an affine from the first slice's position, the step to the second and the pixel
    spacing. ``spacing`` is ``(slice step, row spacing, column spacing)``. A folder with a single
    image file reads as :func:`read_dicom` reads that file.

    Raises:
        ScanError: no DICOM image in the folder, more than one series, slices that differ in
        size or orientation, lack positions, share a position, or are unevenly spaced (hrcam
        does not resample series with gaps), or any error of :func:`read_dicom`.
    """
    folder = Path(folder)
    try:
        files = list(_dicom_files_in(folder))
    except OSError as err:
        raise ScanError(_os_problem(folder, err)) from None
    if not files:
        raise ScanError(
            f"{folder}: holds no DICOM file (.dcm, .dicom, or a file with the DICM marker)"
        )
    slices = []
    for file in files:
        ds = _dcmread(file)
        if _has_pixels(ds):
            slices.append((file, ds))
    if not slices:
        raise ScanError(
            f"{folder}: none of its {len(files)} DICOM file(s) holds pixel data (DICOMDIR, "
            "reports?); give the folder that holds the images"
        )
    _check_one_series(folder, slices)
    if len(slices) == 1:
        file, ds = slices[0]
        return _scan_from_dataset(ds, file, source=folder)
    names, datasets = [file.name for file, _ in slices], [ds for _, ds in slices]
    _check_slices_match(folder, datasets, names)
    orientation = _floats(datasets[0].get("ImageOrientationPatient"))
    positions = np.array([_floats(ds.get("ImagePositionPatient")) for ds in datasets])
    order, affine, spacing = _stack_geometry(
        folder, positions, orientation, _pixel_spacing(datasets[0]), names, "slices"
    )
    array = np.stack(
        [_rescaled(_pixels(datasets[i], slices[i][0]), datasets[i]) for i in order]
    ).astype(np.float32, copy=False)
    first = datasets[order[0]]
    description = _volume_description(first, array.shape, spacing)
    return _checked_scan(folder, array, spacing, affine, _window(first), "dicom", description)


def _scan_from_dataset(ds, path: Path, *, source: Path) -> Scan:
    """A :class:`Scan` of one DICOM dataset read from ``path``."""
    pixels = _pixels(ds, path)
    frames = int(ds.get("NumberOfFrames") or 1)
    window = _window(ds)
    if frames > 1:
        array, spacing, affine = _frame_volume(ds, path, pixels, frames)
        description = _volume_description(ds, array.shape, spacing)
        return _checked_scan(source, array, spacing, affine, window, "dicom", description)
    array = _rescaled(pixels, ds)
    row_spacing, column_spacing = _pixel_spacing(ds)
    thickness = _first_float(_functional(ds, "SliceThickness", "PixelMeasuresSequence"), 1.0)
    orientation = _floats(_functional(ds, "ImageOrientationPatient", "PlaneOrientationSequence"))
    position = _floats(_functional(ds, "ImagePositionPatient", "PlanePositionSequence"))
    if _is_orientation(orientation) and position is not None and len(position) == 3:
        along_row, along_column, normal = _directions(orientation)
        columns = (along_column * row_spacing, along_row * column_spacing, normal * thickness)
        affine = _ras_affine(columns, position)
    else:
        affine = np.diag([row_spacing, column_spacing, thickness, 1.0])
    spacing = (row_spacing, column_spacing)
    description = (
        f"{_modality(ds)}, {_by(array.shape)} pixels, {row_spacing:.3g}×{column_spacing:.3g} mm"
    )
    return _checked_scan(source, array, spacing, affine, window, "dicom", description)


def _frame_volume(ds, path: Path, pixels: np.ndarray, frames: int):
    """(array, spacing, affine) of a multi-frame dataset, frames sorted along the normal when
    each has its own position."""
    slopes = [
        _first_float(_functional(ds, "RescaleSlope", _VALUE_GROUP, i), 1.0) for i in range(frames)
    ]
    intercepts = [
        _first_float(_functional(ds, "RescaleIntercept", _VALUE_GROUP, i), 0.0)
        for i in range(frames)
    ]
    array = pixels.astype(np.float32) * np.float32(slopes)[:, None, None]
    array += np.float32(intercepts)[:, None, None]
    row_spacing, column_spacing = _pixel_spacing(ds)
    orientation = _floats(_functional(ds, "ImageOrientationPatient", "PlaneOrientationSequence"))
    positions = _frame_positions(ds, frames)
    if _is_orientation(orientation) and positions is not None:
        labels = [f"frame {i + 1}" for i in range(frames)]
        order, affine, spacing = _stack_geometry(
            path, positions, orientation, (row_spacing, column_spacing), labels, "frames"
        )
        return array[order], spacing, affine
    gap = _first_float(_functional(ds, "SpacingBetweenSlices", "PixelMeasuresSequence"), 0.0)
    if not gap > 0:
        gap = _first_float(_functional(ds, "SliceThickness", "PixelMeasuresSequence"), 1.0)
    position = _floats(ds.get("ImagePositionPatient"))
    if _is_orientation(orientation) and position is not None and len(position) == 3:
        along_row, along_column, normal = _directions(orientation)
        columns = (normal * gap, along_column * row_spacing, along_row * column_spacing)
        affine = _ras_affine(columns, position)
    else:
        affine = np.diag([gap, row_spacing, column_spacing, 1.0])
    return array, (gap, row_spacing, column_spacing), affine


def _frame_positions(ds, frames: int) -> np.ndarray | None:
    """``(frames, 3)`` ImagePositionPatient of each frame, or None unless every frame has one."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame or len(per_frame) != frames:
        return None
    positions = []
    for group in per_frame:
        items = group.get("PlanePositionSequence")
        position = _floats(items[0].get("ImagePositionPatient")) if items else None
        if position is None or len(position) != 3:
            return None
        positions.append(position)
    return np.array(positions, dtype=np.float64)


def _check_one_series(folder: Path, slices: Sequence[tuple[Path, object]]) -> None:
    """Refuse a folder that mixes series, or holds a multi-frame file among others."""
    uids = sorted({str(ds.get("SeriesInstanceUID", "") or "") for _, ds in slices})
    if len(uids) > 1:
        shown = ", ".join(f"{uid[:12]}…" if uid else "(none)" for uid in uids[:5])
        more = f" and {len(uids) - 5} more" if len(uids) > 5 else ""
        raise ScanError(
            f"{folder}: holds {len(uids)} series ({shown}{more}); put one series per folder"
        )
    multi = [file.name for file, ds in slices if int(ds.get("NumberOfFrames") or 1) > 1]
    if multi and len(slices) > 1:
        raise ScanError(
            f"{folder}: {multi[0]} holds several frames and the folder {len(slices)} image "
            "files; give the multi-frame file on its own"
        )


def _check_slices_match(folder: Path, datasets: Sequence, names: Sequence[str]) -> None:
    """Refuse slices that lack a position or orientation, or differ in orientation, size or
    pixel spacing."""
    first = datasets[0]
    reference = _floats(first.get("ImageOrientationPatient"))
    size = (first.get("Rows"), first.get("Columns"))
    spacing = _pixel_spacing(first)
    for name, ds in zip(names, datasets, strict=True):
        orientation = _floats(ds.get("ImageOrientationPatient"))
        position = _floats(ds.get("ImagePositionPatient"))
        if not _is_orientation(orientation) or position is None or len(position) != 3:
            raise ScanError(
                f"{folder}: {name} has no ImagePositionPatient/ImageOrientationPatient, so its "
                "place in the volume is unknown; read the slices one by one with read_dicom"
            )
        if not np.allclose(orientation, reference, atol=1e-4):
            raise ScanError(
                f"{folder}: {name} is oriented differently from {names[0]} (several stacks or "
                "a localizer in one folder?); put one stack per folder"
            )
        if (ds.get("Rows"), ds.get("Columns")) != size:
            raise ScanError(
                f"{folder}: {name} is {ds.get('Rows')}×{ds.get('Columns')} pixels but "
                f"{names[0]} is {size[0]}×{size[1]}; put one stack per folder"
            )
        if _pixel_spacing(ds) != spacing:
            raise ScanError(
                f"{folder}: {name} has pixels of {_by(_pixel_spacing(ds), '.4g')} mm but "
                f"{names[0]} of {_by(spacing, '.4g')} mm; put one stack per folder"
            )


def _stack_geometry(
    source: Path,
    positions: np.ndarray,
    orientation: Sequence[float],
    pixel_spacing: tuple[float, float],
    labels: Sequence[str],
    what: str,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(order, RAS affine, spacing) of slices at ``positions`` (N, 3, LPS mm): sorted along the
    slice normal, refused when two share a place or the gaps are uneven."""
    along_row, along_column, normal = _directions(orientation)
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    gaps = np.diff(depth[order])
    if gaps.size and gaps.min() < _SAME_POSITION_MM:
        i = int(np.argmin(gaps))
        raise ScanError(
            f"{source}: {labels[order[i]]} and {labels[order[i + 1]]} lie at the same position "
            f"({depth[order[i]]:.4g} mm along the slice normal; two acquisitions or a time "
            f"series?); keep one volume's {what}"
        )
    if gaps.size and gaps.max() / gaps.min() > _GAP_RATIO:
        raise ScanError(
            f"{source}: {what} are unevenly spaced (gaps from {gaps.min():.4g} to "
            f"{gaps.max():.4g} mm along the slice normal; missing {what}?); hrcam does not "
            "resample series with gaps"
        )
    row_spacing, column_spacing = pixel_spacing
    step = positions[order[1]] - positions[order[0]]
    columns = (step, along_column * row_spacing, along_row * column_spacing)
    affine = _ras_affine(columns, positions[order[0]])
    return order, affine, (float(np.linalg.norm(step)), row_spacing, column_spacing)


def _directions(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(along a row, along a column, slice normal) unit vectors from ImageOrientationPatient:
    its first triplet is the direction in which the column index grows."""
    along_row = np.asarray(orientation[:3], dtype=np.float64)
    along_column = np.asarray(orientation[3:6], dtype=np.float64)
    return along_row, along_column, np.cross(along_row, along_column)


def _ras_affine(columns: Sequence[np.ndarray], origin: Sequence[float]) -> np.ndarray:
    """The RAS+ affine whose index axes step by ``columns`` (LPS mm) from ``origin`` (LPS)."""
    lps = np.eye(4)
    for axis, column in enumerate(columns):
        lps[:3, axis] = column
    lps[:3, 3] = origin
    return _LPS_TO_RAS @ lps


def _rescaled(pixels: np.ndarray, ds) -> np.ndarray:
    """Stored values to physical ones: ``pixels * RescaleSlope + RescaleIntercept`` (float32)."""
    slope = _first_float(_functional(ds, "RescaleSlope", _VALUE_GROUP), 1.0)
    intercept = _first_float(_functional(ds, "RescaleIntercept", _VALUE_GROUP), 0.0)
    values = pixels.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def _pixels(ds, path: Path) -> np.ndarray:
    """The decoded pixel array, colour turned into luminance; decoding problems as one line."""
    if not _has_pixels(ds):
        raise ScanError(
            f"{path}: holds no pixel data (a DICOMDIR, a report, or a file cut short?); give "
            "an image file or its series folder"
        )
    try:
        pixels = ds.pixel_array
    except Exception as err:  # each decoder plugin raises its own kind of exception
        raise ScanError(_pixel_problem(ds, path, err)) from None
    if int(ds.get("SamplesPerPixel") or 1) > 1 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3].astype(np.float32) @ _LUMA
    return pixels


def _pixel_problem(ds, path: Path, err: Exception) -> str:
    """The one-line message for pixel data that would not decode."""
    reason = _one_line(err, path)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        compressed = syntax is not None and syntax.is_compressed
    except ValueError:  # not a transfer syntax UID pydicom knows
        compressed = True
    if not compressed:
        return f"{path}: cannot read its pixel data ({reason}); the file may be truncated"
    if "missing dependencies" in reason:
        why, advice = "no decoder for it is installed here", "install a decoder"
    else:  # a decoder is there but refused the data: corrupt, or a variant it does not read
        why, advice = (
            f"the decoders here failed: {reason}",
            "the data may be corrupt; or install another decoder",
        )
    plugin = "pylibjpeg-openjpeg" if "2000" in syntax.name else "pylibjpeg-libjpeg"
    return (
        f"{path}: cannot decode its {syntax.name} pixel data ({why}); {advice}, e.g. "
        f"`pip install pylibjpeg {plugin}`, or decompress the files with `gdcmconv --raw`"
    )


def _dcmread(path: Path):
    """``pydicom.dcmread`` with its errors as :class:`ScanError`."""
    pydicom = _require("pydicom", "reading DICOM")
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        raise ScanError(
            f"{path}: not a DICOM file (no DICM marker at byte 128); give a DICOM file or "
            "series folder, or a NIfTI file"
        ) from None
    except OSError as err:
        raise ScanError(_os_problem(path, err)) from None
    except (EOFError, ValueError, KeyError) as err:
        raise ScanError(
            f"{path}: truncated or corrupt DICOM file ({_one_line(err, path)})"
        ) from None


def _dicom_files_in(folder: Path) -> Iterator[Path]:
    """The DICOM files directly in ``folder``, by name; photographs and hidden files skipped."""
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries if entry.is_file())
    for name in names:
        lower = name.lower()
        if name.startswith(".") or lower.endswith(IMAGE_EXTENSIONS + _NIFTI_SUFFIXES):
            continue
        path = folder / name
        if lower.endswith(_DICOM_SUFFIXES) or _has_dicom_marker(path):
            yield path


def _has_dicom_marker(path: Path) -> bool:
    """Whether the file has DICOM's ``DICM`` marker after its 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _has_pixels(ds) -> bool:
    return any(keyword in ds for keyword in _PIXEL_KEYWORDS)


def _functional(ds, keyword: str, sequence: str, frame: int = 0):
    """An attribute as a multi-frame file gives it (the frame's functional group, then the
    shared one) or, failing those, as a plain file does (top level); None when absent."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return ds.get(keyword)


def _pixel_spacing(ds) -> tuple[float, float]:
    """(row spacing, column spacing) in mm: PixelSpacing, else ImagerPixelSpacing, else 1."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(_functional(ds, keyword, "PixelMeasuresSequence"))
        if values is not None and len(values) == 2 and min(values) > 0:
            return values[0], values[1]
    return 1.0, 1.0


def _window(ds) -> tuple[float, float] | None:
    """(centre, width) of the file's first display window, or None."""
    centre = _first_float(_functional(ds, "WindowCenter", "FrameVOILUTSequence"), None)
    width = _first_float(_functional(ds, "WindowWidth", "FrameVOILUTSequence"), None)
    if centre is None or width is None or not width > 0:
        return None
    return centre, width


def _floats(value) -> list[float] | None:
    """A DICOM value (number, string, multi-value) as floats; None when absent or not numbers."""
    if value is None or value == "":
        return None
    items = [value] if isinstance(value, str | bytes) or not hasattr(value, "__iter__") else value
    try:
        values = [float(item) for item in items]
    except (TypeError, ValueError):
        return None
    return values if values and all(np.isfinite(values)) else None


def _first_float(value, default: float | None) -> float | None:
    values = _floats(value)
    return values[0] if values else default


def _is_orientation(values: Sequence[float] | None) -> bool:
    """Whether ``values`` are six direction cosines of two unit vectors."""
    if values is None or len(values) != 6:
        return False
    along_row, along_column = np.asarray(values[:3]), np.asarray(values[3:])
    return bool(np.linalg.norm(np.cross(along_row, along_column)) > 0.5)


def _modality(ds) -> str:
    """The Modality code (CT, MR, …), or "DICOM"; a defined-term code, never patient data."""
    modality = str(ds.get("Modality") or "").strip()
    return modality if re.fullmatch(r"[A-Z0-9_]{1,16}", modality) else "DICOM"


def _volume_description(ds, shape: tuple[int, ...], spacing: tuple[float, ...]) -> str:
    return (
        f"{_modality(ds)}, {shape[0]} slices of {_by(shape[1:])} pixels, "
        f"{_by(spacing[1:], '.3g')} mm, {spacing[0]:.3g} mm apart"
    )


# --------------------------------------------------------------------------- shared helpers


def _checked_scan(path, array, spacing, affine, window, kind, description) -> Scan:
    """The :class:`Scan`, after refusing NaN/±inf values with their count."""
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ScanError(
            f"{path}: holds {bad} non-finite value(s) (NaN or ±inf) of {array.size}; replace "
            "them (e.g. numpy.nan_to_num) and save the scan again"
        )
    spacing = tuple(float(s) for s in spacing)
    return Scan(
        np.ascontiguousarray(array, dtype=np.float32),
        spacing,
        np.asarray(affine, dtype=np.float64),
        window,
        str(path),
        kind,
        description,
    )


def _require(module: str, purpose: str):
    """Import an optional dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"{purpose} needs the {module} package: pip install {module}"
        ) from None


def _os_problem(path: Path, err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return f"{path}: no such file or folder"
    if isinstance(err, PermissionError):
        return f"{path}: permission denied: it cannot be read"
    if isinstance(err, IsADirectoryError):
        return f"{path}: is a folder; give it to read_dicom_series or read_scan"
    return f"{path}: cannot be read ({err.strerror or _one_line(err, path)})"


def _one_line(err: BaseException, path: Path | None = None, limit: int = 200) -> str:
    """An exception's text on one line, without ``path`` (the message starts with it) and cut
    to ``limit`` characters."""
    text = str(err).replace(str(path), "") if path is not None else str(err)
    text = re.sub(r" ?<[^<>]* at 0x[0-9a-fA-F]+>", "", text)  # no object addresses
    text = " ".join(text.split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _by(values: Sequence, spec: str = "") -> str:
    """``(512, 512)`` → ``"512×512"``."""
    return "×".join(format(value, spec) for value in values)
