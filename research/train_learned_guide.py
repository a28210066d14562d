"""Research runs for the learned guide (issue: an expansion network that follows objects).

Caches, once, what the frozen classifier computes for the training images (no labels read):
the 1× input's skips and its top-``k`` positive-weight CAMs (7×7), and the same classes' CAMs of
the image at 2× (14×14) and 3× (21×21); then trains :class:`learned_guide.GuideNetwork`
variants on the cache and scores each, beside the training-free guided CAM, on pets-dev's
**first half** (the tuning half; the second half is for the final table only).

    python research/train_learned_guide.py --cache /work/cache/guide.pt -o runs/guide \\
        --variants cam2x cam2x3x cam2x-e12
    python research/train_learned_guide.py --cache /work/cache/guide.pt -o runs/guide \\
        --views 6 --views-cache /work/cache/views.pt --variants multiview multiview-blur

``--views N`` adds FeatUp's multi-view signal (Fu et al., ICLR 2024): the CAMs of ``N`` shifted
copies of each sample (shifts up to 16 px in 4-px steps, reflected at the borders), cached
once; the guide's upsampled CAM, shifted alike and pooled back to 7×7 (by a box, or by a
learned blur as FeatUp's downsampler), must match each.

Training images: ``../shared/data/imagenet-val-nonanimal`` (703) and pets-dev's first half
(285), each also mirrored. Prints one line per epoch (loss, rate, ETA) and a table at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from learned_guide import GuideNetwork  # research/learned_guide.py, beside this script

from hrcam import load_model
from hrcam.data.annotations import LocalizationDataset
from hrcam.evaluation import evaluate_localization
from hrcam.evaluation.subsets import split_names
from hrcam.io import find_images
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
    # FeatUp's multi-view signal: the upsampled CAM, shifted and pooled back to 7x7, must match
    # the classifier's CAM of the shifted image (--views); a box or a learned blur pools it.
    "multiview": ({}, {"scales": (), "use_views": True}),
    "multiview-blur": ({}, {"scales": (), "use_views": True, "learned_blur": True}),
    "cam2x-multiview": ({}, {"scales": (2,), "use_views": True}),
}

VIEW_SHIFT = 16  # px: the largest shift of a view (half a cell of the 7x7 grid at 224)


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
            batch = model.prepare(path)
            x = torch.flip(batch.x, dims=[3]) if flip else batch.x
            features, skips = backbone.forward_features(x, return_skips=True)
            logits = backbone.forward_head(features)
            top = logits[0].topk(k).indices
            cache["cams"].append(_cams(backbone, features, top).half())
            cache["targets"].append(top)
            rgb = torch.from_numpy(batch.rgb[0]).permute(2, 0, 1)
            cache["images"].append(torch.flip(rgb, dims=[2]) if flip else rgb)
            for j, i in enumerate(used):
                cache["skips"][j].append(skips[i][0].half())
            for s in scales:
                xs = model.replace(input_size=side * s).prepare(path).x
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


@torch.inference_mode()
def build_views(model, paths: list[Path], targets: torch.Tensor, n_views: int, seed=0) -> dict:
    """The CAMs (S, V, k, 7, 7) of ``n_views`` shifted copies of every cached sample (the order
    of :func:`build_cache`: each path, then its mirror), for the sample's cached top-k classes,
    and the shifts (S, V, 2) in pixels, multiples of 4 (the training grid's step) up to
    ``VIEW_SHIFT``. A view's pixel (y, x) is the image's (y + dy, x + dx), reflected at the
    borders."""
    backbone = model.backbone
    g = torch.Generator().manual_seed(seed)
    cams, shifts = [], []
    started, s, r = time.perf_counter(), 0, VIEW_SHIFT
    for n, path in enumerate(paths):
        for flip in (False, True):
            x = model.prepare(path).x
            if flip:
                x = torch.flip(x, dims=[3])
            H, W = x.shape[-2:]
            padded = F.pad(x, (r, r, r, r), mode="reflect")
            shift = torch.randint(-r // 4, r // 4 + 1, (n_views, 2), generator=g) * 4
            views = torch.cat(
                [padded[..., r + dy : r + dy + H, r + dx : r + dx + W] for dy, dx in shift.tolist()]
            )
            w = backbone.fc.weight[targets[s]].clamp_min(0)
            cams.append(torch.einsum("ck,vkhw->vchw", w, backbone.forward_features(views)).half())
            shifts.append(shift)
            s += 1
        if (n + 1) % 50 == 0:
            rate = (n + 1) / (time.perf_counter() - started)
            print(
                f"views {n + 1}/{len(paths)} ({rate:.2f} img/s, ETA {(len(paths) - n - 1) / rate:.0f} s)",
                flush=True,
            )
    return {"cams": torch.stack(cams), "shifts": torch.stack(shifts)}


class LearnedBlur(torch.nn.Module):
    """FeatUp's learned downsampler: a non-negative kernel summing to 1 (softmax of its logits),
    12 grid cells wide at stride 8 (a 7x7 cell is 8 cells of the stride-4 training grid, so the
    kernel reaches 2 cells into each neighbour); it starts as the 8x8 box."""

    def __init__(self, width: int = 12, stride: int = 8) -> None:
        super().__init__()
        logits = torch.full((width, width), -4.0)
        m = (width - stride) // 2
        logits[m : m + stride, m : m + stride] = 0.0
        self.logits = torch.nn.Parameter(logits)
        self.stride, self.pad = stride, m

    def forward(self, maps: torch.Tensor) -> torch.Tensor:  # (B, k, 56, 56) -> (B, k, 7, 7)
        kernel = self.logits.flatten().softmax(0).view(1, 1, *self.logits.shape)
        B, k, h, w = maps.shape
        x = F.pad(maps.reshape(B * k, 1, h, w), (self.pad,) * 4, mode="replicate")
        return F.conv2d(x, kernel, stride=self.stride).view(
            B, k, h // self.stride, w // self.stride
        )


def view_loss(up: torch.Tensor, views: dict, idx, blur) -> torch.Tensor:
    """Multi-view reconstruction: ``up`` (B, k, 56, 56), the 1x CAM upsampled at stride 4,
    shifted as each view was and pooled to 7x7, against the CAM of that view."""
    targets = views["cams"][idx].float()  # (B, V, k, 7, 7)
    cells = (views["shifts"][idx] // 4).tolist()  # (B, V, 2) in training-grid cells
    r = VIEW_SHIFT // 4
    padded = F.pad(up, (r, r, r, r), mode="reflect")
    size = up.shape[-1]
    loss = 0.0
    for v in range(targets.shape[1]):
        crops = torch.stack(
            [
                padded[b, :, r + dy : r + dy + size, r + dx : r + dx + size]
                for b, (dy, dx) in enumerate(c[v] for c in cells)
            ]
        )
        pooled = blur(crops) if blur is not None else F.avg_pool2d(crops, size // 7)
        loss = loss + F.mse_loss(_unit_max(pooled), _unit_max(targets[:, v]))
    return loss / targets.shape[1]


def _cams(backbone, features, classes) -> torch.Tensor:
    """(k, h, w) positive-weight CAMs of one image for ``classes``."""
    w = backbone.fc.weight[classes].clamp_min(0)
    return torch.einsum("ck,khw->chw", w, features[0])


def _unit_max(maps: torch.Tensor) -> torch.Tensor:
    return maps / maps.flatten(-2).amax(-1)[..., None, None].clamp_min(1e-6)


TRAIN_GRID = 56  # training upsamples 7 → 14 → 28 → 56 (stride 4), then pools to the target


def batch_loss(net, cache, idx, scales, skips_full, views=None, blur=None):
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
    if views is not None:
        loss = loss + view_loss(up, views, idx, blur)
    return loss


@torch.no_grad()
def objective(net, cache, scales, skips_full, views=None, blur=None, batch=32) -> float:
    """The mean training loss of ``net`` over the whole cache (no update)."""
    n = cache["cams"].shape[0]
    total = 0.0
    for start in range(0, n, batch):
        idx = torch.arange(start, min(n, start + batch))
        total += float(batch_loss(net, cache, idx, scales, skips_full, views, blur)) * len(idx)
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
    use_views=False,
    learned_blur=False,
    views=None,
    seed=0,
):
    torch.manual_seed(seed)
    net = GuideNetwork.from_backbone(backbone, **guide_kwargs)
    if drop_rgb:  # the learned channels only: start from a purely spatial upsampling
        net.log_rgb_scale.data.fill_(-20.0)
        net.log_rgb_scale.requires_grad_(False)
    if freeze_rgb:
        net.log_rgb_scale.requires_grad_(False)
    if use_views and views is None:
        raise SystemExit("this variant needs the shifted views: pass --views N")
    views = views if use_views else None
    blur = LearnedBlur() if learned_blur else None
    params = [p for p in net.parameters() if p.requires_grad]
    if blur is not None:
        params += list(blur.parameters())
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    n = cache["cams"].shape[0]
    steps = epochs * math.ceil(n / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    skips_full = [None] * len(backbone.skip_info)
    history = [objective(net, cache, scales, skips_full, views, blur)]  # epoch 0: untrained
    print(f"  epoch 0 (untrained: the colour guide): loss {history[0]:.5f}", flush=True)
    started = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            loss = batch_loss(net, cache, idx, scales, skips_full, views, blur)
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
    def _compute(self, explainer, images, targets):
        features, skips = explainer.backbone.forward_features(images.x, return_skips=True)
        cam = explainer.backbone.cam(features, targets, weights="positive")
        return self.net.upsample(cam, self.net(images.pixels, skips)).float().cpu()


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
    p.add_argument("--views", type=int, default=0, help="shifted views per sample (multiview)")
    p.add_argument("--views-cache", type=Path, help="where the views are cached")
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
    views = None
    if args.views:
        if args.views_cache is not None and args.views_cache.is_file():
            views = torch.load(args.views_cache)
        else:
            paths = training_images()
            paths = paths[: args.limit] if args.limit else paths
            views = build_views(model, paths, cache["targets"], args.views)
            if args.views_cache is not None:
                torch.save(views, args.views_cache)
        if views["cams"].shape[0] != cache["cams"].shape[0]:
            raise SystemExit("the views were built for another cache (sample counts differ)")
    methods = ["high_res"]
    report = {}
    for name in args.variants:
        guide_kwargs, train_kwargs = VARIANTS[name]
        train_kwargs = {"epochs": args.epochs, **train_kwargs}
        print(f"variant {name}: {guide_kwargs} {train_kwargs}", flush=True)
        started = time.perf_counter()
        net, history = train(cache, model.backbone, guide_kwargs, views=views, **train_kwargs)
        seconds = time.perf_counter() - started
        torch.save({"config": net.config, "state": net.state_dict()}, args.output / f"{name}.pt")
        methods.append(LearnedGuided(f"learned:{name}", net))
        report[name] = {"history": history, "train_seconds": seconds, "config": net.config}
    results = evaluate_localization(
        model,
        LocalizationDataset(DATA / "pets-dev"),
        methods,
        split=args.eval_split,
        limit=args.eval_limit,
        progress=False,
    )
    print(f"\npets-dev {args.eval_split}: method | PxAP | best px IoU | MaxBoxAccV2 | ms/image")
    for name, r in results.methods.items():
        m = r.metrics
        print(
            f"| {name} | {100 * m['pxap']:.1f} | {100 * m['best_pixel_iou']:.1f} | "
            f"{100 * m['max_box_acc_v2']:.1f} | {r.timing.ms_per_image:.1f} |"
        )
        report.setdefault(name.split(":")[-1], {})["metrics"] = m
        report[name.split(":")[-1]]["timing"] = dataclasses.asdict(r.timing)
    with open(args.output / "report.json", "w") as f:
        json.dump(report, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
