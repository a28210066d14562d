"""The writing half of ``hrcam explain``: one explained image's files, written atomically.

Per image, in ``images/<name>/``: the image at display size, the three CAMs in colour at the
network's size (``cam_low``, ``cam_high``, ``cam_refined``: each map's own pixels), the masked
image, the pipeline figure (optional), ``maps.npz`` (the maps at the network's size, as float16
unless asked otherwise) and ``predictions.json``. The report lays each coloured CAM over the
image at the run's opacity (the browser blends them), so the blended overlays are written only
on request (``overlay_files``: ``overlay_low`` ...). Pictures are JPEG by default (a
photograph's is ~10x smaller than as PNG), PNG on request. :func:`write_outputs` is a pure
function of its inputs, so a pool of threads writes several images at once (the encoders and
the compiled kernels release the GIL).

A medical scan (DICOM, NIfTI) also gets its three maps as NIfTI at the scan's own size and
with its affine (``cam_low.nii.gz`` ...), so a viewer (3D Slicer, ITK-SNAP) lays them over the
scan. A volume's pictures are three orthogonal slices through the refined map's maximum
(:mod:`hrcam.volume_views`); it has no pipeline figure.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import viz
from ..explainer import maps_record
from ..utils import atomic_save_json, atomic_save_npz
from .compute import ExplainedImage
from .settings import OutputSettings
from .summary import ImageResult

__all__ = ["write_outputs"]


def write_outputs(explained: ExplainedImage, output: Path, settings: OutputSettings) -> ImageResult:
    """Write every file of one image into ``output/images/<name>/``; return its result record."""
    name = explained.decoded.item.name
    folder = output / "images" / name
    files: dict[str, str] = {}

    def save(key: str, picture: np.ndarray, quality: int = settings.jpeg_quality) -> None:
        filename = key + settings.suffix
        viz.save_image(picture, folder / filename, quality=quality, durable=False)
        files[key] = f"images/{name}/{filename}"

    refined = np.asarray(explained.steps.refined, dtype=np.float32)
    scan = explained.decoded.scan
    if scan is not None and scan.kind in ("dicom", "nifti"):
        _write_nifti_maps(explained, refined, folder, files)
    if explained.display is None:  # a volume: its pictures are slices
        size = _save_volume_pictures(explained, refined, save, settings)
        return _finish(explained, refined, folder, files, settings, size)
    save("image", explained.display)
    for key, picture in viz.cam_pictures(
        explained.low_res, explained.high_res, refined, cmap=settings.cmap
    ).items():
        save(key, picture)
    if settings.overlay_files:  # the blended overlays, and the masked image from the same resize
        pictures = viz.display_pictures(
            explained.display,
            explained.low_res,
            explained.high_res,
            explained.steps,
            opacity=settings.opacity,
            cmap=settings.cmap,
        )
    else:
        pictures = {"masked": viz.masked_picture(explained.display, explained.steps)}
    for key, picture in pictures.items():
        save(key, picture)
    if settings.pipeline_figure:
        save("pipeline", _pipeline(explained, settings), settings.figure_quality)
    return _finish(explained, refined, folder, files, settings, explained.decoded.original_size)


def _finish(explained, refined, folder: Path, files: dict, settings, size) -> ImageResult:
    """Write ``maps.npz`` and, last, ``predictions.json``; the image's result record."""
    name = explained.decoded.item.name
    maps = maps_record(
        explained.low_res,
        explained.high_res,
        explained.steps,
        explained.probabilities,
        explained.target["index"],
        settings.maps_dtype,
    )
    atomic_save_npz(maps, folder / "maps.npz", durable=False)
    files["maps"] = f"images/{name}/maps.npz"
    result = ImageResult(
        source=str(explained.decoded.item.path),
        name=name,
        ok=True,
        size=tuple(size),
        shape=None if explained.decoded.scan is None else list(explained.decoded.scan.array.shape),
        source_size=explained.decoded.source_size,
        source_mtime_ns=explained.decoded.source_mtime_ns,
        top5=explained.top5,
        target=explained.target,
        files=files,
        ranges={
            key: [float(np.min(cam)), float(np.max(cam))]
            for key, cam in (
                ("low_res", explained.low_res),
                ("high_res", explained.high_res),
                ("refined", refined),
            )
        },
    )
    # Written last: the image is done when this file is. No fsync per file (10 ms per image):
    # a rerun with skip_existing redoes an image with a missing or empty file (reload_result).
    atomic_save_json(asdict(result), folder / "predictions.json", durable=False)
    return result


def _save_volume_pictures(explained, refined, save, settings) -> tuple[int, int]:
    """A volume's pictures, three orthogonal slices each (:func:`hrcam.volume_views.volume_pictures`),
    at the scan's physical aspect; returns the pictures' (width, height)."""
    from ..postprocess.volume import resize_bilinear
    from ..scan_input import network_spacing
    from ..volume_views import volume_pictures

    network = explained.network_input
    spacing = network_spacing(explained.decoded.scan, network.shape)
    low = resize_bilinear(np.asarray(explained.steps.low, dtype=np.float32), network.shape)
    masked = explained.steps.masked_image
    pictures = volume_pictures(
        network,
        low,
        explained.high_res,
        refined,
        network if masked is None else masked,
        spacing=spacing,
        cmap=settings.cmap,
    )
    for key, picture in pictures.items():
        save(key, picture)
    height, width = pictures["image"].shape[:2]
    return width, height


def _write_nifti_maps(explained, refined, folder: Path, files: dict) -> None:
    """The three maps at the scan's own size, with its affine (``cam_*.nii.gz``)."""
    import torch
    import torch.nn.functional as F

    from ..medical import write_nifti

    scan = explained.decoded.scan
    mode = "trilinear" if scan.ndim == 3 else "bilinear"
    for key, cam in (
        ("low", explained.low_res),
        ("high", explained.high_res),
        ("refined", refined),
    ):
        t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
        resized = F.interpolate(t, size=scan.array.shape, mode=mode, align_corners=False)
        filename = f"cam_{key}.nii.gz"
        write_nifti(folder / filename, resized[0, 0].numpy(), scan.affine)
        files[f"nifti_{key}"] = f"images/{explained.decoded.item.name}/{filename}"


def _pipeline(explained: ExplainedImage, settings: OutputSettings) -> np.ndarray:
    t = explained.target
    title = f"{explained.decoded.item.path.name}: {t['name']} ({t['probability']:.1%})"
    ranges = {
        "low": (float(explained.low_res.min()), float(explained.low_res.max())),
        "high": (float(explained.high_res.min()), float(explained.high_res.max())),
    }
    return viz.pipeline_image(
        explained.steps,
        explained.network_input,
        title=title,
        ranges=ranges,
        cmap=settings.cmap,
        aspect=explained.decoded.original_size,
    )
