"""Explain many images: predictions, low-/high-res and refined CAMs, pictures, and a report.

:func:`explain_images` is what ``hrcam explain`` runs. It takes files and folders (walked
recursively) and, for each image, writes into ``images/<name>/`` (``name``: the path without
its extension): the image and the low-res, high-res and refined CAMs over it, the masked image,
the pipeline figure, ``maps.npz`` (the raw maps) and ``predictions.json`` (top-5 classes); for
the run, ``summary.json`` and ``index.html``.

Three stages overlap: threads decode the next batch while the model runs on this one
(:mod:`.inputs`), the model and the refinement compute (:mod:`.compute`), and a pool of threads
writes the finished images (:mod:`.outputs`). A file that cannot be read, or whose maps are not
finite, is reported by name with the reason, and the run goes on. Every file is written
atomically; the report is rewritten every few seconds, so an interrupted run keeps a report of
what it finished, and Ctrl-C finishes the images in flight and marks the page "interrupted"
(``hrcam explain --finish OUT`` rebuilds the page of a run that was killed).
"""

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

from ..model import HRCAM, Target
from ..postprocess import RefineOptions
from ..utils import check_output_folder, sequential_opencv
from .compute import ExplainedImage, explain_batch
from .inputs import DecodedImage, InputItem, collect_inputs, decode_ahead, select_shard
from .outputs import OutputSettings, write_outputs
from .summary import (
    ExplainSummary,
    ImageResult,
    finish_run,
    merge_shards,
    reload_result,
    write_run_files,
)

__all__ = [
    "ExplainSummary",
    "ImageResult",
    "OutputSettings",
    "check_output_folder",
    "explain_images",
    "finish_run",
    "merge_shards",
]

logger = logging.getLogger("hrcam.explain")

# Images larger than this (longest side) are shown downscaled in the overlays and the report.
DISPLAY_SIDE = 448


def explain_images(
    model: HRCAM,
    sources,
    output: str | os.PathLike,
    *,
    target: Target = None,
    options: RefineOptions | None = None,
    batch_size: int = 8,
    input_size: int | tuple[int, int] | None = None,
    pipeline_figures: bool = True,
    skip_existing: bool = False,
    shard: tuple[int, int] = (0, 1),
    model_name: str = "",
    show_progress: bool = True,
    flip: bool = False,
    settings: OutputSettings | None = None,
    writers: int = 2,
    report_every: float = 10.0,
) -> ExplainSummary:
    """Explain every image in ``sources`` (files or folders) into ``output``.

    Args:
        model: the model to explain.
        sources: image files and folders (walked recursively, sorted).
        output: the folder to write into (created).
        target: None (each image's predicted class), a class index, or a class name.
        options: refinement options (default: :meth:`RefineOptions.default`, hrcam's preset).
        batch_size: images per forward pass.
        input_size: the network's input size (default: the backbone's, e.g. 224).
        pipeline_figures: draw the pipeline figure per image.
        skip_existing: keep images whose ``predictions.json`` already exists (resume a run).
        shard: ``(index, count)``: process only every ``count``-th image from ``index``
            (several processes over one large folder; see :func:`merge_shards`).
        flip: average every CAM with the mirrored image's (test-time augmentation, 2× cost).
        settings: how the files are written (format, map precision, colour map, opacity);
            ``pipeline_figures`` sets its ``pipeline_figure``.
        writers: threads that write finished images while the next batch is computed.
        report_every: seconds between rewrites of ``index.html`` during the run.

    Returns:
        :class:`ExplainSummary`; ``summary.failed`` lists the images that could not be explained.
    """
    output = check_output_folder(output)
    settings = settings or OutputSettings()
    if settings.pipeline_figure != pipeline_figures:
        settings = OutputSettings(**{**asdict(settings), "pipeline_figure": pipeline_figures})
    run = _Run(
        model, output, target, options or RefineOptions.default(), input_size, flip, settings
    )
    items, missing = collect_inputs(sources)
    items = select_shard(items, shard)
    summary = ExplainSummary(
        model=model_name,
        output=str(output),
        options=run.describe(batch_size),
        results=[
            ImageResult(m.split(":")[0], Path(m.split(":")[0]).name, False, m) for m in missing
        ],
    )
    summary_name = (
        "summary.json" if shard[1] == 1 else f"summary.shard-{shard[0]}-of-{shard[1]}.json"
    )
    with sequential_opencv():
        return run.explain(
            items,
            summary,
            summary_name,
            batch_size=batch_size,
            skip_existing=skip_existing,
            show_progress=show_progress,
            writers=writers,
            report_every=report_every,
        )


