"""Scoring CAM methods on volumes with exact voxel masks: the 3-D counterpart of the runner.

Data: ``root/images/NAME.nii[.gz]`` volumes, ``root/masks/NAME.nii[.gz]`` (non-zero = object)
and optionally ``root/labels.csv`` (``file,label[,name]``), the layout ``hrcam data
lesion-volumes`` writes. Every map is brought to the volume's own size (trilinear) and scored
against its mask:

- **voxel PxAP** (Choe et al., CVPR 2020, over voxels) and the **best voxel IoU** per volume —
  both count voxels only, so a volume is scored as its voxels laid out in a 2-D array;
- **pointing**: the map's maximum voxel lies in the mask (Zhang et al., ECCV 2016, without
  their 15-pixel tolerance: a hit is exact);
- **deletion / insertion** AUC in 3-D (Petsiuk et al., RISE, BMVC 2018, as
  :func:`hrcam.metrics.deletion_insertion` does in 2-D): voxels ranked by the map, deleted to
  0 in the network's input space, or inserted into a Gaussian blur (σ = 5 voxels) of the
  volume, the target class's probability after each of ``steps`` equal steps.

Methods: hrcam's ``low_res``, ``high_res`` and ``refined`` maps (one :meth:`Explainer.explain`
call; ``refined:<option>=<value>,…`` sets refinement options, ``preset=paper`` the paper's) and
MONAI's ``monai_cam``, ``monai_gradcam`` and ``monai_gradcampp`` (``monai.visualize``, the
library's trilinear upsampling, on the same network's last feature maps; MONAI's default
post-processing, which maps the maximum to 0, is left out: the raw map is scored). Intervals are
95 % bootstrap intervals over volumes; the difference of the best hrcam map and the best MONAI
map is a paired interval on the same resamples.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.intervals import bootstrap_interval, mean_statistic, paired_difference_interval
from ..metrics.pixels import BestPixelIoU, PxAP
from .subsets import evenly_spaced, split_names

__all__ = [
    "VOLUME_METHODS",
    "VolumeSample",
    "deletion_insertion_volumes",
    "evaluate_volumes",
    "is_volume_dataset",
    "read_volume_dataset",
    "volume_results_markdown",
    "write_volume_results",
]

HRCAM_METHODS = ("low_res", "high_res", "refined")
MONAI_METHODS = ("monai_cam", "monai_gradcam", "monai_gradcampp")
VOLUME_METHODS = HRCAM_METHODS + MONAI_METHODS
_NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True)
class VolumeSample:
    """One annotated volume: its file, its mask file and its class (index, name) if known."""

    name: str
    image: Path
    mask: Path
    label: int | None = None
    label_name: str | None = None


def _stem(path: Path) -> str | None:
    lower = path.name.lower()
    suffix = next((s for s in _NIFTI if lower.endswith(s)), None)
    return None if suffix is None or path.name.startswith(".") else path.name[: -len(suffix)]


def _by_stem(folder: Path) -> dict[str, Path]:
    return {
        stem: p for p in sorted(folder.iterdir()) if p.is_file() and (stem := _stem(p)) is not None
    }


def is_volume_dataset(root: str | Path) -> bool:
    """Whether ``root`` has ``images/`` holding NIfTI volumes and a ``masks/`` folder."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    return images.is_dir() and masks.is_dir() and bool(_by_stem(images))


def read_volume_dataset(root: str | Path) -> list[VolumeSample]:
    """The annotated volumes of ``root`` (layout in the module doc), sorted by name.

    Raises:
        ValueError: no volumes, or a volume without a mask (named).
    """
    root = Path(root)
    images, masks = _by_stem(root / "images"), _by_stem(root / "masks")
    if not images:
        raise ValueError(f"{root}/images: no NIfTI volumes (.nii, .nii.gz)")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise ValueError(
            f"{root}/masks: no mask for {len(missing)} volume(s), e.g. {', '.join(missing[:3])}"
        )
    labels: dict[str, tuple[int, str | None]] = {}
    labels_csv = root / "labels.csv"
    if labels_csv.is_file():
        with open(labels_csv, newline="") as f:
            for row in csv.DictReader(f):
                stem = _stem(Path(row["file"])) or Path(row["file"]).stem
                labels[stem] = (int(row["label"]), row.get("name") or None)
    return [
        VolumeSample(name, images[name], masks[name], *labels.get(name, (None, None)))
        for name in sorted(images)
    ]


