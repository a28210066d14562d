"""What an evaluation returns, as types: :class:`RunResult` and one :class:`MethodResult` per method.

``results.json`` is :meth:`RunResult.to_json` (the same names, one level per dataclass), and
:meth:`RunResult.from_json` reads it back, so a report can be rendered again from the file.
Metric values stay keyed by the metric's name (``metrics["pxap"]``): they are a table, whose
columns the metrics define.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BadImage",
    "Example",
    "FaithfulnessSummary",
    "MethodResult",
    "RunInfo",
    "RunResult",
    "SharedTiming",
    "SubsetResult",
    "Timing",
    "to_json",
]


@dataclass
class Timing:
    """A method's time on the run's batches (see the runner's protocol, point 4)."""

    ms_per_image: float
    ms_per_image_mean: float
    ratio_to_forward: float
    total_seconds: float
    num_batches: int
    per_batch_ms_per_image: list[float]


@dataclass
class SharedTiming:
    """The forward pass alone, or the shared :meth:`hrcam.Explainer.cams` per batch."""

    ms_per_image: float
    per_batch_ms_per_image: list[float]
    ratio_to_forward: float = 1.0


@dataclass
class FaithfulnessSummary:
    """Means and 95 % bootstrap intervals of the faithfulness metrics of one method.

    ``values`` and ``intervals`` are keyed by the metric's name (``deletion_auc``,
    ``road_combined``, ``adcc`` ...); ``higher_is_better`` says which way each is better.
    """

    values: dict[str, float]
    intervals: dict[str, list[float]]
    num_images: int
    higher_is_better: dict[str, bool]

    def get(self, name: str) -> float | None:
        return self.values.get(name)


@dataclass
class MethodResult:
    """One method's scores, intervals, timing and settings."""

    name: str
    family: str
    settings: dict[str, Any]
    subset: bool
    num_images: int
    metrics: dict[str, Any]
    intervals: dict[str, list]
    timing: Timing
    faithfulness: FaithfulnessSummary | None
    curves: dict[str, Any] = field(repr=False)
    per_image: dict[str, dict[str, float]] = field(repr=False)


@dataclass
class SubsetResult:
    """Every method's metrics on the images a capped method ran on."""

    num_images: int
    of_methods: list[str]
    metrics: dict[str, dict[str, Any]]


@dataclass
class BadImage:
    """An image (or its annotation) that could not be read, and why."""

    name: str
    error: str


@dataclass
class Example:
    """An image kept, with every method's map, for the example figure (not in the JSON file)."""

    name: str
    target: int
    target_name: str
    image: np.ndarray | None = field(default=None, repr=False)
    maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass
class RunInfo:
    """What was evaluated, how, on what machine."""

    hrcam_version: str
    torch_version: str
    model: dict[str, Any]
    explainer: dict[str, Any]
    expansion: bool
    dataset: str
    has_masks: bool
    boxes: str
    split: str
    split_seed: int
    limit: int | None
    num_planned: int
    num_scored: int
    num_bad: int
    target: str
    batch_size: int
    device: str
    threads: int
    cpu_count: int | None
    input_size: list[int]
    num_thresholds: int
    resize: str
    timing: str
    faithfulness: dict[str, Any] | None
    seconds: float
    top1_accuracy: float | None
    predicted_classes: dict[str, int]
    command: str | None = None
    model_argument: str | None = None
    unannotated_skipped: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """Everything :func:`~hrcam.evaluation.evaluate_localization` measured.

    ``differences``: each method minus the reference (``low_res`` when run) with paired 95 %
    intervals (:mod:`.differences`), or None.
    """

    run: RunInfo
    forward: SharedTiming
    cams: SharedTiming | None
    methods: dict[str, MethodResult]
    subsets: dict[str, SubsetResult]
    differences: dict[str, Any] | None
    bad_images: list[BadImage]
    examples: list[Example] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (NaN → None; the examples' arrays left out)."""
        record = dataclasses.asdict(dataclasses.replace(self, examples=[]))
        record["examples"] = [
            {"name": e.name, "target": e.target, "target_name": e.target_name}
            for e in self.examples
        ]
        return to_json(record)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunResult:
        """A result read back from :meth:`to_json` (examples without their pictures)."""
        methods = {}
        for name, m in record["methods"].items():
            faith = m.get("faithfulness")
            methods[name] = MethodResult(
                **{
                    **m,
                    "timing": Timing(**m["timing"]),
                    "faithfulness": FaithfulnessSummary(**faith) if faith else None,
                }
            )
        cams = record.get("cams")
        return cls(
            run=RunInfo(**record["run"]),
            forward=SharedTiming(**record["forward"]),
            cams=SharedTiming(**cams) if cams else None,
            methods=methods,
            subsets={k: SubsetResult(**v) for k, v in record.get("subsets", {}).items()},
            differences=record.get("differences"),
            bad_images=[BadImage(**b) for b in record.get("bad_images", [])],
            examples=[Example(**e) for e in record.get("examples", [])],
        )


def to_json(value: Any) -> Any:
    """A JSON-ready copy: arrays → lists, NumPy scalars → Python, NaN/inf → None."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    return value
