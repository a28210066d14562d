"""Evaluate CAM methods on one model: localization scores against masks and boxes, time per image.

- :func:`evaluate_localization` (:mod:`.runner`) — run methods over a data set, streaming
  one batch at a time; its module docstring pins the protocol (split, targets, resizing, timing);
  :class:`EvaluationConfig` holds its settings, :class:`RunResult` (:mod:`.results`) is what it
  returns, one :class:`MethodResult` per method;
- :mod:`.scoring` — every localization metric of one method, fed one map at a time;
- :mod:`.faithfulness_scores` — deletion/insertion, average drop/increase/gain, ROAD and ADCC
  of one method's maps, per image;
- :mod:`.differences` — each method minus a reference, with paired bootstrap intervals;
- :mod:`.subsets` — split halves and evenly spaced subsets;
- :func:`write_results` (:mod:`.results_report`) — ``results.md``, ``results.json`` and the figures.

Example::

    from hrcam import load_model
    from hrcam.data.annotations import LocalizationDataset
    from hrcam.evaluation import evaluate_localization, write_results

    results = evaluate_localization(load_model("default"), LocalizationDataset("pets-dev"),
                                    ["low_res", "refined", "gradcam"], limit=50)
    results.methods["refined"].metrics["pxap"]
    write_results(results, "eval-out")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

__all__ = [
    "DEFAULT_METHODS",
    "FAITHFULNESS_METRICS",
    "SPLITS",
    "EvaluationConfig",
    "GroundTruth",
    "LocalizationScores",
    "MethodResult",
    "RunResult",
    "evaluate_localization",
    "evenly_spaced",
    "ground_truth",
    "markdown_table",
    "render_markdown",
    "split_names",
    "write_results",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "DEFAULT_METHODS": ".choices",
        "SPLITS": ".choices",
        "FAITHFULNESS_METRICS": ".faithfulness_scores",
        "markdown_table": ".results_report",
        "render_markdown": ".results_report",
        "write_results": ".results_report",
        "MethodResult": ".results",
        "RunResult": ".results",
        "EvaluationConfig": ".runner",
        "evaluate_localization": ".runner",
        "GroundTruth": ".scoring",
        "LocalizationScores": ".scoring",
        "ground_truth": ".scoring",
        "evenly_spaced": ".subsets",
        "split_names": ".subsets",
    },
    (
        "choices",
        "differences",
        "faithfulness_scores",
        "results",
        "results_report",
        "runner",
        "scoring",
        "subsets",
    ),
)

if TYPE_CHECKING:
    from .choices import DEFAULT_METHODS, SPLITS
    from .faithfulness_scores import FAITHFULNESS_METRICS
    from .results import MethodResult, RunResult
    from .results_report import markdown_table, render_markdown, write_results
    from .runner import EvaluationConfig, evaluate_localization
    from .scoring import GroundTruth, LocalizationScores, ground_truth
    from .subsets import evenly_spaced, split_names
