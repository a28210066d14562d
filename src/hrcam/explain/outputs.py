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

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import viz
from ..arrays import normalize_map
from ..postprocess import mask_image, resize_bilinear
from ..utils import atomic_save_json, atomic_save_npz
from .compute import ExplainedImage
from .summary import ImageResult

__all__ = [
    "OutputSettings",
    "cam_pictures",
    "display_pictures",
    "maps_arrays",
    "masked_picture",
    "write_outputs",
]

IMAGE_FORMATS = ("jpeg", "png")
MAPS_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class OutputSettings:
    """How each image's files are written."""

    pipeline_figure: bool = True
    image_format: str = "jpeg"
    jpeg_quality: int = 88
    # The pipeline figure is read for its panels' shapes, not fine texture: at 75 it takes 68 KB
    # instead of 92, which keeps an image's outputs under 400 KB with every map in them.
    figure_quality: int = 75
    maps_dtype: str = "float16"
    cmap: str = viz.DEFAULT_CMAP
    opacity: float = 0.5
    # The blended overlays as files too (the report blends the coloured CAMs over the image
    # itself): three more pictures at display size, ~7 ms and ~70 KB per image (bench_explain).
    overlay_files: bool = False

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(
                f"image format must be one of {IMAGE_FORMATS}, got {self.image_format!r}"
            )
        if self.maps_dtype not in MAPS_DTYPES:
            raise ValueError(f"maps dtype must be one of {MAPS_DTYPES}, got {self.maps_dtype!r}")
        for name in ("jpeg_quality", "figure_quality"):
            quality = getattr(self, name)
            if not (isinstance(quality, int) and 1 <= quality <= 100):
                raise ValueError(f"{name} must be an integer in [1, 100], got {quality!r}")
        if not 0 <= self.opacity <= 1:
            raise ValueError(f"opacity must lie in [0, 1], got {self.opacity}")
        viz.colour_table(self.cmap)  # an unknown colour map fails now, not per image

    @property
    def suffix(self) -> str:
        return ".jpg" if self.image_format == "jpeg" else ".png"


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
    for key, picture in cam_pictures(
        explained.low_res, explained.high_res, refined, cmap=settings.cmap
    ).items():
        save(key, picture)
    if settings.overlay_files:  # the blended overlays, and the masked image from the same resize
        pictures = display_pictures(
            explained.display,
            explained.low_res,
            explained.high_res,
            explained.steps,
            opacity=settings.opacity,
            cmap=settings.cmap,
        )
    else:
        pictures = {"masked": masked_picture(explained.display, explained.steps)}
    for key, picture in pictures.items():
        save(key, picture)
    if settings.pipeline_figure:
        save("pipeline", _pipeline(explained, settings), settings.figure_quality)
    maps = maps_arrays(
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


def cam_pictures(low, high, refined, *, cmap: str) -> dict[str, np.ndarray]:
    """The three CAMs in colour at the high-res CAM's size (``cam_low``: the low-res CAM
    resized bilinearly, as in the overlays; ``cam_high``; ``cam_refined``), each scaled to its
    own range; the report lays them over the image."""
    size = np.shape(high)
    return {
        "cam_low": viz.colorize(resize_bilinear(normalize_map(low), size), cmap=cmap),
        "cam_high": viz.colorize(high, cmap=cmap),
        "cam_refined": viz.colorize(refined, cmap=cmap),
    }


def masked_picture(display: np.ndarray, steps, *, refined=None) -> np.ndarray:
    """``display`` masked by the refined CAM, with ``steps``' filter options (``refined``: that
    CAM already at display size, else ``steps.refined`` is resized)."""
    if refined is None:
        refined = resize_bilinear(np.asarray(steps.refined, dtype=np.float32), display.shape[:2])
    o = steps.options
    return mask_image(
        display,
        refined,
        filter=o.filter,
        keep_percentage=o.keep_percentage,
        threshold=o.threshold,
    )


def display_pictures(
    display: np.ndarray, low, high, steps, *, opacity: float, cmap: str
) -> dict[str, np.ndarray]:
    """The pictures a person looks at, at the display image's size: the low-res, high-res and
    refined CAMs blended over ``display`` (``overlay_low``, ``overlay_high``,
    ``overlay_refined``) and the image masked by the refined CAM (``masked``, with ``steps``'
    filter options).

    Used by the app, and by ``hrcam explain`` with ``overlay_files``.
    """
    # The refined CAM at display size, for both of its pictures; the other two are resized by
    # overlay_cam (compiled bilinear, as resize_bilinear).
    refined = resize_bilinear(np.asarray(steps.refined, dtype=np.float32), display.shape[:2])
    pictures = {
        key: viz.overlay_cam(display, cam, alpha=opacity, cmap=cmap)
        for key, cam in (("overlay_low", low), ("overlay_high", high), ("overlay_refined", refined))
    }
    pictures["masked"] = masked_picture(display, steps, refined=refined)
    return pictures


def _pipeline(explained: ExplainedImage, settings: OutputSettings) -> np.ndarray:
    t = explained.target
    title = f"{explained.decoded.item.path.name}: {t['name']} ({t['probability']:.1%})"
    ranges = {
        "low": (float(explained.low_res.min()), float(explained.low_res.max())),
        "high": (float(explained.high_res.min()), float(explained.high_res.max())),
    }
    return viz.pipeline_image(
        explained.steps, explained.network_input, title=title, ranges=ranges, cmap=settings.cmap
    )


def maps_arrays(
    low_res, high_res, steps, probabilities, target: int, dtype: str = "float16"
) -> dict[str, np.ndarray]:
    """What ``maps.npz`` holds. Every other step is ``hrcam.refine(low_res_cam, high_res_cam)``."""
    return {
        "low_res_cam": np.asarray(low_res, dtype=np.float32),  # tiny: always full precision
        "high_res_cam": np.asarray(high_res).astype(dtype),
        "refined_cam": np.asarray(steps.refined).astype(dtype),
        "roi": np.asarray(steps.roi, dtype=bool),
        "focal_points": np.asarray(steps.focal_points, dtype=bool),
        "segment": np.asarray(steps.full_segment, dtype=bool),
        "bounds": np.asarray(steps.bounds, dtype=np.float32),
        "target": np.int64(target),
        "probabilities": np.asarray(probabilities, dtype=np.float32),
        "options": np.array(json.dumps(asdict(steps.options))),
    }
