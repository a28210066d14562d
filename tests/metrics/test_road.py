"""ROAD and ADCC: hand-made cases, and ROAD against pytorch-grad-cam's implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrcam.metrics.adcc import adcc, coherency, complexity, explanation_images
from hrcam.metrics.road import impute_linear, road


def test_imputation_fills_a_hole_in_a_linear_ramp_exactly():
    yy, xx = np.mgrid[:20, :30].astype(np.float32)
    image = np.stack([2 * xx + 3 * yy, xx - yy, np.full_like(xx, 5)])
    keep = np.ones((20, 30), bool)
    keep[5:15, 8:22] = False  # a hole away from the border
    filled = impute_linear(image, keep)
    np.testing.assert_allclose(filled, image, atol=1e-4)
    constant = impute_linear(np.full((3, 20, 30), 0.7, np.float32), keep)
    np.testing.assert_allclose(constant, 0.7, atol=1e-6)


def test_road_signs_on_a_model_that_looks_at_one_corner():
    """The 'model' is the mean of the top-left quadrant: a map on that quadrant is faithful."""

    def model_fn(x):
        return x[:, :, :16, :16].mean(dim=(1, 2, 3))[:, None].repeat(1, 2)

    torch.manual_seed(0)
    images = torch.zeros(2, 3, 32, 32)
    images[:, :, :16, :16] = 5.0  # what the model looks at is bright, the rest dark
    faithful = torch.zeros(2, 32, 32)
    faithful[:, :16, :16] = 1.0
    faithful += 0.01 * torch.rand(2, 32, 32)  # no ties
    opposite = 1.0 - faithful
    good = road(model_fn, images, faithful, [0, 1], noise=0.0)
    bad = road(model_fn, images, opposite, [0, 1], noise=0.0)
    assert (good["combined"] > 0).all() and (bad["combined"] < 0).all()
    assert (good["morf"] < 0).all() and (good["lerf"] == pytest.approx(0.0, abs=1e-4))
    assert good["morf_by_percentile"].shape == (2, 4)


# pytorch-grad-cam's imputer calls np.argwhere on a tensor (NumPy 2 deprecates that path).
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
def test_road_equals_pytorch_grad_cams_on_the_same_images(tiny_model):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from hrcam.metrics.adcc import normalized_maps

    torch.manual_seed(0)
    backbone = tiny_model.backbone.eval()
    x = torch.randn(3, 3, 32, 32)
    cams = torch.rand(3, 4, 4)
    targets = [0, 2, 1]
    ours = road(backbone, x, cams, targets, percentiles=(20, 60), noise=0.0)
    maps = normalized_maps(cams, (32, 32)).numpy()  # what ours removes by
    wrapped = [ClassifierOutputTarget(t) for t in targets]
    for k, p in enumerate((20, 60)):
        for order, removal in (
            ("morf", RemoveMostRelevantFirst),
            ("lerf", RemoveLeastRelevantFirst),
        ):
            theirs = PerturbationConfidenceMetric(removal(p, NoisyLinearImputer(noise=0.0)))
            expected = theirs(x, maps, wrapped, backbone)
            # Same removals, same system; the solves differ in float rounding only.
            np.testing.assert_allclose(
                ours[f"{order}_by_percentile"][:, k], expected, rtol=1e-4, atol=1e-4
            )


def test_adcc_terms_by_hand():
    a = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    assert coherency(a, 2 * a + 1, (2, 2))[0] == pytest.approx(1.0)  # same map up to scale
    assert coherency(a, -a, (2, 2))[0] == pytest.approx(0.0)
    assert coherency(a, torch.ones(1, 2, 2), (2, 2))[0] == 0.0  # a constant map
    assert complexity(a, (2, 2))[0] == pytest.approx(0.5)  # 0, 1/3, 2/3, 1
    images = torch.full((1, 3, 2, 2), 2.0)
    torch.testing.assert_close(
        explanation_images(images, a)[0, 0], torch.tensor([[0.0, 2 / 3], [4 / 3, 2.0]])
    )
    np.testing.assert_allclose(adcc(np.array([0.5]), np.array([0.5]), np.array([0.5])), [0.5])
