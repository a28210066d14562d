"""Stage 2: train the expansion network with the localization network frozen.

The decoder learns to reconstruct its input image (mean squared error, as the paper) from the
frozen localization network's features and skips. Images need no labels: any folder of images
works (class sub-folders are simply walked). The localization network runs in eval mode under
``torch.no_grad`` and its parameters never reach the optimiser, so classification is untouched —
checked at the end of training against a hash of every parameter and buffer.

Optionally (``--consistency-weight``), a second loss asks the expansion network's
full-resolution maps, average-pooled to the feature resolution, to reproduce the localization
network's maps ``A``; then the high-resolution CAM pools back to the low-resolution CAM.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..backbones import Backbone, create_backbone
from ..checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from ..data.folders import ImageFilesDataset, build_transform
from ..expansion import ExpansionNetwork
from .common import (
    DistContext,
    LoopState,
    MetricsLog,
    add_common_arguments,
    args_to_config,
    autocast,
    fit,
    make_loaders,
    progress,
    resolve_resume,
    save_run_config,
    seed_everything,
    setup_distributed,
    setup_optimization,
)

__all__ = ["expansion_loss", "evaluate", "get_args_parser", "main", "split_files", "state_hash"]

logger = logging.getLogger("hrcam.train")


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "data", type=Path, help="folder of images (searched recursively; labels not needed)"
    )
    g = parser.add_argument_group("model")
    g.add_argument(
        "--classifier",
        required=True,
        help="the frozen localization network: a stage-1 checkpoint (.pt), or a backbone name "
        "with ImageNet weights (e.g. efficientnet_lite0)",
    )
    g.add_argument(
        "--decoder-channels",
        default=None,
        help="decoder widths from the bottleneck to full resolution, comma-separated",
    )
    g.add_argument(
        "--no-skips", action="store_true", help="decoder without skip connections (ablation)"
    )
    g.add_argument("--upsample", choices=("bilinear", "transposed"), default="bilinear")
    g.add_argument(
        "--consistency-weight",
        type=float,
        default=0.0,
        help="weight of the loss asking pooled high-res maps to equal the backbone's maps "
        "(0 = the paper's reconstruction loss alone)",
    )
    g.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start from the expansion network of this stage-2 checkpoint (not a resume: a new "
        "optimiser and schedule), e.g. to fine-tune a trained network with another loss",
    )
    g.add_argument("--augment", choices=("none", "flip"), default="flip")
    d = parser.add_argument_group("held-out images")
    d.add_argument(
        "--val-dir", type=Path, default=None, help="held-out images (default: a split of DATA)"
    )
    d.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of DATA held out when no --val-dir"
    )
    add_common_arguments(parser, default_epochs=10, default_lr=2e-3, default_batch=32)
    return parser


def state_hash(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer, bit for bit."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def split_files(files: list[Path], *, fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministic (train, held-out) split of a file list."""
    if not 0 <= fraction < 1:
        raise ValueError(f"--val-fraction must lie in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(files))
    n_val = int(round(len(files) * fraction))
    if fraction > 0 and len(files) > 1:
        n_val = max(1, n_val)
    held = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, held


def load_classifier(spec: str) -> Backbone:
    """A stage-1 checkpoint, an exported model, or a registered backbone with ImageNet weights."""
    path = Path(spec)
    if path.suffix in (".pt", ".pth") or path.is_file():
        return model_from_checkpoint(load_checkpoint(path), source=str(path)).backbone
    if path.suffix == ".safetensors":
        from ..checkpoint import load_model

        return load_model(path).backbone
    return create_backbone(spec, weights="imagenet")


class _DecodeForDDP(torch.nn.Module):
    """DDP wraps ``forward``; this makes ``forward`` run the decoder and every training head."""

    def __init__(self, expansion: ExpansionNetwork) -> None:
        super().__init__()
        self.expansion = expansion

    def forward(self, features, skips, images, consistency: bool):
        expansion = self.expansion
        decoded = expansion.decode(features, skips, images.shape[-2:])
        recon = expansion.reconstruct(decoded)
        pooled = expansion.pooled_features(decoded, features.shape[-2:]) if consistency else None
        return recon, pooled


def expansion_loss(
    backbone: Backbone,
    decoder: _DecodeForDDP,
    images: torch.Tensor,
    *,
    consistency_weight: float,
    ctx: DistContext,
    amp: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reconstruction MSE (the paper's loss), plus the weighted consistency loss, of one batch."""
    with torch.no_grad(), autocast(ctx, amp):
        features, skips = backbone.forward_features(images, return_skips=True)
    with autocast(ctx, amp):
        recon, pooled = decoder(features, skips, images, consistency_weight > 0)
    recon_loss = F.mse_loss(recon.float(), images.float())
    parts = {"recon_mse": recon_loss.detach()}
    loss = recon_loss
    if pooled is not None:
        # Scale-free: the backbone's maps are compared relative to their mean energy.
        target = features.float()
        consistency = F.mse_loss(pooled.float(), target) / target.pow(2).mean().clamp_min(1e-8)
        parts["consistency"] = consistency.detach()
        loss = loss + consistency_weight * consistency
    return loss, parts


@torch.no_grad()
def evaluate(
    backbone: Backbone,
    decoder: _DecodeForDDP,
    loader,
    *,
    ctx: DistContext,
    show_progress: bool = False,
    amp: bool = False,
) -> dict[str, float]:
    """Held-out scores of the expansion network.

    ``val_mse``: reconstruction MSE in the input's normalisation; ``val_psnr``: PSNR of the
    reconstruction in [0, 1] RGB (clipped, as a saved image would be);
    ``val_consistency_rel_error``: relative error of the pooled high-res maps against ``A``.
    """
    expansion = decoder.expansion
    was_training = expansion.training
    expansion.eval()
    std = torch.tensor(backbone.std, device=ctx.device).view(1, 3, 1, 1)
    mean = torch.tensor(backbone.mean, device=ctx.device).view(1, 3, 1, 1)
    sums = np.zeros(4)  # mse, psnr, consistency, images
    for images in progress(loader, total=len(loader), desc="held-out", enabled=show_progress):
        images = images.to(ctx.device)
        with autocast(ctx, amp):
            features, skips = backbone.forward_features(images, return_skips=True)
            recon, pooled = decoder(features, skips, images, True)
        recon, pooled = recon.float(), pooled.float()
        pixels = (images.float() * std + mean).clamp(0, 1)
        mse_pix = ((recon * std + mean).clamp(0, 1) - pixels).pow(2).flatten(1).mean(1)
        psnr = 10 * torch.log10(1.0 / mse_pix.clamp_min(1e-10))
        mse = (recon - images.float()).pow(2).flatten(1).mean(1)
        target = features.float()
        rel = (pooled - target).pow(2).flatten(1).sum(1) / target.pow(2).flatten(1).sum(
            1
        ).clamp_min(1e-8)
        sums += [mse.sum().item(), psnr.sum().item(), rel.sum().item(), images.shape[0]]
    sums = ctx.all_reduce_sum(sums)
    expansion.train(was_training)
    n = max(1.0, sums[3])
    return {
        "val_mse": float(sums[0] / n),
        "val_psnr": float(sums[1] / n),
        "val_consistency_rel_error": float(sums[2] / n),
        "val_images": int(sums[3]),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    ctx = setup_distributed(args.device)
    output: Path = args.output
    if ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
        save_run_config(output, args_to_config(args))
    seed_everything(args.seed)
    resume_path = resolve_resume(args.resume, output)
    payload = load_checkpoint(resume_path) if resume_path else None
    if payload is not None:
        if payload.get("stage") != "expansion":
            raise ValueError(
                f"{resume_path}: a {payload.get('stage')} checkpoint cannot resume stage 2"
            )
        model = model_from_checkpoint(payload, source=str(resume_path))
        backbone, expansion = model.backbone, model.expansion
    else:
        backbone = load_classifier(args.classifier)
        channels = (
            tuple(int(v) for v in args.decoder_channels.split(","))
            if args.decoder_channels
            else None
        )
        expansion = ExpansionNetwork.from_backbone(
            backbone,
            decoder_channels=channels,
            skip_connections=not args.no_skips,
            upsample=args.upsample,
        )
        if args.init_from:
            source = model_from_checkpoint(
                load_checkpoint(args.init_from), source=str(args.init_from)
            )
            if source.expansion is None or state_hash(source.backbone) != state_hash(backbone):
                raise ValueError(
                    f"--init-from {args.init_from}: not a stage-2 checkpoint of this classifier"
                )
            expansion = source.expansion
    backbone.eval().requires_grad_(False)
    frozen_hash = state_hash(backbone)
    size = args.input_size or backbone.input_size

    if args.val_dir:
        train_files = ImageFilesDataset(args.data).files
        val_files = ImageFilesDataset(args.val_dir).files
    else:
        train_files, val_files = split_files(
            ImageFilesDataset(args.data).files, fraction=args.val_fraction, seed=args.seed
        )
    if not val_files:
        raise ValueError("no held-out images: give --val-dir or a --val-fraction above 0")
    train_set = ImageFilesDataset(
        files=train_files,
        transform=build_transform(
            size=size, mean=backbone.mean, std=backbone.std, train=True, augment=args.augment
        ),
    )
    val_set = ImageFilesDataset(
        files=val_files,
        transform=build_transform(size=size, mean=backbone.mean, std=backbone.std, train=False),
    )
    if ctx.is_main:
        from ..utils import atomic_save_json

        atomic_save_json(
            {"train": [str(f) for f in train_files], "held_out": [str(f) for f in val_files]},
            output / "split.json",
        )

    backbone.to(ctx.device)
    expansion.to(ctx.device).train()
    if args.channels_last:
        backbone.to(memory_format=torch.channels_last)
        expansion.to(memory_format=torch.channels_last)
    decoder = _DecodeForDDP(expansion).to(ctx.device)
    if ctx.distributed:
        decoder = DistributedDataParallel(
            decoder, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )

    sampler, loader, val_loader = make_loaders(train_set, val_set, args=args, ctx=ctx)
    optimizer, scheduler, state = setup_optimization(
        args,
        list(expansion.parameters()),
        loader=loader,
        payload=payload,
        resume_path=resume_path,
        ctx=ctx,
    )
    config = args_to_config(args)

    def train_step(images: torch.Tensor) -> torch.Tensor:
        images = images.to(ctx.device, non_blocking=True)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss, _ = expansion_loss(
            backbone,
            decoder,
            images,
            consistency_weight=args.consistency_weight,
            ctx=ctx,
            amp=args.amp,
        )
        return loss

    def save(name: str, loop: LoopState, metrics: dict[str, Any]) -> None:
        save_checkpoint(
            output / name,
            backbone=backbone,
            expansion=expansion,
            stage="expansion",
            epoch=loop.epoch,
            config=config,
            metrics=metrics,
            optimizer=optimizer,
            scheduler=scheduler,
            extra={"loop": loop.as_dict(), "backbone_state_sha256": frozen_hash},
        )

    plain_decoder = decoder.module if isinstance(decoder, DistributedDataParallel) else decoder

    def run_eval() -> dict[str, float]:
        return evaluate(backbone, plain_decoder, val_loader, ctx=ctx, amp=args.amp)

    metrics = fit(
        ctx=ctx,
        args=args,
        loader=loader,
        sampler=sampler,
        optimizer=optimizer,
        scheduler=scheduler,
        train_step=train_step,
        evaluate=run_eval,
        save=save,
        state=state,
        best_key="val_mse",
        higher_is_better=False,
        log=MetricsLog(output / "metrics.jsonl", enabled=ctx.is_main),
        desc="expansion",
    )
    if not metrics:
        metrics = run_eval()
    if state_hash(backbone) != frozen_hash:  # cannot happen unless the code above is changed
        raise RuntimeError(
            "the localization network changed during stage 2; this is a bug in hrcam"
        )
    if not math.isfinite(metrics.get("val_mse", 0.0)):
        raise FloatingPointError("held-out reconstruction error is not finite; lower --lr")
    return metrics
