"""The record of an ``hrcam explain`` run: one :class:`ImageResult` per input, the run's
:class:`ExplainSummary`, ``summary.json`` and ``index.html``; rebuilding them from what is on
disk (after an interruption, ``hrcam explain --finish OUT``) and joining the shards of a sharded
run.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..utils import atomic_save_json

__all__ = ["ExplainSummary", "ImageResult", "finish_run", "merge_shards", "write_run_files"]

logger = logging.getLogger("hrcam.explain")


@dataclass
class ImageResult:
    """What ``explain`` did with one input file."""

    source: str
    name: str
    ok: bool
    error: str | None = None
    size: tuple[int, int] | None = None  # original (width, height), upright
    top5: list[dict[str, Any]] = field(default_factory=list)
    target: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    # raw (min, max) of each map before the overlay scales it to the colour map's range
    ranges: dict[str, list[float]] = field(default_factory=dict)
    # the source file as it was explained: a resumed run redoes an image whose file changed
    source_size: int | None = None
    source_mtime_ns: int | None = None
    # a medical scan's own shape ((H, W) or (D, H, W)); ``size`` is then its pictures' size
    shape: list[int] | None = None

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ImageResult:
        record = dict(record)
        if record.get("size") is not None:
            record["size"] = tuple(record["size"])
        return cls(**record)


@dataclass
class ExplainSummary:
    """The whole run: every image's result, in input order, and how it was produced.

    ``state``: ``"running"``, ``"complete"`` or ``"interrupted"`` (what the report says).
    """

    model: str
    output: str
    options: dict[str, Any]
    results: list[ImageResult]
    seconds: float = 0.0
    state: str = "running"

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if not r.ok]

    @property
    def succeeded(self) -> int:
        return sum(r.ok for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "output": self.output,
            "options": self.options,
            "state": self.state,
            "images": len(self.results),
            "succeeded": self.succeeded,
            "failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "results": [asdict(r) for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExplainSummary:
        return cls(
            model=data.get("model", ""),
            output=data.get("output", ""),
            options=data.get("options", {}),
            results=[ImageResult.from_dict(r) for r in data.get("results", [])],
            seconds=float(data.get("seconds", 0.0)),
            state=data.get("state", "complete"),
        )


def write_run_files(
    output: Path, summary: ExplainSummary, summary_name: str = "summary.json"
) -> None:
    """``summary.json`` (or a shard's summary) and, for a whole run, ``index.html``."""
    from .html_page import write_report

    atomic_save_json(summary.as_dict(), output / summary_name)
    if summary_name == "summary.json":
        write_report(summary.as_dict(), output / "index.html", state=summary.state)


def reload_result(output: Path, item) -> ImageResult | None:
    """The result an earlier run wrote for ``item`` (an ``InputItem``: its output folder's
    ``predictions.json``), if it is that very file's — same path, size and modification time —
    and every file it lists is there and not empty (what a power cut can leave, as the per-image
    files are not flushed to disk one by one); otherwise ``None``: the image is done again."""
    result = read_result(output, item.name)
    if result is None:
        return None
    try:
        stat = Path(item.path).stat()
    except OSError:
        return None
    same = (result.source, result.source_size, result.source_mtime_ns) == (
        str(item.path),
        stat.st_size,
        stat.st_mtime_ns,
    )
    return result if same else None


def read_result(output: Path, name: str) -> ImageResult | None:
    """The ``predictions.json`` of ``images/<name>/``, if readable and every file it lists is
    there and not empty; otherwise ``None``."""
    path = output / "images" / name / "predictions.json"
    try:
        result = ImageResult.from_dict(json.loads(path.read_text()))
        if all((output / f).stat().st_size > 0 for f in result.files.values()):
            return result
    except (OSError, ValueError, TypeError):
        pass
    return None


def finish_run(output: str | os.PathLike) -> ExplainSummary:
    """Rebuild ``summary.json`` and ``index.html`` from the images on disk (``--finish``).

    For a run that was interrupted (SIGINT, SIGKILL, a crash): every image whose
    ``predictions.json`` was written is in the page; failures recorded in an earlier
    ``summary.json`` are kept; the page says the run was finished this way.
    """
    output = Path(output)
    if not (output / "images").is_dir():
        raise FileNotFoundError(f"{output}: not an hrcam explain output folder (no images/)")
    previous = None
    if (output / "summary.json").is_file():
        try:
            previous = ExplainSummary.from_dict(json.loads((output / "summary.json").read_text()))
        except (OSError, ValueError):
            logger.warning("%s: unreadable summary.json, rebuilt from the images alone", output)
    names = sorted(p.parent.name for p in (output / "images").glob("*/predictions.json"))
    results = [r for r in (read_result(output, n) for n in names) if r is not None]
    done = {r.name for r in results}
    if previous is not None:
        results += [r for r in previous.failed if r.name not in done]
    summary = ExplainSummary(
        model=previous.model if previous else "",
        output=str(output),
        options=previous.options if previous else {},
        results=results,
        seconds=previous.seconds if previous else 0.0,
        state="complete" if previous and previous.state == "complete" else "finished",
    )
    write_run_files(output, summary)
    return summary


def merge_shards(output: str | os.PathLike, *, expected: int | None = None) -> ExplainSummary:
    """Join the ``summary.shard-*.json`` of a sharded run into ``summary.json`` and ``index.html``."""
    output = Path(output)
    shards = sorted(output.glob("summary.shard-*-of-*.json"))
    if not shards:
        raise FileNotFoundError(f"{output}: no summary.shard-*.json files to merge")
    counts = {int(re.search(r"-of-(\d+)", s.name).group(1)) for s in shards}
    if (
        len(counts) != 1
        or (expected is not None and len(shards) != expected)
        or len(shards) != counts.pop()
    ):
        raise ValueError(f"{output}: incomplete or mixed shards: {[s.name for s in shards]}")
    parts = [ExplainSummary.from_dict(json.loads(s.read_text())) for s in shards]
    results = sorted((r for p in parts for r in p.results), key=lambda r: r.name)
    states = {p.state for p in parts}
    summary = ExplainSummary(
        model=parts[0].model,
        output=str(output),
        options=parts[0].options,
        results=results,
        seconds=max(p.seconds for p in parts),
        state="complete" if states == {"complete"} else "interrupted",
    )
    write_run_files(output, summary)
    return summary
