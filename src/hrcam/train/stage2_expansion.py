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

import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import Backbone
from ..checkpoint import load_backbone, load_model, model_from_checkpoint, save_checkpoint
from ..data.folders import ImageFilesDataset, build_transform
from ..upsample.expansion import ExpansionNetwork
from ..utils import atomic_save_json
from .config import ExpansionConfig
from .distributed import DistContext, distributed, wrap_ddp
from .loop import (
    Hooks,
    LoopState,
    MetricsLog,
    autocast,
    fit,
    make_loaders,
    progress,
    setup_optimization,
    start_run,
)

__all__ = [
    "evaluate",
    "expansion_loss",
    "fit_stage2",
    "split_files",
    "stage2_files",
    "state_hash",
    "train_expansion",
]

logger = logging.getLogger("hrcam.train")


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
    sums = np.zeros(5)  # mse, psnr, consistency, images, unreadable images
    for images, unreadable in progress(
        loader, total=len(loader), desc="held-out", enabled=show_progress
    ):
        sums[4] += unreadable
        if images is None:
            continue
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
        sums[:4] += [mse.sum().item(), psnr.sum().item(), rel.sum().item(), images.shape[0]]
    sums = ctx.all_reduce_sum(sums)
    expansion.train(was_training)
    n = max(1.0, sums[3])
    return {
        "val_mse": float(sums[0] / n),
        "val_psnr": float(sums[1] / n),
        "val_consistency_rel_error": float(sums[2] / n),
        "val_images": int(sums[3]),
        "val_unreadable": int(sums[4]),
    }


def train_expansion(cfg: ExpansionConfig) -> dict[str, Any]:
    """Stage 2 (see the module docstring): train the expansion network, the classifier frozen.

    Returns the last held-out metrics. Under ``torchrun`` every process calls it.
    """
    with distributed(cfg.device) as ctx:
        return _run(cfg, ctx)


