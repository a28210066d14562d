"""Run CAM methods on one model over a localization data set: scores and time per image.

:func:`evaluate_localization` is what ``hrcam evaluate`` runs. The protocol it pins:

1. **Images.** The data set's sorted names, then the split (:func:`~.subsets.split_names`), then
   ``limit`` (evenly spaced, :func:`~.subsets.evenly_spaced`). A method with a cap
   (``max_images``; slow methods such as Score-CAM get ``slow_subset`` by default) runs on an
   evenly spaced subset of those, and its row says how many images it saw. Every image is
   stretched to the model's input size (e.g. 224×224), as the models were trained.
2. **Target class.** One forward pass of the backbone gives the predicted class of each image;
   every method explains that class (``target="predicted"``), or the image's label
   (``target="label"``, when the labels are the model's class indices).
3. **Scoring.** Each map (at the input size) is resized bilinearly to the image's original size
   and scored there (:mod:`.scoring`): PxAP and best pixel IoU against the mask (the trimap's
   boundary ignored), MaxBoxAccV2 and GT-known loc. against the boxes (from the mask's
   components when there is no box CSV), the pointing game and the energy pointing game.
4. **Time.** Per batch: the backbone's forward pass alone, then each method on the same batch
   (their order rotated from batch to batch), then the forward pass again; the unit is the mean
   of the two forward passes. ``low_res`` is timed on its own path (forward + CAM); ``high_res``
   and every ``refined`` variant share one :meth:`~hrcam.Explainer.cams` per batch, whose
   time is charged to each (``high_res`` = cams, ``refined`` = cams + its refinement). A method's time per image is the median over batches of (batch seconds / its
   images in the batch); its ratio to the forward pass is the median over batches of the two
   per-image times' ratio, so both come from the same moments of a shared, noisy machine.
   Ours run under ``torch.inference_mode``; peers with autograd where they need it. Every
   method runs once, untimed, before the first batch (slow ones excepted). Images are decoded
   and prepared by the explainer itself (:meth:`hrcam.Explainer.prepare`), so every map is
   the one ``explainer.explain`` gives for that image.
5. **Streaming.** One batch at a time; only counts, curves and a few example maps are kept.
   An unreadable image or annotation is reported by name, skipped and counted.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..explainer import ImageBatch
from ..io import ImageLoadError
from ..methods import CAMMethod, create_method
from ..postprocess import RefineOptions
from .choices import DEFAULT_METHODS, SPLITS, TARGETS
from .differences import paired_differences
from .faithfulness_scores import FAITHFULNESS_METRICS, score_faithfulness, summarise_faithfulness
from .results import (
    BadImage,
    Example,
    MethodResult,
    RunInfo,
    RunResult,
    SharedTiming,
    SubsetResult,
    Timing,
)
from .scoring import LocalizationScores, ground_truth
from .subsets import evenly_spaced, split_names

__all__ = ["DEFAULT_METHODS", "EvaluationConfig", "evaluate_localization"]

logger = logging.getLogger("hrcam.evaluate")


@dataclass
class _MethodRun:
    """One method's state during a run."""

    method: CAMMethod
    names: set[str] | None  # the images it runs on; None = all
    scores: LocalizationScores
    on_subsets: dict[int, LocalizationScores] = field(default_factory=dict)
    seconds_per_image: list[float] = field(default_factory=list)
    ratio_to_forward: list[float] = field(default_factory=list)
    total_seconds: float = 0.0
    faithfulness: dict[str, list[float]] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _now(device: torch.device) -> float:
    _sync(device)
    return time.perf_counter()


@dataclass
class _Plan:
    """What a run will do: the images, each method's share of them, subsets and examples."""

    names: list[str]
    runs: list[_MethodRun]
    caps: dict[str, int]
    subset_names: dict[int, set[str]]
    faith_names: set[str]
    example_names: set[str]
    has_masks: bool
    top1: bool
    index_of: dict[str, int] = field(default_factory=dict)  # name -> the data set's index


@dataclass
class _Batch:
    """One batch of readable images: names, the images, ground truths and labels (target=label)."""

    names: list[str]
    images: ImageBatch
    truths: list
    labels: list[int]


