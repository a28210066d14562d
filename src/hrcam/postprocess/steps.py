"""The result of the refinement pipeline: every intermediate step, named as in the paper."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..arrays import to_numpy
from .options import RefineOptions

__all__ = ["RefineSteps"]

# Fields that hold arrays, in pipeline order (the figure draws them in this order).
ARRAY_FIELDS = (
    "low",
    "blurred",
    "edges",
    "low_resized",
    "roi",
    "focal_points",
    "bounds",
    "segmented",
    "full_segment",
    "merged",
    "masked_image",
)


@dataclass
class RefineSteps:
    """Every step of the refinement pipeline; ``merged`` (alias ``refined``) is the refined CAM.

    From :func:`~hrcam.postprocess.refine` the fields are NumPy arrays of one image; from
    :func:`~hrcam.postprocess.refine_batch` they carry a leading batch dimension ``B`` (and are
    tensors or arrays, as the inputs were). ``H x W`` is the high-res CAM's size, ``h x w`` the
    low-res CAM's.

    - ``low``: ``(h, w)`` float32, the low-res CAM with non-finite values set to 0, in [0, 1].
    - ``blurred``: ``(H, W)`` float32, the high-res CAM normalised to [0, 1] and box-blurred.
    - ``edges``: ``(H, W)`` float32, Sobel gradient magnitude of ``blurred``, in [0, 1].
    - ``low_resized``: ``(H, W)`` float32, ``low`` upsampled bilinearly to ``H x W``.
    - ``roi``: ``(H, W)`` bool, pixels of ``low_resized`` above its ``roi_percentile``.
    - ``focal_points``: ``(H, W)`` bool, the seeds (``np.argwhere`` gives their (row, col)).
    - ``bounds``: ``(2,)`` float32, ``[lower, upper]`` growing bounds; NaN when the ROI is empty.
    - ``segmented``: ``(H, W)`` bool, region grown on ``edges`` from the seeds.
    - ``full_segment``: ``(H, W)`` bool, ``segmented`` plus strong ROI edges, holes filled.
    - ``merged``: ``(H, W)`` float32 in [0, 1], the refined CAM.
    - ``masked_image``: ``(H, W, C)`` (input image dtype) or ``None`` when no image was given.
    - ``options``: the :class:`RefineOptions` that produced this.
    """

    low: Any
    blurred: Any
    edges: Any
    low_resized: Any
    roi: Any
    focal_points: Any
    bounds: Any
    segmented: Any
    full_segment: Any
    merged: Any
    masked_image: Any
    options: RefineOptions

    @property
    def refined(self):
        """The refined CAM (the ``merged`` step)."""
        return self.merged

    def as_dict(self) -> dict[str, Any]:
        """The array fields by name (``masked_image`` included, possibly ``None``)."""
        return {name: getattr(self, name) for name in ARRAY_FIELDS}

    def numpy(self) -> RefineSteps:
        """The same steps with every tensor turned into a NumPy array (arrays pass through)."""
        return dataclasses.replace(self, **{k: _to_numpy(v) for k, v in self.as_dict().items()})

    def select(self, index: int) -> RefineSteps:
        """Steps of image ``index`` of a batched result, as NumPy arrays (for plotting)."""
        return dataclasses.replace(
            self,
            **{k: None if v is None else _to_numpy(v[index]) for k, v in self.as_dict().items()},
        )


def _to_numpy(x):
    """``None`` stays ``None``; arrays and tensors become NumPy arrays."""
    return None if x is None else to_numpy(x)
