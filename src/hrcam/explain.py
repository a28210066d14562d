"""Explain many images: predictions, low-/high-res and refined CAMs, pictures, and a report.

:func:`explain_images` is what ``hrcam explain`` runs. It takes files and folders (walked
recursively), processes images in batches, and for each image writes, into its own folder:

- ``overlay_low.png``, ``overlay_high.png``, ``overlay_refined.png``: each CAM over the image;
- ``pipeline.png``: the refinement pipeline step by step;
- ``masked.png``: the image with only the refined CAM's strongest pixels kept;
- ``maps.npz``: the raw maps (``low_res_cam``, ``high_res_cam``, ``refined_cam`` and the steps);
- ``predictions.json``: the top-5 classes with names and probabilities.

and, for the whole run, ``summary.json`` and ``index.html`` (rewritten after every batch, so an
interrupted run still has a report of what it finished). A file that cannot be read is reported
by name with the reason; the run goes on, and the result says whether anything failed. Every
file is written atomically: a crash never leaves a half-written output.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .io import ImageLoadError, find_images, image_to_tensor, load_image
from .model import HRCAM, Target, upsample_cam
from .postprocess import RefineOptions, refine, refine_batch
from .postprocess.reference import mask_image
from .utils import atomic_save_json, atomic_write

__all__ = ["ExplainSummary", "ImageResult", "explain_images", "merge_shards"]

logger = logging.getLogger("hrcam.explain")

# Images larger than this (longest side) are shown downscaled in the overlays and the report.
DISPLAY_SIDE = 512


@dataclass
class ImageResult:
    """What ``explain`` did with one input file."""

    source: str
    name: str
    ok: bool
    error: str | None = None
    size: tuple[int, int] | None = None  # original (width, height)
    top5: list[dict[str, Any]] = field(default_factory=list)
    target: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class ExplainSummary:
    """The whole run: every image's result, in input order, and how it was produced."""

    model: str
    output: str
    options: dict[str, Any]
    results: list[ImageResult]
    seconds: float = 0.0

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if not r.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "output": self.output,
            "options": self.options,
            "images": len(self.results),
            "succeeded": sum(r.ok for r in self.results),
            "failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "results": [asdict(r) for r in self.results],
        }


