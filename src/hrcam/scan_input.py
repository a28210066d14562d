"""Medical inputs as a network takes them: scans and intensity arrays to pixels in [0, 1].

:meth:`hrcam.Explainer.prepare` calls these for a network of volumes (``spatial_dims=3``) and
for a scan given to a network of images (an X-ray as DICOM, a 16-bit PNG). A scan's values
(Hounsfield units, MR intensities) are windowed to [0, 1] — the window given, else the file's
own display window, else the 0.5th to 99.5th percentile of its values — and resampled to the
network's input size; the network then sees ``(pixels - mean) / std`` with its own
normalisation, as it sees a photograph's. A volume is resampled trilinearly (averaged over
whole blocks first where it shrinks by more than half, so thin structures are not skipped).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checks import ShapeError

__all__ = ["network_spacing", "is_scan_item", "resize_volume", "scan_pixels", "volume_pixels"]

Window = tuple[float, float] | None


def is_scan_item(item) -> bool:
    """A :class:`~hrcam.medical.Scan`, or a path :func:`hrcam.medical.read_scan` reads
    (DICOM, a DICOM folder, NIfTI, a 16-bit PNG/TIFF)."""
    from .medical import Scan, is_scan_path

    if isinstance(item, Scan):
        return True
    if not isinstance(item, (str, os.PathLike)):
        return False
    return is_scan_path(item) or _is_high_bit_depth(item)


def _is_high_bit_depth(path) -> bool:
    """A PNG or TIFF of more than 8 bits per sample (Pillow's modes I;16, I, F)."""
    if not str(path).lower().endswith((".png", ".tif", ".tiff")) or not os.path.isfile(path):
        return False
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode.startswith(("I;16", "I", "F"))
    except OSError:
        return False


def scan_pixels(item, window: Window = None) -> np.ndarray:
    """A scan (a :class:`~hrcam.medical.Scan` or a path) windowed to float32 in [0, 1], its
    own shape: ``(H, W)`` or ``(D, H, W)``."""
    from .medical import Scan, read_scan

    scan = item if isinstance(item, Scan) else read_scan(item)
    return scan.windowed(window)


def volume_pixels(item, window: Window = None) -> np.ndarray:
    """One volume for a network of volumes, as float32 ``(D, H, W)`` in [0, 1]: a scan or its
    path (windowed), an intensity array ``(D, H, W)`` (windowed like a scan without a window of
    its own), or a tensor ``(D, H, W)`` / ``(1, D, H, W)`` already in [0, 1] (as it is)."""
    if isinstance(item, torch.Tensor):
        volume = item.detach().float().cpu()
        if volume.ndim == 4 and volume.shape[0] == 1:
            volume = volume[0]
        if volume.ndim != 3:
            raise ShapeError(
                f"a volume tensor must be (D, H, W) or (1, D, H, W) in [0, 1], got shape "
                f"{tuple(item.shape)}"
            )
        return volume.clamp(0, 1).numpy()
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or not np.issubdtype(item.dtype, np.number):
            raise ShapeError(
                f"a volume array must be (D, H, W) numbers, got {item.dtype} of shape {item.shape}"
            )
        from .medical import Scan

        scan = Scan(
            array=item.astype(np.float32),
            spacing=(1.0, 1.0, 1.0),
            affine=np.eye(4),
            window=None,
            source="array",
            kind="array",
            description=f"array of {'×'.join(map(str, item.shape))}",
        )
        return scan.windowed(window)
    pixels = scan_pixels(item, window)
    if pixels.ndim != 3:
        raise ShapeError(
            f"{getattr(item, 'source', item)}: a {pixels.ndim}-D image, but this network takes "
            "volumes (D, H, W)"
        )
    return pixels


def network_spacing(scan, network_shape: Sequence[int]) -> tuple[float, ...]:
    """Millimetres per voxel of ``scan`` resampled to ``network_shape``: the network's voxels
    cover the scan's whole extent, so each axis's spacing is the scan's, rescaled."""
    return tuple(
        float(s) * n / m
        for s, n, m in zip(scan.spacing, scan.array.shape, network_shape, strict=True)
    )


def resize_volume(volumes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, C, D, H, W)`` resampled to ``size = (D', H', W')``: trilinear (half-voxel
    centres), after averaging whole blocks along every axis that shrinks by 2 or more."""
    shape = tuple(volumes.shape[-3:])
    size = tuple(int(n) for n in size)
    if shape == size:
        return volumes
    blocks = tuple(max(1, n // m) for n, m in zip(shape, size, strict=True))
    if any(b > 1 for b in blocks):
        volumes = F.avg_pool3d(volumes, blocks, ceil_mode=True)
    if tuple(volumes.shape[-3:]) == size:
        return volumes
    return F.interpolate(volumes, size=size, mode="trilinear", align_corners=False)
