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
        size=tuple(explained.decoded.original_size),
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
