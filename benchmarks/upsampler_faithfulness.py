"""The FeatUp / JAFAR CAM protocol: is a Grad-CAM-family map still faithful once upsampled?

FeatUp (Fu et al., ICLR 2024) and JAFAR (Couairon et al., NeurIPS 2025) judge feature upsamplers
by the class activation maps they give, with the metrics of Poppi et al. (CVPR-W 2021): average
drop (A.D.), average increase (A.I.), coherency, complexity and ADCC, on ImageNet validation
images. Here, on ``../shared/data/imagenet-val-nonanimal`` (703 photographs with labels):

- only the images the model classifies **correctly** are kept, and the map explains the label;
- each Grad-CAM-family method (``gradcam``, ``gradcampp``, ``xgradcam``, ``layercam``) gives its
  7×7 map at the last layer, upsampled to 224² either **bilinearly** (the library's own resize:
  the plain spec) or by hrcam's **guided upsampling** (``+guided``); ``low_res`` (the CAM itself)
  is a row too. For a GAP + FC network a guided upsampling of the *features* followed by the
  CAM weighting equals the guided upsampling of the CAM (the upsampling is linear in the values
  with weights from the image alone), so this is the feature-upsampler protocol as well;
- A.D. and A.I. on the image times the map (Chattopadhay et al. 2018), A.G. (Opti-CAM's average
  gain), coherency (the method re-run on its explanation image), complexity and ADCC, per
  image; the table gives means with 95 % bootstrap intervals and, per method, the paired
  difference guided − bilinear.

Usage::

    python benchmarks/upsampler_faithfulness.py ../shared/data/imagenet-val-nonanimal \\
        --split second-half -o runs/upsampler-faithfulness

``--methods`` takes any method specs (e.g. a learned upsampler's, once one ships). Writes
``results.md`` and ``results.json`` into ``-o`` (atomically) and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hrcam import ImageBatch, load_model
from hrcam.evaluation.faithfulness_scores import score_faithfulness, summarise_faithfulness
from hrcam.evaluation.subsets import SPLITS, split_names
from hrcam.io import ImageLoadError
from hrcam.methods import create_method
from hrcam.metrics.intervals import mean_statistic, paired_difference_interval
from hrcam.utils import atomic_save_json, atomic_write, check_output_folder

FAMILY = ("gradcam", "gradcampp", "xgradcam", "layercam")
DEFAULT_METHODS = ["low_res", "low_res+guided"] + [
    spec for name in FAMILY for spec in (name, f"{name}+guided")
]
COLUMNS = (
    ("A.D. ↓", "average_drop", "drop"),
    ("A.I. ↑", "increase_in_confidence", "increase"),
    ("A.G. ↑", "average_gain", "gain"),
    ("coherency ↑", "coherency", "coherency"),
    ("complexity ↓", "complexity", "complexity"),
    ("ADCC ↑", "adcc", "adcc"),
)


def read_labels(folder: Path) -> dict[str, int]:
    with open(folder / "labels.csv", encoding="utf-8") as f:
        return {row["file"]: int(row["label"]) for row in csv.DictReader(f)}


def correctly_classified(model, folder: Path, names, labels, batch_size: int):
    """(names, images) of the images the model's top-1 gets right; unreadable ones reported."""
    kept, tensors, bad = [], [], []
    for i in tqdm(range(0, len(names), batch_size), desc="classify", unit="batch"):
        chunk, xs = [], []
        for name in names[i : i + batch_size]:
            try:
                xs.append(model.decode(folder / "images" / name))
                chunk.append(name)
            except ImageLoadError as err:
                bad.append(f"{name}: {err}")
        if not xs:
            continue
        batch = model.prepare(xs)
        with torch.inference_mode():
            predicted = model.backbone(batch.x).argmax(1)
        right = predicted == torch.tensor([labels[n] for n in chunk])
        kept += [n for n, ok in zip(chunk, right.tolist(), strict=True) if ok]
        tensors.append(batch.select(torch.nonzero(right)[:, 0]))
    images = ImageBatch(
        torch.cat([b.x for b in tensors]),
        torch.cat([b.pixels for b in tensors]),
        np.concatenate([b.rgb for b in tensors]),
    )
    return kept, images, bad


