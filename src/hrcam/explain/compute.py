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
    """Everything ``explain`` knows about one image (or volume), before anything is written.

    For a volume the maps are ``(d, h, w)`` and ``(D, H, W)``, ``network_input`` is the
    windowed volume ``(D, H, W)`` uint8 and ``display`` is None (its pictures are slices)."""

    decoded: DecodedImage
    display: np.ndarray | None  # (h, w, 3) uint8, the image at display size
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
    for d in decoded:
        if d.error is None:
            d.error = _mismatch(explainer, d)
    readable = [d for d in decoded if d.error is None]
    out: dict[int, ExplainedImage | DecodedImage] = {id(d): d for d in decoded if d.error}
    if readable:
        explanation = explainer.explain(
            [d.source for d in readable], target, steps=True, strict=False
        )
        for i, d in enumerate(readable):
            out[id(d)] = _one(explanation, i, d, display_side, explainer.window)
    return [out[id(d)] for d in decoded]


def _mismatch(explainer: Explainer, decoded: DecodedImage) -> str | None:
    """Why an input does not fit the network (a volume for a network of images, or the other
    way round), or None."""
    rank = 2 if decoded.scan is None else decoded.scan.ndim
    if rank == explainer.spatial_dims:
        return None
    if rank == 3:
        return (
            f"{decoded.item.path}: a volume, and this model takes 2-D images; explain volumes "
            "with a network of volumes (--model FILE.py:FUNCTION)"
        )
    return f"{decoded.item.path}: a 2-D image, and this model takes volumes"


def _display(decoded: DecodedImage, display_side: int, window) -> np.ndarray | None:
    """The picture a report shows of a photograph or a 2-D scan (windowed, gray as RGB)."""
    if decoded.scan is None:
        return display_image(decoded.image, display_side)
    if decoded.scan.ndim == 3:
        return None
    from PIL import Image

    gray = (np.clip(decoded.scan.windowed(window), 0, 1) * 255 + 0.5).astype(np.uint8)
    return display_image(Image.fromarray(gray).convert("RGB"), display_side)


def _rounded(score) -> dict[str, Any]:
    record = asdict(score)
    record["probability"] = round(record["probability"], 6)
    return record


def _one(explanation: Explanation, i: int, decoded: DecodedImage, display_side: int, window):
    if explanation.errors[i]:
        decoded.error = f"{decoded.item.path}: {explanation.errors[i]}; the image was not explained"
        return decoded
    return ExplainedImage(
        decoded=decoded,
        display=_display(decoded, display_side, window),
        network_input=explanation.images[i],
        low_res=explanation.low_res[i].float().cpu().numpy(),
        high_res=explanation.high_res[i].float().cpu().numpy(),
        steps=explanation.steps[i],
        probabilities=explanation.probabilities[i].float().cpu().numpy(),
        top5=[_rounded(s) for s in explanation.top(i, 5)],
        target=_rounded(explanation.target(i)),
    )
