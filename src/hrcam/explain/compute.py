"""The computing half of ``hrcam explain``: one batch of decoded images in, every map out.

:func:`explain_batch` makes one :meth:`hrcam.Explainer.explain` call for the batch (the maps
the library gives for those images) and returns one :class:`ExplainedImage` per image, ready
to be written by :mod:`.outputs` — or the reason it could not be explained (a CAM with NaN or
infinite values is refused, the run goes on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..explainer import Explainer, Explanation, Target
from ..io import DISPLAY_SIDE
from ..postprocess import RefineSteps
from ..viz import display_image
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


def explain_batch(
    explainer: Explainer,
    decoded: Sequence[DecodedImage],
    *,
    target: Target = None,
    display_side: int = DISPLAY_SIDE,
) -> list[ExplainedImage | DecodedImage]:
    """Explain the readable images of a batch; each failure comes back as its ``DecodedImage``
    with ``error`` set (unreadable file, or maps with non-finite values)."""
    readable = [d for d in decoded if d.error is None]
    out: dict[int, ExplainedImage | DecodedImage] = {id(d): d for d in decoded if d.error}
    if readable:
        explanation = explainer.explain(
            [d.image for d in readable], target, steps=True, strict=False
        )
        for i, d in enumerate(readable):
            out[id(d)] = _one(explanation, i, d, display_side)
    return [out[id(d)] for d in decoded]


def _rounded(score) -> dict[str, Any]:
    record = asdict(score)
    record["probability"] = round(record["probability"], 6)
    return record


def _one(explanation: Explanation, i: int, decoded: DecodedImage, display_side: int):
    if explanation.errors[i]:
        decoded.error = f"{decoded.item.path}: {explanation.errors[i]}; the image was not explained"
        return decoded
    return ExplainedImage(
        decoded=decoded,
        display=display_image(decoded.image, display_side),
        network_input=explanation.images[i],
        low_res=explanation.low_res[i].float().cpu().numpy(),
        high_res=explanation.high_res[i].float().cpu().numpy(),
        steps=explanation.steps[i],
        probabilities=explanation.probabilities[i].float().cpu().numpy(),
        top5=[_rounded(s) for s in explanation.top(i, 5)],
        target=_rounded(explanation.target(i)),
    )