def _read_mask(sample: VolumeSample, shape: tuple[int, ...]) -> np.ndarray:
    from ..medical import read_scan

    mask = read_scan(sample.mask).array != 0
    if mask.shape != shape:
        raise ValueError(f"{sample.mask}: mask of shape {mask.shape} for a volume of shape {shape}")
    return mask


# ------------------------------------------------------------------------------ methods


def _monai_method(name: str, backbone: torch.nn.Module, layer: str):
    from ..methods import MissingDependencyError

    try:
        from monai.visualize import CAM, GradCAM, GradCAMpp
    except ImportError:
        raise MissingDependencyError(
            f"{name} needs MONAI: pip install 'hrcam[medical]' (or pip install monai)"
        ) from None
    identity: Callable = lambda x: x  # noqa: E731 - MONAI's default maps the maximum to 0
    if name == "monai_cam":
        return CAM(backbone, target_layers=layer, fc_layers="fc", postprocessing=identity)
    cls = GradCAM if name == "monai_gradcam" else GradCAMpp
    return cls(backbone, target_layers=layer, postprocessing=identity)


def _feature_layer(backbone: torch.nn.Module) -> str:
    """The name of the module whose output is the CAM's ``A`` (for MONAI's hooks)."""
    if isinstance(getattr(backbone, "final_relu", None), torch.nn.Module):
        return "final_relu"
    raise ValueError(
        "MONAI's CAM methods need the layer whose output is the network's last feature maps; "
        f"{type(backbone).__name__} has no final_relu module"
    )


def _parse_spec(spec: str):
    """``(name, refine options or None)`` of a volume method spec; a ``refined`` spec's options
    are parsed and checked as ``hrcam evaluate`` parses them for images."""
    from ..methods import create_method
    from ..methods.base import parse_method_spec

    name, params = parse_method_spec(spec)
    if name not in VOLUME_METHODS:
        raise ValueError(
            f"unknown method {name!r} for volumes; choose among {', '.join(VOLUME_METHODS)}"
        )
    if params and name != "refined":
        raise ValueError(f"{spec!r}: only refined takes options on volumes")
    if not params:
        return name, None
    method = create_method(spec)
    if (method.mode, method.weights, method.flip) != (None, None, None):
        raise ValueError(f"{spec!r}: on volumes refined takes refinement options only")
    return name, method.options


# ------------------------------------------------------------------------------ faithfulness


def _blur_volume(x: torch.Tensor, sigma: float = 5.0, kernel_size: int = 11) -> torch.Tensor:
    """A separable Gaussian blur of ``(B, C, D, H, W)`` along its three axes (edges replicated)."""
    half = kernel_size // 2
    t = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - half
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = kernel_size
        weight = kernel.view(1, 1, *shape).repeat(channels, 1, 1, 1, 1)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = half
        x = F.conv3d(F.pad(x, pad, mode="replicate"), weight, groups=channels)
    return x


