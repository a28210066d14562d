"""Where `hrcam explain`'s time goes, and how it compares with the model alone; prints tables.

On ``--images`` (500) pets-dev photographs with the default model on the CPU:

1. **Per stage**, one image after another in one thread, so the rows add up: decode (the
   file to an RGB image, JPEG draft mode as ``explain`` does it), ``Explainer.prepare``, the
   forward pass alone, ``Explainer.cams`` (forward + both CAMs: its excess over the forward pass
   is the CAMs' cost), refinement, the coloured CAMs and the masked image, image encoding (JPEG),
   ``maps.npz``, ``predictions.json``, the pipeline figure, the blended overlays that
   ``--overlay-files`` adds; and the report once for all. Model stages run in batches of
   ``--batch-size`` and are charged per image.
2. **End to end**, as a user runs it: decoding + the forward pass alone (the floor, with the
   same decoding threads ``explain`` uses and the network run as fast as it runs on a CPU:
   ``cpu_chunk`` images a call, freed memory kept), then ``explain_images`` without and with the pipeline
   figure, then the floor again, ``--repeats`` times in a row; each ratio is over the mean of the
   floors just before and after it (the machine's load drifts), and the table gives every
   run's and their median. Output size per image from the files on disk.

    python benchmarks/bench_explain.py [--images 500] [--batch-size 8] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from hrcam import load_model, viz
from hrcam.explain import OutputSettings, RunSettings, explain_images
from hrcam.explain.html_page import write_report
from hrcam.explain.inputs import collect_inputs, decode_ahead
from hrcam.explainer import maps_record
from hrcam.io import DISPLAY_SIDE
from hrcam.postprocess import RefineOptions, refine
from hrcam.utils import atomic_save_json, atomic_save_npz, keep_freed_memory, positive_int
from hrcam.viz import cam_pictures, display_image, display_pictures, masked_picture

PETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pets-dev" / "images"


def _clock(times, name, fn):
    start = time.perf_counter()
    out = fn()
    times[name] += time.perf_counter() - start
    return out


def _batch_stages(times, model, batch, images, options, settings, folder) -> None:
    """The model stages of one batch (charged per image), then each image's own stages."""
    with torch.inference_mode():
        # whole batches; per_stage divides every total by the number of images
        _clock(times, "forward pass alone", lambda: model.backbone(batch.x))
        cams = _clock(times, "Explainer.cams (forward + CAMs)", lambda: model.cams(batch))
    for i, image in enumerate(images):
        _image_stages(
            times,
            image,
            batch.rgb[i],
            cams.low_res[i].numpy(),
            cams.high_res[i].numpy(),
            options,
            settings,
            folder,
        )


def _image_stages(times, image, network_input, low, high, options, settings, folder) -> None:
    """One image's stages, with the functions ``explain``'s writers call (no fsync per file)."""
    steps = _clock(times, "refinement", lambda: refine(low, high, network_input, options=options))
    display = _clock(times, "display image (resize)", lambda: display_image(image, DISPLAY_SIDE))
    pictures = _clock(
        times,
        "coloured CAMs (network size) + masked image",
        lambda: {
            **cam_pictures(low, high, steps.refined, cmap=settings.cmap),
            "masked": masked_picture(display, steps),
        },
    )
    _clock(
        times,
        "JPEG encode + write (5 pictures)",
        lambda: [
            viz.save_image(p, folder / f"{k}.jpg", quality=settings.jpeg_quality, durable=False)
            for k, p in {"image": display, **pictures}.items()
        ],
    )
    _clock(
        times,
        "with --overlay-files: display_pictures (3 overlays + the masked image again), 3 JPEGs",
        lambda: [
            viz.save_image(p, folder / f"{k}.jpg", quality=settings.jpeg_quality, durable=False)
            for k, p in display_pictures(
                display, low, high, steps, opacity=settings.opacity, cmap=settings.cmap
            ).items()
            if k != "masked"
        ],
    )
    probabilities = np.zeros(1000, dtype=np.float32)
    _clock(
        times,
        "maps.npz (float16 maps stored, masks deflated)",
        lambda: atomic_save_npz(
            maps_record(low, high, steps, probabilities, 0), folder / "maps.npz", durable=False
        ),
    )
    _clock(
        times,
        "predictions.json",
        lambda: atomic_save_json({"top5": [1, 2, 3]}, folder / "p.json", durable=False),
    )
    _clock(
        times,
        "pipeline figure (draw, JPEG encode + write)",
        lambda: viz.save_image(
            viz.pipeline_image(steps, network_input),
            folder / "pipeline.jpg",
            quality=settings.figure_quality,
            durable=False,
        ),
    )


