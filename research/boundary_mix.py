"""How much of the guided map to keep in the boundary map: localization and faithfulness of
``(1 - mix) * walked + mix * guided`` for several ``mix`` on one half of pets-dev.

The walk spreads the guided CAM over the whole object; faithfulness metrics that reward small
maps (ADCC's complexity, average drop) pay for that. Mixing some of the guided map back keeps
its peak on the most discriminative part. Each variant is a method of ``hrcam evaluate``'s
harness (the same protocol, intervals and paired differences against the low-res CAM).

Usage::

    python research/boundary_mix.py ../shared/data/pets-dev --split first-half --faithfulness 40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import hrcam
from hrcam.data.annotations import LocalizationDataset
from hrcam.evaluation import evaluate_localization, write_results
from hrcam.methods.base import CAMMethod
from hrcam.upsample.boundary_head import BoundaryUpsampler


class Mixed(CAMMethod):
    def __init__(self, mix: float) -> None:
        super().__init__(f"boundary mix={mix:g}")
        self.mix = mix

    def _compute(self, explainer, images, targets):
        upsampler = BoundaryUpsampler(explainer.expansion.boundary_head, mix=self.mix)
        return explainer.replace(upsampler=upsampler).cams(images, targets).high_res.float().cpu()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("--split", default="first-half")
    p.add_argument("--faithfulness", type=int, default=40)
    p.add_argument("--mixes", default="0,0.25,0.5")
    p.add_argument("-o", "--output", type=Path, default=Path("runs/boundary-mix"))
    args = p.parse_args()
    explainer = hrcam.load_model("default")
    methods = ["low_res", "high_res:mode=guided"]
    methods += [Mixed(float(m)) for m in args.mixes.split(",")]
    results = evaluate_localization(
        explainer,
        LocalizationDataset(args.data),
        methods,
        split=args.split,
        faithfulness=args.faithfulness,
        faithfulness_steps=32,
        progress=False,
    )
    paths = write_results(results, args.output, command="research/boundary_mix.py")
    print(paths["markdown"].read_text())


if __name__ == "__main__":
    main()
