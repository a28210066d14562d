"""A wrapped network saved without its Python class: its trunk exported by ``torch.export``.

:func:`hrcam.export_model` of a network :func:`hrcam.from_model` wrapped (a MONAI DenseNet, a
torchvision ResNet, a hand-written CNN) cannot store how to rebuild the user's class. Unless a
builder names the function that makes it (:mod:`hrcam.builders`), the export captures the
trunk — inputs to the final feature maps ``A`` — as an exported program (``torch.export``:
the graph and its weights, no Python code) beside the weights, and :class:`TracedBackbone`
runs it with the classifier's weights: the same ``A``, logits and CAMs, loadable without the
user's code. The program takes any batch size and the input size it was exported at (the
network's ``input_size``); it is checked against the network when exported.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from torch import nn

from .base import Backbone

__all__ = ["TracedBackbone", "trace_trunk"]


class _Trunk(nn.Module):
    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


def trace_trunk(backbone: Backbone) -> bytes:
    """``backbone``'s trunk (inputs → ``A``) exported on inputs of its size, any batch, as the
    bytes of ``torch.export.save``; refused in one line if the program does not reproduce
    ``A``."""
    from torch.export import Dim

    shape = (2, backbone.in_chans, *(backbone.input_size,) * backbone.spatial_dims)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    was_training, device = backbone.training, next(backbone.parameters()).device
    backbone.eval().cpu()
    try:
        program = torch.export.export(
            _Trunk(backbone),
            (example,),
            dynamic_shapes={"x": {0: Dim("batch", min=1, max=65536)}},
            strict=False,
        )
        with torch.no_grad():
            expected, got = backbone.forward_features(example), program.module()(example)
    except Exception as err:  # noqa: BLE001 - what torch.export cannot capture, in one line
        first = str(err).splitlines()[0] if str(err) else ""
        message = f"torch.export cannot capture its trunk ({type(err).__name__}: {first})"
        raise ValueError(message) from None
    finally:
        backbone.train(was_training).to(device)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise ValueError("its exported trunk does not reproduce its feature maps")
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


class TracedBackbone(Backbone):
    """The backbone contract over a traced trunk and a classifier ``nn.Linear`` (see the module
    docstring). Built by :func:`hrcam.load_model` from an export; no skips."""

    def __init__(
        self,
        trunk: bytes,
        *,
        num_features: int,
        feature_stride: int,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        input_size: int = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        in_chans: int = 3,
        spatial_dims: int = 2,
        config: dict | None = None,
    ) -> None:
        super().__init__(
            trunk_channels=num_features,
            feature_stride=feature_stride,
            skip_info=(),
            num_classes=num_classes,
            class_names=class_names,
            input_size=input_size,
            mean=mean,
            std=std,
            in_chans=in_chans,
            spatial_dims=spatial_dims,
            config=config,
        )
        self.trunk = torch.export.load(io.BytesIO(trunk)).module()
        self._size = (int(input_size),) * spatial_dims

    def train(self, mode: bool = True) -> TracedBackbone:
        """Set training mode on everything but the exported trunk, which runs as it was
        exported (in inference mode) and refuses the switch."""
        self.training = mode
        for name, child in self.named_children():
            if name != "trunk":
                child.train(mode)
        return self

    def _forward_trunk(self, x: torch.Tensor):
        if tuple(x.shape[2:]) != self._size:
            size = "×".join(map(str, self._size))
            raise ValueError(
                f"this exported network takes inputs of {size} (the size it was exported at), "
                f"got {'×'.join(map(str, x.shape[2:]))}; keep its input_size"
            )
        return self.trunk(x), []
