"""Sharded ``hrcam explain`` runs: which shard a process takes, and joining the shards.

Several processes (``--shard I/N``, or ``torchrun``, whose ``RANK``/``WORLD_SIZE`` pick the
shard) each explain every N-th image into the same output folder and write their own
``summary.shard-I-of-N.json``; :func:`~.summary.merge_shards` joins them into ``summary.json``
and ``index.html`` — at the end of a ``torchrun`` (:func:`merge_under_torchrun`) or by
``hrcam explain --merge-shards -o OUT``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .summary import ExplainSummary, merge_shards

__all__ = ["merge_under_torchrun", "parse_shard", "under_torchrun"]


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)``; without a spec, ``torchrun``'s rank and world size, else ``(0, 1)``."""
    if spec:
        try:
            index, count = (int(v) for v in spec.split("/"))
        except ValueError:
            raise ValueError(f"--shard takes I/N, e.g. 0/4; got {spec!r}") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"--shard I/N needs 0 <= I < N, got {spec!r}")
        return index, count
    if under_torchrun():
        return int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
    return 0, 1


def merge_under_torchrun(output: Path, shard: tuple[int, int]) -> ExplainSummary | None:
    """Wait for every process, then merge on rank 0 (returns its summary there, None elsewhere)."""
    from ..train.distributed import distributed

    with distributed("cpu", backend="gloo") as ctx:
        ctx.barrier()
        summary = merge_shards(output, expected=shard[1]) if shard[0] == 0 else None
        ctx.barrier()
    return summary
