"""The guided upsampler's ``stride`` on pets-dev: how much localization the last levels buy.

Evaluates the default model's guided high-res CAM and refined CAM with ``stride`` 1 (guided to
224), 2 (guided to 112, then bilinear: the default) and 4 (guided to 56), on one half of
pets-dev, and prints one table row per map and stride::

    python scripts/guided_stride_sweep.py --split first-half      # 3 min on 2 CPU cores
    python scripts/guided_stride_sweep.py --strides 2 --lattice-filter both
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrcam import GuidedUpsampler, load_model
from hrcam.data.annotations import LocalizationDataset
from hrcam.evaluation import evaluate_localization

PETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pets-dev"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", default="first-half", choices=["first-half", "second-half", "all"])
    p.add_argument("--data", type=Path, default=PETS)
    p.add_argument("--strides", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument(
        "--lattice-filter",
        choices=["off", "on", "both"],
        default="off",
        help="guided_upsample's lattice_filter for strides above 1",
    )
    args = p.parse_args()
    model = load_model("default")
    dataset = LocalizationDataset(args.data)
    filters = {"off": [False], "on": [True], "both": [False, True]}[args.lattice_filter]
    print("| map | stride | lattice filter | PxAP | best px IoU | MaxBoxAccV2 | ms / image |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for stride in args.strides:
        for lattice in filters if stride > 1 else [False]:
            explainer = model.replace(
                upsampler=GuidedUpsampler(stride=stride, lattice_filter=lattice)
            )
            result = evaluate_localization(
                explainer, dataset, ["high_res", "refined"], split=args.split, progress=False
            )
            for name, r in result.methods.items():
                m = r.metrics
                print(
                    f"| {name} | {stride} | {'on' if lattice else 'off'} "
                    f"| {100 * m['pxap']:.1f} | {100 * m['best_pixel_iou']:.1f} "
                    f"| {100 * m['max_box_acc_v2']:.1f} | {r.timing.ms_per_image:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
