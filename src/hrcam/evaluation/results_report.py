"""Write an evaluation's results: a Markdown table, a JSON file and figures, all atomically.

:func:`write_results` writes, into one folder:

- ``results.md`` — one row per method (PxAP, best pixel IoU and MaxBoxAccV2 with their 95 %
  intervals, GT-known loc., pointing game, energy pointing game, ms/image, × forward pass,
  images), the subset tables, localization and faithfulness side by side, every faithfulness
  metric, each method's paired difference from ``low_res``, the settings, and the images that
  were skipped;
- ``results.json`` — everything, curves and per-image records included (NaN → null);
- ``boxacc_vs_threshold.png`` — BoxAcc against the CAM threshold at each IoU, one curve per method;
- ``pr_curves.png`` — pixel precision-recall and mean pixel IoU against the threshold (masks only);
- ``examples.png`` — a few images with every method's map overlaid (:func:`hrcam.viz.overlay_cam`).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_save_json, atomic_write
from .results import RunResult

__all__ = ["markdown_table", "render_markdown", "write_results"]

# Column title, metric key, "higher is better".
_COLUMNS = (
    ("PxAP", "pxap"),
    ("best px IoU", "best_pixel_iou"),
    ("MaxBoxAccV2", "max_box_acc_v2"),
    ("GT-known loc", "gt_known_loc"),
    ("pointing", "pointing_game"),
    ("energy", "energy_pointing_game"),
)


def _pct(value) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.1f}"
    )


def _num(value, digits: int) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


# Columns shown with their 95 % interval in the main table.
_WITH_INTERVAL = ("pxap", "best_pixel_iou", "max_box_acc_v2")


def _with_interval(value, interval, fmt) -> str:
    """``81.6 (79.9–83.2)``: the value and its 95 % bootstrap interval."""
    text = fmt(value)
    if text == "–" or not interval or interval[0] is None:
        return text
    return f"{text} ({fmt(interval[0])}–{fmt(interval[1])})"


def markdown_table(results: RunResult) -> str:
    """The main table of ``results`` (from :func:`~.runner.evaluate_localization`) in Markdown.

    PxAP, best pixel IoU and MaxBoxAccV2 carry their 95 % bootstrap interval over images.
    """
    run = results.run
    head = "| method | " + " | ".join(c for c, _ in _COLUMNS) + " | ms/image | × forward | images |"
    rule = "|---|" + "---:|" * (len(_COLUMNS) + 3)
    lines = [head, rule]
    lines.append(
        "| *forward pass (backbone alone)* | "
        + " | ".join("" for _ in _COLUMNS)
        + f" | {_num(results.forward.ms_per_image, 1)} | 1.00 | {run.num_scored} |"
    )
    shared = results.cams
    if shared:
        lines.append(
            "| *explainer.cams (part of high_res, refined)* | "
            + " | ".join("" for _ in _COLUMNS)
            + f" | {_num(shared.ms_per_image, 1)} | {_num(shared.ratio_to_forward, 2)} | |"
        )
    for name, r in results.methods.items():
        m, t = r.metrics, r.timing
        intervals = r.intervals or {}
        label = f"{name} †" if r.subset else name
        n = f"{r.num_images} (subset)" if r.subset else str(r.num_images)
        cells = " | ".join(
            _with_interval(m.get(key), intervals.get(key), _pct)
            if key in _WITH_INTERVAL
            else _pct(m.get(key))
            for _, key in _COLUMNS
        )
        lines.append(
            f"| {label} | {cells} | {_num(t.ms_per_image, 1)} | {_num(t.ratio_to_forward, 2)} | {n} |"
        )
    return "\n".join(lines)


def _subset_tables(results: RunResult) -> list[str]:
    out = []
    for sub in results.subsets.values():
        out += [
            "",
            f"### Every method on the {sub.num_images} images of {', '.join(sub.of_methods)}",
            "",
            "| method | " + " | ".join(c for c, _ in _COLUMNS) + " |",
            "|---|" + "---:|" * len(_COLUMNS),
        ]
        for name, m in sub.metrics.items():
            out.append(f"| {name} | " + " | ".join(_pct(m.get(key)) for _, key in _COLUMNS) + " |")
    return out


def _logit(value) -> str:
    return _num(value, 2)


# Faithfulness columns: title, key, formatter, "higher is better".
_FAITH_COLUMNS = (
    ("deletion AUC ↓", "deletion_auc", _pct),
    ("insertion AUC ↑", "insertion_auc", _pct),
    ("A.D. ↓", "average_drop", _pct),
    ("A.I. ↑", "increase_in_confidence", _pct),
    ("A.G. ↑", "average_gain", _pct),
    ("ROAD MoRF ↓", "road_morf", _logit),
    ("ROAD LeRF ↑", "road_lerf", _logit),
    ("ROAD combined ↑", "road_combined", _logit),
    ("coherency ↑", "coherency", _pct),
    ("complexity ↓", "complexity", _pct),
    ("ADCC ↑", "adcc", _pct),
)

# The summary table the issue asks for: localization and faithfulness side by side.
_SUMMARY_COLUMNS = (
    ("PxAP", "pxap", _pct, "metrics"),
    ("best px IoU", "best_pixel_iou", _pct, "metrics"),
    ("MaxBoxAccV2", "max_box_acc_v2", _pct, "metrics"),
    ("ROAD combined", "road_combined", _logit, "faithfulness"),
    ("insertion", "insertion_auc", _pct, "faithfulness"),
    ("deletion", "deletion_auc", _pct, "faithfulness"),
    ("ADCC", "adcc", _pct, "faithfulness"),
)


def _faithfulness_rows(results: RunResult):
    return [(name, r) for name, r in results.methods.items() if r.faithfulness]


def _summary_table(results: RunResult) -> list[str]:
    """Localization and faithfulness in one table, every value with its 95 % interval."""
    rows = _faithfulness_rows(results)
    if not rows:
        return []
    out = [
        "",
        "### Localization and faithfulness",
        "",
        "Each value with its 95 % bootstrap interval over images (localization on all images, "
        "faithfulness on the faithfulness images). ROAD combined in logits, the rest in percent.",
        "",
        "| method | " + " | ".join(c for c, *_ in _SUMMARY_COLUMNS) + " | ms/image |",
        "|---|" + "---:|" * (len(_SUMMARY_COLUMNS) + 1),
    ]
    for name, r in rows:
        cells = []
        for _, key, fmt, where in _SUMMARY_COLUMNS:
            if where == "metrics":
                cells.append(_with_interval(r.metrics.get(key), r.intervals.get(key), fmt))
            else:
                f = r.faithfulness
                cells.append(_with_interval(f.values.get(key), f.intervals.get(key), fmt))
        out.append(f"| {name} | " + " | ".join(cells) + f" | {_num(r.timing.ms_per_image, 1)} |")
    return out


def _faithfulness_table(results: RunResult) -> list[str]:
    rows = _faithfulness_rows(results)
    if not rows:
        return []
    keys = [c for c in _FAITH_COLUMNS if any(c[1] in r.faithfulness.values for _, r in rows)]
    out = [
        "",
        "### Faithfulness",
        "",
        "Deletion and insertion AUC over the fraction of pixels changed "
        f"({results.run.faithfulness['steps']} steps, RISE's protocol, target probability); "
        "average drop, increase in confidence and average gain on the image times the map "
        "(Grad-CAM++'s protocol; gain: Opti-CAM's); ROAD (Rong et al. 2022) with noisy linear "
        "imputation at the 20/40/60/80th percentiles, target-logit change, combined = (LeRF − "
        "MoRF) / 2; coherency, complexity and ADCC (Poppi et al. 2021). Percent, ROAD in logits; "
        "↑ higher is better, ↓ lower.",
        "",
        "| method | " + " | ".join(c[0] for c in keys) + " | images |",
        "|---|" + "---:|" * (len(keys) + 1),
    ]
    for name, r in rows:
        f = r.faithfulness
        cells = " | ".join(fmt(f.values.get(key)) for _, key, fmt in keys)
        out.append(f"| {name} | {cells} | {f.num_images} |")
    return out


def _differences_table(results: RunResult) -> list[str]:
    diff = results.differences
    if not diff or not diff["methods"]:
        return []
    metrics = []
    for row in diff["methods"].values():
        metrics += [m for m in row if m not in metrics]
    if not metrics:
        return []
    fmt = {m: (_logit if m.startswith("road") else _pct) for m in metrics}
    out = [
        "",
        f"### Difference from `{diff['reference']}`",
        "",
        "Method minus reference, with the paired 95 % bootstrap interval (the same image resamples "
        "for both): an interval that excludes 0 is a difference the images support. Percentage "
        "points; ROAD in logits.",
        "",
        "| method | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for name, row in diff["methods"].items():
        cells = []
        for m in metrics:
            d = row.get(m)
            if d is None:
                cells.append("–")
                continue
            sign = "+" if d["difference"] > 0 else ""
            lo, hi = d["interval"]
            cells.append(f"{sign}{fmt[m](d['difference'])} ({fmt[m](lo)}, {fmt[m](hi)})")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def _format_settings(settings: dict[str, Any]) -> str:
    parts = []
    for key, value in settings.items():
        if key == "options":
            value = "(" + ", ".join(f"{k}={v}" for k, v in value.items()) + ")"
        elif isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _settings_lines(results: RunResult) -> list[str]:
    """One line per method; what every peer shares is said once."""
    out = ["", "### Method settings", ""]
    peers = [r.settings for r in results.methods.values() if r.family == "peer"]
    common = {}
    if len(peers) > 1:
        common = {k: v for k, v in peers[0].items() if all(k in p and p[k] == v for p in peers[1:])}
        out.append(f"- every peer: {_format_settings(common)}")
    for name, r in results.methods.items():
        own = {k: v for k, v in r.settings.items() if r.family != "peer" or k not in common}
        out.append(f"- `{name}` ({r.family}): {_format_settings(own)}")
    return out


def _expansion(run) -> str:
    upsampler = run.explainer.get("upsampler", {}).get("name")
    what = "with expansion network" if run.expansion else "no expansion network"
    return what + (f", {upsampler} high-res CAM" if upsampler else "")


def render_markdown(results: RunResult, *, command: str | None = None) -> str:
    """The whole ``results.md``."""
    run = results.run
    model = run.model.get("name", "?")
    size = "×".join(str(n) for n in run.input_size)
    lines = [
        f"# Localization: {Path(run.dataset).name or run.dataset} ({run.split}, {run.num_scored} images)",
        "",
    ]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        f"Model `{model}` ({_expansion(run)}); target: {run.target} class; "
        f"device {run.device}, {run.threads} torch thread(s) of {run.cpu_count} CPU(s); batch {run.batch_size}; "
        f"hrcam {run.hrcam_version}, torch {run.torch_version}.",
        "",
        "Scores in percent. Maps are computed at the network input size "
        f"({size}, the image stretched to it), resized bilinearly to each "
        "image's original size and min-max normalised, then scored: PxAP and best pixel IoU (per image, "
        "averaged) against the mask with the trimap boundary ignored; MaxBoxAccV2 (IoU 0.3/0.5/0.7) and "
        f"GT-known loc. (largest component above 20 %, IoU 0.5) against the boxes ({run.boxes}); "
        "pointing game (15 px) and energy pointing game against the mask. "
        "Time: per batch the backbone's forward pass alone, then each method on the same batch (order "
        "rotated per batch), then the forward pass again; ms/image is the median over batches, × forward "
        "the median of the per-batch ratios to the mean of the two forward passes. high_res and refined "
        "share one explainer.cams per batch, whose time is charged to each.",
        "",
        markdown_table(results),
    ]
    if any(r.subset for r in results.methods.values()):
        lines += [
            "",
            "† run on an evenly spaced subset of the images (see the subset table below).",
        ]
    if run.top1_accuracy is not None:
        lines += ["", f"Top-1 accuracy on the labels: {_pct(run.top1_accuracy)} %."]
    lines += _subset_tables(results)
    lines += _summary_table(results)
    lines += _faithfulness_table(results)
    lines += _differences_table(results)
    lines += _settings_lines(results)
    if results.bad_images:
        lines += ["", f"### Skipped images ({len(results.bad_images)})", ""]
        lines += [f"- `{b.name}`: {b.error}" for b in results.bad_images]
    lines += ["", f"Wall time {run.seconds:.0f} s.", ""]
    return "\n".join(lines)


def write_results(
    results: RunResult, output: str | os.PathLike, *, command: str | None = None
) -> dict[str, Path]:
    """Write ``results.md``, ``results.json`` and the figures into ``output`` (created); returns the paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": output / "results.md",
        "json": output / "results.json",
        "boxacc": output / "boxacc_vs_threshold.png",
    }
    if command:
        results.run.command = command
    atomic_save_json(results.to_json(), paths["json"])
    with atomic_write(paths["markdown"], "w") as f:
        f.write(render_markdown(results, command=command))
    _save_figure(_plot_box_acc(results), paths["boxacc"])
    if results.run.has_masks:
        paths["pr"] = output / "pr_curves.png"
        _save_figure(_plot_pr(results), paths["pr"])
    if results.examples:
        paths["examples"] = output / "examples.png"
        _save_figure(_plot_examples(results), paths["examples"])
    return paths