def _slug(path: Path, base: Path | None) -> str:
    rel = path.relative_to(base) if base is not None and base in path.parents else Path(path.name)
    text = "__".join(rel.parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def _collect(
    sources: Sequence[str | os.PathLike],
) -> tuple[list[tuple[Path, str]], list[ImageResult]]:
    """(file, unique name) pairs for every image below ``sources``, and failures for missing paths."""
    items: list[tuple[Path, str]] = []
    missing: list[ImageResult] = []
    used: set[str] = set()
    for source in sources:
        source = Path(source)
        if not source.exists():
            missing.append(
                ImageResult(
                    str(source), _slug(source, None), False, f"{source}: no such file or folder"
                )
            )
            continue
        base = source if source.is_dir() else None
        for f in find_images([source]):
            name, n = _slug(f, base), 1
            while name in used:
                n += 1
                name = f"{_slug(f, base)}-{n}"
            used.add(name)
            items.append((f, name))
    return items, missing


def _display(image: Image.Image, side: int) -> np.ndarray:
    scale = min(1.0, side / max(image.size))
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    elif max(image.size) < 64:  # a tiny image is shown enlarged, pixels kept visible
        factor = -(-64 // max(image.size))
        image = image.resize(
            (image.width * factor, image.height * factor), Image.Resampling.NEAREST
        )
    return np.asarray(image)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())


def _load_batch(items: Sequence[tuple[Path, str]], model: HRCAM, size: int | tuple[int, int]):
    """Decode a batch; unreadable files come back as (index, error) instead of tensors."""
    tensors, displays, originals, ok, errors = [], [], [], [], []
    for i, (path, _) in enumerate(items):
        try:
            image = load_image(
                path, max_side=max(DISPLAY_SIDE, size if isinstance(size, int) else max(size))
            )
        except (ImageLoadError, OSError) as err:
            errors.append((i, str(err)))
            continue
        original = Image.open(path).size if path.suffix.lower() in (".jpg", ".jpeg") else image.size
        tensors.append(
            image_to_tensor(image, size=size, mean=model.backbone.mean, std=model.backbone.std)
        )
        displays.append(_display(image, DISPLAY_SIDE))
        originals.append(original)
        ok.append(i)
    return ok, tensors, displays, originals, errors


def explain_images(
    model: HRCAM,
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    target: Target = None,
    options: RefineOptions | None = None,
    batch_size: int = 8,
    input_size: int | tuple[int, int] | None = None,
    pipeline_figures: bool = True,
    skip_existing: bool = False,
    shard: tuple[int, int] = (0, 1),
    model_name: str = "",
    show_progress: bool = True,
    flip: bool = False,
) -> ExplainSummary:
    """Explain every image in ``sources`` (files or folders) into ``output``.

    Args:
        model: the model to explain (with an expansion network for high-res and refined CAMs).
        sources: image files and folders (walked recursively, sorted).
        output: the folder to write into (created).
        target: None (each image's predicted class), a class index, or a class name.
        options: refinement options (default: :meth:`RefineOptions.default`, hrcam's preset).
        batch_size: images per forward pass.
        input_size: the network's input size (default: the backbone's, e.g. 224).
        pipeline_figures: draw ``pipeline.png`` per image (the slowest output: ~0.3 s each).
        skip_existing: keep images whose ``predictions.json`` already exists (resume a run).
        shard: ``(index, count)``: process only every ``count``-th image from ``index``
            (several processes over one large folder; see :func:`merge_shards`).
        flip: average every CAM with the mirrored image's (test-time augmentation, 2× cost).

    Returns:
        :class:`ExplainSummary`; ``summary.failed`` lists the images that could not be explained.
    """
    from .html_report import write_report

    options = options or RefineOptions.default()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    size = input_size or model.backbone.input_size
    if target is not None and not isinstance(target, (int, str)):
        raise ValueError("explain takes one target for all images: a class index or name")
    if isinstance(target, (int, str)):
        target = model._class_index(target)  # fail now, not once per batch
    items, results = _collect(sources)
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard index must lie in [0, {count - 1}], got {index}")
    items = items[index::count]
    summary = ExplainSummary(
        model=model_name,
        output=str(output),
        options={
            "refine": asdict(options),
            "target": target,
            "input_size": size,
            "batch_size": batch_size,
            "flip": flip,
            "high_res": model.high_res_mode,
        },
        results=results,
    )
    summary_name = "summary.json" if count == 1 else f"summary.shard-{index}-of-{count}.json"
    started = time.perf_counter()
    device = model.device
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="explain", unit="img", dynamic_ncols=True)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        if skip_existing:
            done = [
                (p, n) for p, n in chunk if (output / "images" / n / "predictions.json").is_file()
            ]
            for p, n in done:
                summary.results.append(_reload(output, p, n))
            chunk = [(p, n) for p, n in chunk if (p, n) not in done]
        ok, tensors, displays, originals, errors = _load_batch(chunk, model, size)
        for i, message in errors:
            logger.warning("skipped: %s", message)
            summary.results.append(ImageResult(str(chunk[i][0]), chunk[i][1], False, message))
        if tensors:
            x = torch.cat(tensors).to(device)
            summary.results.extend(
                _explain_batch(
                    model,
                    x,
                    [chunk[i] for i in ok],
                    displays,
                    originals,
                    output,
                    target=target,
                    options=options,
                    pipeline_figures=pipeline_figures,
                    flip=flip,
                )
            )
        summary.seconds = time.perf_counter() - started
        _write_run_files(output, summary, summary_name, write_report, final=False)
        if bar is not None:
            bar.update(len(chunk) + (len(done) if skip_existing else 0))
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - started
    _write_run_files(output, summary, summary_name, write_report, final=True)
    return summary


def _write_run_files(
    output: Path, summary: ExplainSummary, summary_name: str, write_report, *, final: bool
) -> None:
    atomic_save_json(summary.as_dict(), output / summary_name)
    if summary_name == "summary.json":
        write_report(summary.as_dict(), output / "index.html", complete=final)


def _reload(output: Path, path: Path, name: str) -> ImageResult:
    record = json.loads((output / "images" / name / "predictions.json").read_text())
    return ImageResult(**record)


