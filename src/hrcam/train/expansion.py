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
        "--guide-weight",
        type=float,
        default=1.0,
        help="weight of the loss training the guidance head; 0 trains the paper's network alone",
    )
    g.add_argument(
        "--guide-loss",
        choices=("scale", "colour"),
        default="scale",
        help="scale: guided upsampling of the maps of the half-size image must pool to the maps "
        "of the full-size image; colour: it must rebuild each pixel's colour from the cell means",
    )
    g.add_argument(
        "--guide-sigma",
        type=float,
        default=0.1,
        help="colour scale of the guidance's joint-bilateral term (0: none)",
    )
    g.add_argument(
        "--no-guidance",
        action="store_true",
        help="build the expansion network without a guidance head",
    )
    g.add_argument(
        "--no-coarse-to-fine",
        action="store_true",
        help="guided upsampling in one step from the feature grid (default: a joint-bilateral "
        "step per doubling, then the learned step to full resolution)",
    )
    g.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start from the expansion network of this stage-2 checkpoint (not a resume: a new "
        "optimiser and schedule), e.g. to add the guidance loss to a paper-faithful network",
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

    def __init__(self, expansion: ExpansionNetwork, backbone: Backbone) -> None:
        super().__init__()
        self.expansion = expansion
        self.mean = tuple(backbone.mean)
        self.std = tuple(backbone.std)
        # Scale-consistency compares maps in the span of the FC rows that matter most: the top
        # right-singular vectors of W (C, K), so the loss counts what CAMs are made of.
        with torch.no_grad():
            weight = backbone.fc.weight.detach().float().cpu()
            _, _, vh = torch.linalg.svd(weight, full_matrices=False)
        self.register_buffer("projection", vh[: min(64, vh.shape[0])].clone(), persistent=False)

    def _rgb(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)

    def forward(self, features, skips, images, consistency: bool, guide: str | None, half=None):
        expansion = self.expansion
        decoded = expansion.decode(features, skips, images.shape[-2:])
        recon = expansion.reconstruct(decoded)
        pooled = expansion.pooled_features(decoded, features.shape[-2:]) if consistency else None
        guided = None
        if guide == "colour":
            cell_means = F.adaptive_avg_pool2d(images, features.shape[-2:])
            guided = expansion.guided_upsample(decoded, cell_means)
        elif guide == "scale":
            small_images, small_features, small_skips = half
            small = expansion.decode(small_features, small_skips, small_images.shape[-2:])
            maps = torch.einsum(
                "mk,bkhw->bmhw", self.projection.to(small_features.dtype), small_features
            )
            guided = expansion.guided_pool(
                small, maps, features.shape[-2:], image=self._rgb(small_images)
            )
        return recon, pooled, guided


def _unit(maps: torch.Tensor) -> torch.Tensor:
    """Each image's maps (B, M, h, w) scaled to unit energy."""
    return maps / maps.pow(2).flatten(1).sum(1).sqrt().clamp_min(1e-8)[:, None, None, None]


def expansion_loss(
    backbone: Backbone,
    decoder: _DecodeForDDP,
    images: torch.Tensor,
    *,
    consistency_weight: float,
    guide_weight: float,
    guide_loss: str,
    ctx: DistContext,
    amp: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reconstruction MSE (the paper's loss) + weighted guidance and consistency losses of one batch.

    Guidance (beyond the paper, no labels needed):

    - ``"scale"``: the localization network sees the image at half size; the guided upsampling
      of those (coarser) maps, average-pooled to the full-size image's feature grid, should
      equal the maps the network computes from the full-size image. The weights thus learn which
      neighbouring cell each finer region belongs to, in the network's own terms.
    - ``"colour"``: each pixel, predicted as the guided mix of the mean colours of the 3×3
      cells around it, should have its own colour.
    """
    module = decoder.module if isinstance(decoder, DistributedDataParallel) else decoder
    guide = guide_loss if guide_weight > 0 else None
    half = None
    with torch.no_grad(), autocast(ctx, amp):
        features, skips = backbone.forward_features(images, return_skips=True)
        if guide == "scale":
            small_images = F.avg_pool2d(images, 2, ceil_mode=True)
            small_features, small_skips = backbone.forward_features(small_images, return_skips=True)
            half = (small_images, small_features, small_skips)
    with autocast(ctx, amp):
        recon, pooled, guided = decoder(
            features, skips, images, consistency_weight > 0, guide, half
        )
    recon_loss = F.mse_loss(recon.float(), images.float())
    parts = {"recon_mse": recon_loss.detach()}
    loss = recon_loss
    if guided is not None:
        if guide == "scale":
            # Compared after normalising each image's maps to unit energy: the network's
            # activations change in size with the image's scale; where they lie should not.
            target = _unit(torch.einsum("mk,bkhw->bmhw", module.projection, features.float()))
            guide_value = (_unit(guided.float()) - target).pow(2).flatten(1).sum(1).mean()
        else:
            guide_value = F.mse_loss(guided.float(), images.float())
        parts["guide"] = guide_value.detach()
        loss = loss + guide_weight * guide_value
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

    - ``val_mse``: reconstruction MSE in the input's normalisation; ``val_psnr``: PSNR of the
      reconstruction in [0, 1] RGB (clipped, as a saved image would be);
    - ``val_consistency_rel_error``: relative error of the pooled high-res maps against ``A``;
    - ``val_scale_rel_error`` (with a guidance head): squared error, in the projected map space
      with each image's maps at unit energy, of the guided upsampling of the half-size image's
      maps against the full-size maps, and ``val_scale_rel_error_bilinear``, the same for plain
      bilinear upsampling, to compare.
    """
    expansion = decoder.expansion
    was_training = expansion.training
    expansion.eval()
    std = torch.tensor(backbone.std, device=ctx.device).view(1, 3, 1, 1)
    mean = torch.tensor(backbone.mean, device=ctx.device).view(1, 3, 1, 1)
    sums = np.zeros(
        6
    )  # mse, psnr, consistency, images, scale error (guided), scale error (bilinear)
    guided_head = expansion.guidance_head is not None
    for images in progress(loader, total=len(loader), desc="held-out", enabled=show_progress):
        images = images.to(ctx.device)
        with autocast(ctx, amp):
            features, skips = backbone.forward_features(images, return_skips=True)
            half = None
            if guided_head:
                small_images = F.avg_pool2d(images, 2, ceil_mode=True)
                half = (small_images, *backbone.forward_features(small_images, return_skips=True))
            recon, pooled, guided = decoder(
                features, skips, images, True, "scale" if guided_head else None, half
            )
        recon, pooled = recon.float(), pooled.float()
        pixels = (images.float() * std + mean).clamp(0, 1)
        mse_pix = ((recon * std + mean).clamp(0, 1) - pixels).pow(2).flatten(1).mean(1)
        psnr = 10 * torch.log10(1.0 / mse_pix.clamp_min(1e-10))
        mse = (recon - images.float()).pow(2).flatten(1).mean(1)
        target = features.float()
        rel = (pooled - target).pow(2).flatten(1).sum(1) / target.pow(2).flatten(1).sum(
            1
        ).clamp_min(1e-8)
        scale = scale_bilinear = torch.zeros(1)
        if guided_head:
            projected = _unit(torch.einsum("mk,bkhw->bmhw", decoder.projection, target))
            scale = (_unit(guided.float()) - projected).pow(2).flatten(1).sum(1)
            small_maps = torch.einsum("mk,bkhw->bmhw", decoder.projection, half[1].float())
            bilinear = F.interpolate(
                small_maps, size=half[0].shape[-2:], mode="bilinear", align_corners=False
            )
            bilinear = F.adaptive_avg_pool2d(bilinear, target.shape[-2:])
            scale_bilinear = (_unit(bilinear) - projected).pow(2).flatten(1).sum(1)
        sums += [
            mse.sum().item(),
            psnr.sum().item(),
            rel.sum().item(),
            images.shape[0],
            scale.sum().item(),
            scale_bilinear.sum().item(),
        ]
    sums = ctx.all_reduce_sum(sums)
    expansion.train(was_training)
    n = max(1.0, sums[3])
    out = {
        "val_mse": float(sums[0] / n),
        "val_psnr": float(sums[1] / n),
        "val_consistency_rel_error": float(sums[2] / n),
        "val_images": int(sums[3]),
    }
    if guided_head:
        out["val_scale_rel_error"] = float(sums[4] / n)
        out["val_scale_rel_error_bilinear"] = float(sums[5] / n)
    return out


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
            guided=not args.no_guidance,
            guide_sigma=args.guide_sigma,
            coarse_to_fine=not args.no_coarse_to_fine,
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
        expansion.coarse_to_fine = not args.no_coarse_to_fine
        expansion.config["coarse_to_fine"] = expansion.coarse_to_fine
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
    decoder = _DecodeForDDP(expansion, backbone).to(ctx.device)
    if ctx.distributed:
        unused = args.guide_weight == 0 and expansion.guidance_head is not None
        decoder = DistributedDataParallel(
            decoder,
            device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
            find_unused_parameters=unused,
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
            guide_weight=args.guide_weight if expansion.guidance_head is not None else 0.0,
            guide_loss=args.guide_loss,
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
