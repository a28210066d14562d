"""Run one image through either implementation and get NumPy steps back."""

from __future__ import annotations

import numpy as np
import pytest

from hrcam.postprocess import RefineSteps, refine, refine_batch

IMPLEMENTATIONS = ("reference", "batched")


def run_refine(impl: str, low, high, image=None, **options) -> RefineSteps:
    """``refine`` or ``refine_batch`` on one image; NumPy steps without a batch dimension."""
    if impl == "reference":
        return refine(low, high, image, **options)
    images = None if image is None else np.asarray(image)[None]
    return refine_batch(np.asarray(low)[None], np.asarray(high)[None], images, **options).select(0)


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request) -> str:
    return request.param
