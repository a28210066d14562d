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
   and every ``refined`` variant share one :meth:`~hrcam.HRCAM.generate_cams` per batch, whose
   time is charged to each (``high_res`` = generate_cams, ``refined`` = generate_cams + its
   refinement). A method's time per image is the median over batches of (batch seconds / its
   images in the batch); its ratio to the forward pass is the median over batches of the two
   per-image times' ratio, so both come from the same moments of a shared, noisy machine.
   Ours run under ``torch.inference_mode``; peers with autograd where they need it. Every
   method runs once, untimed, before the first batch (slow ones excepted).
5. **Streaming.** One batch at a time; only counts, curves and a few example maps are kept.
   An unreadable image or annotation is reported by name, skipped and counted.
"""

from __future__ import annotations

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
from ..io import ImageLoadError, image_to_tensor, load_image
from ..methods import CAMMethod, SharedCAMsMethod, create_method
from ..postprocess import RefineOptions
from .differences import paired_differences
from .faithfulness_scores import FAITHFULNESS_METRICS, score_faithfulness, summarise_faithfulness
from .scoring import LocalizationScores, ground_truth
from .subsets import evenly_spaced, split_names

__all__ = ["DEFAULT_METHODS", "evaluate_localization"]

logger = logging.getLogger("hrcam.evaluate")

DEFAULT_METHODS = (
    "low_res",
    "high_res",
    "refined",
    "gradcam",
    "gradcampp",
    "hirescam",
    "layercam",
    "layercam_fused",
    "eigencam",
)
TARGETS = ("predicted", "label")


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
    """One batch of readable images: names, inputs, ground truths and labels (target=label)."""

    names: list[str]
    x: torch.Tensor
    truths: list
    labels: list[int]


@dataclass
class _Tally:
    """What the run accumulates besides each method's scores."""

    forward_seconds: list[float] = field(default_factory=list)
    shared_seconds: list[float] = field(default_factory=list)  # the shared generate_cams
    shared_ratios: list[float] = field(default_factory=list)
    bad: list[dict[str, str]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    predicted: dict[int, int] = field(default_factory=dict)
    correct: int = 0
    scored: int = 0


def evaluate_localization(
    model,
    dataset,
    methods: Sequence[str | CAMMethod] = DEFAULT_METHODS,
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    split: str = "all",
    split_seed: int = 0,
    limit: int | None = None,
    max_images: Mapping[str, int] | None = None,
    slow_subset: int = 50,
    target: str = "predicted",
    refine_options: RefineOptions | None = None,
    mask_boxes: str = "components",
    num_thresholds: int = 100,
    faithfulness: int = 0,
    faithfulness_steps: int = 224,
    faithfulness_metrics: Sequence[str] = FAITHFULNESS_METRICS,
    num_examples: int = 4,
    warmup: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Score and time CAM methods on one model over a localization data set (see the module doc).

    Args:
        model: an :class:`hrcam.HRCAM` (``mode=paper`` maps need its expansion network).
        dataset: a :class:`hrcam.data.annotations.LocalizationDataset` (masks and/or boxes).
        methods: method specs (``"refined:merge=multiply"``) or :class:`CAMMethod` objects.
        batch_size: images per batch (Score-CAM still takes one image at a time).
        device: where the model runs (default: where it is).
        split: ``"all"``, ``"first-half"`` or ``"second-half"`` (seeded by ``split_seed``).
        limit: score only this many images of the split, evenly spaced.
        max_images: ``{method name or spec: N}``: run that method on N evenly spaced images
            (0 = all). Methods flagged slow default to ``slow_subset`` (0 = all).
        target: ``"predicted"`` (each image's predicted class) or ``"label"``.
        refine_options: base options of the ``refined`` specs.
        mask_boxes: ``"components"`` or ``"union"``: the boxes of a mask-only data set.
        num_thresholds: CAM thresholds of the threshold-swept metrics.
        faithfulness: score the maps' faithfulness on this many images (evenly spaced; each
            method on those it has maps for): ``faithfulness_metrics`` among deletion (and
            insertion, ``faithfulness_steps`` steps), drop (average drop, increase, gain), road
            and adcc (see :mod:`.faithfulness_scores`).
        num_examples: images kept (with every method's map) for the example figure.
        warmup: run each method once, untimed, before timing.
        progress: show a tqdm bar.

    Returns:
        A dict: ``run`` (settings, versions, threads, images), ``forward`` (timing of the
        backbone alone), ``methods`` (per method: ``metrics``, ``timing``, ``curves``,
        ``intervals``, ``per_image``, ``settings``, ``faithfulness``), ``subsets`` (every
        method's metrics on each capped method's images), ``differences`` (each method minus
        ``low_res``, or minus the first method, with paired 95 % intervals: :mod:`.differences`),
        ``bad_images`` and ``examples`` (arrays, for the figure).
        :func:`hrcam.evaluation.write_results` writes it out.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else model.device
    model = model.to(device).eval()
    plan = _plan(
        model,
        dataset,
        methods,
        names=_chosen_names(dataset, split, split_seed, limit),
        max_images=max_images or {},
        slow_subset=slow_subset,
        refine_options=refine_options,
        num_thresholds=num_thresholds,
        top1=target == "label",
        faithfulness=faithfulness,
        num_examples=num_examples,
    )
    settings = dict(
        split=split,
        split_seed=split_seed,
        limit=limit,
        target=target,
        batch_size=batch_size,
        device=str(device),
        mask_boxes=mask_boxes,
        num_thresholds=num_thresholds,
        faithfulness={
            "images": len(plan.faith_names),
            "steps": faithfulness_steps,
            "metrics": list(faithfulness_metrics),
        }
        if faithfulness
        else None,
    )
    tally = _Tally()
    started = time.perf_counter()
    _run_batches(model, dataset, plan, tally, settings, warmup=warmup, progress=progress)
    settings["seconds"] = time.perf_counter() - started
    return _assemble(model, dataset, plan, tally, settings)


def _run_batches(model, dataset, plan, tally, settings, *, warmup: bool, progress: bool) -> None:
    """Every batch: decode, warm up once, then :func:`_evaluate_batch`."""
    bar = _bar(len(plan.names), progress)
    warm = not warmup
    batch_size = settings["batch_size"]
    faith = settings["faithfulness"]
    faith = (faith["steps"], batch_size, tuple(faith["metrics"])) if faith else None
    try:
        for k, start in enumerate(range(0, len(plan.names), batch_size)):
            chunk = plan.names[start : start + batch_size]
            batch = _load_batch(dataset, chunk, model, plan, settings["mask_boxes"], tally)
            if batch is not None:
                batch.x = batch.x.to(settings["device"])
                if not warm:
                    _warm_up(model, plan.runs, batch.x[:1])
                    warm = True
                _evaluate_batch(model, plan, batch, tally, bar=bar, rotation=k, faith=faith)
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


def _plan(
    model,
    dataset,
    methods,
    *,
    names: list[str],
    max_images,
    slow_subset: int,
    refine_options,
    num_thresholds: int,
    top1: bool,
    faithfulness: int,
    num_examples: int,
) -> _Plan:
    """Build every method, check it can run on the model, and give it its images."""
    built = [create_method(m, refine_options=refine_options) for m in methods]
    seen = [m.name for m in built]
    if len(set(seen)) != len(seen):
        raise ValueError(f"a method is listed twice: {seen}")
    for m in built:
        m.check_model(model)
    caps = _resolve_caps(built, max_images, slow_subset)
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
    dataset, chunk, model, plan: _Plan, mask_boxes: str, tally: _Tally
) -> _Batch | None:
    """Decode a batch; an unreadable image or annotation is reported by name and skipped."""
    size = model.backbone.input_size
    tensors, truths, kept, labels = [], [], [], []
    for name in chunk:
        try:
            sample = dataset[plan.index_of[name]]
            image = load_image(sample.path)
            truth = ground_truth(sample, mask_boxes=mask_boxes)
        except (ImageLoadError, OSError, ValueError) as err:
            logger.warning("skipped %s: %s", name, err)
            tally.bad.append({"name": name, "error": str(err)})
            continue
        if plan.top1:
            labels.append(_check_label(sample, model))
        tensors.append(
            image_to_tensor(image, size=size, mean=model.backbone.mean, std=model.backbone.std)
        )
        truths.append(truth)
        kept.append(name)
    if not kept:
        return None
    return _Batch(kept, torch.cat(tensors), truths, labels)


def _evaluate_batch(model, plan: _Plan, batch: _Batch, tally: _Tally, *, bar, rotation, faith):
    """Targets, every method timed on the batch between two forward passes, then the scores."""
    device = batch.x.device
    t0 = _now(device)
    with torch.inference_mode():
        logits = model.backbone(batch.x)
    forward_before = _now(device) - t0
    pred = logits.argmax(dim=1).cpu()
    targets = torch.tensor(batch.labels, dtype=torch.long) if plan.top1 else pred.clone()
    correct = (pred == targets).tolist() if plan.top1 else [None] * len(batch.names)
    tally.correct += sum(bool(c) for c in correct) if plan.top1 else 0
    for p in pred.tolist():
        tally.predicted[p] = tally.predicted.get(p, 0) + 1
    targets_dev = targets.to(device)
    maps, shared = _run_methods(
        model, plan.runs, batch.x, targets_dev, batch.names, device, bar, rotation=rotation
    )
    t0 = _now(device)
    with torch.inference_mode():
        model.backbone(batch.x)
    forward = (forward_before + _now(device) - t0) / 2 / len(batch.names)
    _record_times(plan, tally, maps, shared, forward)
    _score_batch(model, plan, batch, tally, maps, targets, correct)
    for run in plan.runs:
        if run.method.name in maps:
            rows, cams, _ = maps[run.method.name]
            faith_rows = [r for r, i in enumerate(rows) if batch.names[i] in plan.faith_names]
            if faith_rows:
                index = torch.tensor([rows[r] for r in faith_rows], device=batch.x.device)
                steps, size, metrics = faith
                score_faithfulness(
                    model,
                    run.method,
                    batch.x[index],
                    cams[faith_rows],
                    targets_dev[index],
                    run.faithfulness,
                    steps=steps,
                    batch_size=max(size, 32),
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


def _score_batch(model, plan: _Plan, batch: _Batch, tally: _Tally, maps, targets, correct) -> None:
    """Each method's maps scored at the images' original sizes (outside every timer)."""
    examples = {
        i: {
            "name": n,
            "target": int(targets[i]),
            "target_name": model.class_names[int(targets[i])],
            "image": model.to_image(batch.x[i : i + 1]),
            "maps": {},
        }
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
                examples[i]["maps"][run.method.name] = cams[row].numpy()


def _assemble(model, dataset, plan: _Plan, tally: _Tally, settings: dict[str, Any]):
    """The results dict (see :func:`evaluate_localization`)."""
    forward_ms = (
        1000 * float(np.median(tally.forward_seconds)) if tally.forward_seconds else math.nan
    )
    return {
        "run": _run_record(model, dataset, plan, tally, settings),
        "forward": {
            "ms_per_image": forward_ms,
            "per_batch_ms_per_image": [1000 * s for s in tally.forward_seconds],
        },
        "generate_cams": {
            "ms_per_image": 1000 * float(np.median(tally.shared_seconds)),
            "ratio_to_forward": float(np.median(tally.shared_ratios)),
            "per_batch_ms_per_image": [1000 * s for s in tally.shared_seconds],
        }
        if tally.shared_seconds
        else None,
        "methods": {
            run.method.name: _method_result(run, len(plan.names), model.backbone)
            for run in plan.runs
        },
        "subsets": {
            str(n): {
                "num_images": len(names),
                "of_methods": [
                    r.method.name for r in plan.runs if plan.caps.get(r.method.name) == n
                ],
                "metrics": {r.method.name: r.on_subsets[n].compute()["metrics"] for r in plan.runs},
            }
            for n, names in plan.subset_names.items()
        },
        "differences": paired_differences(plan.runs, _reference(plan.runs)),
        "bad_images": tally.bad,
        "examples": tally.examples,
    }


def _reference(runs) -> str | None:
    """The method the others are compared with: ``low_res`` (the exact CAM) if run, else the first."""
    names = [run.method.name for run in runs]
    return "low_res" if "low_res" in names else (names[0] if names else None)


def _run_record(model, dataset, plan: _Plan, tally: _Tally, settings: dict[str, Any]):
    """The ``run`` entry: what was evaluated, how, on what machine."""
    return {
        "hrcam_version": __version__,
        "torch_version": torch.__version__,
        "model": dict(model.backbone.config),
        "expansion": model.expansion is not None,
        "high_res_mode": getattr(model, "high_res_mode", None),
        "cam_weights": getattr(model, "cam_weights", None),
        "dataset": str(getattr(dataset, "root", "")),
        "has_masks": plan.has_masks,
        "boxes": "csv" if getattr(dataset, "boxes_csv", None) else f"mask {settings['mask_boxes']}",
        **{k: settings[k] for k in ("split", "split_seed", "limit")},
        "num_planned": len(plan.names),
        "num_scored": tally.scored,
        "num_bad": len(tally.bad),
        **{k: settings[k] for k in ("target", "batch_size", "device")},
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "input_size": model.backbone.input_size,
        "num_thresholds": settings["num_thresholds"],
        "resize": "each map (at the input size) bilinearly resized to the image's original size, then scored",
        "timing": "per batch: forward alone, each method (order rotated per batch), forward again; "
        "ms/image = median over batches of seconds per image; ratio = median of per-batch ratios to "
        "the mean of the two forward passes",
        "faithfulness": settings["faithfulness"],
        "seconds": settings["seconds"],
        "top1_accuracy": tally.correct / tally.scored if plan.top1 and tally.scored else None,
        "predicted_classes": {
            model.class_names[k]: v
            for k, v in sorted(tally.predicted.items(), key=lambda kv: -kv[1])[:20]
        },
    }


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


def _check_label(sample, model) -> int:
    if sample.label is None:
        raise ValueError(
            f"target='label' needs a label for every image, and {sample.name} has none; add a "
            "labels.csv (file,label) or use target='predicted'"
        )
    if not 0 <= sample.label < model.num_classes:
        raise ValueError(
            f"{sample.name}: label {sample.label} is not a class of the model (0..{model.num_classes - 1}); "
            "labels must be the model's class indices for target='label'"
        )
    return int(sample.label)


def _warm_up(model, runs: Sequence[_MethodRun], x: torch.Tensor) -> None:
    """Run the forward pass and each fast method once, untimed (lazy initialisation, caches)."""
    with torch.inference_mode():
        targets = model.backbone(x).argmax(dim=1)
    for run in runs:
        if not run.method.slow:
            run.method(model, x, targets.clone())


def _run_methods(
    model, runs, x, targets, kept, device, bar, rotation: int
) -> tuple[dict[str, tuple[list[int], torch.Tensor, float]], float | None]:
    """Every method on its images of the batch: ``{name: (batch rows, maps, seconds per image)}``,
    and the seconds per image of the shared ``generate_cams`` (None when not run).

    The methods run in the given order rotated by ``rotation`` (so no method always runs first
    or last); ``high_res`` and the ``refined`` variants form one block, after one shared,
    timed ``generate_cams``.
    """
    # Methods whose CAMs are the model's own share one generate_cams; the others (another mode,
    # weights or flip) make theirs on their own, and their time says so.
    shared = [r for r in runs if isinstance(r.method, SharedCAMsMethod) and r.method.matches(model)]
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
                bar.set_postfix_str("generate_cams")
            index = torch.tensor(shared_rows, device=device)
            t0 = _now(device)
            with torch.inference_mode():
                cams = model.generate_cams(x[index], targets[index])
            shared_per_image = (_now(device) - t0) / len(shared_rows)
        for run in unit:
            rows = rows_of(run)
            if not rows:
                continue
            if bar is not None:
                bar.set_postfix_str(run.method.name)
            index = torch.tensor(rows, device=device)
            if unit is shared:
                pick = torch.tensor([shared_rows.index(i) for i in rows], device=device)
                part = cams.select(pick)
                t0 = _now(device)
                maps = run.method.from_cams(model, x[index], targets[index], part)
                per_image = shared_per_image + (_now(device) - t0) / len(rows)
            else:
                t0 = _now(device)
                maps = run.method(model, x[index], targets[index])
                per_image = (_now(device) - t0) / len(rows)
            out[run.method.name] = (rows, maps.float().cpu(), per_image)
    return out, shared_per_image


def _method_result(run: _MethodRun, num_planned: int, backbone) -> dict[str, Any]:
    scores = run.scores.compute()
    per_image_s = run.seconds_per_image
    timing = {
        "ms_per_image": 1000 * float(np.median(per_image_s)) if per_image_s else float("nan"),
        "ms_per_image_mean": 1000 * float(np.mean(per_image_s)) if per_image_s else float("nan"),
        "ratio_to_forward": float(np.median(run.ratio_to_forward))
        if run.ratio_to_forward
        else float("nan"),
        "total_seconds": run.total_seconds,
        "num_batches": len(per_image_s),
        "per_batch_ms_per_image": [1000 * s for s in per_image_s],
    }
    faith = summarise_faithfulness(run.faithfulness)
    settings = run.method.settings()
    layers = run.method.layer_names(backbone) if hasattr(run.method, "layer_names") else []
    if layers:
        settings["target_layers"] = layers
    return {
        "family": run.method.family,
        "settings": settings,
        "subset": run.names is not None and len(run.names) < num_planned,
        "num_images": scores["metrics"]["num_images"],
        "metrics": scores["metrics"],
        "intervals": run.scores.intervals(),
        "timing": timing,
        "faithfulness": faith,
        "curves": scores["curves"],
        "per_image": scores["per_image"],
    }