# -- figures --------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())


def _styles(results: RunResult) -> dict[str, dict[str, Any]]:
    from matplotlib import colormaps

    colours = colormaps["tab10" if len(results.methods) <= 10 else "tab20"]
    return {
        name: {
            "color": colours(i % colours.N),
            "linestyle": "-" if r.family == "ours" else "--",
            "linewidth": 1.6,
        }
        for i, (name, r) in enumerate(results.methods.items())
    }


def _plot_box_acc(results: RunResult):
    styles = _styles(results)
    first = next(iter(results.methods.values())).curves["box_acc"]
    deltas = list(first["iou_thresholds"])
    fig = _figure(4.2 * len(deltas), 3.8)
    axes = fig.subplots(1, len(deltas), squeeze=False)[0]
    for ax, (d, delta) in zip(axes, enumerate(deltas), strict=True):
        for name, r in results.methods.items():
            c = r.curves["box_acc"]
            label = f"{name} ({_pct(r.metrics['max_box_acc'].get(f'{delta:g}'))})"
            ax.plot(
                np.asarray(c["cam_thresholds"]),
                100 * np.asarray(c["box_acc"])[d],
                label=label,
                **styles[name],
            )
        ax.set_title(f"BoxAcc at IoU ≥ {delta:g}")
        ax.set_xlabel("CAM threshold")
        ax.set_ylabel("BoxAcc (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="method (MaxBoxAcc)", title_fontsize=7)
    return fig


def _plot_pr(results: RunResult):
    styles = _styles(results)
    fig = _figure(10, 4.2)
    pr_ax, iou_ax = fig.subplots(1, 2)
    for name, r in results.methods.items():
        curves = r.curves
        if "pr" not in curves:
            continue
        pr = curves["pr"]
        pr_ax.plot(
            np.asarray(pr["recall"]),
            np.asarray(pr["precision"]),
            label=f"{name} (PxAP {_pct(r.metrics['pxap'])})",
            **styles[name],
        )
        iou = curves["pixel_iou"]
        iou_ax.plot(
            np.asarray(iou["thresholds"]),
            100 * np.asarray(iou["mean_iou"]),
            label=f"{name} (best/img {_pct(r.metrics['best_pixel_iou'])})",
            **styles[name],
        )
    pr_ax.set(
        title="Pixel precision-recall",
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    iou_ax.set(
        title="Mean pixel IoU against the threshold",
        xlabel="CAM threshold",
        ylabel="mean IoU (%)",
        ylim=(0, 100),
    )
    for ax in (pr_ax, iou_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _plot_examples(results: RunResult):
    from ..viz import overlay_cam

    examples = results.examples
    methods = list(results.methods)
    cols = 1 + len(methods)
    fig = _figure(1.9 * cols, 2.0 * len(examples))
    axes = fig.subplots(len(examples), cols, squeeze=False)
    for row, example in enumerate(examples):
        image = example.image
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(f"{example.name}\n{example.target_name}", fontsize=7)
        for col, name in enumerate(methods, start=1):
            ax = axes[row, col]
            cam = example.maps.get(name)
            if cam is not None:
                ax.imshow(overlay_cam(image, cam))
            else:
                ax.text(
                    0.5,
                    0.5,
                    "not run\n(subset)",
                    ha="center",
                    va="center",
                    fontsize=7,
                    transform=ax.transAxes,
                )
            if row == 0:
                ax.set_title(name, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(wspace=0.03, hspace=0.25)
    return fig