@dataclass
class _Tally:
    """What the run accumulates besides each method's scores."""

    forward_seconds: list[float] = field(default_factory=list)
    shared_seconds: list[float] = field(default_factory=list)  # the shared explainer.cams
    shared_ratios: list[float] = field(default_factory=list)
    bad: list[BadImage] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    predicted: dict[int, int] = field(default_factory=dict)
    correct: int = 0
    scored: int = 0


@dataclass(frozen=True)
class EvaluationConfig:
    """How :func:`evaluate_localization` runs (the protocol in the module docstring).

    Attributes:
        methods: method specs (``"refined:merge=multiply"``) or :class:`CAMMethod` objects.
        batch_size: images per batch (Score-CAM still takes one image at a time).
        device: where the model runs (default: where it is).
        split: ``"all"``, ``"first-half"`` or ``"second-half"`` (seeded by ``split_seed``).
        limit: score only this many images of the split, evenly spaced.
        max_images: ``{method name or spec: N}``: run that method on N evenly spaced images
            (0 = all). Methods flagged slow default to ``slow_subset`` (0 = all).
        target: ``"predicted"`` (each image's predicted class) or ``"label"``.
        refine_options: base options of the ``refined`` specs that change options.
        mask_boxes: ``"components"`` or ``"union"``: the boxes of a mask-only data set.
        num_thresholds: CAM thresholds of the threshold-swept metrics.
        faithfulness: score the maps' faithfulness on this many images (evenly spaced; each
            method on those it has maps for): ``faithfulness_metrics`` among deletion (and
            insertion, ``faithfulness_steps`` steps), drop (average drop, increase, gain), road
            and adcc (see :mod:`.faithfulness_scores`).
        num_examples: images kept (with every method's map) for the example figure.
        reference: the method every other is compared with, paired (default ``low_res`` if
            run, else the first method).
        warmup: run each method once, untimed, before timing.
        progress: show a progress bar (rate and ETA).
    """

    methods: tuple[str | CAMMethod, ...] = ()
    batch_size: int = 16
    device: str | None = None
    split: str = "all"
    split_seed: int = 0
    limit: int | None = None
    max_images: Mapping[str, int] = field(default_factory=dict)
    slow_subset: int = 50
    target: str = "predicted"
    refine_options: RefineOptions | None = None
    mask_boxes: str = "components"
    num_thresholds: int = 100
    faithfulness: int = 0
    faithfulness_steps: int = 224
    faithfulness_metrics: tuple[str, ...] = FAITHFULNESS_METRICS
    num_examples: int = 4
    reference: str | None = None
    warmup: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        object.__setattr__(self, "methods", tuple(self.methods or DEFAULT_METHODS))
        object.__setattr__(self, "faithfulness_metrics", tuple(self.faithfulness_metrics))


def evaluate_localization(
    explainer,
    dataset,
    methods: Sequence[str | CAMMethod] | None = None,
    *,
    config: EvaluationConfig | None = None,
    **settings: Any,
) -> RunResult:
    """Score and time CAM methods on one explainer over a localization data set.

    Args:
        explainer: an :class:`hrcam.Explainer` (``mode=paper`` maps need its expansion network).
        dataset: a :class:`hrcam.data.annotations.LocalizationDataset` (masks and/or boxes).
        methods: method specs or objects (default: :data:`DEFAULT_METHODS`).
        config: an :class:`EvaluationConfig`; ``settings`` override its fields, e.g.
            ``evaluate_localization(explainer, data, ["refined"], limit=50, split="second-half")``.

    Returns:
        :class:`~hrcam.evaluation.RunResult`; :func:`hrcam.evaluation.write_results` writes it.
    """
    config = dataclasses.replace(config or EvaluationConfig(), **settings)
    if methods is not None:
        config = dataclasses.replace(config, methods=tuple(methods))
    device = torch.device(config.device) if config.device is not None else explainer.device
    explainer = explainer.to(device).eval()
    plan = _plan(
        explainer,
        dataset,
        config,
        names=_chosen_names(dataset, config.split, config.split_seed, config.limit),
    )
    known = [run.method.name for run in plan.runs]
    if config.reference is not None and config.reference not in known:
        raise ValueError(
            f"--reference {config.reference!r} is not one of the methods run: {', '.join(known)}"
        )
    tally = _Tally()
    started = time.perf_counter()
    _run_batches(explainer, dataset, plan, tally, config, device)
    return _assemble(explainer, dataset, plan, tally, config, device, time.perf_counter() - started)


