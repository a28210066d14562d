"""Faithfulness of each method's maps in ``hrcam evaluate``: the metrics and their protocol.

On the images chosen for faithfulness (``faithfulness=N``: N evenly spaced images), each
method's maps (at the input size) are scored by:

- deletion and insertion AUC (:func:`hrcam.metrics.deletion_insertion`: RISE's protocol,
  target probability, trapezoid AUC over the fraction of pixels changed, in [0, 1]);
- average drop, increase in confidence and average gain (:func:`hrcam.metrics.
  average_drop_increase`: the image times the normalised map);
- ROAD MoRF, LeRF and combined (:func:`hrcam.metrics.road.road`: noisy linear imputation at
  the 20th, 40th, 60th and 80th percentiles, target logit change);
- Coherency, Complexity and ADCC (:mod:`hrcam.metrics.adcc`: the method run again on its
  explanation image).

Every value is kept per image; the results report means with 95 % bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..metrics import average_drop_increase, deletion_insertion
from ..metrics.adcc import adcc, coherency, complexity, explanation_images
from ..metrics.faithfulness import frozen_for_inference
from ..metrics.intervals import bootstrap_interval, mean_statistic
from ..metrics.road import ROAD_PERCENTILES, road
from .results import FaithfulnessSummary

__all__ = ["FAITHFULNESS_METRICS", "score_faithfulness", "summarise_faithfulness"]

FAITHFULNESS_METRICS = ("deletion", "drop", "road", "adcc")  # deletion also gives insertion

# record key -> (table name, what the table calls it, higher is better)
_SUMMARY = {
    "deletion_auc": ("deletion_auc", False),
    "insertion_auc": ("insertion_auc", True),
    "drop": ("average_drop", False),
    "increase": ("increase_in_confidence", True),
    "gain": ("average_gain", True),
    "road_morf": ("road_morf", False),
    "road_lerf": ("road_lerf", True),
    "road_combined": ("road_combined", True),
    "coherency": ("coherency", True),
    "complexity": ("complexity", False),
    "adcc": ("adcc", True),
}


def score_faithfulness(
    explainer,
    method,
    batch,
    maps: torch.Tensor,
    targets: torch.Tensor,
    record: dict[str, list[float]],
    *,
    steps: int = 224,
    batch_size: int = 32,
    metrics: Sequence[str] = FAITHFULNESS_METRICS,
) -> None:
    """Add one batch of one method's faithfulness scores (per image) to ``record``.

    ``batch``: the :class:`~hrcam.ImageBatch` the maps were made of; ``maps`` ``(B, H, W)``.
    """
    images = batch.x
    backbone = frozen_for_inference(explainer.backbone, images[:batch_size])
    maps = maps.to(images.device)
    size = tuple(images.shape[-2:])

    def add(key: str, values) -> None:
        record.setdefault(key, []).extend(np.asarray(values, dtype=np.float64).tolist())

    with torch.inference_mode():
        if "deletion" in metrics:
            di = deletion_insertion(
                backbone, images, maps, targets, steps=steps, batch_size=batch_size, logits=True
            )
            add("deletion_auc", di["deletion_auc"])
            add("insertion_auc", di["insertion_auc"])
        ad = average_drop_increase(
            backbone, images, maps, targets, batch_size=batch_size, logits=True
        )
        if "drop" in metrics or "adcc" in metrics:
            add("drop", ad["drop"])
            add("increase", ad["increase"])
            add("gain", ad["gain"])
        if "road" in metrics:
            r = road(
                backbone,
                images,
                maps,
                targets.cpu(),
                percentiles=ROAD_PERCENTILES,
                batch_size=batch_size,
            )
            add("road_morf", r["morf"])
            add("road_lerf", r["lerf"])
            add("road_combined", r["combined"])
    if "adcc" in metrics:
        again = method(explainer, explanation_images(images, maps), targets)  # may need autograd
        coh = coherency(maps.cpu(), again, size)
        com = complexity(maps.cpu(), size)
        add("coherency", coh)
        add("complexity", com)
        add("adcc", adcc(coh, com, ad["drop"]))


def summarise_faithfulness(
    record: dict[str, list[float]], *, seed: int = 0
) -> FaithfulnessSummary | None:
    """Means and 95 % bootstrap intervals of every recorded faithfulness metric."""
    if not record:
        return None
    values, intervals = {}, {}
    for key, scores in record.items():
        name, _ = _SUMMARY.get(key, (key, True))
        v = np.asarray(scores, dtype=np.float64)
        values[name] = float(np.mean(v))
        intervals[name] = list(bootstrap_interval(mean_statistic(v), v.size, seed=seed))
    return FaithfulnessSummary(
        values=values,
        intervals=intervals,
        num_images=max(len(v) for v in record.values()),
        higher_is_better={name: higher for name, higher in _SUMMARY.values()},
    )
