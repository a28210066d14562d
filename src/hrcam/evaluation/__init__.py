"""Evaluate CAM methods on one model: localization scores against masks and boxes, time per image.

- :func:`evaluate_localization` (:mod:`.runner`) — run methods over a data set, streaming
  one batch at a time; its module docstring pins the protocol (split, targets, resizing, timing);
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
    write_results(results, "eval-out")
"""

from .faithfulness_scores import FAITHFULNESS_METRICS
from .results_report import markdown_table, render_markdown, write_results
from .runner import DEFAULT_METHODS, evaluate_localization
from .scoring import GroundTruth, LocalizationScores, ground_truth
from .subsets import SPLITS, evenly_spaced, split_names

__all__ = [
    "DEFAULT_METHODS",
    "FAITHFULNESS_METRICS",
    "SPLITS",
    "GroundTruth",
    "LocalizationScores",
    "evaluate_localization",
    "evenly_spaced",
    "ground_truth",
    "markdown_table",
    "render_markdown",
    "split_names",
    "write_results",
]
