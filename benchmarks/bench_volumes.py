"""Cost of a whole 3-D explanation against the network's forward pass, on the CPU.

For each network of volumes, one run interleaves (median of repeats, one volume at a time):

- ``forward``: the network alone on the prepared volume (``Explainer.logits``);
- ``cams``: the prediction, the exact low-res CAM and the guided high-res CAM (parts 1 and 2);
- ``explain``: ``Explainer.explain`` — the three parts, the 3-D refinement included;

and prints each as milliseconds and as a multiple of ``forward``. Networks: MONAI's 3-D
DenseNet-121 at 96³ (random weights: the cost does not depend on them) and hrcam's 3-D
TinyDenseNet at 64³ (the lesion benchmark's network). The 96³ volume is a smooth random field
with a bright blob, so the refinement has a region to grow.

Usage: python benchmarks/bench_volumes.py [--repeats 5] [--threads 2] [--skip-monai]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from scipy import ndimage

import hrcam
from hrcam.backbones import create_backbone


def volume(side: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((side,) * 3), side / 24)
    z, y, x = np.ogrid[:side, :side, :side]
    centre = side * 0.4
    field += (
        3
        * field.std()
        * (((z - centre) ** 2 + (y - centre) ** 2 + (x - side / 2) ** 2) < (side / 8) ** 2)
    )
    field = (field - field.min()) / (field.max() - field.min())
    return torch.from_numpy(field.astype(np.float32))


def networks(skip_monai: bool):
    nets = []
    if not skip_monai:
        from monai.networks.nets import DenseNet121

        torch.manual_seed(0)
        net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
        nets.append(("MONAI DenseNet121 3-D", hrcam.from_model(net, input_size=96), 96))
    torch.manual_seed(0)
    tiny = create_backbone(
        "tiny_densenet", num_classes=3, spatial_dims=3, in_chans=1, input_size=64
    )
    nets.append(("hrcam tiny_densenet 3-D", hrcam.Explainer(tiny.eval()), 64))
    return nets


def measure(explainer: hrcam.Explainer, side: int, repeats: int) -> dict[str, float]:
    batch = explainer.prepare([volume(side)])
    steps = {
        "forward": lambda: explainer.logits(batch.x),
        "cams": lambda: explainer.cams(batch),
        "explain": lambda: explainer.explain(batch),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    with torch.inference_mode():
        for run in steps.values():  # warm-up: first calls compile and allocate
            run()
        for _ in range(repeats):
            for name, run in steps.items():
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-monai", action="store_true", help="only hrcam's 3-D network")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, median of {args.repeats}\n"
    )
    print("| network | volume | forward ms | cams ms (×) | explain ms (×) |")
    print("|---|---|---:|---:|---:|")
    for name, explainer, side in networks(args.skip_monai):
        t = measure(explainer, side, args.repeats)
        f = t["forward"]
        print(
            f"| {name} | {side}³ | {1000 * f:.0f} | {1000 * t['cams']:.0f} ({t['cams'] / f:.2f}) "
            f"| {1000 * t['explain']:.0f} ({t['explain'] / f:.2f}) |"
        )


if __name__ == "__main__":
    main()
