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

from typing import TYPE_CHECKING

from ..lazy import lazy_names

__all__ = [
    "ExplainSummary",
    "ImageResult",
    "OutputSettings",
    "RunSettings",
    "check_output_folder",
    "explain_images",
    "finish_run",
    "merge_shards",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "ExplainSummary": ".summary",
        "ImageResult": ".summary",
        "finish_run": ".summary",
        "merge_shards": ".summary",
        "OutputSettings": ".settings",
        "RunSettings": ".settings",
        "explain_images": ".run",
        "check_output_folder": "..utils",
    },
    ("compute", "html_page", "inputs", "outputs", "run", "settings", "sharding", "summary"),
)

if TYPE_CHECKING:
    from ..utils import check_output_folder
    from .run import explain_images
    from .settings import OutputSettings, RunSettings
    from .summary import ExplainSummary, ImageResult, finish_run, merge_shards
