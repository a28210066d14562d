"""Machinery both training stages share: processes, seeds, loaders, checkpoints, logs, progress."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from ..utils import atomic_save_json

__all__ = [
    "DistContext",
    "MetricsLog",
    "ShardSampler",
    "TrainSampler",
    "add_common_arguments",
    "make_loader",
    "progress",
    "resolve_resume",
    "seed_epoch",
    "seed_everything",
    "setup_distributed",
]

logger = logging.getLogger("hrcam.train")


@dataclass
class DistContext:
    """Where this process stands: rank, world size, device. ``world_size == 1`` without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, array: np.ndarray) -> np.ndarray:
        """Sum an integer or float array over all processes (a no-op in one process)."""
        if not self.distributed:
            return array
        t = torch.as_tensor(
            np.ascontiguousarray(array),
            dtype=torch.float64 if array.dtype.kind == "f" else torch.int64,
        )
        t = t.to(self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.cpu().numpy()


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Backend: NCCL on CUDA, gloo on the CPU (which is how the tests run two processes).
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, world_size, local_rank, dev)


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
    )


def progress(iterable, *, total: int | None, desc: str, enabled: bool):
    """A tqdm bar (rate and ETA) on the main process; the bare iterable elsewhere."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit="batch",
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


def resolve_resume(resume: str | None, output: Path) -> Path | None:
    """``--resume`` with no value means ``OUTPUT/last.pt``; a path is taken as given."""
    if resume is None:
        return None
    path = output / "last.pt" if resume in ("", "auto", "last") else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    return path


def add_common_arguments(
    parser, *, default_epochs: int, default_lr: float, default_batch: int
) -> None:
    g = parser.add_argument_group("training")
    g.add_argument(
        "-o", "--output", required=True, type=Path, help="folder for checkpoints and logs"
    )
    g.add_argument("--epochs", type=int, default=default_epochs)
    g.add_argument("--batch-size", type=int, default=default_batch, help="per process")
    g.add_argument("--lr", type=float, default=default_lr, help="peak learning rate")
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument(
        "--optimizer",
        choices=("adamw", "sgd", "adadelta"),
        default="adamw",
        help="adadelta is what the paper's code used",
    )
    g.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="learning-rate schedule over all steps, after --warmup-steps of linear warm-up",
    )
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="image side in pixels (default: the backbone's)",
    )
    g.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="data-loading processes"
    )
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 autocast) on CUDA")
    g.add_argument(
        "--channels-last", action="store_true", help="channels-last memory format (faster on CUDA)"
    )
    g.add_argument(
        "--seed", type=int, default=0, help="makes a run repeatable (same data order, same init)"
    )
    g.add_argument(
        "--resume",
        nargs="?",
        const="last",
        default=None,
        metavar="CHECKPOINT",
        help="continue from OUTPUT/last.pt, or from the checkpoint named",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="also save last.pt every STEPS steps inside an epoch (for long epochs)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Hidden: cap an epoch's batches (quick runs), and stop as if killed after N steps (tests of --resume).
    g.add_argument("--max-steps-per-epoch", type=int, default=0, help=argparse_suppress())
    g.add_argument("--stop-after-steps", type=int, default=0, help=argparse_suppress())


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


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


def save_run_config(output: Path, config: dict[str, Any]) -> None:
    atomic_save_json(config, output / "config.json")


def args_to_config(args) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}


@dataclass
class LoopState:
    """Where a run stands; stored in every checkpoint so ``--resume`` can continue from it."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # batches done in the unfinished epoch (mid-epoch checkpoints)
    global_step: int = 0
    best_metric: float | None = None

    def as_dict(self) -> dict[str, Any]:
        best = None if self.best_metric is None else float(self.best_metric)
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_metric": best,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        return cls(
            int(d.get("epoch", 0)),
            int(d.get("step_in_epoch", 0)),
            int(d.get("global_step", 0)),
            d.get("best_metric"),
        )


