"""The paper's whole procedure, small, end to end with hrcam commands (benchmarks/reproduce_fashion.py --quick).

Fashion-MNIST items on cluttered canvases (exact masks) → stage 1 (tiny DenseNet from scratch)
→ stage 2 (expansion network, classifier frozen) → evaluation. Asserts that stage 2 left the
classification metrics identical and that the refined CAM localises better than chance.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "reproduce_fashion", ROOT / "benchmarks" / "reproduce_fashion.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(
    not FASHION.is_file(), reason="needs Debian's dataset-fashion-mnist (make test installs it)"
)
def test_quick_reproduction_on_fashion_mnist(tmp_path):
    summary = _load_script().reproduce(tmp_path / "run", quick=True, workers=0, progress=False)
    assert summary["classification_identical"], (
        summary["classification_before"],
        summary["classification_after"],
    )
    assert summary["classification_before"]["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    from hrcam.data.annotations import LocalizationDataset

    masks = [(s.mask, s.ignore) for s in LocalizationDataset(tmp_path / "run" / "data" / "eval")]
    chance = np.mean([m[~ig].mean() for m, ig in masks])  # PxAP of a map that knows nothing
    methods = summary["localization"]["methods"]
    refined = methods["refined"]["metrics"]
    assert refined["pxap"] > chance + 0.1, (refined["pxap"], chance)
    assert refined["best_pixel_iou"] > 0.2
    assert {"low_res", "high_res", "high_res:mode=paper", "gradcam", "layercam"} <= methods.keys()