def _run(cfg: ExpansionConfig, ctx: DistContext) -> dict[str, Any]:
    if cfg.objective != "reconstruction":
        from .stage2_boundaries import train_boundaries

        return train_boundaries(cfg, ctx, _networks)
    cfg, resume_path, payload = start_run(cfg, ctx)
    backbone, expansion = _networks(cfg, payload, resume_path)
    backbone.eval().requires_grad_(False)
    frozen_hash = state_hash(backbone)
    train_set, val_set = _datasets(cfg, backbone, ctx)
    backbone.to(ctx.device)
    expansion.to(ctx.device).train()
    if cfg.channels_last:
        backbone.to(memory_format=torch.channels_last)
        expansion.to(memory_format=torch.channels_last)
    plain_decoder = _DecodeForDDP(expansion).to(ctx.device)
    decoder = wrap_ddp(plain_decoder, ctx)
    sampler, loader, val_loader = make_loaders(train_set, val_set, cfg=cfg, ctx=ctx)
    optimizer, scheduler, state = setup_optimization(
        cfg,
        list(expansion.parameters()),
        loader=loader,
        payload=payload,
        resume_path=resume_path,
        ctx=ctx,
    )

    def train_step(images: torch.Tensor) -> torch.Tensor:
        images = images.to(ctx.device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss, _ = expansion_loss(
            backbone,
            decoder,
            images,
            consistency_weight=cfg.consistency_weight,
            ctx=ctx,
            amp=cfg.amp,
        )
        return loss

    def run_eval() -> dict[str, float]:
        return evaluate(backbone, plain_decoder, val_loader, ctx=ctx, amp=cfg.amp)

    return fit_stage2(
        cfg,
        ctx,
        backbone=backbone,
        expansion=expansion,
        frozen_hash=frozen_hash,
        loader=loader,
        sampler=sampler,
        optimizer=optimizer,
        scheduler=scheduler,
        state=state,
        train_step=train_step,
        run_eval=run_eval,
        best_key="val_mse",
        desc="expansion",
        what="reconstruction error",
    )


def fit_stage2(
    cfg: ExpansionConfig,
    ctx: DistContext,
    *,
    backbone: Backbone,
    expansion: ExpansionNetwork,
    frozen_hash: str,
    loader,
    sampler,
    optimizer,
    scheduler,
    state: LoopState,
    train_step,
    run_eval,
    best_key: str,
    desc: str,
    what: str,
) -> dict[str, Any]:
    """The shared loop for either stage-2 objective: checkpoints of the classifier and
    ``expansion`` (stage ``"expansion"``, with the classifier's hash), ``metrics.jsonl``, the
    best checkpoint by ``best_key`` (lower is better); at the end the classifier is checked
    bit-identical and ``best_key`` finite (``what`` names it in the error)."""

    def save(name: str, loop: LoopState, metrics: dict[str, Any]) -> None:
        save_checkpoint(
            cfg.output / name,
            backbone=backbone,
            expansion=expansion,
            stage="expansion",
            epoch=loop.epoch,
            config=cfg.as_dict(),
            metrics=metrics,
            optimizer=optimizer,
            scheduler=scheduler,
            extra={"loop": loop.as_dict(), "backbone_state_sha256": frozen_hash},
        )

    metrics = fit(
        cfg,
        ctx=ctx,
        loader=loader,
        sampler=sampler,
        optimizer=optimizer,
        scheduler=scheduler,
        hooks=Hooks(train_step, run_eval, save),
        state=state,
        best_key=best_key,
        higher_is_better=False,
        log=MetricsLog(cfg.output / "metrics.jsonl", enabled=ctx.is_main),
        desc=desc,
    )
    metrics = metrics or run_eval()
    if state_hash(backbone) != frozen_hash:  # cannot happen unless the code above is changed
        raise RuntimeError(
            "the localization network changed during stage 2; this is a bug in hrcam"
        )
    if not math.isfinite(metrics.get(best_key, 0.0)):
        raise FloatingPointError(f"held-out {what} is not finite; lower --lr")
    return metrics


def _networks(cfg: ExpansionConfig, payload, resume_path) -> tuple[Backbone, ExpansionNetwork]:
    """The frozen classifier and the expansion network to train: new, initialised, or resumed."""
    if payload is not None:
        if payload.get("stage") != "expansion":
            raise ValueError(
                f"{resume_path}: a {payload.get('stage')} checkpoint cannot resume stage 2"
            )
        model = model_from_checkpoint(payload, source=str(resume_path))
        return model.backbone, model.expansion
    backbone = load_backbone(cfg.classifier)
    expansion = ExpansionNetwork.from_backbone(
        backbone,
        decoder_channels=cfg.decoder_channels,
        skip_connections=cfg.skip_connections,
        upsample=cfg.upsample,
    )
    if cfg.init_from:
        source = load_model(cfg.init_from)
        if source.expansion is None or state_hash(source.backbone) != state_hash(backbone):
            raise ValueError(f"--init-from {cfg.init_from}: not a stage-2 model of this classifier")
        expansion = source.expansion
    return backbone, expansion


def stage2_files(cfg: ExpansionConfig) -> tuple[list[Path], list[Path]]:
    """``(training, held-out)`` image files: DATA and ``--val-dir``, or a seeded split of DATA."""
    if cfg.val_dir:
        train_files = ImageFilesDataset(cfg.data).files
        val_files = ImageFilesDataset(cfg.val_dir).files
    else:
        train_files, val_files = split_files(
            ImageFilesDataset(cfg.data).files, fraction=cfg.val_fraction, seed=cfg.seed
        )
    if not val_files:
        raise ValueError("no held-out images: give --val-dir or a --val-fraction above 0")
    return train_files, val_files


def _datasets(cfg: ExpansionConfig, backbone: Backbone, ctx: DistContext):
    """Training and held-out images (a seeded split of DATA unless ``val_dir``); split.json."""
    size = cfg.input_size or backbone.input_size
    train_files, val_files = stage2_files(cfg)
    train_set = ImageFilesDataset(
        files=train_files,
        transform=build_transform(
            size=size, mean=backbone.mean, std=backbone.std, train=True, augment=cfg.augment
        ),
    )
    val_set = ImageFilesDataset(
        files=val_files,
        transform=build_transform(size=size, mean=backbone.mean, std=backbone.std, train=False),
        skip_unreadable=True,
    )
    if ctx.is_main:
        atomic_save_json(
            {"train": [str(f) for f in train_files], "held_out": [str(f) for f in val_files]},
            cfg.output / "split.json",
        )
    return train_set, val_set
