"""Seconds per metric over synthetic CAMs with masks and boxes; prints a table.

Localization metrics run over ``--num-images`` (500) maps of ``--size`` (224) px: a 7x7 CAM
with a bump near the object, upsampled bilinearly (what a GAP + FC network yields), and an
elliptic object with a 3 px ignore ring (a trimap boundary) and its box. The faithfulness
metrics run a small seeded CNN over ``--faithfulness-images`` (32) images; ROAD over
``--road-images`` (500: the issue's bar is 500 images at 224² in minutes), beside
pytorch-grad-cam's ROAD on ``--road-reference-images`` (4) of them at the same percentiles
(its per-image cost, extrapolated to the same count, gives the ratio).

Every row gives the wall time and, beside it, the process's user and system CPU time and minor
page faults over that row (``getrusage``): system time is the kernel mapping and unmapping
memory, which PyTorch's large CPU allocations used to cost as much as the arithmetic.

``--model-images N`` adds deletion + insertion of the shipped model (EfficientNet-Lite0, 224²)
on N images, in fresh processes: as ``hrcam evaluate`` ran them before (eager, 32 images a
call, the C allocator's defaults) and as it runs them now (the network frozen by TorchScript,
4 images a call, freed memory kept: :func:`hrcam.utils.keep_freed_memory`), with the largest
difference between their AUCs.

Usage::

    python benchmarks/bench_metrics.py                  # the defaults above (~8 min on 2 cores)
    python benchmarks/bench_metrics.py --reference      # also time per-threshold labelling
    python benchmarks/bench_metrics.py --road-images 50 # a quicker look
    python benchmarks/bench_metrics.py --num-images 0 --faithfulness-images 0 --road-images 0 \\
        --model-images 8                                # the shipped model's faithfulness only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from hrcam.metrics import (
    BestPixelIoU,
    CAMLocalization,
    EnergyPointingGame,
    MaxBoxAccV2,
    PointingGame,
    PxAP,
    average_drop_increase,
    box_iou,
    deletion_insertion,
    resize_map,
    score_map,
)
from hrcam.metrics.adcc import adcc, coherency, complexity, explanation_images
from hrcam.metrics.road import ROAD_PERCENTILES, road


def make_sample(rng: np.random.Generator, size: int):
    """(cam, mask, ignore, boxes) for one synthetic image."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.25, 0.75, 2) * size
    ry, rx = rng.uniform(0.1, 0.3, 2) * size
    obj = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    ring = ndimage.binary_dilation(obj, iterations=3) & ~ndimage.binary_erosion(obj, iterations=3)
    low = rng.random((7, 7)) * 0.3
    gy, gx = np.mgrid[:7, :7] * size / 7 + size / 14
    low += np.exp(-((gy - cy) ** 2 + (gx - cx) ** 2) / (2 * (0.15 * size) ** 2))
    cam = resize_map(low, (size, size))
    rows, cols = np.nonzero(obj)
    boxes = np.array([[cols.min(), rows.min(), cols.max(), rows.max()]])
    return cam, obj & ~ring, ring, boxes


def reference_max_box_iou_curve(cam, gt, num_thresholds=100):
    """The obvious version: label the thresholded map once per threshold."""
    v = score_map(cam)
    out = np.zeros(num_thresholds)
    for k in range(num_thresholds):
        labels, _ = ndimage.label(v > k / num_thresholds, structure=np.ones((3, 3)))
        slices = ndimage.find_objects(labels)
        if slices:
            b = np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in slices])
            out[k] = box_iou(b, gt).max()
    return out


