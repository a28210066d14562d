"""The model flags every command that explains shares (``--model``, ``--high-res``, ``--device``,
``--batch-size``), and the model they name."""

from __future__ import annotations

import argparse
import os

from ..utils import positive_int, resolve_device

__all__ = ["add_model_arguments", "load_from_args"]


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="default",
        help="'default' (EfficientNet-Lite0 + shipped expansion network), a backbone name, "
        "or a checkpoint / exported model file",
    )
    p.add_argument(
        "--high-res",
        choices=("auto", "paper", "guided"),
        default="auto",
        help="high-res CAM: hrcam's guided upsampling of the low-res CAM (any model; 'auto' is "
        "guided), or the paper's expansion-network maps (a model with one, e.g. the default)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=positive_int, default=8)


def load_from_args(args):
    import torch

    from ..checkpoint import load_model

    device = resolve_device(args.device)
    if device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    return load_model(args.model, device=device, upsampler=args.high_res)
