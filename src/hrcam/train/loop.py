"""The epoch loop both training stages share, and what it needs: seeds, samplers, loaders,
optimiser and schedule, checkpoints' loop state, logs and progress.

A run is a pure function of its config's seed: the data order of epoch ``e`` is a function of
``(seed, e)``, each sample's augmentation of ``(seed, e, sample)`` and each step's other random
draws (dropout) of ``(seed, step)``. So ``--resume`` from any checkpoint, mid-epoch ones
included, continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.folders import collate_readable
from .config import TrainConfig
from .distributed import DistContext

__all__ = [
    "LoopState",
    "MetricsLog",
    "ShardSampler",
    "TrainSampler",
    "autocast",
    "fit",
    "make_loader",
    "make_loaders",
    "progress",
    "resolve_resume",
    "seed_everything",
    "setup_optimization",
    "start_run",
]

logger = logging.getLogger("hrcam.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the global RNG that libraries draw from
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int, loader: DataLoader) -> None:
    """Make epoch ``epoch`` a pure function of (seed, epoch, rank): data order, augmentation, dropout.

    Resuming from the checkpoint of a finished epoch therefore continues exactly as the
    uninterrupted run would have.
    """
    epoch_seed = (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63
    seed_everything(epoch_seed)
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed)
    if hasattr(loader.dataset, "set_epoch_seed"):
        loader.dataset.set_epoch_seed(epoch_seed)


class TrainSampler(Sampler[int]):
    """Shuffled, sharded indices for one epoch, a pure function of (seed, epoch, rank).

    Every process sees ``ceil(n / world)`` indices (the shuffled list is padded by wrapping, as
    ``DistributedSampler`` does). ``skip`` drops the first indices of the epoch, so a run resumed
    from a mid-epoch checkpoint continues with exactly the batches it had not seen.
    """

    def __init__(self, n: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch, self.skip = 0, 0
        self.per_rank = math.ceil(n / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / max(1, self.n)))[:total]
        mine = order[self.rank : total : self.world_size]
        return iter(mine[self.skip :])

    def __len__(self) -> int:
        return max(0, self.per_rank - self.skip)


class ShardSampler(Sampler[int]):
    """Every ``world``-th index from ``rank``: each evaluation sample is seen exactly once overall."""

    def __init__(self, n: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - each loader worker's global RNG, as torch documents
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    sampler: Sampler,
    workers: int,
    ctx: DistContext,
    drop_last: bool = False,
    collate_fn=None,
) -> DataLoader:
    """A loader that keeps a GPU fed: worker processes, pinned memory, prefetching."""
    cuda = ctx.device.type == "cuda"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cuda,
        drop_last=drop_last,
        # Workers restart each epoch so that seed_epoch() also fixes their augmentation draws.
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(0),
        collate_fn=collate_fn,
    )


def progress(iterable, *, total: int | None, desc: str, enabled: bool, unit: str = "batch"):
    """A tqdm bar (rate and ETA, in ``unit`` s) on the main process; the bare iterable
    elsewhere."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        dynamic_ncols=True,
        leave=False,
        file=sys.stderr,
        mininterval=0.5,
    )