def small_cnn(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    # Cheap on purpose (a 4x4 stride-4 stem): the rows below should show the metric's own cost;
    # the "model alone" row gives the share of the forward passes.
    return nn.Sequential(
        nn.Conv2d(3, 16, 4, stride=4),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    ).eval()


def model_alone(model: nn.Module, num_inputs: int, batch_size: int, size: int) -> None:
    """The forward passes deletion/insertion makes, on one reused random batch."""
    x = torch.randn(min(batch_size, num_inputs), 3, size, size)
    with torch.no_grad():
        for start in range(0, num_inputs, batch_size):
            model(x[: min(batch_size, num_inputs - start)])


_USAGE: dict[str, tuple[float, float, int]] = {}


def timed(fn) -> float:
    """Wall seconds of ``fn()``; its user, system seconds and minor page faults go to
    ``_USAGE`` under the same wall time (read by the table)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    _USAGE[f"{wall:.9f}"] = (
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        after.ru_minflt - before.ru_minflt,
    )
    return wall


def road_rows(args, model, samples) -> list[tuple[str, int, float]]:
    """ROAD (ours, every image) and pytorch-grad-cam's (a few images), same percentiles."""
    n = args.road_images
    if n <= 0:
        return []
    torch.manual_seed(2)
    images = torch.randn(n, 3, args.size, args.size)
    cams = torch.from_numpy(np.stack([samples[i % len(samples)][0][::32, ::32] for i in range(n)]))
    targets = torch.arange(n) % 10
    p = ROAD_PERCENTILES
    rows = []
    t = timed(lambda: road(model, images, cams.float(), targets, batch_size=args.batch_size))
    rows.append((f"ROAD MoRF + LeRF ({len(p)} percentiles each)", n, t))
    k = min(args.road_reference_images, n)
    if k:
        try:
            from pytorch_grad_cam.metrics.road import ROADCombined
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        except ImportError:
            return rows
        maps = np.stack([score_map(resize_map(c, (args.size, args.size))) for c in cams[:k]])
        wrapped = [ClassifierOutputTarget(int(c)) for c in targets[:k]]
        theirs = ROADCombined(percentiles=list(p))
        t = timed(lambda: theirs(images[:k], maps.astype(np.float32), wrapped, model))
        rows.append((f"  pytorch-grad-cam ROADCombined (x{n}/{k})", n, t * n / k))
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=500)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--faithfulness-images", type=int, default=32)
    p.add_argument("--steps", type=int, default=224, help="deletion/insertion steps")
    p.add_argument("--batch-size", type=int, default=64, help="images per model call")
    p.add_argument("--road-images", type=int, default=500)
    p.add_argument("--road-reference-images", type=int, default=4, help="0: skip grad-cam's ROAD")
    p.add_argument("--reference", action="store_true", help="time per-threshold labelling too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--model-images", type=int, default=0, help="deletion + insertion of the shipped model"
    )
    p.add_argument("--model-child", default=None, help=argparse.SUPPRESS)
    return p


def model_child(variant: str, n: int, steps: int) -> None:
    """One variant of the shipped model's deletion + insertion, in this (fresh) process."""
    import hrcam
    from hrcam.metrics.faithfulness import frozen_for_inference
    from hrcam.utils import keep_freed_memory

    now = variant == "now"
    if now:
        keep_freed_memory()
    torch.set_num_threads(2)
    explainer = hrcam.load_model("default")
    torch.manual_seed(0)
    batch = explainer.prepare(torch.rand(n, 3, 224, 224))
    cams = torch.rand(n, 7, 7)
    with torch.inference_mode():
        targets = explainer.backbone(batch.x).argmax(1)
        size = 4 if now else 32
        model = (
            frozen_for_inference(explainer.backbone, batch.x[:size]) if now else explainer.backbone
        )
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        out = deletion_insertion(
            model, batch.x, cams, targets, steps=steps, batch_size=size, logits=True
        )
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "wall": wall, "user": after.ru_utime - before.ru_utime,
        "sys": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt,
        "auc": np.concatenate([out["deletion_auc"], out["insertion_auc"]]).tolist(),
    }))  # fmt: skip


