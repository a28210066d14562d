"""Top-1/top-5 accuracy of a model on a folder of ImageNet validation images with a labels CSV.

The check that a pretrained ImageNet classifier loaded correctly. With the project's data:

    python benchmarks/imagenet_val_top1.py ../shared/data/imagenet-val-nonanimal \
        --models efficientnet_lite0 efficientnet_lite1 efficientnet_lite2

reads ``DIR/labels.csv`` (``file,label,...``, label = ImageNet-1k index) and ``DIR/images/``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from hrcam import load_model
from hrcam.metrics.classification import classification_report


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("folder", type=Path)
    p.add_argument("--models", nargs="+", default=["efficientnet_lite0"])
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    rows = list(csv.DictReader(open(args.folder / "labels.csv", encoding="utf-8")))
    print("| model | input | images | top-1 | top-5 | macro F1 | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        model = load_model(name)
        logits, labels = [], []
        started = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(rows), args.batch_size):
                batch = rows[i : i + args.batch_size]
                x = model.prepare([args.folder / "images" / r["file"] for r in batch]).x
                logits.append(model.backbone(x))
                labels += [int(r["label"]) for r in batch]
        report = classification_report(torch.cat(logits), torch.tensor(labels))
        side = model.backbone.input_size
        print(
            f"| {name} | {side}×{side} | {report['num_samples']} | {100 * report['accuracy']:.2f} % | "
            f"{100 * report['top5_accuracy']:.2f} % | {100 * report['macro_f1']:.2f} % | "
            f"{time.perf_counter() - started:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
