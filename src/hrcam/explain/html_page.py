"""The HTML report of an ``hrcam explain`` run: one self-contained page, opened from the file system.

The page links the run's pictures by relative paths and needs no server, script or network:
open ``index.html`` in any browser, or copy the whole output folder elsewhere. Every thumbnail
sits in a fixed box (letterboxed), so no image, however long or thin, stretches the page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..utils import atomic_write

__all__ = ["write_report"]

_CSS = """
:root { --fg:#1d232b; --muted:#5b6675; --line:#d9dee5; --bar:#3b7ddd; --bad:#b3261e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1500px; padding: 24px; background: #f7f8fa; }
h1 { font-size: 22px; margin: 0 0 4px; }
.meta { color: var(--muted); margin-bottom: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
        margin: 0 0 16px; }
.card h2 { font-size: 15px; margin: 0 0 10px; word-break: break-all; }
.row { display: grid; grid-template-columns: 260px repeat(5, minmax(0, 1fr)); gap: 12px; align-items: start; }
figure { margin: 0; }
figure img { width: 100%; aspect-ratio: 1 / 1; object-fit: contain; display: block;
             border-radius: 4px; background: #eee; }
.stack { display: grid; place-items: center; aspect-ratio: 1 / 1; background: #eee;
         border-radius: 4px; overflow: hidden; }
.stack > span { position: relative; display: block; }
.stack img { position: absolute; inset: 0; width: 100%; height: 100%; aspect-ratio: auto;
             object-fit: fill; border-radius: 0; background: none; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 3px; text-align: center; }
table.top5 { width: 100%; border-collapse: collapse; }
table.top5 td { padding: 2px 4px; vertical-align: middle; }
table.top5 td.p { width: 64px; text-align: right; font-variant-numeric: tabular-nums; }
.bar { height: 8px; background: var(--bar); border-radius: 4px; min-width: 1px; }
tr.target td { font-weight: 600; }
.links a { margin-right: 10px; font-size: 12px; }
.failed { border-color: var(--bad); }
.failed li { color: var(--bad); word-break: break-all; }
.legend { display: flex; align-items: center; gap: 8px; color: var(--muted); font-size: 12px; }
.legend .scale { width: 160px; height: 10px; border-radius: 3px; }
@media (max-width: 1000px) { .row { grid-template-columns: 1fr 1fr; } }
.zoom { display: none; position: fixed; inset: 0; z-index: 10; background: rgba(20,24,30,.86);
        align-items: center; justify-content: center; flex-direction: column; gap: 8px; }
.zoom:target { display: flex; }
.zoom > span { position: relative; display: block; max-width: 92vw; max-height: 84vh; }
.zoom img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: fill; }
.zoom p { color: #fff; margin: 0; font-size: 13px; }
.zoom a.close { position: absolute; inset: 0; cursor: zoom-out; }
.zoom a.file { color: #cfe0ff; position: relative; }
"""


def _href(path: str) -> str:
    return quote(path.replace(os.sep, "/"))


def _figure(files: dict[str, str], key: str, caption: str, value_range=None) -> str:
    if key not in files:
        return f"<figure><figcaption>{html.escape(caption)}: not produced</figcaption></figure>"
    src = _href(files[key])
    return (
        f'<figure><a href="{src}"><img loading="lazy" src="{src}" alt="{html.escape(caption)}"></a>'
        f"<figcaption>{html.escape(caption)}{_range_text(value_range)}</figcaption></figure>"
    )


def _range_text(value_range) -> str:
    """The raw range a map's colours stand for, under its caption ('' when unknown)."""
    if not value_range:
        return ""
    return f'<br><span class="meta">range [{value_range[0]:.3g}, {value_range[1]:.3g}]</span>'


def _cam_figure(
    result: dict[str, Any], name: str, range_key: str, caption: str, opacity: float
) -> str:
    """One CAM over the image: the coloured map (``cam_<name>``, at the network's size)
    stretched over the image and blended by the browser at ``opacity``, both in a box of the
    image's shape inside the square thumbnail; the link opens the blended file where one was
    written. Runs that wrote only the blended overlays (``overlay_<name>``) show those.
    ``range_key``: the map's entry in the result's ``ranges``."""
    files = result.get("files", {})
    value_range = (result.get("ranges") or {}).get(range_key)
    cam, overlay = files.get(f"cam_{name}"), files.get(f"overlay_{name}")
    if cam is None or "image" not in files:
        return _figure(files, f"overlay_{name}", caption, value_range)
    width, height = result.get("size") or (1, 1)
    fit = "width:100%" if width >= height else "height:100%"
    layers = (
        f'<img loading="lazy" src="{_href(files["image"])}" alt="">'
        f'<img loading="lazy" src="{_href(cam)}" alt="{html.escape(caption)}" '
        f'style="opacity:{opacity:.3g}">'
    )
    zoom_id = f"zoom-{result['name']}-{name}"
    # The large view: the same two layers at the photograph's own aspect, as large as the
    # window allows (up to twice the display image), opened by a click, closed by another.
    scale = min(2.0, 896 / max(width, height, 1))
    big = f"width:min(92vw, 84vh * {width}/{height}, {width * scale:.0f}px);aspect-ratio:{width}/{height}"
    link = f'<a class="file" href="{_href(overlay)}">blended picture</a>' if overlay else ""
    return (
        f'<figure><a class="stack" href="#{html.escape(zoom_id)}">'
        f'<span style="aspect-ratio:{width}/{height};{fit}">{layers}</span></a>'
        f"<figcaption>{html.escape(caption)}{_range_text(value_range)}</figcaption></figure>"
        f'<div class="zoom" id="{html.escape(zoom_id)}"><a class="close" href="#{html.escape(result["name"])}" '
        f'aria-label="close"></a><span style="{big}">{layers}</span>'
        f"<p>{html.escape(result.get('source', ''))}: {html.escape(caption)} at opacity "
        f"{opacity:.2g}{_range_text(value_range).replace('<br>', ' · ')} {link}</p></div>"
    )


def _card(result: dict[str, Any], opacity: float) -> str:
    files = result.get("files", {})
    target = result.get("target") or {}
    rows = []
    for entry in result.get("top5", []):
        p = float(entry["probability"])
        cls = ' class="target"' if entry["index"] == target.get("index") else ""
        rows.append(
            f"<tr{cls}><td>{html.escape(str(entry['name']))}</td>"
            f'<td style="width:40%"><div class="bar" style="width:{p * 100:.1f}%"></div></td>'
            f'<td class="p">{p:.1%}</td></tr>'
        )
    if target and target.get("index") not in [e["index"] for e in result.get("top5", [])]:
        rows.append(
            f'<tr class="target"><td>{html.escape(str(target["name"]))} (target)</td><td></td>'
            f'<td class="p">{float(target["probability"]):.1%}</td></tr>'
        )
    links = "".join(
        f'<a href="{_href(files[k])}">{label}</a>'
        for k, label in (
            ("pipeline", "pipeline figure"),
            ("maps", "raw maps (.npz)"),
            ("nifti_low", "low-res CAM (.nii.gz)"),
            ("nifti_high", "high-res CAM (.nii.gz)"),
            ("nifti_refined", "refined CAM (.nii.gz)"),
        )
        if k in files
    )
    size, shape = result.get("size"), result.get("shape")
    if shape and len(shape) == 3:
        size_text = (
            f" · volume of {'×'.join(map(str, shape))} voxels: three slices through the "
            "refined CAM's maximum"
        )
    else:
        size_text = f" · {size[0]}×{size[1]} px" if size else ""
    cam_of = f"CAMs of “{html.escape(str(target.get('name', '')))}”" if target else ""
    return f"""
<section class="card" id="{html.escape(result["name"])}">
  <h2>{html.escape(result["source"])}<span class="meta">{size_text}</span></h2>
  <div class="row">
    <div><table class="top5">{"".join(rows)}</table><p class="meta">{cam_of}</p><div class="links">{links}</div></div>
    {_figure(files, "image", "image")}
    {_cam_figure(result, "low", "low_res", "low-res CAM", opacity)}
    {_cam_figure(result, "high", "high_res", "high-res CAM", opacity)}
    {_cam_figure(result, "refined", "refined", "refined CAM", opacity)}
    {_figure(files, "masked", "masked image")}
  </div>
</section>"""


_HIGH_RES_TEXT = {
    "paper": "the same weights over the expansion network's full-resolution maps (the paper's)",
    "guided": "the low-res CAM upsampled coarse to fine, each pixel a mix of its neighbouring "
    "cells weighted by distance and by colour likeness (joint-bilateral guided upsampling)",
    "boundary": "the guided upsampling, spread by a random walk that object boundaries stop "
    "(found by the expansion network in the classifier's own features) so that it fills the "
    "object up to its outline, and averaged with the guided map, which keeps its peak on the "
    "most discriminative part",
    "hed": "the guided upsampling, then spread by a random walk that HED's object boundaries "
    "stop, so the map fills the object up to its outline",
}

_STATE_TEXT = {
    "running": " · <strong>in progress</strong> (this page is rewritten as images finish)",
    "interrupted": " · <strong>interrupted</strong>: run the same command with --skip-existing "
    "to explain the rest",
    "finished": " · rebuilt from the files on disk (hrcam explain --finish)",
    "complete": "",
}


def _legend(outputs: dict[str, Any]) -> str:
    """The colour scale of the maps, from the run's colour map, and the overlays' opacity."""
    from ..viz import DEFAULT_CMAP, colour_table

    cmap = outputs.get("cmap", DEFAULT_CMAP)
    stops = ", ".join("#" + bytes(c).hex() for c in colour_table(cmap)[:: 255 // 8])
    opacity = float(outputs.get("opacity", 0.5))
    return (
        f'<div class="legend">low <span class="scale" style="background: linear-gradient(90deg, '
        f'{stops})"></span> high · each map scaled to its own range · colour map {html.escape(cmap)}'
        f", overlays at {opacity:.0%} opacity</div>"
    )


def _refinement_text(refine: dict[str, Any]) -> str:
    """The refinement options in words: the preset they come from, and what differs from it."""
    from ..postprocess.options import describe_changes

    if not refine:
        return "unknown"
    preset, changes = describe_changes(refine)
    return f"{preset} preset" + (" with " + "; ".join(changes) if changes else "")


def write_report(
    summary: dict[str, Any], path: str | os.PathLike, *, state: str = "complete"
) -> Path:
    """Write the run's ``index.html`` (atomically) from its summary dict.

    ``state``: ``"running"``, ``"complete"``, ``"interrupted"`` or ``"finished"`` (rebuilt from
    disk), said in the page's header.
    """
    path = Path(path)
    results = summary.get("results", [])
    ok = [r for r in results if r.get("ok")]
    failed = [r for r in results if not r.get("ok")]
    fail_block = ""
    if failed:
        items = "".join(f"<li>{html.escape(str(r.get('error')))}</li>" for r in failed)
        fail_block = f'<section class="card failed"><h2>{len(failed)} file(s) could not be explained</h2><ul>{items}</ul></section>'
    options = summary.get("options", {})
    target = options.get("target")
    upsampler = options.get("upsampler") or {}  # older runs: "high_res" and "cam_weights"
    high_res = str(upsampler.get("name", options.get("high_res", "guided")))
    weights = upsampler.get("cam_weights", options.get("cam_weights"))
    weights_text = " (positive FC weights)" if weights == "positive" else ""
    opacity = float(options.get("outputs", {}).get("opacity", 0.5))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hrcam report — {len(ok)} image(s)</title>
<style>{_CSS}</style></head>
<body>
<h1>High-resolution class activation maps</h1>
<div class="meta">model <code>{html.escape(str(summary.get("model", "")))}</code> ·
{len(ok)} explained, {len(failed)} failed · {float(summary.get("seconds", 0)):.1f} s{_STATE_TEXT.get(state, "")}<br>
target: {html.escape("each image's predicted class" if target is None else str(target))} (a map explains the class it names, right or wrong) ·
high-res CAM: {html.escape(high_res + weights_text)} · refinement: {html.escape(_refinement_text(options.get("refine", {})))}</div>
{_legend(options.get("outputs", {}))}
<br>
{fail_block}
{"".join(_card(r, opacity) for r in ok)}
<p class="meta">Made by hrcam: low-res CAM = Σ<sub>k</sub> w<sub>ck</sub>A<sub>k</sub> of the classifier;
high-res CAM = {_HIGH_RES_TEXT.get(high_res, "made by the explainer's own upsampler (" + html.escape(high_res) + ")")};
refined CAM = the postprocessing pipeline of Tagaris et al. (ICIP 2019) joining both.</p>
</body></html>
"""
    with atomic_write(path, "w") as f:
        f.write(page)
    return path
