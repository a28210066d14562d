"""The README's code examples that must keep working, run as they are written there."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- readme-example: {re.escape(name)} -->\s*```python\n(.*?)```", text, re.S
    )
    assert match, f"README has no example marked {name!r}"
    return match.group(1)


def test_pytorch_grad_cam_example_sharpens_the_map_offline():
    namespace: dict = {}
    exec(compile(_example("pytorch-grad-cam"), "README.md", "exec"), namespace)  # noqa: S102
    low, sharp, rgb = namespace["low"], namespace["sharp"], namespace["rgb"]
    assert low.shape == (1, 7, 7) and sharp.shape == (1, 224, 224)
    assert torch.isfinite(sharp).all() and rgb.min() >= 0 and rgb.max() <= 1
    # The upsampled map is made of the 7×7 map's own values.
    assert low.min() - 1e-5 <= sharp.min() and sharp.max() <= low.max() + 1e-5
