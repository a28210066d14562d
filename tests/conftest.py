"""Shared fixtures: tiny seeded models and tiny real-looking image folders made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam import Explainer, create_backbone
from hrcam.upsample.expansion import ExpansionNetwork

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shape_image(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A noisy background with one bright disc or square: two classes a tiny CNN can learn."""
    a = (rng.random((size, size, 3)) * 80).astype(np.uint8)
    r = size // 6
    y, x = rng.integers(r + 1, size - r - 1, 2)
    yy, xx = np.mgrid[:size, :size]
    if kind == "disc":
        mask = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    else:
        mask = (np.abs(yy - y) <= r) & (np.abs(xx - x) <= r)
    a[mask] = rng.integers(180, 255, 3)
    return a


def make_class_folders(
    root: Path, *, per_class: int = 8, test_per_class: int = 4, size: int = 32, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for kind in ("disc", "square"):
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_shape_image(rng, kind, size)).save(folder / f"{kind}_{i:03d}.png")
    return root


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    return make_class_folders(tmp_path / "shapes")


@pytest.fixture
def tiny_backbone():
    torch.manual_seed(0)
    return create_backbone(
        "tiny_densenet",
        num_classes=3,
        block_config=(1, 1, 1),
        growth_rate=8,
        init_features=8,
        input_size=32,
    ).eval()


@pytest.fixture
def tiny_model(tiny_backbone):
    torch.manual_seed(1)
    expansion = ExpansionNetwork.from_backbone(tiny_backbone, decoder_channels=(16, 12, 8, 8))
    return Explainer(tiny_backbone, expansion=expansion).eval()


def output_folder(out: Path, stem: str) -> Path:
    """The ``images/<name>`` folder ``hrcam explain`` wrote for the input file ``stem``."""
    found = [p for p in (out / "images").glob(f"{stem}-*") if p.name.rsplit("-", 1)[0] == stem]
    assert len(found) == 1, (stem, sorted(p.name for p in (out / "images").iterdir()))
    return found[0]