def _run_batches(explainer, dataset, plan, tally, config: EvaluationConfig, device) -> None:
    """Every batch: decode, warm up once, then :func:`_evaluate_batch`."""
    bar = _bar(len(plan.names), config.progress)
    warm = not config.warmup
    batch_size = config.batch_size
    faith = None
    if config.faithfulness:
        faith = (config.faithfulness_steps, batch_size, config.faithfulness_metrics)
    try:
        for k, start in enumerate(range(0, len(plan.names), batch_size)):
            chunk = plan.names[start : start + batch_size]
            batch = _load_batch(dataset, chunk, explainer, plan, config.mask_boxes, tally)
            if batch is not None:
                if not warm:
                    _warm_up(explainer, plan.runs, batch.images.select([0]))
                    warm = True
                _evaluate_batch(explainer, plan, batch, tally, bar=bar, rotation=k, faith=faith)
            if bar is not None:
                bar.set_postfix_str("")
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


def _chosen_names(dataset, split: str, split_seed: int, limit: int | None) -> list[str]:
    """The images of the run: the split, then ``limit`` evenly spaced ones."""
    names = split_names(dataset.names, split, seed=split_seed)
    if limit is not None:
        names = evenly_spaced(names, limit)
    if not names:
        raise ValueError(
            f"no image to evaluate in {getattr(dataset, 'root', 'the data set')} ({split})"
        )
    return names


def _plan(explainer, dataset, config: EvaluationConfig, *, names: list[str]) -> _Plan:
    """Build every method, check it can run on the explainer, and give it its images."""
    built = [create_method(m, refine_options=config.refine_options) for m in config.methods]
    seen = [m.name for m in built]
    if len(set(seen)) != len(seen):
        raise ValueError(f"a method is listed twice: {seen}")
    for m in built:
        m.check_model(explainer)
    caps = _resolve_caps(built, config.max_images, config.slow_subset)
    num_thresholds, top1 = config.num_thresholds, config.target == "label"
    faithfulness, num_examples = config.faithfulness, config.num_examples
    has_masks = bool(getattr(dataset, "has_masks", False))
    subset_sizes = sorted({n for n in caps.values() if n and n < len(names)})

    def scores() -> LocalizationScores:
        return LocalizationScores(has_masks=has_masks, num_thresholds=num_thresholds, top1=top1)

    runs = []
    for m in built:
        cap = caps.get(m.name, 0)
        chosen = set(evenly_spaced(names, cap)) if cap and cap < len(names) else None
        runs.append(_MethodRun(m, chosen, scores(), {n: scores() for n in subset_sizes}))
    covered = set(names).intersection(*(r.names for r in runs if r.names is not None))
    example_pool = [n for n in names if n in covered] or evenly_spaced(
        names, min(subset_sizes or [len(names)])
    )
    return _Plan(
        names=names,
        runs=runs,
        caps=caps,
        subset_names={n: set(evenly_spaced(names, n)) for n in subset_sizes},
        faith_names=set(evenly_spaced(names, faithfulness)) if faithfulness else set(),
        example_names=set(evenly_spaced(example_pool, num_examples)) if num_examples else set(),
        has_masks=has_masks,
        top1=top1,
        index_of={n: i for i, n in enumerate(dataset.names)},
    )


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluate", unit="img", dynamic_ncols=True)


def _load_batch(
    dataset, chunk, explainer, plan: _Plan, mask_boxes: str, tally: _Tally
) -> _Batch | None:
    """Decode a batch; an unreadable image or annotation is reported by name and skipped."""
    images, truths, kept, labels = [], [], [], []
    for name in chunk:
        try:
            sample = dataset[plan.index_of[name]]
            image = explainer.decode(sample.path)
            truth = ground_truth(sample, mask_boxes=mask_boxes)
        except (ImageLoadError, OSError, ValueError) as err:
            logger.warning("skipped %s: %s", name, err)
            tally.bad.append(BadImage(name, str(err)))
            continue
        if plan.top1:
            labels.append(_check_label(sample, explainer))
        images.append(image)
        truths.append(truth)
        kept.append(name)
    if not kept:
        return None
    return _Batch(kept, explainer.prepare(images), truths, labels)