def run(args: argparse.Namespace) -> dict:
    model = load_model(args.model)
    if args.threads:
        torch.set_num_threads(args.threads)
    labels = read_labels(args.folder)
    names = split_names(sorted(labels), args.split)
    if args.limit:
        names = names[: args.limit]
    kept, images, bad = correctly_classified(model, args.folder, names, labels, args.batch_size)
    targets = torch.tensor([labels[n] for n in kept])
    methods = [create_method(spec) for spec in args.methods]
    records: dict[str, dict[str, list[float]]] = {m.name: {} for m in methods}
    seconds = dict.fromkeys(records, 0.0)
    bar = tqdm(total=len(kept) * len(methods), desc="score", unit="map")
    for i in range(0, len(kept), args.batch_size):
        x = images.select(list(range(i, min(i + args.batch_size, len(kept)))))
        t = targets[i : i + args.batch_size]
        for method in methods:
            started = time.perf_counter()
            maps = method(model, x, t)
            score_faithfulness(
                model, method, x, maps, t, records[method.name], metrics=("drop", "adcc")
            )
            seconds[method.name] += time.perf_counter() - started
            bar.update(len(x))
    bar.close()
    return {
        "model": args.model,
        "split": args.split,
        "num_images": len(names),
        "num_correct": len(kept),
        "bad_images": bad,
        "methods": {
            name: {
                **_flat(summarise_faithfulness(record)),
                "seconds": seconds[name],
                "per_image": record,
            }
            for name, record in records.items()
        },
    }


def _flat(summary) -> dict:
    """A faithfulness summary as this script's JSON keeps it: value and ``<name>_interval``."""
    out = dict(summary.values)
    out.update({f"{k}_interval": v for k, v in summary.intervals.items()})
    out["num_images"] = summary.num_images
    return out


def _cell(summary: dict, key: str) -> str:
    lo, hi = summary[f"{key}_interval"]
    return f"{100 * summary[key]:.1f} ({100 * lo:.1f}–{100 * hi:.1f})"


def markdown(results: dict) -> str:
    lines = [
        f"Model `{results['model']}`, imagenet-val-nonanimal {results['split']}: "
        f"{results['num_correct']} of {results['num_images']} images correctly classified "
        "(the map explains the label). Percent, 95 % bootstrap intervals over images.",
        "",
        "| method | " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for name, summary in results["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(summary, c[1]) for c in COLUMNS) + " |")
    pairs = [
        (name, f"{name}+guided")
        for name in results["methods"]
        if f"{name}+guided" in results["methods"]
    ]
    if pairs:
        lines += [
            "",
            "Guided minus bilinear, paired 95 % interval (percentage points):",
            "",
            "| method | " + " | ".join(c[0] for c in COLUMNS) + " |",
            "|---|" + "---:|" * len(COLUMNS),
        ]
        for plain, guided in pairs:
            cells = []
            for _, _, key in COLUMNS:
                a = np.asarray(results["methods"][guided]["per_image"][key])
                b = np.asarray(results["methods"][plain]["per_image"][key])
                lo, hi = paired_difference_interval(mean_statistic(a), mean_statistic(b), a.size)
                d = a.mean() - b.mean()
                cells.append(f"{100 * d:+.1f} ({100 * lo:+.1f}, {100 * hi:+.1f})")
            lines.append(f"| {plain} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("folder", type=Path, help="images/ and labels.csv (file,label,...)")
    p.add_argument("--model", default="default")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    p.add_argument("--split", choices=SPLITS, default="second-half")
    p.add_argument("--limit", type=int, default=0, help="first N images of the split (0 = all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        check_output_folder(args.output)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not (args.folder / "labels.csv").is_file():
        print(f"error: {args.folder / 'labels.csv'} not found", file=sys.stderr)
        return 2
    results = run(args)
    table = markdown(results)
    command = "python benchmarks/upsampler_faithfulness.py " + " ".join(sys.argv[1:])
    with atomic_write(args.output / "results.md", "w") as f:
        f.write(f"```\n{command}\n```\n\n{table}")
    atomic_save_json({**results, "command": command}, args.output / "results.json")
    print(table)
    for line in results["bad_images"]:
        print(f"skipped {line}", file=sys.stderr)
    return 1 if results["bad_images"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