def _explain_batch(
    model: HRCAM,
    x: torch.Tensor,
    items,
    displays,
    originals,
    output: Path,
    *,
    target,
    options: RefineOptions,
    pipeline_figures: bool,
    flip: bool = False,
) -> list[ImageResult]:
    from . import viz

    cams = model.generate_cams(x, target, flip=flip)
    high, low, probs, targets = cams.high_res, cams.low_res, cams.probabilities, cams.targets
    top_p, top_i = probs.topk(min(5, probs.shape[1]), dim=1)
    inputs = [model.to_image(x[i : i + 1]) for i in range(x.shape[0])]
    if x.device.type == "cuda":
        steps_all = refine_batch(
            low, high, torch.from_numpy(np.stack(inputs)).to(x.device), options=options
        )
        steps_list = [steps_all.select(i).numpy() for i in range(x.shape[0])]
    else:  # on a CPU the NumPy path is the faster one (see benchmarks/bench_refine.py)
        low_np, high_np = low.float().cpu().numpy(), high.float().cpu().numpy()
        steps_list = [
            refine(low_np[i], high_np[i], inputs[i], options=options) for i in range(x.shape[0])
        ]
    results = []
    for i, (path, name) in enumerate(items):
        folder = output / "images" / name
        steps = steps_list[i]
        display = displays[i]
        dh, dw = display.shape[:2]
        low_i = low[i].float().cpu()
        high_i = high[i].float().cpu()
        refined = steps.merged
        t = int(targets[i])
        files: dict[str, str] = {}
        save = functools.partial(_save_png, folder=folder, files=files, name=name)

        save("image", display, "image.png")
        save(
            "overlay_low",
            viz.overlay_cam(display, upsample_cam(low_i, (dh, dw)).numpy()),
            "overlay_low.png",
        )
        save(
            "overlay_high",
            viz.overlay_cam(display, upsample_cam(high_i, (dh, dw)).numpy()),
            "overlay_high.png",
        )
        refined_display = upsample_cam(
            torch.from_numpy(np.ascontiguousarray(refined)), (dh, dw)
        ).numpy()
        save("overlay_refined", viz.overlay_cam(display, refined_display), "overlay_refined.png")
        save(
            "masked",
            mask_image(
                display,
                refined_display,
                filter=options.filter,
                keep_percentage=options.keep_percentage,
                threshold=options.threshold,
            ),
            "masked.png",
        )
        if pipeline_figures:
            title = f"{path.name}: {model.class_names[t]} ({float(probs[i, t]):.1%})"
            viz.plot_pipeline(steps, inputs[i], path=folder / "pipeline.png", title=title)
            files["pipeline"] = f"images/{name}/pipeline.png"
        _save_npz(
            folder / "maps.npz",
            {
                "low_res_cam": low_i.numpy(),
                "high_res_cam": high_i.numpy(),
                "refined_cam": np.asarray(refined),
                "low_resized": steps.low_resized,
                "edges": steps.edges,
                "roi": steps.roi,
                "focal_points": steps.focal_points,
                "segment": steps.full_segment,
                "bounds": steps.bounds,
                "target": np.int64(t),
                "probabilities": probs[i].float().cpu().numpy(),
            },
        )
        files["maps"] = f"images/{name}/maps.npz"
        result = ImageResult(
            source=str(path),
            name=name,
            ok=True,
            size=tuple(originals[i]),
            top5=[
                {
                    "index": int(j),
                    "name": model.class_names[int(j)],
                    "probability": round(float(p), 6),
                }
                for p, j in zip(top_p[i], top_i[i], strict=True)
            ],
            target={
                "index": t,
                "name": model.class_names[t],
                "probability": round(float(probs[i, t]), 6),
            },
            files=files,
        )
        atomic_save_json(asdict(result), folder / "predictions.json")
        results.append(result)
    return results


def _save_png(
    key: str, array: np.ndarray, filename: str, *, folder: Path, files: dict[str, str], name: str
) -> None:
    from . import viz

    viz.save_png(array, folder / filename)
    files[key] = f"images/{name}/{filename}"


def merge_shards(output: str | os.PathLike, *, expected: int | None = None) -> ExplainSummary:
    """Join the ``summary.shard-*.json`` of a sharded run into ``summary.json`` and ``index.html``."""
    from .html_report import write_report

    output = Path(output)
    shards = sorted(output.glob("summary.shard-*-of-*.json"))
    if not shards:
        raise FileNotFoundError(f"{output}: no summary.shard-*.json files to merge")
    counts = {int(re.search(r"-of-(\d+)", s.name).group(1)) for s in shards}
    if (
        len(counts) != 1
        or (expected is not None and len(shards) != expected)
        or len(shards) != counts.pop()
    ):
        raise ValueError(f"{output}: incomplete or mixed shards: {[s.name for s in shards]}")
    parts = [json.loads(s.read_text()) for s in shards]
    results = [
        ImageResult(**{**r, "size": tuple(r["size"]) if r.get("size") else None})
        for p in parts
        for r in p["results"]
    ]
    results.sort(key=lambda r: r.name)
    summary = ExplainSummary(
        model=parts[0]["model"],
        output=str(output),
        options=parts[0]["options"],
        results=results,
        seconds=max(p["seconds"] for p in parts),
    )
    _write_run_files(output, summary, "summary.json", write_report, final=True)
    return summary