def _evaluate_batch(explainer, plan: _Plan, batch: _Batch, tally: _Tally, *, bar, rotation, faith):
    """Targets, every method timed on the batch between two forward passes, then the scores."""
    images = batch.images
    device = images.x.device
    t0 = _now(device)
    with torch.inference_mode():
        logits = explainer.logits(images.x)
    forward_before = _now(device) - t0
    pred = logits.argmax(dim=1).cpu()
    targets = torch.tensor(batch.labels, dtype=torch.long) if plan.top1 else pred.clone()
    correct = (pred == targets).tolist() if plan.top1 else [None] * len(batch.names)
    tally.correct += sum(bool(c) for c in correct) if plan.top1 else 0
    for p in pred.tolist():
        tally.predicted[p] = tally.predicted.get(p, 0) + 1
    targets_dev = targets.to(device)
    maps, shared = _run_methods(
        explainer, plan.runs, images, targets_dev, batch.names, bar, rotation=rotation
    )
    t0 = _now(device)
    with torch.inference_mode():
        explainer.logits(images.x)
    forward = (forward_before + _now(device) - t0) / 2 / len(batch.names)
    _record_times(plan, tally, maps, shared, forward)
    _score_batch(explainer, plan, batch, tally, maps, targets, correct)
    for run in plan.runs:
        if run.method.name in maps:
            rows, cams, _ = maps[run.method.name]
            faith_rows = [r for r, i in enumerate(rows) if batch.names[i] in plan.faith_names]
            if faith_rows:
                index = [rows[r] for r in faith_rows]
                steps, size, metrics = faith
                if bar is not None:
                    bar.set_postfix_str(f"faithfulness: {run.method.name}")
                score_faithfulness(
                    explainer,
                    run.method,
                    images.select(index),
                    cams[faith_rows],
                    targets_dev[torch.tensor(index, device=device)],
                    run.faithfulness,
                    steps=steps,
                    batch_size=max(size, 32) if device.type == "cuda" else explainer.cpu_chunk,
                    metrics=metrics,
                )
    tally.scored += len(batch.names)


def _record_times(plan: _Plan, tally: _Tally, maps, shared: float | None, forward: float) -> None:
    tally.forward_seconds.append(forward)
    if shared is not None:
        tally.shared_seconds.append(shared)
        tally.shared_ratios.append(shared / forward)
    for run in plan.runs:
        if run.method.name in maps:
            rows, _, per_image = maps[run.method.name]
            run.seconds_per_image.append(per_image)
            run.ratio_to_forward.append(per_image / forward)
            run.total_seconds += per_image * len(rows)


def _score_batch(explainer, plan: _Plan, batch: _Batch, tally: _Tally, maps, targets, correct):
    """Each method's maps scored at the images' original sizes (outside every timer)."""
    examples = {
        i: Example(
            name=n,
            target=int(targets[i]),
            target_name=explainer.class_names[int(targets[i])],
            image=batch.images.rgb[i],
        )
        for i, n in enumerate(batch.names)
        if n in plan.example_names
    }
    tally.examples.extend(examples.values())
    for run in plan.runs:
        if run.method.name not in maps:
            continue
        rows, cams, _ = maps[run.method.name]
        for row, i in enumerate(rows):
            truth = batch.truths[i]
            full = LocalizationScores.resize(cams[row], truth)
            run.scores.update(full, truth, correct=correct[i])
            for n, subset in plan.subset_names.items():
                if batch.names[i] in subset:
                    run.on_subsets[n].update(full, truth, correct=correct[i])
            if i in examples:
                examples[i].maps[run.method.name] = cams[row].numpy()


