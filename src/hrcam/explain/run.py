"""The loop of an ``hrcam explain`` run: decode ahead, explain a batch, write in threads, report."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

from ..explainer import Explainer, Target
from ..utils import sequential_opencv
from .compute import ExplainedImage, explain_batch
from .folder import claim_output_folder
from .inputs import InputItem, collect_inputs, decode_ahead, select_shard
from .outputs import write_outputs
from .settings import OutputSettings, RunSettings
from .summary import ExplainSummary, ImageResult, reload_result, write_run_files

__all__ = ["explain_images"]

logger = logging.getLogger("hrcam.explain")


def explain_images(
    explainer: Explainer,
    sources,
    output: str | os.PathLike,
    *,
    target: Target = None,
    run: RunSettings | None = None,
    outputs: OutputSettings | None = None,
    model_name: str = "",
) -> ExplainSummary:
    """Explain every image in ``sources`` (files or folders) into ``output``.

    Args:
        explainer: what computes the maps (its upsampler, refinement options, flip and input
            size are the run's).
        sources: image files and folders (walked recursively, sorted).
        output: the folder to write into: new, empty, or an earlier hrcam output
            (:func:`~hrcam.explain.folder.claim_output_folder`; ``run.force`` allows a folder
            holding other files, never overwriting them).
        target: None (each image's predicted class), or one class index or name for all.
        run: how the run goes (:class:`RunSettings`: batch size, resume, shard, progress).
        outputs: what is written (:class:`OutputSettings`: formats, precision, pictures).
        model_name: how the report names the model.

    Returns:
        :class:`ExplainSummary`; ``summary.failed`` lists the images that could not be explained.
    """
    run = run or RunSettings()
    output = claim_output_folder(output, force=run.force).path
    outputs = outputs or OutputSettings()
    if target is not None and not isinstance(target, (int, str)):
        raise ValueError("explain takes one target for all images: a class index or name")
    target = None if target is None else explainer.class_index(target)  # an unknown one fails now
    items, missing = collect_inputs(sources, exclude=[output])
    items = select_shard(items, run.shard)
    summary = ExplainSummary(
        model=model_name,
        output=str(output),
        options={
            **explainer.describe(),
            "target": target,
            "batch_size": run.batch_size,
            "outputs": asdict(outputs),
        },
        results=[
            ImageResult(m.split(":")[0], Path(m.split(":")[0]).name, False, m) for m in missing
        ],
    )
    index, count = run.shard
    summary_name = "summary.json" if count == 1 else f"summary.shard-{index}-of-{count}.json"
    with sequential_opencv():
        return _Run(explainer, output, target, outputs).explain(items, summary, summary_name, run)


class _Run:
    """One explain run: the explainer, where it writes, and the loop over the images."""

    def __init__(self, explainer: Explainer, output: Path, target, outputs: OutputSettings) -> None:
        self.explainer = explainer
        self.output = output
        self.target = target
        self.outputs = outputs

    def explain(self, items, summary, summary_name, run: RunSettings):
        started = time.perf_counter()
        slots: list[ImageResult | _Pending | None] = []  # one per item, in input order
        todo: list[InputItem] = []
        for item in items:
            done = reload_result(self.output, item) if run.skip_existing else None
            slots.append(done)
            if done is None:
                todo.append(item)
        position = {item.name: i for i, item in enumerate(items) if slots[i] is None}
        bar = _bar(len(items), run.show_progress, initial=len(items) - len(todo))
        base = list(summary.results)
        # The run's files exist from the start (a run killed at once still has its page), then
        # are rewritten as images finish, at most every report_every seconds.
        self._report(summary, base, slots, started, summary_name, "running")
        last_report, state = time.perf_counter(), "interrupted"
        writers = max(1, run.writers)
        try:
            # Leaving the pool waits for the writes in flight, on Ctrl-C too.
            with ThreadPoolExecutor(
                max_workers=writers, thread_name_prefix="write", initializer=_background_priority
            ) as pool:
                in_flight: deque[Future] = deque()
                limit = 2 * writers + run.batch_size  # writes queued at most
                batches = decode_ahead(
                    todo, batch_size=run.batch_size, decode=self.explainer.decode
                )
                for batch in batches:
                    for entry in explain_batch(self.explainer, batch, target=self.target):
                        item = (
                            entry.decoded.item if isinstance(entry, ExplainedImage) else entry.item
                        )
                        slot = self._submit(pool, item, entry)
                        slots[position[item.name]] = slot
                        if isinstance(slot, _Pending):
                            in_flight.append(slot.future)
                    # Back-pressure: the model never runs far ahead of the writers, so memory
                    # stays bounded and Ctrl-C waits only for the few writes in flight.
                    while len(in_flight) > limit:
                        wait([in_flight.popleft()])
                    if bar is not None:
                        bar.update(len(batch))
                    if time.perf_counter() - last_report >= run.report_every:
                        self._report(summary, base, slots, started, summary_name, "running")
                        last_report = time.perf_counter()
            state = "complete"
        finally:
            if bar is not None:
                bar.close()
            self._report(summary, base, slots, started, summary_name, state)
        return summary

    def _submit(self, pool, item: InputItem, entry) -> ImageResult | _Pending:
        if isinstance(entry, ExplainedImage):
            return _Pending(item, pool.submit(write_outputs, entry, self.output, self.outputs))
        logger.warning("skipped: %s", entry.error)
        return ImageResult(str(item.path), item.name, False, entry.error)

    def _report(self, summary, base, slots, started, summary_name, state) -> None:
        """Rewrite the run's files from every finished image (in input order)."""
        summary.results = base + [r for r in (_finished(s) for s in slots) if r is not None]
        summary.seconds = time.perf_counter() - started
        summary.state = state
        write_run_files(self.output, summary, summary_name)


@dataclass(frozen=True)
class _Pending:
    """An image being written: its input and the write's future."""

    item: InputItem
    future: Future


def _finished(slot) -> ImageResult | None:
    """The result in a slot: a finished write's (an exception becomes a failure), else None."""
    if slot is None or isinstance(slot, ImageResult):
        return slot
    if not slot.future.done():
        return None
    try:
        return slot.future.result()
    except Exception as err:  # noqa: BLE001 - a full disk, or a bug, writing one image
        message = f"{slot.item.path}: could not write its outputs ({type(err).__name__}: {err})"
        logger.warning("failed: %s", message)
        return ImageResult(str(slot.item.path), slot.item.name, False, message)


def _background_priority() -> None:
    """Give the calling (writer) thread a lower priority than the model's threads.

    When the model fills every core, a writer that takes a core stalls each of the forward
    pass's parallel operators; at nice 10 it runs in their gaps instead (docs/speed.md).
    Per-thread priorities are Linux's; elsewhere, or if refused, nothing changes.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def _bar(total: int, enabled: bool, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="explain", unit="img", dynamic_ncols=True)
