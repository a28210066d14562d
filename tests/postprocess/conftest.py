"""Run one image through either implementation and get NumPy steps back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    """Run the batched implementation on one thread in tests.

    Results do not depend on the thread count, but on a small shared machine two intra-op
    threads wait on each other whenever another process holds a core, which makes the many
    small tensors here 10-100x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
