"""The computing half of ``hrcam explain``: one batch of decoded images in, every map out.

:func:`explain_batch` runs the model once for the batch (prediction, low-res and high-res
CAMs) and the refinement per image (NumPy on a CPU, batched on a GPU), and returns one
:class:`ExplainedImage` per image, ready to be written by :mod:`.outputs` — or the reason it
could not be explained (a CAM with NaN or infinite values is refused, the run goes on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..checks import count_non_finite
from ..io import image_to_tensor
from ..model import HRCAM, Target
from ..postprocess import RefineOptions, RefineSteps, refine, refine_batch
from .inputs import DecodedImage

__all__ = ["ExplainedImage", "explain_batch"]


@dataclass
class ExplainedImage:
    """Everything ``explain`` knows about one image, before anything is written."""

    decoded: DecodedImage
    display: np.ndarray  # (h, w, 3) uint8, the image at display size
    network_input: np.ndarray  # (H, W, 3) uint8, what the network saw (stretched to its size)
    low_res: np.ndarray  # (h, w) float32
    high_res: np.ndarray  # (H, W) float32
    steps: RefineSteps  # every refinement step, steps.refined the refined CAM
    probabilities: np.ndarray  # (C,) float32
    top5: list[dict[str, Any]]
    target: dict[str, Any]


def display_image(image: Image.Image, side: int) -> np.ndarray:
    """The image no larger than ``side`` on either axis (tiny ones enlarged, pixels kept).

    Reduced by OpenCV's area average (each output pixel the mean of the source area it covers:
    antialiased, 0.35 against Pillow's 3.4 ms for its bilinear filter at 500x375 -> 448x336).
    """
    scale = min(1.0, side / max(image.size))
    if scale < 1.0:
        import cv2

        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA)
    if max(image.size) < 64:
        factor = -(-64 // max(image.size))
        image = image.resize(
            (image.width * factor, image.height * factor), Image.Resampling.NEAREST
        )
    return np.asarray(image)


def explain_batch(
    model: HRCAM,
    decoded: Sequence[DecodedImage],
    *,
    target: Target,
    options: RefineOptions,
    input_size: int | tuple[int, int],
    display_side: int,
    flip: bool = False,
) -> list[ExplainedImage | DecodedImage]:
    """Explain readable images of a batch; each failure comes back as its ``DecodedImage``
    with ``error`` set (unreadable file, or maps with non-finite values)."""
    readable = [d for d in decoded if d.error is None]
    out: dict[int, ExplainedImage | DecodedImage] = {id(d): d for d in decoded if d.error}
    if readable:
        mean, std = model.backbone.mean, model.backbone.std
        x = torch.cat(
            [image_to_tensor(d.image, size=input_size, mean=mean, std=std) for d in readable]
        ).to(model.device)
        cams = model.generate_cams(x, target, flip=flip)
        inputs = [model.to_image(x[i : i + 1]) for i in range(x.shape[0])]
        steps = _refine_all(cams.low_res, cams.high_res, inputs, options, x.device)
        for i, d in enumerate(readable):
            out[id(d)] = _one(model, d, cams, i, inputs[i], steps[i], display_side)
    return [out[id(d)] for d in decoded]


def _refine_all(low, high, inputs, options: RefineOptions, device) -> list[RefineSteps | None]:
    """Refinement per image (``None`` where a map is not finite): batched on a GPU, else one
    image at a time (``hrcam.refine``: the compiled steps)."""
    low_np, high_np = low.float().cpu().numpy(), high.float().cpu().numpy()
    finite = [
        not count_non_finite(low_np[i]) and not count_non_finite(high_np[i])
        for i in range(len(inputs))
    ]
    if device.type == "cuda" and all(finite):
        batch = refine_batch(
            low, high, torch.from_numpy(np.stack(inputs)).to(device), options=options
        )
        return [batch.select(i) for i in range(len(inputs))]
    # On a CPU the one-image path is 10-30x the batched one (benchmarks/bench_refine.py).
    return [
        refine(low_np[i], high_np[i], inputs[i], options=options) if finite[i] else None
        for i in range(len(inputs))
    ]


def _one(
    model, decoded, cams, i, network_input, steps, display_side
) -> ExplainedImage | DecodedImage:
    low = cams.low_res[i].float().cpu().numpy()
    high = cams.high_res[i].float().cpu().numpy()
    if steps is None:
        bad = count_non_finite(low) + count_non_finite(high)
        decoded.error = (
            f"{decoded.item.path}: the model's CAMs hold {bad} non-finite value(s) (NaN or ±inf); "
            "the image was not explained (check the model's weights and the input)"
        )
        return decoded
    probs = cams.probabilities[i].float().cpu().numpy()
    t = int(cams.targets[i])
    order = np.argsort(-probs, kind="stable")[: min(5, probs.shape[0])]
    names = model.class_names
    return ExplainedImage(
        decoded=decoded,
        display=display_image(decoded.image, display_side),
        network_input=network_input,
        low_res=low,
        high_res=high,
        steps=steps,
        probabilities=probs,
        top5=[
            {"index": int(j), "name": names[int(j)], "probability": round(float(probs[j]), 6)}
            for j in order
        ],
        target={"index": t, "name": names[t], "probability": round(float(probs[t]), 6)},
    )
