"""Stage 1: train or fine-tune the localization network for classification.

Data: ``DATA/train/<class>/…`` and ``DATA/test/<class>/…`` (one sub-folder per class, the
original code's layout). The folder names become the model's class names. Reports accuracy,
top-5 and macro/micro precision, recall and F1 on ``test/`` after every epoch.

Run on one process (``hrcam train-classifier …``) or several (``torchrun --nproc_per_node=N
-m hrcam train-classifier …``; DistributedDataParallel, NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import create_backbone
from ..checkpoint import model_from_checkpoint, save_checkpoint
from ..data.folders import (
    ClassFolderDataset,
    build_transform,
    build_volume_transform,
    collate_readable,
    folder_kind,
)
from ..metrics.classification import ClassificationMeter
from .config import ClassifierConfig
from .distributed import DistContext, distributed, wrap_ddp
from .loop import (
    Hooks,
    LoopState,
    MetricsLog,
    ShardSampler,
    autocast,
    fit,
    make_loader,
    make_loaders,
    progress,
    setup_optimization,
    start_run,
)

__all__ = ["classification_loss", "evaluate", "evaluate_folder", "train_classifier"]

logger = logging.getLogger("hrcam.train")


def _build_backbone(cfg: ClassifierConfig, classes: list[str], *, volumes: bool = False):
    kwargs: dict[str, Any] = {
        "num_classes": len(classes),
        "class_names": classes,
        "cam_channels": cfg.cam_channels,
        "drop_rate": cfg.drop_rate,
    }
    if cfg.backbone == "tiny_densenet":
        if cfg.growth_rate:
            kwargs["growth_rate"] = cfg.growth_rate
        if cfg.block_config:
            kwargs["block_config"] = cfg.block_config
        if cfg.input_size:
            kwargs["input_size"] = cfg.input_size
        if volumes:  # one intensity channel, 3-D layers
            kwargs.update(in_chans=1, spatial_dims=3)
    elif volumes:
        raise ValueError(
            f"the data are NIfTI volumes, but {cfg.backbone} is a network of images; train "
            "volumes with --backbone tiny_densenet (3-D layers), or explain your own 3-D "
            "network with --model FILE.py:FUNCTION"
        )
    return create_backbone(cfg.backbone, weights=cfg.weights, **kwargs)


def classification_loss(model, batch, *, ctx: DistContext, cfg: ClassifierConfig) -> torch.Tensor:
    """Cross-entropy of one batch (the shared loop in :func:`hrcam.train.loop.fit` does the rest)."""
    images, labels = batch
    images = images.to(ctx.device, non_blocking=True)
    labels = labels.to(ctx.device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(ctx, cfg.amp):
        logits = model(images)
    return F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)


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
    loss_sum, unreadable = 0.0, 0
    for batch, skipped in progress(
        loader, total=len(loader), desc="evaluate", enabled=show_progress
    ):
        unreadable += skipped
        if batch is None:
            continue
        images, labels = batch[0].to(ctx.device), batch[1].to(ctx.device)
        with autocast(ctx, amp):
            logits = backbone(images).float()
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        meter.update(logits, labels)
    meter.load_state(ctx.all_reduce_sum(meter.state()))
    total_loss, unreadable = ctx.all_reduce_sum(np.array([loss_sum, float(unreadable)]))
    backbone.train(was_training)
    report = meter.compute()
    report["test_loss"] = float(total_loss) / max(1, report["num_samples"])
    report["unreadable"] = int(unreadable)  # left out, not counted
    return {("test_" + k if not k.startswith("test_") else k): v for k, v in report.items()}


def train_classifier(cfg: ClassifierConfig) -> dict[str, Any]:
    """Stage 1 (see the module docstring): train, evaluate each epoch, checkpoint; the last metrics.

    Under ``torchrun`` every process calls it; only the main one writes.
    """
    with distributed(cfg.device) as ctx:
        return _run(cfg, ctx)


def _run(cfg: ClassifierConfig, ctx: DistContext) -> dict[str, Any]:
    train_dir, test_dir = cfg.data / "train", cfg.data / "test"
    for folder in (train_dir, test_dir):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: not found; train-classifier reads DATA/train/<class>/… and DATA/test/<class>/…"
            )
    volumes = folder_kind(train_dir) == "volumes"
    cfg, resume_path, payload = start_run(cfg, ctx)
    backbone, classes = _backbone_for(cfg, payload, resume_path, train_dir, volumes)
    train_set, test_set = _datasets(cfg, backbone, classes, train_dir, test_dir)
    backbone.to(ctx.device).train()
    if cfg.channels_last:
        backbone.to(memory_format=torch.channels_last)
    model = wrap_ddp(backbone, ctx)
    sampler, loader, test_loader = make_loaders(train_set, test_set, cfg=cfg, ctx=ctx)
    optimizer, scheduler, state = setup_optimization(
        cfg,
        [p for p in backbone.parameters() if p.requires_grad],
        loader=loader,
        payload=payload,
        resume_path=resume_path,
        ctx=ctx,
    )

    def save(name: str, loop: LoopState, metrics: dict[str, Any]) -> None:
        save_checkpoint(
            cfg.output / name,
            backbone=backbone,
            stage="classifier",
            epoch=loop.epoch,
            config=cfg.as_dict(),
            metrics=metrics,
            optimizer=optimizer,
            scheduler=scheduler,
            extra={"loop": loop.as_dict()},
        )

    def run_eval() -> dict[str, Any]:
        return evaluate(backbone, test_loader, ctx=ctx, num_classes=len(classes), amp=cfg.amp)

    hooks = Hooks(lambda batch: classification_loss(model, batch, ctx=ctx, cfg=cfg), run_eval, save)
    metrics = fit(
        cfg,
        ctx=ctx,
        loader=loader,
        sampler=sampler,
        optimizer=optimizer,
        scheduler=scheduler,
        hooks=hooks,
        state=state,
        best_key="test_accuracy",
        higher_is_better=True,
        log=MetricsLog(cfg.output / "metrics.jsonl", enabled=ctx.is_main),
        desc="classifier",
    )
    return metrics or run_eval()  # nothing left to train: report the model again


def _backbone_for(cfg: ClassifierConfig, payload, resume_path, train_dir: Path, volumes: bool):
    """The backbone to train and its class names: a fresh one, or the checkpoint's."""
    if payload is None:
        classes = ClassFolderDataset(train_dir, volumes=volumes).classes
        return _build_backbone(cfg, classes, volumes=volumes), classes
    if payload.get("stage") != "classifier":
        raise ValueError(
            f"{resume_path}: a {payload.get('stage')} checkpoint cannot resume stage 1"
        )
    backbone = model_from_checkpoint(payload, source=str(resume_path)).backbone
    _check_kind(backbone, volumes, train_dir)
    return backbone, backbone.class_names


