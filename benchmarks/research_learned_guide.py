"""Research runs for the learned guide (issue: an expansion network that follows objects).

Caches, once, what the frozen classifier computes for the training images (no labels read):
the 1× input's skips and its top-``k`` positive-weight CAMs (7×7), and the same classes' CAMs of
the image at 2× (14×14) and 3× (21×21); then trains :class:`hrcam.learned_guide.GuideNetwork`
variants on the cache and scores each, beside the training-free guided CAM, on pets-dev's
**first half** (the tuning half; the second half is for the final table only).

    python benchmarks/research_learned_guide.py --cache /work/cache/guide.pt -o runs/guide \\
        --variants cam2x cam2x3x cam2x-e12

Training images: ``../shared/data/imagenet-val-nonanimal`` (703) and pets-dev's first half
(285), each also mirrored. Prints one line per epoch (loss, rate, ETA) and a table at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hrcam import load_model
from hrcam.data.annotations import LocalizationDataset
from hrcam.evaluation import evaluate_localization
from hrcam.evaluation.subsets import split_names
from hrcam.io import find_images
from hrcam.learned_guide import GuideNetwork
from hrcam.methods import CAMMethod

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# name -> (GuideNetwork kwargs, training kwargs)
VARIANTS = {
    "cam2x": ({}, {"scales": (2,)}),
    "cam2x3x": ({}, {"scales": (2, 3)}),
    "cam2x-e12": ({"guide_channels": 12, "channels": 24}, {"scales": (2,)}),
    "cam2x-norgb": ({}, {"scales": (2,), "drop_rgb": True}),
    # the RGB weight held at the training-free guide's: do the learned channels add anything?
    "cam2x-fixrgb": ({}, {"scales": (2,), "freeze_rgb": True}),
    "cam2x-long": ({}, {"scales": (2,), "epochs": 40}),
}


def training_images() -> list[Path]:
    imagenet = sorted(find_images([DATA / "imagenet-val-nonanimal" / "images"]))
    pets = LocalizationDataset(DATA / "pets-dev")
    first = set(split_names(pets.names, "first-half"))
    return imagenet + [
        p for p in sorted(find_images([DATA / "pets-dev" / "images"])) if p.stem in first
    ]


@torch.inference_mode()
def build_cache(model, paths: list[Path], k: int, scales=(2,)) -> dict:
    backbone = model.backbone
    side = backbone.input_size
    used = [i for i, s in enumerate(backbone.skip_info) if 4 <= s.stride <= 16]
    cache = {"images": [], "skips": [[] for _ in used], "cams": [], "targets": []}
    for s in scales:
        cache[f"cams{s}"] = []
    started = time.perf_counter()
    for n, path in enumerate(paths):
        for flip in (False, True):
            x = model.preprocess(path)
            if flip:
                x = torch.flip(x, dims=[3])
            features, skips = backbone.forward_features(x, return_skips=True)
            logits = backbone.forward_head(features)
            top = logits[0].topk(k).indices
            cache["cams"].append(_cams(backbone, features, top).half())
            cache["targets"].append(top)
            cache["images"].append((model.unnormalize(x)[0] * 255).round().to(torch.uint8))
            for j, i in enumerate(used):
                cache["skips"][j].append(skips[i][0].half())
            for s in scales:
                xs = model.preprocess(path, size=side * s)
                if flip:
                    xs = torch.flip(xs, dims=[3])
                cache[f"cams{s}"].append(_cams(backbone, backbone.forward_features(xs), top).half())
        if (n + 1) % 50 == 0:
            rate = (n + 1) / (time.perf_counter() - started)
            print(
                f"cache {n + 1}/{len(paths)} ({rate:.2f} img/s, ETA {(len(paths) - n - 1) / rate:.0f} s)",
                flush=True,
            )
    out = {key: torch.stack(v) for key, v in cache.items() if key != "skips"}
    out["skips"] = [torch.stack(v) for v in cache["skips"]]
    out["used"] = used
    return out


def _cams(backbone, features, classes) -> torch.Tensor:
    """(k, h, w) positive-weight CAMs of one image for ``classes``."""
    w = backbone.fc.weight[classes].clamp_min(0)
    return torch.einsum("ck,khw->chw", w, features[0])


def _unit_max(maps: torch.Tensor) -> torch.Tensor:
    return maps / maps.flatten(-2).amax(-1)[..., None, None].clamp_min(1e-6)


TRAIN_GRID = 56  # training upsamples 7 → 14 → 28 → 56 (stride 4), then pools to the target


def batch_loss(net, cache, idx, scales, skips_full):
    """The objective on one batch. Upsampling stops at stride 4 during training (the last two
    doublings mostly move values within a target cell, and cost 20× the rest); at test time
    the same guide runs the whole chain to 224."""
    images = cache["images"][idx].float() / 255
    for j, i in enumerate(cache["used"]):
        skips_full[i] = cache["skips"][j][idx].float()
    guide = net(images, skips_full, size=(TRAIN_GRID, TRAIN_GRID))
    up = net.upsample(cache["cams"][idx].float(), guide)  # (B, k, 56, 56)
    loss = 0.0
    for s in scales:
        target = cache[f"cams{s}"][idx].float()
        pooled = F.adaptive_avg_pool2d(up, target.shape[-2:])
        loss = loss + F.mse_loss(_unit_max(pooled), _unit_max(target))
    return loss


@torch.no_grad()
def objective(net, cache, scales, skips_full, batch=32) -> float:
    """The mean training loss of ``net`` over the whole cache (no update)."""
    n = cache["cams"].shape[0]
    total = 0.0
    for start in range(0, n, batch):
        idx = torch.arange(start, min(n, start + batch))
        total += float(batch_loss(net, cache, idx, scales, skips_full)) * len(idx)
    return total / n


def train(
    cache,
    backbone,
    guide_kwargs,
    *,
    scales,
    epochs=15,
    batch=16,
    lr=3e-3,
    drop_rgb=False,
    freeze_rgb=False,
    seed=0,
):
    torch.manual_seed(seed)
    net = GuideNetwork.from_backbone(backbone, **guide_kwargs)
    if drop_rgb:  # the learned channels only: start from a purely spatial upsampling
        net.log_rgb_scale.data.fill_(-20.0)
        net.log_rgb_scale.requires_grad_(False)
    if freeze_rgb:
        net.log_rgb_scale.requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    n = cache["cams"].shape[0]
    steps = epochs * math.ceil(n / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    skips_full = [None] * len(backbone.skip_info)
    history = [objective(net, cache, scales, skips_full)]  # epoch 0: the untrained guide
    print(f"  epoch 0 (untrained: the colour guide): loss {history[0]:.5f}", flush=True)
    started = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            loss = batch_loss(net, cache, idx, scales, skips_full)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / n)
        rate = (epoch + 1) / (time.perf_counter() - started)
        print(
            f"  epoch {epoch + 1}/{epochs}: train loss {history[-1]:.5f}, rgb scale "
            f"{float(net.log_rgb_scale.detach().exp()):.2f}, {1 / rate:.0f} s/epoch, ETA "
            f"{(epochs - epoch - 1) / rate:.0f} s",
            flush=True,
        )
    return net.eval(), history


class LearnedGuided(CAMMethod):
    """The learned-guide high-res CAM of the positive FC weights."""

    family = "ours"

    def __init__(self, name: str, net: GuideNetwork) -> None:
        super().__init__(name)
        self.net = net

    @torch.no_grad()
    def _compute(self, model, x, targets):
        features, skips = model.backbone.forward_features(x, return_skips=True)
        cam = model.backbone.cam(features, targets, weights="positive")
        return self.net.upsample(cam, self.net(model.unnormalize(x), skips)).float().cpu()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--variants", nargs="+", default=["cam2x"], choices=sorted(VARIANTS))
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--cache-scales", type=int, nargs="+", default=[2])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--eval-split", default="first-half")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="first N training images (smoke runs)")
    p.add_argument("--eval-limit", type=int, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    model = load_model("default")
    if args.cache.is_file():
        cache = torch.load(args.cache)
    else:
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        paths = training_images()
        paths = paths[: args.limit] if args.limit else paths
        cache = build_cache(model, paths, args.top_k, tuple(args.cache_scales))
        torch.save(cache, args.cache)
    print(f"cache: {cache['cams'].shape[0]} samples", flush=True)
    methods = ["high_res"]
    report = {}
    for name in args.variants:
        guide_kwargs, train_kwargs = VARIANTS[name]
        train_kwargs = {"epochs": args.epochs, **train_kwargs}
        print(f"variant {name}: {guide_kwargs} {train_kwargs}", flush=True)
        started = time.perf_counter()
        net, history = train(cache, model.backbone, guide_kwargs, **train_kwargs)
        seconds = time.perf_counter() - started
        torch.save({"config": net.config, "state": net.state_dict()}, args.output / f"{name}.pt")
        methods.append(LearnedGuided(f"learned:{name}", net))
        report[name] = {"history": history, "train_seconds": seconds, "config": net.config}
    results = evaluate_localization(
        model,
        LocalizationDataset(DATA / "pets-dev"),
        methods,
        split=args.eval_split,
        progress=False,
    )
    print(f"\npets-dev {args.eval_split}: method | PxAP | best px IoU | MaxBoxAccV2 | ms/image")
    for name, r in results["methods"].items():
        m = r["metrics"]
        print(
            f"| {name} | {100 * m['pxap']:.1f} | {100 * m['best_pixel_iou']:.1f} | "
            f"{100 * m['max_box_acc_v2']:.1f} | {r['timing']['ms_per_image']:.1f} |"
        )
        report.setdefault(name.split(":")[-1], {})["metrics"] = m
        report[name.split(":")[-1]]["timing"] = r["timing"]
    with open(args.output / "report.json", "w") as f:
        json.dump(report, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