class MetricsLog:
    """Append-only JSON-lines log, one record per line (a crash loses at most the last line)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def start_run(cfg: TrainConfig, ctx: DistContext) -> tuple[TrainConfig, Path | None, dict | None]:
    """The config the run really uses, the output folder and its ``config.json`` (main process),
    the seed, and the checkpoint to resume from: ``(cfg, path, payload)`` (``(cfg, None, None)``
    for a new run). A resumed run keeps its checkpoint's architecture; a flag that said
    otherwise is named in a warning, and ``config.json`` records what is used."""
    from ..checkpoint import load_checkpoint
    from ..utils import atomic_save_json, check_output_folder

    if ctx.is_main:
        check_output_folder(cfg.output)
    seed_everything(cfg.seed)
    resume_path = resolve_resume(cfg.resume, cfg.output)
    payload = load_checkpoint(resume_path) if resume_path else None
    if payload is not None:
        cfg, differing = cfg.with_architecture_of(payload.get("config") or {})
        if differing and ctx.is_main:
            logger.warning(
                "--resume continues the checkpoint's network; ignored: %s", "; ".join(differing)
            )
    if ctx.is_main:
        atomic_save_json(cfg.as_dict(), cfg.output / "config.json")
    return cfg, resume_path, payload


def resolve_resume(resume: str | None, output: Path) -> Path | None:
    """``--resume`` with no value means ``OUTPUT/last.pt``; a path is taken as given."""
    if resume is None:
        return None
    path = output / "last.pt" if resume in ("", "auto", "last") else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    return path


def make_optimizer(
    name: str, params: Sequence[torch.nn.Parameter], *, lr: float, weight_decay: float
):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def make_scheduler(optimizer, *, schedule: str, total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress_ = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast(ctx: DistContext, enabled: bool):
    if enabled and ctx.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class LoopState:
    """Where a run stands; stored in every checkpoint so ``--resume`` can continue from it."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # batches done in the unfinished epoch (mid-epoch checkpoints)
    global_step: int = 0
    best_metric: float | None = None
    # The unfinished epoch's training loss so far (summed over its samples and processes), so
    # that a resumed epoch's train_loss averages the whole epoch, not only the resumed steps.
    loss_sum: float = 0.0
    seen: int = 0

    def as_dict(self) -> dict[str, Any]:
        best = None if self.best_metric is None else float(self.best_metric)
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_metric": best,
            "loss_sum": float(self.loss_sum),
            "seen": int(self.seen),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        return cls(
            int(d.get("epoch", 0)),
            int(d.get("step_in_epoch", 0)),
            int(d.get("global_step", 0)),
            d.get("best_metric"),
            float(d.get("loss_sum", 0.0)),
            int(d.get("seen", 0)),
        )


def make_loaders(train_set, eval_set, *, cfg: TrainConfig, ctx: DistContext):
    """The training loader (seeded shuffling, sharded per process) and the evaluation loader.

    Returns ``(sampler, train_loader, eval_loader)``; the sampler is what ``fit`` re-seeds each
    epoch.
    """
    sampler = TrainSampler(len(train_set), seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)
    loader = make_loader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        workers=cfg.workers,
        ctx=ctx,
        drop_last=len(train_set) >= cfg.batch_size * ctx.world_size * 2,
    )
    eval_loader = make_loader(
        eval_set,
        batch_size=cfg.batch_size,
        sampler=ShardSampler(len(eval_set), rank=ctx.rank, world_size=ctx.world_size),
        workers=cfg.workers,
        ctx=ctx,
        collate_fn=collate_readable,  # evaluation sets leave unreadable images out
    )
    return sampler, loader, eval_loader


def steps_per_epoch(cfg: TrainConfig, loader: DataLoader) -> int:
    """Steps of one epoch: the loader's batches, or ``max_steps_per_epoch`` when that is less."""
    return len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)


def setup_optimization(
    cfg: TrainConfig,
    params: Sequence[torch.nn.Parameter],
    *,
    loader,
    payload,
    resume_path,
    ctx: DistContext,
):
    """Optimiser, LR schedule and loop state of a run, restored from ``payload`` when resuming.

    The schedule spans ``cfg.epochs`` epochs of :func:`steps_per_epoch` steps.
    """
    optimizer = make_optimizer(cfg.optimizer, params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(
        optimizer,
        schedule=cfg.schedule,
        total_steps=steps_per_epoch(cfg, loader) * cfg.epochs,
        warmup_steps=cfg.warmup_steps,
    )
    state = LoopState()
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer_state"])
        scheduler.load_state_dict(payload["scheduler_state"])
        state = LoopState.from_dict(payload.get("loop", {}))
        if ctx.is_main:
            logger.info(
                "resuming from %s at epoch %d, step %d",
                resume_path,
                state.epoch,
                state.step_in_epoch,
            )
    return optimizer, scheduler, state


@dataclass
class Hooks:
    """What a stage gives the shared loop.

    ``train_step(batch) -> loss`` (the backward pass is the loop's); ``evaluate() -> metrics``
    (every process calls it; values already reduced); ``save(name, state, metrics)`` writes a
    checkpoint (the main process only).
    """

    train_step: Callable[[Any], torch.Tensor]
    evaluate: Callable[[], dict[str, Any]]
    save: Callable[[str, LoopState, dict[str, Any]], None]


def fit(
    cfg: TrainConfig,
    *,
    ctx: DistContext,
    loader: DataLoader,
    sampler: TrainSampler,
    optimizer: torch.optim.Optimizer,
    scheduler,
    hooks: Hooks,
    state: LoopState,
    best_key: str,
    higher_is_better: bool,
    log: MetricsLog,
    desc: str,
) -> dict[str, Any]:
    """The epoch loop both stages share; returns the last evaluation's metrics.

    Stops early, as if killed, after ``cfg.stop_after_steps`` steps (tests of ``--resume``):
    then only the checkpoints written so far exist, and it returns ``{"stopped_at_step": N}``.
    """
    metrics: dict[str, Any] = {}
    for epoch in range(state.epoch, cfg.epochs):
        done = _train_epoch(
            cfg, ctx, loader, sampler, optimizer, scheduler, hooks, state, epoch, desc
        )
        if done["stopped"] and not done["finished"]:
            return {"stopped_at_step": state.global_step}
        metrics, state = _end_epoch(
            cfg, ctx, epoch, done, scheduler, hooks, state, best_key, higher_is_better, log
        )
        if done["stopped"]:
            return {"stopped_at_step": state.global_step}
    return metrics


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 2_000_003 + step * 7_919 + rank) % 2**63


