"""The process group a training run (or a sharded ``hrcam explain``) takes part in, and its owner.

:func:`distributed` is the one place that joins the group ``torchrun`` describes in the
environment and the one place that leaves it: a context manager, so the group is destroyed
however the run ends. Without ``torchrun`` (``WORLD_SIZE`` unset or 1) it only picks the device.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistContext", "distributed", "wrap_ddp"]


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


def wrap_ddp(module: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when the run has several processes, else itself."""
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


@contextlib.contextmanager
def distributed(device: str = "auto", *, backend: str | None = None) -> Iterator[DistContext]:
    """Join the process group that ``torchrun`` describes, if any, for the block; then leave it.

    Backend: NCCL on CUDA, gloo on the CPU (how the tests run two processes), unless given.
    A group that was already initialised (by the caller) is used and left alone.

    Example::

        with distributed("auto") as ctx:
            if ctx.is_main:
                ...
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
    owner = world_size > 1 and not dist.is_initialized()
    if owner:
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    try:
        yield DistContext(rank, world_size, local_rank, dev)
    finally:
        if owner and dist.is_initialized():
            dist.destroy_process_group()
