"""Stage 1: train or fine-tune the localization network for classification.

Data: ``DATA/train/<class>/…`` and ``DATA/test/<class>/…`` (one sub-folder per class, the
original code's layout). The folder names become the model's class names. Reports accuracy,
top-5 and macro/micro precision, recall and F1 on ``test/`` after every epoch.

Run on one process (``hrcam train-classifier …``) or several (``torchrun --nproc_per_node=N
-m hrcam train-classifier …``; DistributedDataParallel, NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..backbones import create_backbone, list_backbones
from ..checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from ..data.folders import ClassFolderDataset, build_transform
from ..metrics.classification import ClassificationMeter
from .common import (
    DistContext,
    LoopState,
    MetricsLog,
    ShardSampler,
    add_common_arguments,
    args_to_config,
    autocast,
    fit,
    make_loader,
    make_loaders,
    progress,
    resolve_resume,
    save_run_config,
    seed_everything,
    setup_distributed,
    setup_optimization,
)

__all__ = ["classification_loss", "evaluate", "get_args_parser", "main"]

logger = logging.getLogger("hrcam.train")


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "data", type=Path, help="folder with train/ and test/, one sub-folder per class in each"
    )
    g = parser.add_argument_group("model")
    g.add_argument(
        "--backbone", default="tiny_densenet", help=f"one of: {', '.join(list_backbones())}"
    )
    g.add_argument(
        "--weights",
        default=None,
        help="start from 'imagenet' weights or a weights file (default: random init)",
    )
    g.add_argument(
        "--cam-channels",
        type=int,
        default=None,
        help="1×1 reduction to this many maps before GAP (the original code used 16)",
    )
    g.add_argument("--drop-rate", type=float, default=0.0, help="dropout before the FC layer")
    g.add_argument("--growth-rate", type=int, default=None, help="tiny_densenet: growth rate")
    g.add_argument(
        "--block-config", default=None, help="tiny_densenet: layers per dense block, e.g. 4,4,4"
    )
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--augment", choices=("none", "flip", "flip-affine"), default="flip-affine")
    add_common_arguments(parser, default_epochs=30, default_lr=1e-3, default_batch=64)
    return parser


def _build_backbone(args, classes: list[str]):
    kwargs: dict[str, Any] = {
        "num_classes": len(classes),
        "class_names": classes,
        "cam_channels": args.cam_channels,
        "drop_rate": args.drop_rate,
    }
    if args.backbone == "tiny_densenet":
        if args.growth_rate:
            kwargs["growth_rate"] = args.growth_rate
        if args.block_config:
            kwargs["block_config"] = tuple(int(v) for v in str(args.block_config).split(","))
        if args.input_size:
            kwargs["input_size"] = args.input_size
    elif args.growth_rate or args.block_config:
        raise ValueError("--growth-rate and --block-config apply to tiny_densenet only")
    return create_backbone(args.backbone, weights=args.weights, **kwargs)


def classification_loss(model, batch, *, ctx: DistContext, args) -> torch.Tensor:
    """Cross-entropy of one batch (the shared loop in :func:`hrcam.train.common.fit` does the rest)."""
    images, labels = batch
    images = images.to(ctx.device, non_blocking=True)
    labels = labels.to(ctx.device, non_blocking=True)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(ctx, args.amp):
        logits = model(images)
    return F.cross_entropy(logits.float(), labels, label_smoothing=args.label_smoothing)


@torch.no_grad()
def evaluate(
    backbone,
    loader,
    *,
    ctx: DistContext,
    num_classes: int,
    show_progress: bool = False,
    amp: bool = False,
) -> dict[str, float]:
    """Accuracy, top-5, macro/micro P/R/F1 over the whole loader (summed over processes)."""
    was_training = backbone.training
    backbone.eval()
    meter = ClassificationMeter(num_classes, k=5)
    loss_sum = 0.0
    for images, labels in progress(
        loader, total=len(loader), desc="evaluate", enabled=show_progress
    ):
        images, labels = images.to(ctx.device), labels.to(ctx.device)
        with autocast(ctx, amp):
            logits = backbone(images).float()
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        meter.update(logits, labels)
    meter.load_state(ctx.all_reduce_sum(meter.state()))
    total_loss = float(ctx.all_reduce_sum(np.array([loss_sum]))[0])
    backbone.train(was_training)
    report = meter.compute()
    report["test_loss"] = total_loss / max(1, report["num_samples"])
    return {("test_" + k if not k.startswith("test_") else k): v for k, v in report.items()}


def main(args: argparse.Namespace) -> dict[str, Any]:
    ctx = setup_distributed(args.device)
    output: Path = args.output
    if ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
        save_run_config(output, args_to_config(args))
    seed_everything(args.seed)
    train_dir, test_dir = args.data / "train", args.data / "test"
    for folder in (train_dir, test_dir):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: not found; train-classifier reads DATA/train/<class>/… and DATA/test/<class>/…"
            )
    resume_path = resolve_resume(args.resume, output)
    payload = load_checkpoint(resume_path) if resume_path else None
    if payload is not None:
        backbone = model_from_checkpoint(payload, source=str(resume_path)).backbone
        if payload.get("stage") != "classifier":
            raise ValueError(
                f"{resume_path}: a {payload.get('stage')} checkpoint cannot resume stage 1"
            )
        classes = backbone.class_names
    else:
        classes = ClassFolderDataset(train_dir).classes
        backbone = _build_backbone(args, classes)
    size = args.input_size or backbone.input_size
    train_set = ClassFolderDataset(
        train_dir,
        build_transform(
            size=size, mean=backbone.mean, std=backbone.std, train=True, augment=args.augment
        ),
        classes=classes,
    )
    test_set = ClassFolderDataset(
        test_dir,
        build_transform(size=size, mean=backbone.mean, std=backbone.std, train=False),
        classes=classes,
    )
    backbone.to(ctx.device).train()
    if args.channels_last:
        backbone.to(memory_format=torch.channels_last)
    model = backbone
    if ctx.distributed:
        model = DistributedDataParallel(
            backbone, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )

    sampler, loader, test_loader = make_loaders(train_set, test_set, args=args, ctx=ctx)
    optimizer, scheduler, state = setup_optimization(
        args,
        [p for p in backbone.parameters() if p.requires_grad],
        loader=loader,
        payload=payload,
        resume_path=resume_path,
        ctx=ctx,
    )
    config = args_to_config(args)

    def save(name: str, loop: LoopState, metrics: dict[str, Any]) -> None:
        save_checkpoint(
            output / name,
            backbone=backbone,
            stage="classifier",
            epoch=loop.epoch,
            config=config,
            metrics=metrics,
            optimizer=optimizer,
            scheduler=scheduler,
            extra={"loop": loop.as_dict()},
        )

    if len(test_set) < 1:
        warnings.warn(f"{test_dir} holds no images", stacklevel=1)
    metrics = fit(
        ctx=ctx,
        args=args,
        loader=loader,
        sampler=sampler,
        optimizer=optimizer,
        scheduler=scheduler,
        train_step=lambda batch: classification_loss(model, batch, ctx=ctx, args=args),
        evaluate=lambda: evaluate(
            backbone, test_loader, ctx=ctx, num_classes=len(classes), amp=args.amp
        ),
        save=save,
        state=state,
        best_key="test_accuracy",
        higher_is_better=True,
        log=MetricsLog(output / "metrics.jsonl", enabled=ctx.is_main),
        desc="classifier",
    )
    if not metrics:  # resumed a run that had already finished: report its model again
        metrics = evaluate(backbone, test_loader, ctx=ctx, num_classes=len(classes), amp=args.amp)
    return metrics


def evaluate_folder(
    model_spec: str,
    folder: Path,
    *,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "auto",
    input_size: int | None = None,
) -> dict[str, Any]:
    """Classification metrics of a model on ``folder/<class>/…`` (the model's class names)."""
    from ..checkpoint import load_model

    ctx = setup_distributed(device)
    model = load_model(model_spec, device=ctx.device)
    backbone = model.backbone
    size = input_size or backbone.input_size
    dataset = ClassFolderDataset(
        folder,
        build_transform(size=size, mean=backbone.mean, std=backbone.std, train=False),
        classes=backbone.class_names,
    )
    loader = make_loader(
        dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset)), workers=workers, ctx=ctx
    )
    report = evaluate(
        backbone, loader, ctx=ctx, num_classes=backbone.num_classes, show_progress=True
    )
    report["model"] = str(model_spec)
    report["data"] = str(folder)
    return report
