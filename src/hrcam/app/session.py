"""What the app computes, without the web page: images in, top-5 classes and CAM overlays out.

:class:`ExplainerSession` holds a model and small caches, so the page answers at the speed a
person pokes at it:

- a new image is decoded, shown at display size (at most ``display_side`` pixels a side: a
  huge photograph is downscaled for the page) and run once through the model, which gives the
  top-5 classes and the predicted class's CAMs together;
- the CAMs (low-res and high-res) are cached per image and class, so another refinement option
  only re-runs the refinement (milliseconds), and another opacity only re-draws the overlays;
- errors are :class:`AppError` with one line that names the problem (an unreadable upload, an
  unknown class name), which the page shows while the app keeps running;
- medical scans (DICOM, NIfTI, 16-bit PNG/TIFF) load through the explainer's scan path; a
  volume is shown as three orthogonal slices through a point (by default the refined map's
  maximum, else where the page's sliders put it), each map over the windowed volume.

``benchmarks/bench_app.py`` times these functions, which are the page's handlers minus Gradio.
"""

from __future__ import annotations

import hashlib
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import viz
from ..explainer import CAMs, ClassScore, Explainer, Explanation, ImageBatch
from ..io import DISPLAY_SIDE, ImageLoadError
from ..postprocess import RefineOptions, RefineSteps
from ..utils import atomic_save_npz

__all__ = ["AppError", "ClassScore", "ExplainerSession", "LoadedImage", "Views"]


class AppError(ValueError):
    """A problem the page shows in one line; the app goes on."""


@dataclass
class LoadedImage:
    """One image as the session keeps it (``key``: a digest of its pixels)."""

    key: str
    name: str
    display: np.ndarray  # (h, w, 3) uint8, at most DISPLAY_SIDE a side; a volume: (D, H, W)
    batch: ImageBatch  # the image as the explainer's networks take it
    probabilities: np.ndarray  # (C,)
    top5: list[ClassScore]
    original_size: tuple[int, int]  # (width, height)
    spacing: tuple[float, ...] | None = None  # a volume's mm per voxel at the network's size

    @property
    def is_volume(self) -> bool:
        return self.spacing is not None

    @property
    def network_input(self) -> np.ndarray:
        """(H, W, 3) uint8: what the network saw."""
        return self.batch.rgb[0]


@dataclass
class Views:
    """What the page shows for one image, class and set of options."""

    target: ClassScore
    low: np.ndarray  # overlays (h, w, 3) uint8 at display size
    high: np.ndarray
    refined: np.ndarray
    masked: np.ndarray
    explanation: Explanation  # the explainer's result for this image, class and options
    ranges: dict[str, tuple[float, float]]  # raw (min, max) of the low- and high-res CAMs
    point: tuple[int, int, int] | None = None  # a volume's: where its three slices cross

    @property
    def steps(self) -> RefineSteps:
        return self.explanation.steps[0]