class _Run:
    """One explain run: the model and its settings, and the loop over the images."""

    def __init__(self, model, output: Path, target, options, input_size, flip, settings) -> None:
        if target is not None and not isinstance(target, (int, str)):
            raise ValueError("explain takes one target for all images: a class index or name")
        self.model = model
        self.output = output
        self.target = None if target is None else model._class_index(target)  # fail now
        self.options = options
        self.size = input_size or model.backbone.input_size
        self.flip = flip
        self.settings = settings

    def describe(self, batch_size: int) -> dict:
        return {
            "refine": asdict(self.options),
            "target": self.target,
            "input_size": self.size,
            "batch_size": batch_size,
            "flip": self.flip,
            "high_res": self.model.high_res_mode,
            "cam_weights": self.model.cam_weights,
            "outputs": asdict(self.settings),
        }

    def explain(
        self,
        items,
        summary,
        summary_name,
        *,
        batch_size,
        skip_existing,
        show_progress,
        writers,
        report_every,
    ):
        started = time.perf_counter()
        slots: list[ImageResult | _Pending | None] = []  # one per item, in input order
        todo: list[InputItem] = []
        for item in items:
            done = reload_result(self.output, item.name) if skip_existing else None
            slots.append(done)
            if done is None:
                todo.append(item)
        position = {item.name: i for i, item in enumerate(items) if slots[i] is None}
        bar = _bar(len(items), show_progress, initial=len(items) - len(todo))
        base = list(summary.results)
        max_side = max(DISPLAY_SIDE, self.size if isinstance(self.size, int) else max(self.size))
        last_report, state = time.perf_counter(), "interrupted"
        try:
            # Leaving the pool waits for the writes in flight, on Ctrl-C too.
            with ThreadPoolExecutor(
                max_workers=max(1, writers),
                thread_name_prefix="write",
                initializer=_background_priority,
            ) as pool:
                in_flight: deque[Future] = deque()
                limit = 2 * max(1, writers) + batch_size  # writes queued at most
                for batch in decode_ahead(todo, batch_size=batch_size, max_side=max_side):
                    for entry in self._compute(batch):
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
                    if time.perf_counter() - last_report >= report_every:
                        self._report(summary, base, slots, started, summary_name, "running")
                        last_report = time.perf_counter()
            state = "complete"
        finally:
            if bar is not None:
                bar.close()
            self._report(summary, base, slots, started, summary_name, state)
        return summary

    def _compute(self, batch: list[DecodedImage]):
        return explain_batch(
            self.model,
            batch,
            target=self.target,
            options=self.options,
            input_size=self.size,
            display_side=DISPLAY_SIDE,
            flip=self.flip,
        )

    def _submit(self, pool, item: InputItem, entry) -> ImageResult | _Pending:
        if isinstance(entry, ExplainedImage):
            return _Pending(item, pool.submit(write_outputs, entry, self.output, self.settings))
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
    pass's parallel operators; at nice 10 it runs in their gaps instead (on 2 cores: 76.7 ->
    72.4 ms per image, two runs of 200 pets-dev photographs). Per-thread priorities are Linux's;
    elsewhere, or if refused, nothing changes.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def _bar(total: int, enabled: bool, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="explain", unit="img", dynamic_ncols=True)
