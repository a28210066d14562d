"""Stage 2 trained on object boundaries: a small head on the frozen classifier's stage features
that predicts a class-agnostic boundary map at a quarter of the input's side, so that the random
walk of :mod:`hrcam.upsample.boundary` runs without HED at explain time.

Two label-free training signals (the classifier stays frozen; labels are never read):

- ``distill``: HED's boundaries (:mod:`hrcam.upsample.hed`, BSDS500's human-drawn object
  boundaries) max-pooled to the head's grid, as soft targets (binary cross-entropy);
- ``affinity``: IRNet's inter-pixel relations (Ahn et al., CVPR 2019) from the classifier's own
  confident regions: pixels of the guided high-res CAM of its top class above ``FG`` of the
  map's maximum are foreground, below ``BG`` background; two pixels within ``RADIUS`` of the
  same kind should be joined (no boundary on the segment between them), of different kinds
  separated (a boundary somewhere on it). The affinity of a pair is ``1 - max`` of the boundary
  map along the segment; the loss is IRNet's, averaged per kind of pair;
- ``both``: the sum of the two.

Four sub-commands (``folder`` links the training images into one folder for ``hrcam
train-expansion``, which trains the shipped head)::

    python research/distill_boundaries.py folder /tmp/bd-train

    python research/distill_boundaries.py cache /tmp/bd-cache.pt   # features, HED, CAMs of the training images
    python research/distill_boundaries.py train /tmp/bd-cache.pt /tmp/head-distill.pt --objective distill
    python research/distill_boundaries.py score ../shared/data/pets-dev --split first-half --head /tmp/head-distill.pt

Training images: ``../shared/data/imagenet-val-nonanimal`` and the first half of pets-dev (the
labels of neither are read), each also mirrored. ``score`` walks the guided high-res CAM over the
head's boundaries (and over HED's, for the pair) with several walk budgets and scores every
variant as ``hrcam evaluate`` does (PxAP, best pixel IoU, the paired interval against the
shipped refined CAM).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import hrcam
from hrcam.data.annotations import LocalizationDataset
from hrcam.evaluation.subsets import evenly_spaced, split_names
from hrcam.metrics.base import resize_map
from hrcam.metrics.intervals import bootstrap_interval, paired_difference_interval
from hrcam.metrics.pixels import BestPixelIoU, PxAP
from hrcam.upsample.boundary_head import BoundaryHead, affinity_loss
from hrcam.upsample.hed import load_hed
from hrcam.upsample.walk import boundary_walk, walk_multiscale

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def training_files() -> list[Path]:
    files = sorted((DATA / "imagenet-val-nonanimal" / "images").glob("*"))
    pets = LocalizationDataset(DATA / "pets-dev")
    by_name = {s.name: s.path for s in pets}
    files += [by_name[n] for n in split_names(list(by_name), "first-half")]
    return files


def folder(args) -> None:
    """A folder of links to the training images, for ``hrcam train-expansion``."""
    args.folder.mkdir(parents=True, exist_ok=False)
    for path in training_files():
        prefix = "pet-" if "pets-dev" in str(path) else "inet-"
        (args.folder / (prefix + path.name)).symlink_to(path.resolve())
    print(f"{len(list(args.folder.iterdir()))} links in {args.folder}")


def cache(args) -> None:
    torch.set_num_threads(2)
    explainer = hrcam.load_model("default")
    hed = load_hed()
    files = training_files()
    rows: dict[str, list] = {"skips": [], "features": [], "hed": [], "cam": []}
    with torch.inference_mode():
        for i in tqdm(range(0, len(files), 4), desc="cache", unit="batch"):
            batch = explainer.prepare(files[i : i + 4])
            for mirror in (False, True):
                x, pixels = batch.x, batch.pixels
                if mirror:
                    x, pixels = x.flip(-1), pixels.flip(-1)
                features, skips = explainer.backbone.forward_features(x, return_skips=True)
                logits = explainer.backbone.forward_head(features)
                targets = logits.argmax(1)
                low = explainer.backbone.cam(features, targets)
                high = explainer.upsampler.upsample(
                    hrcam.upsample.UpsampleInputs(
                        explainer.backbone, features, None, targets, low, pixels
                    )
                )
                rows["skips"].append([s.half() for s in skips])
                rows["features"].append(features.half())
                rows["hed"].append(F.max_pool2d(hed(pixels)[:, None], 4)[:, 0].half())
                rows["cam"].append(F.avg_pool2d(high[:, None], 4)[:, 0].half())
    out = {
        "skips": [torch.cat([r[k] for r in rows["skips"]]) for k in range(len(rows["skips"][0]))],
        "features": torch.cat(rows["features"]),
        "hed": torch.cat(rows["hed"]),
        "cam": torch.cat(rows["cam"]),
        "files": [str(f) for f in files],
    }
    torch.save(out, args.cache)
    print(f"{len(out['hed'])} samples -> {args.cache}")


def train(args) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    data = torch.load(args.cache)
    explainer = hrcam.load_model("default")
    head = BoundaryHead.from_backbone(explainer.backbone, width=args.width)
    optimiser = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=1e-4)
    n = len(data["hed"])
    steps = args.epochs * ((n + args.batch - 1) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=steps)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(n)
        totals = {"distill": 0.0, "affinity": 0.0}
        for start in range(0, n, args.batch):
            idx = order[start : start + args.batch]
            skips = [s[idx].float() for s in data["skips"]]
            logits = head.logits(skips, data["features"][idx].float())
            loss = 0.0
            if args.objective in ("distill", "both"):
                target = data["hed"][idx].float()
                d = F.binary_cross_entropy_with_logits(logits[:, 0], target)
                loss = loss + d
                totals["distill"] += float(d.detach()) * len(idx)
            if args.objective in ("affinity", "both"):
                a = affinity_loss(
                    torch.sigmoid(logits[:, 0]), data["cam"][idx].float(), fg=args.fg, bg=args.bg,
                    radius=args.radius,
                )  # fmt: skip
                loss = loss + args.affinity_weight * a
                totals["affinity"] += float(a.detach()) * len(idx)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        print(
            f"epoch {epoch + 1}/{args.epochs}  distill {totals['distill'] / n:.4f}  "
            f"affinity {totals['affinity'] / n:.4f}  {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    torch.save({"state": head.state_dict(), "config": head.config()}, args.head)


def _walks() -> list[tuple[str, float, tuple[int, ...]]]:
    """``name, beta, steps per level`` from HEAD_WALKS="6:64/256,6:1024" (coarsest level first,
    the last level at the head's grid)."""
    spec = os.environ.get("HEAD_WALKS", "6:1024,6:64/256,6:128/128,6:32/64")
    walks = []
    for item in spec.split(","):
        beta, steps = item.split(":")
        walks.append((f"β{beta} t{steps}", float(beta), tuple(int(s) for s in steps.split("/"))))
    return walks


def score(args) -> None:
    from hrcam.postprocess import compiled
    from hrcam.postprocess.options import RefineOptions
    from hrcam.postprocess.pipeline import run_steps

    torch.set_num_threads(2)
    explainer = hrcam.load_model("default")
    heads = {}
    for path in args.head:
        saved = torch.load(path)
        head = BoundaryHead(**saved["config"])
        head.load_state_dict(saved["state"])
        heads[Path(path).stem] = head.eval()
    hed = load_hed() if args.hed else None
    dataset = LocalizationDataset(args.data)
    by_name = {s.name: s for s in dataset}
    names = evenly_spaced(split_names(list(by_name), args.split), args.limit)
    options = RefineOptions()
    walks = _walks()
    sources = list(heads) + (["hed"] if hed is not None else [])
    methods = ["high_res", "refined"]
    if hed is not None:
        methods += ["hed shipped walk", "hed shipped walk refined"]
    methods += [f"{s} {w[0]}{r}" for s in sources for w in walks for r in ("", " refined")]
    pxap = {m: PxAP() for m in methods}
    iou = {m: BestPixelIoU() for m in methods}
    seconds = {m: 0.0 for m in methods}
    for name in tqdm(names, desc="score", unit="img"):
        sample = by_name[name]
        batch = explainer.prepare([sample.path])
        explanation = explainer.explain(batch)
        low, high = explanation.low_res[0].numpy(), explanation.high_res[0].numpy()
        maps = {"high_res": high, "refined": explanation.refined[0].numpy()}
        boundaries = {}
        with torch.inference_mode():
            features, skips = explainer.backbone.forward_features(batch.x, return_skips=True)
            for key, head in heads.items():
                boundaries[key] = head(skips, features)
            if hed is not None:
                full = hed(batch.pixels)
                boundaries["hed"] = F.max_pool2d(full[:, None], 4)[:, 0]
                shipped = boundary_walk(explanation.high_res, full, beta=6.0, steps=4096, scale=2)
                maps["hed shipped walk"] = shipped[0].numpy()
        for key, b in boundaries.items():
            for wname, beta, steps in walks:
                t = time.perf_counter()
                walked = walk_multiscale(explanation.high_res, b, beta=beta, steps=steps)
                seconds[f"{key} {wname}"] += time.perf_counter() - t
                maps[f"{key} {wname}"] = walked[0].numpy()
        for m in list(maps):
            if m not in ("high_res", "refined") and not m.endswith("refined"):
                maps[f"{m} refined"] = run_steps(
                    compiled, low, maps[m], batch.rgb[0], options
                ).merged
        for method, cam in maps.items():
            resized = resize_map(cam, sample.mask.shape)
            pxap[method].update(resized, sample.mask, sample.ignore)
            iou[method].update(resized, sample.mask, sample.ignore)
    n = len(names)
    print(f"\n{n} images ({args.split})\n")
    print("| variant | PxAP | best pixel IoU | PxAP − refined (paired) | walk ms/image |")
    print("|---|---:|---:|---:|---:|")
    base = pxap["refined"].bootstrap_statistic()
    for m in methods:
        stat = pxap[m].bootstrap_statistic()
        lo, hi = bootstrap_interval(stat, n)
        d_lo, d_hi = paired_difference_interval(stat, base, n)
        value = pxap[m].compute()["pxap"]
        diff = value - pxap["refined"].compute()["pxap"]
        ms = f"{1000 * seconds[m] / n:.1f}" if seconds.get(m) else ""
        print(
            f"| {m} | {100 * value:.1f} ({100 * lo:.1f}–{100 * hi:.1f}) | "
            f"{100 * iou[m].compute()['best_pixel_iou']:.1f} | "
            f"{100 * diff:+.1f} ({100 * d_lo:+.1f} to {100 * d_hi:+.1f}) | {ms} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("folder")
    p.add_argument("folder", type=Path)
    p.set_defaults(run=folder)
    p = sub.add_parser("cache")
    p.add_argument("cache", type=Path)
    p.set_defaults(run=cache)
    p = sub.add_parser("train")
    p.add_argument("cache", type=Path)
    p.add_argument("head", type=Path)
    p.add_argument("--objective", choices=("distill", "affinity", "both"), default="distill")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--fg", type=float, default=0.6)
    p.add_argument("--bg", type=float, default=0.15)
    p.add_argument("--radius", type=int, default=5)
    p.add_argument("--affinity-weight", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=16)
    p.set_defaults(run=train)
    p = sub.add_parser("score")
    p.add_argument("data", type=Path)
    p.add_argument("--split", default="first-half")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--head", action="append", default=[])
    p.add_argument("--hed", action="store_true", help="also walk on HED's boundaries")
    p.set_defaults(run=score)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
