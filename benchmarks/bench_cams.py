"""Cost of the CAMs against the classifier alone, and peak memory of one high-res CAM.

Prints two tables:

1. ``Explainer.cams`` (prediction + low-res + high-res CAM) and the whole ``Explainer.explain``
   (cams + refinement) against the backbone's forward pass alone, on the same batch, measured in
   one run with the three interleaved (median of repeats); the shipped model with each of its
   high-res CAMs, and randomly initialised backbones.
2. Peak resident memory (RSS, the whole process: torch's CUDA build alone takes ~500 MiB) of a
   fresh process explaining one 224×224 image with the default model, and of one computing the
   paper's high-res CAM (the decoder path), with the part the call adds, against materialising
   the K-channel full-resolution maps that the folded heads avoid. Linux: the peak is reset
   through /proc/self/clear_refs.

Usage: python benchmarks/bench_cams.py [--batch 16] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time

import torch

from hrcam import Explainer, GuidedUpsampler, ImageBatch, create_backbone, load_model
from hrcam.upsample.expansion import ExpansionNetwork
from hrcam.utils import keep_freed_memory


def build(name: str) -> Explainer:
    backbone = create_backbone(name, weights=None if name != "efficientnet_lite0" else "imagenet")
    return Explainer(backbone, expansion=ExpansionNetwork.from_backbone(backbone)).eval()


def time_pair(
    model: Explainer, batch: ImageBatch, repeats: int, mode: str, options: dict | None = None
) -> tuple[float, float, float]:
    """Median seconds of the forward pass, of ``Explainer.cams`` and of the whole
    ``Explainer.explain`` (cams + refinement) on ``batch``, the three interleaved."""
    upsampler = GuidedUpsampler(**(options or {})) if mode == "guided" else mode
    model = model.replace(upsampler=upsampler)
    forward, cams, explain = [], [], []

    def forward_alone():  # the network alone, in the chunks Explainer.cams runs it in
        model.logits(batch.x)

    with torch.inference_mode():
        forward_alone()
        model.cams(batch)
        model.explain(batch)
        for _ in range(repeats):
            t = time.perf_counter()
            forward_alone()
            forward.append(time.perf_counter() - t)
            t = time.perf_counter()
            model.cams(batch)
            cams.append(time.perf_counter() - t)
            t = time.perf_counter()
            model.explain(batch)
            explain.append(time.perf_counter() - t)
    return statistics.median(forward), statistics.median(cams), statistics.median(explain)


def _rss_mib() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, Linux only."""
    status = open("/proc/self/status").read()
    return {k: int(re.search(k + r":\s+(\d+)", status).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}


def memory_child(name: str, materialise: bool, mode: str = "paper") -> None:
    torch.set_num_threads(1)
    model = load_model("default") if name == "efficientnet_lite0" else build(name)
    model = model.replace(upsampler=mode)  # paper: the decoder path, the most memory a CAM takes
    batch = model.prepare(torch.rand(1, 3, 224, 224))
    x = batch.x
    with torch.inference_mode():
        model.backbone(x)  # warm: allocator and weights in place
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident size
        base = _rss_mib()["VmRSS"]
        if materialise:
            features, skips = model.backbone.forward_features(x, return_skips=True)
            decoded = model.expansion.decode(features, skips, (224, 224))
            a_high = model.expansion.high_res_features(decoded)  # (1, K, 224, 224)
            (model.backbone.fc.weight[0][:, None, None] * a_high[0]).sum(0)
        else:
            model.explain(batch)
        peak = _rss_mib()["VmHWM"]
    print(json.dumps({"peak_mib": peak, "increase_mib": peak - base}))


def measure_memory(name: str, materialise: bool, mode: str = "paper") -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, "--mode", mode]
        + (["--materialise"] if materialise else []),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backbones", default="efficientnet_lite0,densenet121")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--materialise", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="paper", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.materialise, args.mode)
        return
    keep_freed_memory()  # as the hrcam command does
    torch.set_num_threads(args.threads)
    print(
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, batch {args.batch}×3×224×224, median of {args.repeats}\n"
    )
    print(
        "| model | high-res CAM | forward (ms/img) | Explainer.cams (ms/img) | ratio "
        "| Explainer.explain (ms/img) | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    torch.manual_seed(0)
    pixels = torch.rand(args.batch, 3, 224, 224)
    rows = []
    for name in args.backbones.split(","):
        if name == "efficientnet_lite0":
            shipped = load_model("default")
            if shipped.expansion.boundary_head is not None:
                rows.append(
                    (
                        "efficientnet_lite0, shipped",
                        shipped,
                        "boundary",
                        "boundary (guided + walk over the head's boundaries)",
                        {},
                    )
                )
            rows.append(("efficientnet_lite0, shipped", shipped, "paper", "paper (decoder)", {}))
            rows.append(
                ("efficientnet_lite0, shipped", shipped, "guided", "guided (the default)", {})
            )
            rows.append(
                (
                    "efficientnet_lite0, shipped",
                    shipped,
                    "guided",
                    "guided, stride 1 (every pixel guided)",
                    {"stride": 1},
                )
            )
        model = build(name)
        rows.append((f"{name}, random init", model, "paper", "paper (decoder)", {}))
        rows.append((f"{name}, random init", model, "guided", "guided (no decoder)", {}))
    for label, model, mode, what, options in rows:
        f, c, e = time_pair(model, model.prepare(pixels), args.repeats, mode, options)
        n = args.batch
        print(
            f"| {label} | {what} | {1000 * f / n:.1f} | {1000 * c / n:.1f} | {c / f:.2f} "
            f"| {1000 * e / n:.1f} | {e / f:.2f} |"
        )
    default = load_model("default").upsampler.describe()["name"]
    explained = measure_memory("efficientnet_lite0", materialise=False, mode=default)
    print(
        f"\nThe default model's whole explanation of one 224×224 image ({default} high-res CAM): "
        f"peak RSS {explained['peak_mib']:.0f} MiB, of which the call "
        f"{explained['increase_mib']:.0f} MiB."
    )
    print(
        "\n| backbone | paper's high-res CAM, 1 image: peak RSS (MiB) | of which the call (MiB) "
        "| materialising the K maps instead: peak RSS (MiB) | of which the call (MiB) |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in args.backbones.split(","):
        folded = measure_memory(name, materialise=False)
        full = measure_memory(name, materialise=True)
        print(
            f"| {name} | {folded['peak_mib']:.0f} | {folded['increase_mib']:.0f} "
            f"| {full['peak_mib']:.0f} | {full['increase_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