@torch.no_grad()
def deletion_insertion_volumes(
    model: Callable[[torch.Tensor], torch.Tensor],
    volume: torch.Tensor,
    saliency: torch.Tensor,
    target: int,
    *,
    steps: int = 32,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Deletion and insertion AUC of one volume (RISE's protocol in 3-D; module doc).

    Args:
        model: ``(N, C, D, H, W) -> (N, classes)`` logits.
        volume: ``(1, C, D, H, W)``, normalised for ``model``.
        saliency: ``(D, H, W)`` map at the volume's size.
        target: the class whose probability is tracked.

    Returns:
        ``{"deletion_auc", "insertion_auc", "deletion", "insertion"}``: the AUCs (trapezoid over
        the fraction of voxels) and the ``(steps + 1,)`` curves.

    Example::

        >>> model = lambda x: torch.stack([x.mean(dim=(1, 2, 3, 4)), -x.mean(dim=(1, 2, 3, 4))], 1)
        >>> out = deletion_insertion_volumes(model, torch.ones(1, 1, 2, 2, 2), torch.rand(2, 2, 2),
        ...                                  0, steps=4)
        >>> bool(out["deletion"][0] > out["deletion"][-1])
        True
    """
    n = saliency.numel()
    steps = max(1, min(int(steps), n))
    order = torch.argsort(saliency.reshape(-1).float(), descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=order.device)
    rank = rank.view(1, 1, *saliency.shape)
    counts = [k * n // steps for k in range(steps + 1)]
    fraction = np.array(counts, dtype=np.float64) / n
    blurred = _blur_volume(volume)
    out: dict[str, Any] = {}
    for mode, start, finish in (
        ("deletion", volume, torch.zeros_like(volume)),
        ("insertion", blurred, volume),
    ):
        probabilities = []
        for first in range(0, steps + 1, batch_size):
            chunk = counts[first : first + batch_size]
            states = torch.cat([torch.where(rank < c, finish, start) for c in chunk])
            p = torch.softmax(model(states).float(), dim=1)[:, target]
            probabilities.append(p.cpu().numpy().astype(np.float64))
        curve = np.concatenate(probabilities)
        out[mode] = curve
        out[f"{mode}_auc"] = float(np.trapezoid(curve, fraction))
    return out


# ------------------------------------------------------------------------------ the run


def _to_shape(maps: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``(d, h, w)`` map → ``shape`` (trilinear, half-voxel centres), float32 on the CPU."""
    maps = maps.detach().float()
    if tuple(maps.shape) != tuple(shape):
        maps = F.interpolate(maps[None, None], size=shape, mode="trilinear", align_corners=False)[
            0, 0
        ]
    return maps.cpu()


def evaluate_volumes(
    explainer,
    root: str | Path,
    methods: Sequence[str] = VOLUME_METHODS,
    *,
    split: str = "all",
    split_seed: int = 0,
    limit: int | None = None,
    target: str = "predicted",
    faithfulness: int = 0,
    faithfulness_steps: int = 32,
    examples: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``methods`` on the annotated volumes of ``root`` (see the module doc).

    Args:
        explainer: an :class:`~hrcam.Explainer` of a network of volumes.
        methods: specs among :data:`VOLUME_METHODS`; ``refined:k=v,…`` sets refinement options.
        split, split_seed, limit: which volumes (:func:`split_names`, then ``limit`` evenly
            spaced ones).
        target: explain the ``"predicted"`` class or the ``"label"`` (labels.csv).
        faithfulness: deletion/insertion on this many evenly spaced volumes (0: none).
        examples: keep, for this many evenly spaced volumes, the slice through the mask's
            centre of the volume, the mask and every map (``results["examples"]``, arrays; the
            picture :func:`write_volume_results` draws).

    Returns:
        A JSON-ready dict: ``run`` (counts, accuracy, split), ``methods`` (per method: voxel
        PxAP, best IoU, pointing, their intervals, ms per volume (hrcam's three maps come from one
        explain call, the time of each), and deletion/insertion when
        asked), ``comparison`` (best hrcam map − best MONAI map, PxAP points, paired interval)
        and ``bad`` (volumes that could not be read, with why).
    """
    from tqdm.auto import tqdm

    from ..medical import ScanError, read_scan

    if getattr(explainer, "spatial_dims", 2) != 3:
        raise ValueError("the model is a network of images; volumes need a network of volumes")
    if target not in ("predicted", "label"):
        raise ValueError(f"target must be 'predicted' or 'label', got {target!r}")
    runner = _Methods(explainer, [(spec, *_parse_spec(spec)) for spec in dict.fromkeys(methods)])
    samples = {s.name: s for s in read_volume_dataset(root)}
    names = evenly_spaced(split_names(list(samples), split, seed=split_seed), limit)
    faithful = set(evenly_spaced(names, faithfulness)) if faithfulness else set()
    shown = set(evenly_spaced(names, examples)) if examples else set()
    tally = _Tally(runner.specs)
    for name in tqdm(names, desc="evaluate volumes", unit="vol", disable=not progress):
        sample = samples[name]
        try:
            scan = read_scan(sample.image)
            if scan.array.ndim != 3:
                raise ScanError(f"{sample.image}: a 2-D image, not a volume")
            mask = _read_mask(sample, scan.array.shape)
        except (ScanError, ValueError, OSError) as err:
            tally.bad.append({"name": name, "error": str(err).splitlines()[0]})
            continue
        batch = explainer.prepare([scan])
        predicted = int(explainer.logits(batch.x).argmax(1)[0])
        tally.count_label(sample.label, predicted)
        goal = sample.label if target == "label" and sample.label is not None else predicted
        maps = runner.maps(batch, goal, tuple(scan.array.shape), tally.seconds)
        tally.score(maps, mask)
        if name in faithful:
            tally.faithfulness(maps, explainer.logits, batch.x, goal, faithfulness_steps)
        if name in shown:
            tally.keep_example(sample, scan, mask, maps)
    run = {
        "data": str(root),
        "split": split,
        "split_seed": split_seed,
        "target": target,
        "faithfulness_volumes": len(faithful),
        "faithfulness_steps": faithfulness_steps,
        "threads": torch.get_num_threads(),
    }
    return tally.results(run, ours=runner.ours, peers=runner.peers)


class _Methods:
    """The methods of one evaluation, built once: hrcam's explainers (one per set of refinement
    options) and MONAI's CAM objects, hooked on the network's last feature maps."""

    def __init__(self, explainer, parsed) -> None:
        self.specs = [spec for spec, _, _ in parsed]
        self.method = {spec: name for spec, name, _ in parsed}
        self.ours = [spec for spec, name, _ in parsed if name in HRCAM_METHODS]
        self.peers = [spec for spec, name, _ in parsed if name in MONAI_METHODS]
        backbone = explainer.backbone.eval()
        self.monai = {}
        for name in dict.fromkeys(self.method[spec] for spec in self.peers):
            self.monai[name] = _monai_method(name, backbone, _feature_layer(backbone))
        self.variants = {
            spec: explainer if options is None else explainer.replace(refine_options=options)
            for spec, name, options in parsed
            if name in HRCAM_METHODS
        }

    def maps(self, batch, goal: int, shape: tuple[int, ...], seconds: dict[str, float]):
        """Every method's map of class ``goal`` at ``shape``; adds each one's time to ``seconds``
        (hrcam's three maps come from one explain call: each is charged the call's time)."""
        maps: dict[str, torch.Tensor] = {}
        explained: dict[int, tuple] = {}
        for spec in self.specs:
            t0 = time.perf_counter()
            method = self.method[spec]
            if spec in self.variants:
                key = id(self.variants[spec])
                if key not in explained:
                    explanation = self.variants[spec].explain(batch, [goal])
                    explained[key] = (explanation, time.perf_counter() - t0)
                explanation, took = explained[key]
                seconds[spec] += took
                result = getattr(explanation, method)[0]
            else:
                with torch.enable_grad():
                    x = batch.x.detach().clone().requires_grad_(True)
                    result = self.monai[method](x, class_idx=torch.tensor([goal]))[0, 0]
                seconds[spec] += time.perf_counter() - t0
            maps[spec] = _to_shape(result, shape)
        return maps


class _Tally:
    """What an evaluation accumulates over volumes, and its summary."""

    def __init__(self, specs: Sequence[str]) -> None:
        self.pxap = {spec: PxAP() for spec in specs}
        self.iou = {spec: BestPixelIoU() for spec in specs}
        self.pointing: dict[str, list[float]] = {spec: [] for spec in specs}
        self.seconds: dict[str, float] = dict.fromkeys(specs, 0.0)
        self.faith = {spec: {"deletion_auc": [], "insertion_auc": []} for spec in specs}
        self.bad: list[dict[str, str]] = []
        self.examples: list[dict[str, Any]] = []
        self.scored = self.labelled = self.correct = 0

    def count_label(self, label: int | None, predicted: int) -> None:
        if label is not None:
            self.labelled += 1
            self.correct += int(predicted == label)

    def score(self, maps: dict[str, torch.Tensor], mask: np.ndarray) -> None:
        flat_mask = mask.reshape(mask.shape[0], -1)  # voxel metrics: any 2-D layout will do
        for spec, cam in maps.items():
            values = cam.numpy().reshape(flat_mask.shape)
            self.pxap[spec].update(values, flat_mask)
            self.iou[spec].update(values, flat_mask)
            self.pointing[spec].append(float(mask.reshape(-1)[int(cam.argmax())]))
        self.scored += 1

    def faithfulness(self, maps, model, x: torch.Tensor, goal: int, steps: int) -> None:
        for spec, cam in maps.items():
            curves = deletion_insertion_volumes(
                model, x, _to_shape(cam, tuple(x.shape[2:])), goal, steps=steps
            )
            for key in ("deletion_auc", "insertion_auc"):
                self.faith[spec][key].append(curves[key])

    def keep_example(self, sample: VolumeSample, scan, mask: np.ndarray, maps) -> None:
        centre = int(round(float(np.argwhere(mask)[:, 0].mean()))) if mask.any() else 0
        label = sample.label_name or ("" if sample.label is None else str(sample.label))
        self.examples.append(
            {
                "name": sample.name,
                "label": label,
                "image": scan.windowed()[centre],
                "mask": mask[centre],
                "maps": {spec: cam[centre].numpy() for spec, cam in maps.items()},
            }
        )

    def _entry(self, spec: str) -> dict[str, Any]:
        n = self.scored
        per_volume = (
            ("best_voxel_iou", self.iou[spec].per_image_best),
            ("pointing", self.pointing[spec]),
        )
        entry = {
            "voxel_pxap": 100 * self.pxap[spec].compute()["pxap"],
            "voxel_pxap_interval": [
                100 * v for v in bootstrap_interval(self.pxap[spec].bootstrap_statistic(), n)
            ],
        }
        for key, values in per_volume:
            entry[key] = 100 * float(np.mean(values))
            entry[f"{key}_interval"] = [
                100 * v for v in bootstrap_interval(mean_statistic(np.array(values)), len(values))
            ]
        entry["ms_per_volume"] = 1000 * self.seconds[spec] / n
        for key, values in self.faith[spec].items():
            if values:
                entry[key] = float(np.mean(values))
                entry[f"{key}_interval"] = list(
                    bootstrap_interval(mean_statistic(np.array(values)), len(values))
                )
        return entry

    def results(self, run: dict[str, Any], *, ours: list[str], peers: list[str]) -> dict:
        run = {
            **run,
            "num_scored": self.scored,
            "num_bad": len(self.bad),
            "accuracy": self.correct / self.labelled if self.labelled else None,
            "num_labelled": self.labelled,
        }
        methods = {spec: self._entry(spec) for spec in self.pxap} if self.scored else {}
        results: dict[str, Any] = {
            "run": run,
            "methods": methods,
            "bad": self.bad,
            "examples": self.examples,
        }
        if methods and ours and peers:
            best_ours = max(ours, key=lambda s: methods[s]["voxel_pxap"])
            best_peer = max(peers, key=lambda s: methods[s]["voxel_pxap"])
            low, high = paired_difference_interval(
                self.pxap[best_ours].bootstrap_statistic(),
                self.pxap[best_peer].bootstrap_statistic(),
                self.scored,
            )
            results["comparison"] = {
                "ours": best_ours,
                "peer": best_peer,
                "pxap_difference": methods[best_ours]["voxel_pxap"]
                - methods[best_peer]["voxel_pxap"],
                "pxap_difference_interval": [100 * low, 100 * high],
            }
        return results


def _interval(entry: dict, key: str, digits: int = 1) -> str:
    value = entry.get(key)
    if value is None:
        return "–"
    low, high = entry.get(f"{key}_interval", (math.nan, math.nan))
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def volume_results_markdown(results: dict[str, Any]) -> str:
    """The results of :func:`evaluate_volumes` as a Markdown table and a summary line."""
    run = results["run"]
    faith = any("deletion_auc" in e for e in results["methods"].values())
    head = "| method | voxel PxAP | best voxel IoU | pointing | ms/volume |"
    rule = "|---|---|---|---|---|"
    if faith:
        head += " deletion AUC ↓ | insertion AUC ↑ |"
        rule += "---|---|"
    lines = [head, rule]
    for spec, e in results["methods"].items():
        row = (
            f"| {spec} | {_interval(e, 'voxel_pxap')} | {_interval(e, 'best_voxel_iou')} | "
            f"{_interval(e, 'pointing')} | {e['ms_per_volume']:.0f} |"
        )
        if faith:
            row += (
                f" {_interval(e, 'deletion_auc', digits=3)} |"
                f" {_interval(e, 'insertion_auc', digits=3)} |"
            )
        lines.append(row)
    accuracy = run["accuracy"]
    lines.append("")
    lines.append(
        f"{run['num_scored']} volumes ({run['split']}), "
        + (f"accuracy {100 * accuracy:.1f} %, " if accuracy is not None else "")
        + f"{run['num_bad']} unreadable; intervals: 95 % bootstrap over volumes"
        + (
            f"; deletion/insertion on {run['faithfulness_volumes']} volumes, "
            f"{run['faithfulness_steps']} steps"
            if faith
            else ""
        )
        + "."
    )
    comparison = results.get("comparison")
    if comparison:
        low, high = comparison["pxap_difference_interval"]
        lines.append(
            f"{comparison['ours']} − {comparison['peer']}: "
            f"{comparison['pxap_difference']:+.1f} voxel-PxAP points [{low:+.1f}, {high:+.1f}]."
        )
    return "\n".join(lines)


def write_volume_results(results: dict[str, Any], out: str | Path, *, command: str | None = None):
    """Write ``results.md``, ``results.json`` and ``examples.png`` (an axial slice through each
    example's mask centre: the volume with the mask's outline, then every method's map over
    it) into ``out``, each atomically. Returns their paths."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils import atomic_save_json, atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {k: v for k, v in results.items() if k != "examples"}
    if command:
        record["command"] = command
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    atomic_save_json(json.loads(json.dumps(record, default=float)), paths["json"])
    text = "# Localization on volumes\n\n"
    if command:
        text += f"`{command}`\n\n"
    text += volume_results_markdown(results) + "\n"
    with atomic_write(paths["markdown"], "w") as f:
        f.write(text)
    kept = results.get("examples") or []
    if kept:
        specs = list(kept[0]["maps"])
        rows, cols = len(kept), 1 + len(specs)
        fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows), squeeze=False)
        for r, example in enumerate(kept):
            panels = [("volume", None), *((spec, example["maps"][spec]) for spec in specs)]
            for c, (title, cam) in enumerate(panels):
                ax = axes[r, c]
                ax.imshow(example["image"], cmap="gray", vmin=0, vmax=1)
                if cam is not None:
                    span = float(cam.max() - cam.min())
                    scaled = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
                    ax.imshow(scaled, cmap="jet", alpha=0.45, vmin=0, vmax=1)
                ax.contour(example["mask"], levels=[0.5], colors="white", linewidths=0.8)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(title, fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{example['name']} {example['label']}", fontsize=7)
        fig.tight_layout()
        paths["examples"] = out / "examples.png"
        with atomic_write(paths["examples"]) as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)
    return paths