def _assemble(explainer, dataset, plan, tally, config, device, seconds: float) -> RunResult:
    """The :class:`RunResult` of a finished run."""
    forward_ms = (
        1000 * float(np.median(tally.forward_seconds)) if tally.forward_seconds else math.nan
    )
    cams = None
    if tally.shared_seconds:
        cams = SharedTiming(
            ms_per_image=1000 * float(np.median(tally.shared_seconds)),
            per_batch_ms_per_image=[1000 * s for s in tally.shared_seconds],
            ratio_to_forward=float(np.median(tally.shared_ratios)),
        )
    return RunResult(
        run=_run_info(explainer, dataset, plan, tally, config, device, seconds),
        forward=SharedTiming(forward_ms, [1000 * s for s in tally.forward_seconds]),
        cams=cams,
        methods={
            run.method.name: _method_result(run, len(plan.names), explainer.backbone)
            for run in plan.runs
        },
        subsets={
            str(n): SubsetResult(
                num_images=len(names),
                of_methods=[r.method.name for r in plan.runs if plan.caps.get(r.method.name) == n],
                metrics={r.method.name: r.on_subsets[n].compute()["metrics"] for r in plan.runs},
            )
            for n, names in plan.subset_names.items()
        },
        differences=paired_differences(plan.runs, config.reference or _reference(plan.runs)),
        bad_images=tally.bad,
        examples=tally.examples,
    )


def _reference(runs) -> str | None:
    """The method the others are compared with: ``low_res`` (the exact CAM) if run, else the first."""
    names = [run.method.name for run in runs]
    return "low_res" if "low_res" in names else (names[0] if names else None)


def _run_info(explainer, dataset, plan, tally, config, device, seconds: float) -> RunInfo:
    """What was evaluated, how, on what machine."""
    faithfulness = None
    if config.faithfulness:
        faithfulness = {
            "images": len(plan.faith_names),
            "steps": config.faithfulness_steps,
            "metrics": list(config.faithfulness_metrics),
        }
    return RunInfo(
        hrcam_version=__version__,
        torch_version=torch.__version__,
        model=dict(explainer.backbone.config),
        explainer=explainer.describe(),
        expansion=explainer.expansion is not None,
        dataset=str(getattr(dataset, "root", "")),
        has_masks=plan.has_masks,
        boxes="csv" if getattr(dataset, "boxes_csv", None) else f"mask {config.mask_boxes}",
        split=config.split,
        split_seed=config.split_seed,
        limit=config.limit,
        num_planned=len(plan.names),
        num_scored=tally.scored,
        num_bad=len(tally.bad),
        target=config.target,
        batch_size=config.batch_size,
        device=str(device),
        threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        input_size=list(explainer.input_size),
        num_thresholds=config.num_thresholds,
        resize="each map (at the input size) bilinearly resized to the image's original size, "
        "then scored",
        timing="per batch: forward alone, each method (order rotated per batch), forward again; "
        "ms/image = median over batches of seconds per image; ratio = median of per-batch ratios "
        "to the mean of the two forward passes",
        faithfulness=faithfulness,
        seconds=seconds,
        top1_accuracy=tally.correct / tally.scored if plan.top1 and tally.scored else None,
        predicted_classes={
            explainer.class_names[k]: v
            for k, v in sorted(tally.predicted.items(), key=lambda kv: -kv[1])[:20]
        },
    )


def _resolve_caps(
    methods: Sequence[CAMMethod], max_images: Mapping[str, int], slow_subset: int
) -> dict[str, int]:
    """``{method name: N}`` (0 = all) from ``max_images`` keyed by spec or bare name."""
    names = {m.name for m in methods}
    bare = {m.name.partition(":")[0] for m in methods}
    unknown = sorted(set(max_images) - names - bare)
    if unknown:
        raise ValueError(
            f"max_images names methods not in this run: {unknown}; the run has {sorted(names)}"
        )
    caps = {}
    for m in methods:
        cap = max_images.get(m.name, max_images.get(m.name.partition(":")[0]))
        if cap is None:
            cap = slow_subset if m.slow else 0
        if cap < 0:
            raise ValueError(f"max_images for {m.name!r} must be >= 0 (0 = all), got {cap}")
        caps[m.name] = int(cap)
    return caps


