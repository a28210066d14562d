"""torchcam as a second implementation: the same method from two libraries gives the same map."""

from __future__ import annotations

import pytest
import torch

from hrcam.methods import TorchCAMMethod, create_method, list_methods
from hrcam.methods.peers import fused_skip_indices

pytest.importorskip("torchcam")

TORCHCAM = (
    "torchcam_cam",
    "torchcam_gradcam",
    "torchcam_gradcampp",
    "torchcam_xgradcam",
    "torchcam_layercam",
    "torchcam_refinecam",
    "torchcam_refinecam_fused",
    "torchcam_finercam",
)


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    low = maps.flatten(1).amin(1)[:, None, None]
    high = maps.flatten(1).amax(1)[:, None, None]
    return (maps - low) / (high - low).clamp_min(1e-12)


def test_torchcam_methods_are_registered():
    assert set(TORCHCAM) <= set(list_methods())


@pytest.mark.parametrize("name", TORCHCAM)
def test_each_torchcam_method_gives_maps_in_0_1_at_input_size(tiny_model, batch, name):
    x, targets = batch
    method = create_method(name)
    assert isinstance(method, TorchCAMMethod) and method.settings()["library"].startswith(
        "torchcam"
    )
    maps = method(tiny_model, x, targets)
    assert maps.shape == (3, 32, 40) and torch.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert all(p.grad is None and p.requires_grad for p in tiny_model.backbone.parameters())


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("torchcam_gradcam", "gradcam"),
        ("torchcam_layercam", "layercam"),
        ("torchcam_xgradcam", "xgradcam"),
        ("torchcam_cam", "low_res"),
    ],
)
def test_the_same_method_from_both_libraries_is_the_same_map(tiny_model, batch, ours, theirs):
    x, targets = batch
    torch.testing.assert_close(
        create_method(ours)(tiny_model, x, targets),
        _normalise(create_method(theirs)(tiny_model, x, targets)),
        atol=1e-5,
        rtol=0,
    )


def test_torchcams_gradcampp_leaves_alpha_unnormalised(tiny_model, batch):
    # torchcam 0.5.0 divides alpha in place on a boolean-masked copy (`alpha[mask].div_(...)`), so
    # the division is lost and its weights are sum_ij g^2 relu(g). With GAP + FC, g = w / (h w)
    # everywhere: the weights are proportional to relu(w)^3 — not pytorch-grad-cam's Grad-CAM++.
    x, targets = batch
    with torch.no_grad():
        features = tiny_model.backbone.forward_features(x)
    w = tiny_model.backbone.fc.weight[targets]
    expected = torch.einsum("bk,bkhw->bhw", w.clamp_min(0) ** 3, features).clamp_min(0)
    # (Renormalised: such weights make maps of ~1e-6, where torchcam's max + 1e-8 shows.)
    torch.testing.assert_close(
        _normalise(create_method("torchcam_gradcampp").native(tiny_model, x, targets)),
        _normalise(expected),
        atol=1e-4,
        rtol=0,
    )


def test_refinecam_multiplies_at_the_finest_layers_grid(tiny_model, batch):
    x, targets = batch
    fine = tiny_model.backbone.skip_info[fused_skip_indices(tiny_model.backbone)[0]].stride
    native = create_method("torchcam_refinecam_fused").native(tiny_model, x, targets)
    assert native.shape == (3, 32 // fine, 40 // fine)
