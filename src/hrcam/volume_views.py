"""Pictures of volumes a radiologist reads: three orthogonal slices through one point.

A CT or MRI map is a volume; a person reads it as slices. :func:`volume_pictures` cuts the
windowed scan and each map along the three planes through a point (by default the refined
map's maximum) — across the first axis, the second and the third (axial, coronal and sagittal
for a scan stored axially) — and lays the three slices in a square 2×2 grid, each at its
physical aspect (the voxel spacing), so a report shows a volume as it shows a photograph: the
image, the three CAMs in colour over it, and the image masked by the refined CAM.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .arrays import normalize_map
from .postprocess.volume import resize_bilinear
from .viz import DEFAULT_CMAP, colorize

__all__ = ["PANEL_HEIGHT", "montage", "orthogonal_slices", "slice_point", "volume_pictures"]

# Each slice is fitted into a square cell of this many pixels; the cells form a 2×2 grid with a
# gap between them (the fourth cell stays black), so a volume's picture is square like a
# photograph's thumbnail.
PANEL_HEIGHT = 224
_GAP = 4


def slice_point(volume: np.ndarray) -> tuple[int, int, int]:
    """The voxel of ``volume``'s largest value (its first, in C order), as ``(i, j, k)``."""
    return tuple(int(n) for n in np.unravel_index(int(np.argmax(volume)), volume.shape))


def orthogonal_slices(
    volume: np.ndarray, point: Sequence[int], spacing: Sequence[float]
) -> list[tuple[np.ndarray, float]]:
    """The three slices of ``volume`` ``(D, H, W[, C])`` through ``point``, each with its
    physical aspect (width over height in millimetres): across axis 0 (``H × W``), across
    axis 1 (``D × W``) and across axis 2 (``D × H``)."""
    i, j, k = point
    sd, sh, sw = spacing
    d, h, w = volume.shape[:3]
    return [
        (volume[i], (w * sw) / (h * sh)),
        (volume[:, j], (w * sw) / (d * sd)),
        (volume[:, :, k], (h * sh) / (d * sd)),
    ]


def montage(
    slices: Sequence[tuple[np.ndarray, float]], *, height: int = PANEL_HEIGHT
) -> np.ndarray:
    """The slices in a 2×2 grid of square cells of ``height`` pixels (black gaps between), each
    resized (bilinearly) to fill its cell at its aspect and centred; keeps a trailing channel
    axis and the dtype."""
    first = np.asarray(slices[0][0], dtype=np.float32)
    side = 2 * height + _GAP
    out = np.zeros((side, side, *first.shape[2:]), dtype=np.float32)
    for n, (picture, aspect) in enumerate(slices):
        h, w = (
            (height, max(1, round(height * aspect)))
            if aspect <= 1
            else (
                max(1, round(height / aspect)),
                height,
            )
        )
        resized = resize_bilinear(np.asarray(picture, dtype=np.float32), (h, w))
        top = (n // 2) * (height + _GAP) + (height - h) // 2
        left = (n % 2) * (height + _GAP) + (height - w) // 2
        out[top : top + h, left : left + w] = resized
    dtype = np.asarray(slices[0][0]).dtype
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.rint(out), 0, 255).astype(dtype)
    return out.astype(dtype)


def volume_pictures(
    image: np.ndarray,
    low_resized: np.ndarray,
    high: np.ndarray,
    refined: np.ndarray,
    masked: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    point: Sequence[int] | None = None,
    cmap: str = DEFAULT_CMAP,
) -> dict[str, np.ndarray]:
    """The report's pictures of one volume, every one a montage of the same three slices:
    ``image`` (the windowed scan, RGB), ``cam_low`` / ``cam_high`` / ``cam_refined`` (each map
    coloured over its whole volume's range, so slices compare) and ``masked``.

    ``image``, ``masked``: ``(D, H, W)`` uint8; the maps ``(D, H, W)`` float at the same size
    (``low_resized``: the low-res CAM resized to it); ``spacing``: millimetres per voxel along
    each axis; ``point``: where the slices cross (default: the refined map's maximum).
    """
    point = slice_point(refined) if point is None else tuple(point)

    def cut(volume):
        return montage(orthogonal_slices(volume, point, spacing))

    gray = cut(image)
    pictures = {
        "image": np.repeat(gray[..., None], 3, axis=2),
        "masked": np.repeat(cut(masked)[..., None], 3, axis=2),
    }
    inside = cut(np.ones(image.shape, dtype=np.float32)) > 0.5  # not the gaps between slices
    for key, volume in (("cam_low", low_resized), ("cam_high", high), ("cam_refined", refined)):
        # Normalised over the volume first: a slice's colours mean what they mean in the others.
        coloured = colorize(cut(normalize_map(volume)), cmap=cmap, normalize=False)
        pictures[key] = np.where(inside[..., None], coloured, 0).astype(np.uint8)
    return pictures