def _check_label(sample, explainer) -> int:
    if sample.label is None:
        raise ValueError(
            f"target='label' needs a label for every image, and {sample.name} has none; add a "
            "labels.csv (file,label) or use target='predicted'"
        )
    if not 0 <= sample.label < explainer.num_classes:
        raise ValueError(
            f"{sample.name}: label {sample.label} is not a class of the model "
            f"(0..{explainer.num_classes - 1}); "
            "labels must be the model's class indices for target='label'"
        )
    return int(sample.label)


def _warm_up(explainer, runs: Sequence[_MethodRun], images: ImageBatch) -> None:
    """Run the forward pass and each fast method once, untimed (lazy initialisation, caches)."""
    with torch.inference_mode():
        targets = explainer.logits(images.x).argmax(dim=1)
    for run in runs:
        if not run.method.slow:
            run.method(explainer, images, targets.clone())


def _run_methods(
    explainer, runs, images: ImageBatch, targets, kept, bar, rotation: int
) -> tuple[dict[str, tuple[list[int], torch.Tensor, float]], float | None]:
    """Every method on its images of the batch: ``{name: (batch rows, maps, seconds per image)}``,
    and the seconds per image of the shared ``explainer.cams`` (None when not run).

    The methods run in the given order rotated by ``rotation`` (so no method always runs first
    or last); ``high_res`` and the ``refined`` variants whose CAMs are the explainer's form one
    block, after one shared, timed ``explainer.cams``.
    """
    device = images.x.device
    shared = [r for r in runs if r.method.shares_cams and r.method.matches(explainer)]
    units: list[list[_MethodRun]] = []
    for run in runs:
        if run in shared:
            if run is shared[0]:
                units.append(shared)
        else:
            units.append([run])
    k = rotation % len(units)
    units = units[k:] + units[:k]

    def rows_of(run: _MethodRun) -> list[int]:
        return [i for i, n in enumerate(kept) if run.names is None or n in run.names]

    out: dict[str, tuple[list[int], torch.Tensor, float]] = {}
    shared_per_image = None
    for unit in units:
        if unit is shared:
            shared_rows = sorted({i for r in shared for i in rows_of(r)})
            if not shared_rows:
                continue
            if bar is not None:
                bar.set_postfix_str("cams")
            t0 = _now(device)
            cams = explainer.cams(images.select(shared_rows), targets[shared_rows])
            shared_per_image = (_now(device) - t0) / len(shared_rows)
        for run in unit:
            rows = rows_of(run)
            if not rows:
                continue
            if bar is not None:
                bar.set_postfix_str(run.method.name)
            part_images, part_targets = images.select(rows), targets[rows]
            if unit is shared:
                part = cams.select([shared_rows.index(i) for i in rows])
                t0 = _now(device)
                maps = run.method.from_cams(explainer, part_images, part_targets, part)
                per_image = shared_per_image + (_now(device) - t0) / len(rows)
            else:
                t0 = _now(device)
                maps = run.method(explainer, part_images, part_targets)
                per_image = (_now(device) - t0) / len(rows)
            out[run.method.name] = (rows, maps.float().cpu(), per_image)
    return out, shared_per_image


def _method_result(run: _MethodRun, num_planned: int, backbone) -> MethodResult:
    scores = run.scores.compute()
    per_image_s = run.seconds_per_image
    timing = Timing(
        ms_per_image=1000 * float(np.median(per_image_s)) if per_image_s else math.nan,
        ms_per_image_mean=1000 * float(np.mean(per_image_s)) if per_image_s else math.nan,
        ratio_to_forward=float(np.median(run.ratio_to_forward))
        if run.ratio_to_forward
        else math.nan,
        total_seconds=run.total_seconds,
        num_batches=len(per_image_s),
        per_batch_ms_per_image=[1000 * s for s in per_image_s],
    )
    settings = run.method.settings()
    layers = run.method.layer_names(backbone)
    if layers:
        settings["target_layers"] = layers
    return MethodResult(
        name=run.method.name,
        family=run.method.family,
        settings=settings,
        subset=run.names is not None and len(run.names) < num_planned,
        num_images=scores["metrics"]["num_images"],
        metrics=scores["metrics"],
        intervals=run.scores.intervals(),
        timing=timing,
        faithfulness=summarise_faithfulness(run.faithfulness),
        curves=scores["curves"],
        per_image=scores["per_image"],
    )
