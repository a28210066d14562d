"""Run one image through either implementation and get NumPy steps back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrcam.postprocess import RefineOptions, RefineSteps, compiled, reference, refine_batch

SINGLE_IMAGE = ("reference", "compiled")


def single(impl: str):
    """The one-image backend module named ``impl``."""
    return {"reference": reference, "compiled": compiled}[impl]


IMPLEMENTATIONS = ("reference", "compiled", "batched")


def run_refine(impl: str, low, high, image=None, **options) -> RefineSteps:
    """``refine`` or ``refine_batch`` on one image with the paper's options (and ``options``
    changed); NumPy steps without a batch dimension."""
    base = options.pop("options", RefineOptions.preset("paper"))
    if impl in ("reference", "compiled"):
        return single(impl).refine(low, high, image, options=base, **options)
    images = None if image is None else np.asarray(image)[None]
    low, high = np.asarray(low)[None], np.asarray(high)[None]
    return refine_batch(low, high, images, options=base, **options).select(0)


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