def _check_kind(backbone, volumes: bool, folder: Path) -> None:
    """A network of volumes for volume folders, of images for image folders (one line if not)."""
    if volumes != (getattr(backbone, "spatial_dims", 2) == 3):
        data, net = ("NIfTI volumes", "images") if volumes else ("images", "volumes")
        raise ValueError(f"{folder} holds {data}, but the model is a network of {net}")


def _transform_for(backbone, size: int, *, volumes: bool, train: bool, augment: str = "none"):
    build = build_volume_transform if volumes else build_transform
    return build(size=size, mean=backbone.mean, std=backbone.std, train=train, augment=augment)


def _datasets(cfg: ClassifierConfig, backbone, classes, train_dir: Path, test_dir: Path):
    size = cfg.input_size or backbone.input_size
    volumes = getattr(backbone, "spatial_dims", 2) == 3
    train_set = ClassFolderDataset(
        train_dir,
        _transform_for(backbone, size, volumes=volumes, train=True, augment=cfg.augment),
        classes=classes,
        volumes=volumes,
    )
    test_set = ClassFolderDataset(
        test_dir,
        _transform_for(backbone, size, volumes=volumes, train=False),
        classes=classes,
        skip_unreadable=True,
        volumes=volumes,
    )
    if len(test_set) < 1:
        warnings.warn(f"{test_dir} holds no images", stacklevel=1)
    return train_set, test_set


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
    with distributed(device) as ctx:
        return _evaluate_folder(model_spec, folder, ctx, batch_size, workers, input_size)


def _evaluate_folder(model_spec, folder, ctx, batch_size, workers, input_size) -> dict[str, Any]:
    from ..checkpoint import load_model

    model = load_model(model_spec, device=ctx.device)
    backbone = model.backbone
    size = input_size or backbone.input_size
    volumes = folder_kind(folder) == "volumes"
    _check_kind(backbone, volumes, folder)
    dataset = ClassFolderDataset(
        folder,
        _transform_for(backbone, size, volumes=volumes, train=False),
        classes=backbone.class_names,
        skip_unreadable=True,
        volumes=volumes,
    )
    loader = make_loader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset)),
        workers=workers,
        ctx=ctx,
        collate_fn=collate_readable,
    )
    report = evaluate(
        backbone, loader, ctx=ctx, num_classes=backbone.num_classes, show_progress=True
    )
    report["model"] = str(model_spec)
    report["data"] = str(folder)
    return report