def _train_epoch(cfg, ctx, loader, sampler, optimizer, scheduler, hooks, state, epoch, desc):
    """One epoch's steps (from ``state.step_in_epoch`` when resuming); the loss they averaged."""
    skip = state.step_in_epoch if epoch == state.epoch else 0
    sampler.set_epoch(epoch)
    total = steps_per_epoch(cfg, loader)  # of the whole epoch, before skipping
    sampler.set_epoch(epoch, skip=skip * cfg.batch_size)
    seed_epoch(cfg.seed, epoch, ctx.rank, loader)
    bar = progress(
        loader,
        total=total - skip,
        desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
        enabled=ctx.is_main and cfg.progress,
    )
    started, seen, loss_sum, step, stopped = time.perf_counter(), 0, 0.0, skip, False
    # A resumed epoch starts from the losses its checkpoint summed (on one process only, so the
    # end of the epoch's sum over processes counts them once).
    carried = (state.loss_sum, state.seen) if skip and ctx.is_main else (0.0, 0)
    for batch in bar:
        if step >= total:
            break
        # Dropout and any other draw of this step: a function of the step alone (exact resume).
        torch.manual_seed(_step_seed(cfg.seed, state.global_step, ctx.rank))
        loss = hooks.train_step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        state.global_step += 1
        n = (batch[0] if isinstance(batch, (list, tuple)) else batch).shape[0]
        seen += n
        loss_sum += float(loss.detach()) * n
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            so_far = ctx.all_reduce_sum(
                np.array([loss_sum + carried[0], seen + carried[1]], dtype=np.float64)
            )
            if ctx.is_main:
                mid = LoopState(
                    epoch,
                    step,
                    state.global_step,
                    state.best_metric,
                    float(so_far[0]),
                    int(so_far[1]),
                )
                train_loss = float(so_far[0] / max(1.0, so_far[1]))
                hooks.save("last.pt", mid, {"train_loss": train_loss})
        if cfg.stop_after_steps and state.global_step >= cfg.stop_after_steps:
            stopped = True
            break
    if hasattr(bar, "close"):
        bar.close()
    return {
        "stopped": stopped,
        "finished": step >= total,
        "seconds": time.perf_counter() - started,
        "loss_sum": loss_sum + carried[0],
        "seen": seen + carried[1],
        "seen_now": seen,
    }


def _end_epoch(cfg, ctx, epoch, done, scheduler, hooks, state, best_key, higher_is_better, log):
    """Evaluate, log, and save ``last.pt`` (and ``best.pt`` when the metric improved)."""
    train_loss = ctx.all_reduce_sum(
        np.array([done["loss_sum"], done["seen"], done["seen_now"]], dtype=np.float64)
    )
    metrics = {
        "epoch": epoch + 1,
        "train_loss": float(train_loss[0] / max(1.0, train_loss[1])),
        "lr": scheduler.get_last_lr()[0],
        "train_images_per_s": float(train_loss[2]) / max(done["seconds"], 1e-9),
        "epoch_seconds": done["seconds"],
    }
    metrics.update(hooks.evaluate())
    value = metrics.get(best_key)
    improved = value is not None and (
        state.best_metric is None
        or (value > state.best_metric if higher_is_better else value < state.best_metric)
    )
    state = LoopState(epoch + 1, 0, state.global_step, value if improved else state.best_metric)
    metrics["best_" + best_key] = state.best_metric
    if ctx.is_main:
        log.write(metrics)
        hooks.save("last.pt", state, metrics)
        if improved:
            hooks.save("best.pt", state, metrics)
        logger.info(
            " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
            )
        )
    ctx.barrier()
    return metrics, state
