"""How to put the walked map and the guided map together in the boundary high-res CAM:
localization and faithfulness of each way, on one half of pets-dev.

The walk spreads the guided CAM over the whole object; faithfulness metrics that reward small
maps (ADCC's complexity, average drop) pay for that. Mixing some of the guided map back keeps
its peak on the most discriminative part. Each variant is a method of ``hrcam evaluate``'s
harness (the same protocol, intervals and paired differences against the low-res CAM), scored
as the high-res CAM and as the refined CAM built on it.

A variant is ``WAY:MIX[:BETA:STEPS]`` (β 6 and 1,024 steps unless given), ``g`` the guided map
and ``w`` the walk of its ``seed``, both per image over their maximum where said:

- ``lerp`` — ``(1 - MIX) · w + MIX · g``, the shipped form (``BoundaryUpsampler(mix=MIX)``);
- ``prod`` — ``w · (1 - MIX + MIX · ĝ)``; ``pow`` — ``w · ĝ ** MIX`` (the guided map as a gate);
- ``match`` — the order of ``lerp``'s map with the guided map's values (its histogram);
- ``hed@S`` — ``lerp`` over HED's boundaries instead of the head's: HED of the image resized
  by each scale in ``S`` (``1``, ``2``, ``1+2`` …), averaged, max-pooled to the head's grid;
- ``gup`` — ``lerp``, the walk's grid brought to the image's size by the colour-guided
  upsampling (:func:`hrcam.guided_upsample`) instead of bilinearly;
- ``seed@Q`` — the walk starts from ``ĝ`` where ``ĝ`` is above its ``Q`` quantile (0 elsewhere),
  then ``lerp`` of both maps over their maxima; ``pow-seed@P`` starts from ``ĝ ** P``;
- ``bg@A`` — a background walk competes with the object's, as in AffinityNet's inference (Ahn &
  Kwak, CVPR 2018): ``f`` the walk of ``ĝ``, ``b`` the walk of ``(1 - ĝ) ** A`` (only the
  coldest pixels seed it), both over their maxima; ``f / (f + b)``, then ``lerp`` with ``ĝ``.

Usage::

    python research/boundary_mix.py ../shared/data/pets-dev --split first-half --faithfulness 40 \
        --variants lerp:0,lerp:0.25,lerp:0.5
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import hrcam
from hrcam.data.annotations import LocalizationDataset
from hrcam.evaluation import evaluate_localization, write_results
from hrcam.methods.base import CAMMethod
from hrcam.upsample.boundary_head import BoundaryUpsampler
from hrcam.upsample.guided import guided_upsample
from hrcam.upsample.hed import load_hed
from hrcam.upsample.walk import walk_multiscale, walk_steps, walk_weights


def _over_max(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp_min(0)
    return x / x.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]


@functools.cache
def _hed():
    return load_hed()


def _hed_boundaries(images: torch.Tensor, scales: list[float], grid) -> torch.Tensor:
    """HED's boundary map of ``images`` averaged over input ``scales`` (the image resized
    bilinearly), max-pooled to ``grid``."""
    net = _hed()
    size = images.shape[-2:]
    total = 0
    with torch.inference_mode():
        for scale in scales:
            x = images if scale == 1 else F.interpolate(images, scale_factor=scale, mode="bilinear")
            edges = net(x.float())[:, None]
            if edges.shape[-2:] != size:
                edges = F.interpolate(edges, size=size, mode="bilinear")
            total = total + edges
    return F.adaptive_max_pool2d(total / len(scales), grid)[:, 0]


class CombinedUpsampler(BoundaryUpsampler):
    """The shipped boundary upsampler with another way of combining its two maps."""

    def __init__(self, head, way: str, mix: float, beta: float, steps: int) -> None:
        super().__init__(head, beta=beta, steps=(steps,), mix=0.0)
        self.way, self.share = way, mix

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and (other.way, other.share) == (self.way, self.share)

    __hash__ = BoundaryUpsampler.__hash__

    def upsample(self, inputs):
        guided = self.guided.upsample(inputs)
        boundaries = self.head(inputs.skips, inputs.features)

        def walk(seed):
            return walk_multiscale(seed, boundaries, beta=self.beta, steps=self.steps)

        kind, _, value = self.way.partition("@")
        if kind == "hed":  # HED's boundaries (mean over the input scales in VALUE), not the head's
            grid = boundaries.shape[-2:]
            boundaries = _hed_boundaries(inputs.images, [float(v) for v in value.split("+")], grid)
            kind = "lerp"
        if kind == "gup":  # the walk's own grid upsampled by the colour guide, not bilinearly
            grid = boundaries.shape[-2:]
            start = F.adaptive_avg_pool2d(guided[:, None].float(), grid)[:, 0]
            walked = walk_steps(start, walk_weights(boundaries.float(), self.beta), self.steps[0])
            walked = guided_upsample(walked, inputs.images)
            return torch.lerp(walked, guided, self.share)
        if kind in ("seed", "pow-seed"):
            g = _over_max(guided)
            if kind == "seed":
                cut = torch.quantile(g.flatten(1), float(value), dim=1)[:, None, None]
                seed = g * (g >= cut)
            else:
                seed = g.pow(float(value))
            return torch.lerp(_over_max(walk(seed)), g, self.share)
        if kind == "bg":
            g = _over_max(guided)
            fg = _over_max(walk(g))
            bg = _over_max(walk((1 - g).pow(float(value))))
            return torch.lerp(fg / (fg + bg).clamp_min(1e-6), g, self.share)
        walked = walk(guided)
        if kind == "lerp":
            return torch.lerp(walked, guided, self.share)
        if kind == "prod":
            return walked * (1 - self.share + self.share * _over_max(guided))
        if kind == "pow":
            return walked * _over_max(guided).pow(self.share)
        if kind == "match":
            order = torch.lerp(walked, guided, self.share).flatten(1)
            values = guided.flatten(1).sort(dim=1).values
            out = torch.empty_like(order).scatter_(1, order.argsort(dim=1, stable=True), values)
            return out.view_as(guided)
        raise ValueError(f"unknown way {self.way!r}")


class Variant(CAMMethod):
    def __init__(self, spec: str, refined: bool) -> None:
        way, mix, *walk = spec.split(":")
        self.upsampler_args = (way, float(mix), float(walk[0]) if walk else 6.0)
        self.steps = int(walk[1]) if len(walk) > 1 else 1024
        super().__init__(f"{'refined' if refined else 'high-res'} {spec}")
        self.refined = refined

    def _compute(self, explainer, batch, targets):
        head = explainer.expansion.boundary_head
        own = explainer.replace(upsampler=CombinedUpsampler(head, *self.upsampler_args, self.steps))
        cams = own.cams(batch, targets)
        maps = own.refine(cams, batch).refined if self.refined else cams.high_res
        return maps.float().cpu()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("--split", default="first-half")
    p.add_argument("--faithfulness", type=int, default=40)
    p.add_argument("--variants", default="lerp:0,lerp:0.25,lerp:0.5")
    p.add_argument("--maps", choices=("both", "high-res", "refined"), default="both")
    p.add_argument("--reference", default=None, help="the method differences are paired against")
    p.add_argument("-o", "--output", type=Path, default=Path("runs/boundary-mix"))
    args = p.parse_args()
    explainer = hrcam.load_model("default")
    methods: list = ["low_res"]
    for spec in args.variants.split(","):
        if args.maps != "refined":
            methods.append(Variant(spec, refined=False))
        if args.maps != "high-res":
            methods.append(Variant(spec, refined=True))
    results = evaluate_localization(
        explainer,
        LocalizationDataset(args.data),
        methods,
        split=args.split,
        faithfulness=args.faithfulness,
        faithfulness_steps=32,
        reference=args.reference,
        progress=True,
    )
    command = "python research/boundary_mix.py " + " ".join(sys.argv[1:])
    paths = write_results(results, args.output, command=command)
    print(paths["markdown"].read_text())


if __name__ == "__main__":
    main()