def make_loaders(train_set, eval_set, *, args, ctx: DistContext):
    """The training loader (seeded shuffling, sharded per process) and the evaluation loader.

    Returns ``(sampler, train_loader, eval_loader)``; the sampler is what ``fit`` re-seeds each
    epoch.
    """
    sampler = TrainSampler(len(train_set), seed=args.seed, rank=ctx.rank, world_size=ctx.world_size)
    loader = make_loader(
        train_set,
        batch_size=args.batch_size,
        sampler=sampler,
        workers=args.workers,
        ctx=ctx,
        drop_last=len(train_set) >= args.batch_size * ctx.world_size * 2,
    )
    eval_loader = make_loader(
        eval_set,
        batch_size=args.batch_size,
        sampler=ShardSampler(len(eval_set), rank=ctx.rank, world_size=ctx.world_size),
        workers=args.workers,
        ctx=ctx,
    )
    return sampler, loader, eval_loader


def setup_optimization(
    args, params: Sequence[torch.nn.Parameter], *, loader, payload, resume_path, ctx: DistContext
):
    """Optimiser, LR schedule and loop state of a run, restored from ``payload`` when resuming.

    The schedule spans ``args.epochs`` epochs of ``len(loader)`` steps (or
    ``args.max_steps_per_epoch``, when set).
    """
    optimizer = make_optimizer(args.optimizer, params, lr=args.lr, weight_decay=args.weight_decay)
    steps = (
        len(loader) if not args.max_steps_per_epoch else min(len(loader), args.max_steps_per_epoch)
    )
    scheduler = make_scheduler(
        optimizer,
        schedule=args.schedule,
        total_steps=steps * args.epochs,
        warmup_steps=args.warmup_steps,
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


def fit(
    *,
    ctx: DistContext,
    args,
    loader: DataLoader,
    sampler: TrainSampler,
    optimizer: torch.optim.Optimizer,
    scheduler,
    train_step,
    evaluate,
    save,
    state: LoopState,
    best_key: str,
    higher_is_better: bool,
    log: MetricsLog,
    desc: str,
) -> dict[str, Any]:
    """The epoch loop both stages share.

    ``train_step(batch) -> loss tensor`` (backward is done here); ``evaluate() -> dict`` (all
    processes call it; values already reduced); ``save(name, state, metrics)`` writes a checkpoint
    (called on the main process only). Returns the last evaluation's metrics.
    """
    import time

    metrics: dict[str, Any] = {}
    for epoch in range(state.epoch, args.epochs):
        skip_batches = state.step_in_epoch if epoch == state.epoch else 0
        sampler.set_epoch(epoch, skip=skip_batches * args.batch_size)
        seed_epoch(args.seed, epoch, ctx.rank, loader)
        total = len(loader)
        if args.max_steps_per_epoch:
            total = min(total, args.max_steps_per_epoch)
        bar = progress(
            loader,
            total=total,
            desc=f"{desc} epoch {epoch + 1}/{args.epochs}",
            enabled=ctx.is_main and not args.no_progress,
        )
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        step = skip_batches
        stop = False
        for i, batch in enumerate(bar):
            if i >= total:
                break
            loss = train_step(batch)
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
                bar.set_postfix(
                    loss=f"{loss_sum / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}"
                )
            if args.checkpoint_every and step % args.checkpoint_every == 0 and ctx.is_main:
                mid = LoopState(epoch, step, state.global_step, state.best_metric)
                save("last.pt", mid, {"train_loss": loss_sum / seen})
            if args.stop_after_steps and state.global_step >= args.stop_after_steps:
                stop = True
                break
        if hasattr(bar, "close"):
            bar.close()
        if stop and i + 1 < total:  # killed mid-epoch: only mid-epoch checkpoints survive
            return {"stopped_at_step": state.global_step}
        elapsed = time.perf_counter() - started
        train_loss = ctx.all_reduce_sum(np.array([loss_sum, seen], dtype=np.float64))
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(train_loss[0] / max(1.0, train_loss[1])),
            "lr": scheduler.get_last_lr()[0],
            "train_images_per_s": float(train_loss[1]) / max(elapsed, 1e-9),
            "epoch_seconds": elapsed,
        }
        metrics.update(evaluate())
        value = metrics.get(best_key)
        improved = value is not None and (
            state.best_metric is None
            or (value > state.best_metric if higher_is_better else value < state.best_metric)
        )
        state = LoopState(epoch + 1, 0, state.global_step, value if improved else state.best_metric)
        metrics["best_" + best_key] = state.best_metric
        if ctx.is_main:
            log.write(metrics)
            save("last.pt", state, metrics)
            if improved:
                save("best.pt", state, metrics)
            logger.info(
                " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in metrics.items()
                )
            )
        ctx.barrier()
        if stop:
            return {"stopped_at_step": state.global_step}
    return metrics