class ExplainerSession:
    """The app's state: an explainer, the images seen (LRU), their CAMs per class (LRU).

    Every map comes from the explainer's own calls (:meth:`Explainer.cams`, then
    :meth:`Explainer.refine` with the page's options), so the page shows what
    ``explainer.explain`` gives. Thread-safe: the page's handlers may run at once; the
    networks are called under a lock.
    """

    def __init__(
        self,
        explainer: Explainer,
        *,
        display_side: int = DISPLAY_SIDE,
        max_images: int = 8,
        max_cams: int = 32,
    ) -> None:
        self.explainer = explainer.eval()
        self.display_side = display_side
        self._images: OrderedDict[str, LoadedImage] = OrderedDict()
        self._cams: OrderedDict[tuple[str, int], CAMs] = OrderedDict()
        self._explained: OrderedDict[tuple[str, int, RefineOptions], Explanation] = OrderedDict()
        self._max_images, self._max_cams = max_images, max_cams
        self._lock = threading.Lock()

    @property
    def class_names(self) -> list[str]:
        return list(self.explainer.class_names)

    # -- images ------------------------------------------------------------------------------
    def load(self, source: str | Path | Image.Image, *, name: str | None = None) -> LoadedImage:
        """Decode an upload (a path or a PIL image), predict, and keep it; :class:`AppError` if
        it is not a readable image. A medical scan (DICOM, NIfTI, 16-bit PNG/TIFF) or, for a
        network of volumes, any path goes through :meth:`load_scan`."""
        from ..scan_input import is_scan_item

        if not isinstance(source, Image.Image) and (
            self.explainer.spatial_dims == 3 or is_scan_item(source)
        ):
            return self.load_scan(source, name=name)
        try:
            image = self.explainer.decode(source)
        except (ImageLoadError, FileNotFoundError) as err:
            raise AppError(_upload_message(err, name)) from None
        pixels = np.asarray(image)
        key = hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()[:16]
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        return self._predict_and_keep(
            key,
            self.explainer.prepare(image),
            name=name or (Path(source).stem if not isinstance(source, Image.Image) else "image"),
            display=viz.display_image(image, self.display_side),
            original_size=tuple(image.info.get("hrcam_original_size", image.size)),
        )

    def _predict_and_keep(self, key: str, batch: ImageBatch, **fields) -> LoadedImage:
        """One pass of the networks (the predicted class's CAMs come with it), the image kept
        with its top-5 classes and those CAMs."""
        with self._lock:
            cams = self.explainer.cams(batch)
        probabilities = cams.probabilities[0].float().cpu().numpy()
        loaded = LoadedImage(
            key=key,
            batch=batch,
            probabilities=probabilities,
            top5=self._top(probabilities, 5),
            **fields,
        )
        self._remember(self._images, key, loaded, self._max_images)
        self._remember_cams(key, int(cams.targets[0]), cams)
        return loaded

    def load_scan(self, source: str | Path, *, name: str | None = None) -> LoadedImage:
        """Read a scan, predict, and keep it: a 2-D scan is shown as its windowed picture, a
        volume as slices (:meth:`views`); :class:`AppError` names a scan that cannot be read
        or that does not fit the network (a volume for a network of images, or the reverse)."""
        from ..checks import ShapeError
        from ..medical import ScanError, read_scan
        from ..scan_input import network_spacing

        label = name or _scan_name(Path(source))
        try:
            scan = read_scan(source)
            batch = self.explainer.prepare([scan])
        except (ScanError, ShapeError, OSError) as err:
            text = _upload_message(err, label)
            raise AppError(text if text.startswith(label) else f"{label}: {text}") from None
        key = hashlib.sha1(batch.pixels.cpu().numpy().tobytes()).hexdigest()[:16]
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        pictures = batch.rgb[0]
        volume = scan.array.ndim == 3
        return self._predict_and_keep(
            key,
            batch,
            name=label,
            display=pictures
            if volume
            else viz.display_image(Image.fromarray(pictures), self.display_side),
            original_size=(scan.array.shape[-1], scan.array.shape[-2]),
            spacing=network_spacing(scan, pictures.shape) if volume else None,
        )

    def image(self, key: str) -> LoadedImage:
        if key not in self._images:
            raise AppError("that image is no longer in memory; upload it again")
        return self._images[key]

    # -- classes -----------------------------------------------------------------------------
    def class_index(self, name_or_index: int | str) -> int:
        """A class by index, by name (any case) or by ``"name (12.3%)"`` as the page lists it."""
        if isinstance(name_or_index, str):
            name_or_index = name_or_index.rsplit(" (", 1)[0].strip()
        try:
            return self.explainer.class_index(name_or_index)
        except (TypeError, ValueError) as err:
            raise AppError(str(err)) from None

    def _top(self, probabilities: np.ndarray, k: int) -> list[ClassScore]:
        order = np.argsort(-probabilities, kind="stable")[:k]
        names = self.explainer.class_names
        return [ClassScore(int(i), names[int(i)], float(probabilities[i])) for i in order]

    # -- maps --------------------------------------------------------------------------------
    def cams(self, key: str, class_index: int) -> CAMs:
        """The CAMs of one image and class (``explainer.cams``), from the cache or computed."""
        if (key, class_index) in self._cams:
            self._cams.move_to_end((key, class_index))
            return self._cams[key, class_index]
        loaded = self.image(key)
        with self._lock:
            cams = self.explainer.cams(loaded.batch, class_index)
        return self._remember_cams(key, class_index, cams)

    def _remember_cams(self, key: str, class_index: int, cams: CAMs) -> CAMs:
        if not (bool(cams.low_res.isfinite().all()) and bool(cams.high_res.isfinite().all())):
            raise AppError(
                "the model's CAMs hold NaN or infinite values for this image; check the model's "
                "weights"
            )
        self._remember(self._cams, (key, class_index), cams, self._max_cams)
        return cams

    def explain(self, key: str, class_index: int, options: RefineOptions) -> Explanation:
        """The explanation of one image and class with ``options`` (the CAMs cached per class,
        the last few explanations too, so a new opacity or colour map re-draws only)."""
        cache_key = (key, class_index, options)
        if cache_key in self._explained:
            self._explained.move_to_end(cache_key)
            return self._explained[cache_key]
        cams = self.cams(key, class_index)
        refiner = self.explainer.replace(refine_options=options)
        explanation = refiner.refine(cams, self.image(key).batch, steps=True)
        self._remember(self._explained, cache_key, explanation, self._max_cams)
        return explanation

    def refine(self, key: str, class_index: int, options: RefineOptions) -> RefineSteps:
        """Every refinement step for one image, class and option set."""
        return self.explain(key, class_index, options).steps[0]

    def views(
        self,
        key: str,
        class_index: int,
        options: RefineOptions | None = None,
        *,
        opacity: float = 0.5,
        cmap: str = viz.DEFAULT_CMAP,
        point: tuple[int, int, int] | None = None,
    ) -> Views:
        """The overlays of one image and class; of a volume, its three orthogonal slices
        through ``point`` (default: the refined map's maximum, :attr:`Views.point`)."""
        options = options or RefineOptions()
        loaded = self.image(key)
        explanation = self.explain(key, class_index, options)
        low = explanation.low_res[0].float().cpu().numpy()
        high = explanation.high_res[0].float().cpu().numpy()
        if loaded.is_volume:
            pictures, point = _volume_overlays(
                loaded, explanation, point, opacity=opacity, cmap=cmap
            )
        else:
            pictures = viz.display_pictures(
                loaded.display, low, high, explanation.steps[0], opacity=opacity, cmap=cmap
            )
        return Views(
            target=ClassScore(
                class_index,
                self.explainer.class_names[class_index],
                float(loaded.probabilities[class_index]),
            ),
            low=pictures["overlay_low"],
            high=pictures["overlay_high"],
            refined=pictures["overlay_refined"],
            masked=pictures["masked"],
            explanation=explanation,
            ranges={
                "low": (float(low.min()), float(low.max())),
                "high": (float(high.min()), float(high.max())),
            },
            point=point if loaded.is_volume else None,
        )

    def pipeline_figure(
        self, key: str, views: Views, *, cmap: str = viz.DEFAULT_CMAP
    ) -> np.ndarray:
        """The step-by-step figure of the refinement behind ``views`` (images only)."""
        if self.image(key).is_volume:
            raise AppError(
                "the pipeline figure is drawn for images; a volume's steps are in the "
                "downloaded maps (.npz)"
            )
        t = views.target
        title = f"{self.image(key).name}: {t.name} ({t.probability:.1%})"
        loaded = self.image(key)
        return viz.pipeline_image(
            views.steps,
            loaded.network_input,
            title=title,
            ranges=views.ranges,
            cmap=cmap,
            aspect=loaded.original_size,
        )

    # -- downloads ---------------------------------------------------------------------------
    def export(self, key: str, views: Views, folder: str | Path) -> list[Path]:
        """``maps.npz`` (the CAMs, every refinement step, the options) and the overlays as PNG,
        written into ``folder``; returns their paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        loaded = self.image(key)
        stem = f"{loaded.name}_{_safe(views.target.name)}"
        paths = [folder / f"{stem}_maps.npz"]
        # what explain's maps.npz holds, at full precision
        atomic_save_npz(views.explanation.arrays(0, dtype="float32"), paths[0])
        for label, picture in (
            ("low", views.low),
            ("high", views.high),
            ("refined", views.refined),
        ):
            path = folder / f"{stem}_{label}.png"
            viz.save_png(picture, path)
            paths.append(path)
        return paths

    @staticmethod
    def zip_files(paths: list[Path], target: str | Path) -> Path:
        """The files in one zip (one download for the page)."""
        target = Path(target)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for p in paths:
                z.write(p, p.name)
        return target

    @staticmethod
    def _remember(cache: OrderedDict, key, value, limit: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)


def _volume_overlays(loaded: LoadedImage, explanation: Explanation, point, *, opacity, cmap):
    """A volume's three slices through ``point`` (clipped into the volume; default the refined
    map's maximum): each CAM blended over the windowed volume at ``opacity``, and the volume
    masked by the refined CAM. Returns the pictures and the point used."""
    import torch.nn.functional as F

    from ..volume_views import slice_point, volume_pictures

    volume = loaded.display
    steps = explanation.steps[0]
    refined = np.asarray(steps.refined, dtype=np.float32)
    if point is None:
        point = slice_point(refined)
    point = tuple(int(np.clip(p, 0, n - 1)) for p, n in zip(point, volume.shape, strict=True))
    low = explanation.low_res[0].float()[None, None]
    low = F.interpolate(low, size=volume.shape, mode="trilinear", align_corners=False)[0, 0]
    masked = steps.masked_image
    pictures = volume_pictures(
        volume,
        low.cpu().numpy(),
        explanation.high_res[0].float().cpu().numpy(),
        refined,
        volume if masked is None else masked,
        spacing=loaded.spacing,
        point=point,
        cmap=cmap,
    )
    image = pictures["image"].astype(np.float32)
    out = {"masked": pictures["masked"]}
    for key, name in (
        ("overlay_low", "cam_low"),
        ("overlay_high", "cam_high"),
        ("overlay_refined", "cam_refined"),
    ):
        blended = (1 - opacity) * image + opacity * pictures[name].astype(np.float32)
        out[key] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out, point


def _scan_name(path: Path) -> str:
    """A scan's name without its suffixes (``ct.nii.gz`` → ``ct``)."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]


def _upload_message(err: Exception, name: str | None) -> str:
    """``photo.jpg: not a recognised image file`` — the upload's own name, not a temp path."""
    text = str(err)
    if name and ": " in text:
        text = f"{name}: {text.split(': ', 1)[1]}"
    return text
