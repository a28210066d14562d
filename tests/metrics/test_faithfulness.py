"""Deletion / insertion and average drop on toy models whose answers can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hrcam.metrics.faithfulness import average_drop_increase, blur_images, deletion_insertion


def mean_model(x: torch.Tensor) -> torch.Tensor:
    """One-class 'probability': the mean of all input values (inputs in [0, 1])."""
    return x.mean(dim=(1, 2, 3))[:, None]


def mean_and_complement(x: torch.Tensor) -> torch.Tensor:
    """Two classes: [mean, 1 - mean]."""
    p = x.mean(dim=(1, 2, 3))
    return torch.stack([p, 1 - p], dim=1)


def match_model(reference: torch.Tensor, weights: torch.Tensor):
    """p(x) = sum of ``weights`` over the pixels where x equals ``reference`` in every channel."""

    def model_fn(x: torch.Tensor) -> torch.Tensor:
        same = (x == reference).all(dim=1).flatten(1).double()
        p = same @ weights.flatten().double()
        return torch.stack([p, 1 - p], dim=1)

    return model_fn


@pytest.fixture
def tiny_classifier():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).eval()
    return net


# --------------------------------------------------------------------------- deletion/insertion


def test_deletion_auc_of_the_mean_model_by_hand():
    # Pixel values in CAM order (highest first): 1, 0.5, 0.25, 0. Probabilities after deleting
    # 0..4 pixels: 1.75/4, .75/4, .25/4, 0, 0; trapezoid with dx = 1/4: 0.1171875.
    image = torch.tensor([[[[0.25, 1.0], [0.0, 0.5]]]])
    cam = torch.tensor([[[2.0, 9.0], [1.0, 5.0]]])
    out = deletion_insertion(mean_model, image, cam, [0], steps=4, modes=("deletion",))
    np.testing.assert_allclose(out["curves"]["deletion"], [[0.4375, 0.1875, 0.0625, 0, 0]])
    np.testing.assert_allclose(out["deletion_auc"], [0.1171875])
    np.testing.assert_allclose(out["curves"]["fraction"], [0, 0.25, 0.5, 0.75, 1])
    assert "insertion_auc" not in out
    # The reversed ranking deletes the least important pixels first: a worse (higher) AUC.
    worse = deletion_insertion(mean_model, image, -cam, [0], steps=4, modes=("deletion",))
    np.testing.assert_allclose(worse["deletion_auc"], [0.3203125])


def test_insertion_and_deletion_on_a_pixel_matching_model():
    # p(x) = weight of the pixels equal to the image. Weights in CAM order 0.4, 0.3, 0.2, 0.1:
    # insertion from the blur gives 0, .4, .7, .9, 1 (AUC 0.625); deletion to 0 gives
    # 1, .6, .3, .1, 0 (AUC 0.375).
    torch.manual_seed(1)
    image = torch.rand(1, 3, 2, 2) + 0.5  # never 0, never equal to its blur
    cam = torch.tensor([[[4.0, 3.0], [1.0, 2.0]]])
    weights = torch.tensor([[0.4, 0.3], [0.1, 0.2]])
    out = deletion_insertion(match_model(image, weights), image, cam, [0], steps=4)
    np.testing.assert_allclose(out["curves"]["insertion"], [[0, 0.4, 0.7, 0.9, 1.0]], atol=1e-12)
    np.testing.assert_allclose(out["insertion_auc"], [0.625])
    np.testing.assert_allclose(out["curves"]["deletion"], [[1.0, 0.6, 0.3, 0.1, 0]], atol=1e-12)
    np.testing.assert_allclose(out["deletion_auc"], [0.375])


def test_steps_that_do_not_divide_the_image_use_the_true_fractions():
    out = deletion_insertion(mean_model, torch.ones(1, 1, 3, 3), torch.rand(1, 3, 3), [0], steps=4)
    np.testing.assert_allclose(out["curves"]["fraction"], [0, 2 / 9, 4 / 9, 6 / 9, 1])
    np.testing.assert_allclose(out["deletion_auc"], [0.5])  # p = 1 - fraction, exactly linear
    # More steps than pixels: one pixel per step (the default 224 on a 3x3 image).
    out = deletion_insertion(mean_model, torch.ones(1, 1, 3, 3), torch.rand(1, 3, 3), [0])
    np.testing.assert_allclose(out["curves"]["fraction"], np.arange(10) / 9)


def test_cam_is_resized_to_the_image_before_ranking():
    # A 2x2 CAM hot in its top-left cell, upsampled to 4x4, ranks the top-left 2x2 quadrant
    # first (values 1, .75, .75, .5625 > .25). Deleting that quadrant removes all the mass.
    image = torch.zeros(1, 1, 4, 4)
    image[..., :2, :2] = 1.0
    cam = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    out = deletion_insertion(mean_model, image, cam, [0], steps=4, modes=("deletion",))
    np.testing.assert_allclose(out["curves"]["deletion"], [[0.25, 0, 0, 0, 0]])


def test_ties_and_nan_keep_row_major_order():
    image = torch.zeros(1, 1, 2, 2)
    image[..., 0, 0] = 1.0
    for cam in (torch.zeros(1, 2, 2), torch.full((1, 2, 2), float("nan"))):
        out = deletion_insertion(mean_model, image, cam, [0], steps=4, modes=("deletion",))
        np.testing.assert_allclose(out["curves"]["deletion"], [[0.25, 0, 0, 0, 0]])


def test_chunking_and_logits_do_not_change_the_result(tiny_classifier):
    torch.manual_seed(2)
    images = torch.randn(3, 3, 8, 8)
    cams = torch.rand(3, 4, 4)
    targets = torch.tensor([0, 3, 4])

    def probs(x):
        return torch.softmax(tiny_classifier(x), dim=1)

    small = deletion_insertion(probs, images, cams, targets, steps=8, batch_size=1)
    large = deletion_insertion(tiny_classifier, images, cams, targets, steps=8, logits=True)
    for key in ("deletion_auc", "insertion_auc"):
        np.testing.assert_allclose(small[key], large[key], rtol=1e-5)
        assert small[key].shape == (3,)
    assert small["curves"]["insertion"].shape == (3, 9)
    # The curves start at the model's probability on the image (deletion) and end there
    # (insertion).
    p = probs(images)[torch.arange(3), targets].detach().numpy()
    np.testing.assert_allclose(small["curves"]["deletion"][:, 0], p, rtol=1e-5)
    np.testing.assert_allclose(small["curves"]["insertion"][:, -1], p, rtol=1e-5)


def test_deletion_insertion_input_errors(tiny_classifier):
    images = torch.rand(2, 3, 4, 4)
    cams = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match=r"images must be a float tensor \(B, C, H, W\)"):
        deletion_insertion(mean_model, images[0], cams, [0, 0])
    with pytest.raises(ValueError, match=r"cams must be \(B, h, w\) = \(2, h, w\)"):
        deletion_insertion(mean_model, images, cams[:1], [0, 0])
    with pytest.raises(ValueError, match=r"targets must be \(2,\) integer"):
        deletion_insertion(mean_model, images, cams, [0])
    with pytest.raises(ValueError, match="targets must be < num_classes = 5"):
        deletion_insertion(tiny_classifier, images, cams, [0, 5], logits=True)
    with pytest.raises(ValueError, match=r"model_fn must return a \(N, num_classes\)"):
        deletion_insertion(lambda x: x.mean(dim=(1, 2, 3)), images, cams, [0, 0])
    with pytest.raises(ValueError, match="modes"):
        deletion_insertion(mean_model, images, cams, [0, 0], modes=("del",))


def test_blur_keeps_constants_and_spreads_a_point():
    flat = torch.full((1, 2, 5, 7), 3.0)
    torch.testing.assert_close(blur_images(flat), flat)
    point = torch.zeros(1, 1, 21, 21)
    point[..., 10, 10] = 1.0
    out = blur_images(point)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6)  # the kernel sums to 1
    k = torch.exp(-(torch.arange(-5.0, 6.0) ** 2) / 50)
    k = k / k.sum()
    torch.testing.assert_close(out[0, 0, 5:16, 5:16], k[:, None] * k[None, :])
    with pytest.raises(ValueError, match="odd"):
        blur_images(point, kernel_size=4)


# -------------------------------------------------------------------------------- average drop


def test_average_drop_and_increase_by_hand():
    # CAM normalised: 0, 1/4, 1/2, 1 (mean 7/16).
    # Image 1 (ones, class "mean"): Y = 1, O = 7/16, drop 9/16.
    # Image 2 (halves, class "1 - mean"): Y = 1/2, O = 1 - 7/32 = 25/32 > Y: increase, drop 0.
    images = torch.stack([torch.ones(1, 2, 2), torch.full((1, 2, 2), 0.5)])
    cam = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    out = average_drop_increase(mean_and_complement, images, torch.stack([cam, cam]), [0, 1])
    np.testing.assert_allclose(out["drop"], [9 / 16, 0.0])
    np.testing.assert_array_equal(out["increase"], [False, True])
    np.testing.assert_allclose(out["original_score"], [1.0, 0.5])
    np.testing.assert_allclose(out["explanation_score"], [7 / 16, 25 / 32])
    assert out["average_drop"] == pytest.approx(9 / 32)
    assert out["increase_in_confidence"] == 0.5


def test_average_drop_edge_cases():
    # Y = 0: no confidence to drop, drop defined as 0 (not NaN).
    out = average_drop_increase(mean_model, torch.zeros(1, 1, 2, 2), torch.rand(1, 2, 2), [0])
    assert out["drop"].tolist() == [0.0] and out["increase"].tolist() == [False]
    # A constant CAM explains nothing: E = 0, so the mean model drops to 0 (drop 1).
    out = average_drop_increase(mean_model, torch.ones(1, 1, 3, 3), torch.ones(1, 2, 2), [0])
    assert out["average_drop"] == 1.0
    # A low-resolution CAM is resized bilinearly first: 2x2 -> 4x4 keeps mean 1/2 here.
    out = average_drop_increase(
        mean_model, torch.ones(1, 1, 4, 4), torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]), [0]
    )
    assert out["explanation_score"][0] == pytest.approx(0.5)


def test_average_drop_chunks_and_logits(tiny_classifier):
    torch.manual_seed(3)
    images, cams, targets = torch.randn(5, 3, 8, 8), torch.rand(5, 3, 3), [0, 1, 2, 3, 4]

    def probs(x):
        return torch.softmax(tiny_classifier(x), dim=1)

    a = average_drop_increase(probs, images, cams, targets, batch_size=2)
    b = average_drop_increase(tiny_classifier, images, cams, targets, logits=True)
    np.testing.assert_allclose(a["drop"], b["drop"], rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(a["increase"], b["increase"])


def test_the_frozen_network_scores_as_the_module_does(tiny_backbone):
    """The faithfulness metrics run the network frozen by TorchScript (4 images a call on a
    CPU); their values are the eager module's to 1e-6."""
    from hrcam.metrics.faithfulness import frozen_for_inference

    torch.manual_seed(0)
    images, cams, targets = (
        torch.randn(5, 3, 32, 32),
        torch.rand(5, 4, 4),
        torch.tensor([0, 1, 2, 0, 1]),
    )
    frozen = frozen_for_inference(tiny_backbone, images[:4])
    assert frozen is not tiny_backbone  # TorchScript could freeze it
    assert frozen_for_inference(tiny_backbone, images[:2]) is frozen  # cached per input shape
    with torch.inference_mode():
        eager = deletion_insertion(
            tiny_backbone, images, cams, targets, steps=16, batch_size=32, logits=True
        )
        fast = deletion_insertion(
            frozen, images, cams, targets, steps=16, batch_size=4, logits=True
        )
    for key in ("deletion_auc", "insertion_auc"):
        np.testing.assert_allclose(fast[key], eager[key], rtol=0, atol=1e-6)


def test_a_network_torchscript_cannot_trace_runs_as_it_is():
    from hrcam.metrics.faithfulness import frozen_for_inference

    class Untraceable(torch.nn.Module):  # TorchScript's tracer refuses a dict output
        def forward(self, x):
            return {"logits": x.flatten(1)[:, :3]}

    module = Untraceable().eval()
    assert frozen_for_inference(module, torch.rand(2, 3, 8, 8)) is module


def test_the_blurred_baseline_keeps_the_images_type_under_autocast():
    images = torch.rand(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        blurred = blur_images(images)
    assert blurred.dtype == torch.float32
    torch.testing.assert_close(blurred, blur_images(images))