def per_stage(model, paths, batch_size: int) -> tuple[dict[str, float], int]:
    """Seconds per image of each stage, run one after another (see the module docstring)."""
    times: dict[str, float] = defaultdict(float)
    options = RefineOptions()
    settings = OutputSettings()
    folder = Path(tempfile.mkdtemp(prefix="hrcam-bench-stages-"))
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = [_clock(times, "decode", lambda p=p: model.decode(p)) for p in chunk]
        batch = _clock(times, "Explainer.prepare", lambda im=images: model.prepare(im))
        _batch_stages(times, model, batch, images, options, settings, folder)
    report = [
        {"source": str(p), "name": p.stem, "ok": True, "top5": [], "files": {}} for p in paths
    ]
    _clock(
        times,
        "report (index.html), once",
        lambda: write_report({"results": report, "options": {}}, folder / "index.html"),
    )
    shutil.rmtree(folder, ignore_errors=True)
    return {k: v / len(paths) for k, v in times.items()}, len(paths)


def floor(model, paths, batch_size: int) -> float:
    """Seconds for decoding (explain's threads) + preprocessing + the forward pass alone."""
    items, _ = collect_inputs(paths)
    start = time.perf_counter()
    for batch in decode_ahead(items, batch_size=batch_size, decode=model.decode):
        # in cpu_chunk images a call: the fastest way to run the network on a CPU
        model.logits(model.prepare([d.image for d in batch if d.error is None]).x)
    return time.perf_counter() - start


def end_to_end(model, paths, batch_size: int, pipeline: bool) -> tuple[float, float]:
    """(seconds, output bytes per image) of ``explain_images`` into a fresh folder."""
    out = Path(tempfile.mkdtemp(prefix="hrcam-bench-explain-"))
    start = time.perf_counter()
    summary = explain_images(
        model,
        paths,
        out,
        run=RunSettings(batch_size=batch_size, show_progress=False),
        outputs=OutputSettings(pipeline_figure=pipeline),
    )
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return seconds, size / max(1, summary.succeeded)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--folder", type=Path, default=PETS)
    p.add_argument("--repeats", type=positive_int, default=3, help="end-to-end rounds (default 3)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the hrcam command does, for the floor and explain alike
    paths = sorted(args.folder.glob("*.jpg"))[: args.images]
    model = load_model("default")
    with torch.inference_mode():  # warm-up: first allocations, imports, colour tables
        model.explain(paths[0])
    stages, n = per_stage(model, paths, args.batch_size)
    print(
        f"Per stage, {n} pets-dev images, {torch.get_num_threads()} torch thread(s), one image at a time:"
    )
    print("| stage | ms/image | × forward pass |")
    print("|---|---:|---:|")
    forward = stages["forward pass alone"]
    for name, seconds in stages.items():
        print(f"| {name} | {1000 * seconds:.1f} | {seconds / forward:.2f} |")
    floors = [floor(model, paths, args.batch_size)]
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (seconds, bytes / image)
    for _ in range(args.repeats):
        for name, pipeline in (
            ("hrcam explain --no-pipeline", False),
            ("hrcam explain (pipeline figure)", True),
        ):
            seconds, size = end_to_end(model, paths, args.batch_size, pipeline=pipeline)
            runs[name].append((seconds, size))
        floors.append(floor(model, paths, args.batch_size))
    print(f"\nEnd to end, {len(paths)} images, batch {args.batch_size}, {args.repeats} repeat(s):")
    print(
        "| run | seconds (each repeat) | ms/image (median) | × (decode + forward), each | median × | KB/image written |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| decode + forward pass (the floor, before and after each repeat) | "
        f"{', '.join(f'{f:.1f}' for f in floors)} | {1000 * statistics.median(floors) / len(paths):.1f} | 1.00 | | |"
    )
    for name, results in runs.items():
        ratios = [s / ((floors[i] + floors[i + 1]) / 2) for i, (s, _) in enumerate(results)]
        seconds = [s for s, _ in results]
        print(
            f"| {name} | {', '.join(f'{t:.1f}' for t in seconds)} | "
            f"{1000 * statistics.median(seconds) / len(paths):.1f} | "
            f"{', '.join(f'{r:.2f}' for r in ratios)} | **{statistics.median(ratios):.2f}** | "
            f"{results[-1][1] / 1024:.0f} |"
        )


if __name__ == "__main__":
    main()