def model_rows(args) -> list[tuple[str, int, float]]:
    results = {}
    for variant in ("before", "now"):
        out = subprocess.run(
            [sys.executable, __file__, "--model-child", variant, "--model-images",
             str(args.model_images), "--steps", str(args.steps)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    n, rows = args.model_images, []
    for variant, label in (
        ("before", "eager, 32 a call"),
        ("now", "frozen, 4 a call, memory kept"),
    ):
        r = results[variant]
        _USAGE[f"{r['wall']:.9f}"] = (r["user"], r["sys"], r["faults"])
        rows.append((f"shipped model del+ins, {label}", n, r["wall"]))
    gap = max(
        abs(a - b) for a, b in zip(results["before"]["auc"], results["now"]["auc"], strict=True)
    )
    print(f"shipped model: largest AUC difference between the two: {gap:.2e}")
    return rows


def localization_rows(args, samples, run) -> list[tuple[str, int, float]]:
    n = len(samples)
    rows: list[tuple[str, int, float]] = []
    rows.append(("MaxBoxAccV2 (100 thresholds)", n, timed(lambda: run(MaxBoxAccV2(), 0, 3))))
    if args.reference:
        subset = samples[: max(1, n // 10)]
        t = timed(lambda: [reference_max_box_iou_curve(s[0], s[3]) for s in subset])
        rows.append(("  reference: label per threshold", n, t * n / len(subset)))
    rows.append(
        ("CAMLocalization (top-1/GT-known)", n, timed(lambda: run(CAMLocalization(), 0, 3)))
    )
    rows.append(("PxAP (with ignore)", n, timed(lambda: run(PxAP(), 0, 1, 2))))
    rows.append(("BestPixelIoU (with ignore)", n, timed(lambda: run(BestPixelIoU(), 0, 1, 2))))
    rows.append(("PointingGame (15 px)", n, timed(lambda: run(PointingGame(), 0, 1))))
    rows.append(("EnergyPointingGame", n, timed(lambda: run(EnergyPointingGame(), 0, 1, 2))))

    return rows


def faithfulness_rows(args, model, samples) -> list[tuple[str, int, float]]:
    rows: list[tuple[str, int, float]] = []
    b = args.faithfulness_images
    torch.manual_seed(1)
    images = torch.randn(b, 3, args.size, args.size)
    cams = torch.from_numpy(np.stack([s[0][::32, ::32] for s in samples[:b]])).float()
    targets = torch.arange(b) % 10
    t = timed(
        lambda: deletion_insertion(
            model, images, cams, targets, steps=args.steps, batch_size=args.batch_size, logits=True
        )
    )
    rows.append((f"deletion + insertion ({args.steps} steps)", b, t))
    passes = 2 * b * (min(args.steps, args.size**2) + 1)
    t = timed(lambda: model_alone(model, passes, args.batch_size, args.size))
    rows.append((f"  model alone ({passes} forward passes)", b, t))
    t = timed(
        lambda: average_drop_increase(
            model, images, cams, targets, batch_size=args.batch_size, logits=True
        )
    )
    rows.append(("average drop / increase", b, t))
    # ADCC's own cost: the explanation images and the two map statistics (the method's second
    # run on the explanation images is the method's cost, not the metric's).
    size = (args.size, args.size)

    def adcc_part():
        explanation_images(images, cams)
        coh = coherency(cams, cams.flip(-1), size)
        adcc(coh, complexity(cams, size), np.zeros(b))

    rows.append(("ADCC (coherency, complexity; no re-run)", b, timed(adcc_part)))
    return rows


def main(args: argparse.Namespace) -> None:
    if args.model_child:
        model_child(args.model_child, args.model_images, args.steps)
        return
    rng = np.random.default_rng(args.seed)
    samples = [make_sample(rng, args.size) for _ in range(args.num_images)]
    n = len(samples)
    rows: list[tuple[str, int, float]] = []

    def run(metric, *fields):
        for s in samples:
            metric.update(*(s[i] for i in fields))
        return metric.compute()

    rows += localization_rows(args, samples, run) if n else []
    rows += model_rows(args) if args.model_images else []
    model = small_cnn()
    rows += faithfulness_rows(args, model, samples) if args.faithfulness_images else []
    rows += road_rows(args, model, samples)

    print(
        f"{args.size}x{args.size} maps, torch {torch.__version__} on {torch.get_num_threads()} "
        f"CPU threads"
    )
    print("| metric | images | seconds | ms/image | user s | system s | minor faults |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, count, seconds in rows:
        user, system, faults = _USAGE.get(f"{seconds:.9f}", (float("nan"), float("nan"), 0))
        print(
            f"| {name} | {count} | {seconds:.2f} | {1000 * seconds / max(1, count):.2f} | "
            f"{user:.1f} | {system:.1f} | {faults} |"
        )


if __name__ == "__main__":
    main(get_args_parser().parse_args())
