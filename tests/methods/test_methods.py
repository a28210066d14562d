"""CAM methods: the registry and spec parsing, ours against the model, peers on the tiny model."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from hrcam import Explainer, ImageBatch, create_backbone, upsample_cam
from hrcam.methods import (
    GradCAMMethod,
    MissingDependencyError,
    TappedBackbone,
    create_method,
    list_methods,
    parse_method_list,
    parse_method_spec,
    register_method,
)
from hrcam.methods.peers import fused_skip_indices
from hrcam.postprocess import RefineOptions, refine, refine_batch

PEERS = (
    "gradcam",
    "gradcampp",
    "hirescam",
    "xgradcam",
    "layercam",
    "layercam_fused",
    "refinecam",
    "refinecam_fused",
    "finercam",
    "shapleycam",
    "eigencam",
    "scorecam",
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    lo = maps.amin(dim=(1, 2), keepdim=True)
    return (maps - lo) / (maps.amax(dim=(1, 2), keepdim=True) - lo + 1e-7)


# -- registry and specs ---------------------------------------------------------------------------


def test_registry_lists_ours_then_peers():
    assert list_methods()[:3] == ["low_res", "high_res", "refined"]
    assert set(PEERS) <= set(list_methods())


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(KeyError, match="Did you mean 'gradcam'.*Valid methods: low_res"):
        create_method("gradcma")


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_method("gradcam")(lambda name, params, **context: None)


def test_spec_parsing():
    assert parse_method_spec("refined:focal_scope=local, merge=multiply") == (
        "refined",
        {"focal_scope": "local", "merge": "multiply"},
    )
    assert parse_method_list(["low_res,refined:merge=multiply,alpha=0.7,gradcam", "scorecam"]) == [
        "low_res",
        "refined:merge=multiply,alpha=0.7",
        "gradcam",
        "scorecam",
    ]
    with pytest.raises(ValueError, match="listed twice"):
        parse_method_list("gradcam,gradcam")
    with pytest.raises(ValueError, match="no method comes before it"):
        parse_method_list("alpha=0.5,refined")
    with pytest.raises(ValueError, match="not key=value"):
        parse_method_spec("refined:alpha")


def test_refined_options_are_typed_and_checked():
    base = RefineOptions(alpha=0.3)
    method = create_method(
        "refined:num_points=auto,blur_size=7,merge=multiply", refine_options=base
    )
    assert method.options == RefineOptions(
        alpha=0.3, num_points=None, blur_size=7, merge="multiply"
    )
    assert method.name == "refined:num_points=auto,blur_size=7,merge=multiply"
    with pytest.raises(ValueError, match="unknown option.*bogus"):
        create_method("refined:bogus=1")
    with pytest.raises(ValueError, match="blur_size='x' is not a int"):
        create_method("refined:blur_size=x")
    with pytest.raises(ValueError, match="merge must be one of"):
        create_method("refined:merge=sum")
    with pytest.raises(ValueError, match="unknown option"):
        create_method("gradcam:batch_size=4")


def test_missing_grad_cam_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    with pytest.raises(MissingDependencyError, match=r"pip install -e .\.\[compare\]."):
        create_method("gradcam")
    create_method("low_res")  # ours need nothing optional


# -- ours -----------------------------------------------------------------------------------------


def test_low_res_is_the_upsampled_cam(tiny_model, batch):
    x, targets = batch
    method = create_method("low_res")
    native = method.native(tiny_model, x, targets)
    assert native.shape == (3, 4, 5)  # stride 8
    maps = method(tiny_model, x, targets)
    assert maps.shape == (3, 32, 40) and maps.dtype == torch.float32
    torch.testing.assert_close(maps, upsample_cam(native, (32, 40)))


def _images(model, x):
    return ImageBatch.from_normalized(x, model.backbone.mean, model.backbone.std)


def test_high_res_and_refined_are_the_explainers(tiny_model, batch):
    x, targets = batch
    images = _images(tiny_model, x)
    cams = tiny_model.cams(images, targets)
    torch.testing.assert_close(create_method("high_res")(tiny_model, x, targets), cams.high_res)
    method = create_method("refined:merge=multiply")
    maps = method(tiny_model, x, targets)
    for i in range(3):
        expected = refine(
            cams.low_res[i].numpy(), cams.high_res[i].numpy(), merge="multiply"
        ).refined
        np.testing.assert_array_equal(maps[i].numpy(), expected)
    # The one call with the same settings gives the same maps, and so does "refined" alone.
    multiply = tiny_model.replace(
        refine_options=tiny_model.refine_options.replace(merge="multiply")
    )
    torch.testing.assert_close(multiply.explain(images, targets).refined, maps)
    torch.testing.assert_close(
        create_method("refined")(tiny_model, x, targets),
        tiny_model.explain(images, targets).refined,
    )
    # The batched implementation gives the same refined CAMs.
    batched = refine_batch(cams.low_res, cams.high_res, merge="multiply").refined
    torch.testing.assert_close(batched, maps, atol=1e-5, rtol=0)


def test_only_the_papers_high_res_needs_an_expansion_network(tiny_backbone, batch):
    x, targets = batch
    model = Explainer(tiny_backbone).eval()
    for name in ("high_res", "refined"):
        assert create_method(name)(model, x, targets).shape == (3, *x.shape[-2:])
        with pytest.raises(ValueError, match="needs the paper's expansion network"):
            create_method(f"{name}:mode=paper")(model, x, targets)


def test_bad_inputs_are_refused(tiny_model, batch):
    x, targets = batch
    with pytest.raises(ValueError, match=r"targets must be \(3,\) integer"):
        create_method("low_res")(tiny_model, x, targets[:2])
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        create_method("gradcam")(tiny_model, x, torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match=r"x must be a float tensor \(B, 3, H, W\)"):
        create_method("low_res")(tiny_model, x[0], targets)


# -- peers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PEERS)
def test_each_peer_gives_finite_maps_at_input_size(tiny_model, batch, name):
    x, targets = batch
    method = create_method(name)
    assert isinstance(method, GradCAMMethod) and method.family == "peer"
    maps = method(tiny_model, x, targets)
    assert maps.shape == (3, 32, 40) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    settings = method.settings()
    assert settings["aug_smooth"] is False and settings["eigen_smooth"] is False
    # The model is left as it was: no gradients kept, weights still trainable.
    assert all(p.grad is None and p.requires_grad for p in tiny_model.backbone.parameters())


def test_gradcam_of_a_gap_fc_network_is_the_relu_cam(tiny_model, batch):
    # With A followed by GAP and one FC layer, dy_c/dA_k = w_ck / (h w) everywhere: Grad-CAM and
    # HiResCAM both give ReLU(CAM), which grad-cam normalises and resizes bilinearly.
    x, targets = batch
    low = create_method("low_res").native(tiny_model, x, targets)
    expected = _normalise(upsample_cam(_normalise(low.clamp_min(0)), (32, 40)))
    # ShapleyCAM's Hessian term vanishes too (dy/dA does not depend on A): it is Grad-CAM here.
    for name in ("gradcam", "hirescam", "shapleycam"):
        torch.testing.assert_close(
            create_method(name)(tiny_model, x, targets), expected, atol=1e-5, rtol=0
        )


def test_refinecam_is_the_product_of_its_layers_gradcampp_maps(tiny_model, batch):
    # RefineCAM ("How to Evaluate and Refine your CAM", 2026) over LayerCAM fused's layers:
    # the product of the min-max normalised Grad-CAM++ maps of each layer, normalised again.
    import pytorch_grad_cam

    x, targets = batch
    wrapper = TappedBackbone(tiny_model.backbone)
    per_layer = []
    for layer in create_method("refinecam_fused").target_layers(wrapper):
        cam = pytorch_grad_cam.GradCAMPlusPlus(model=wrapper, target_layers=[layer])
        per_layer.append(
            cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        )
        cam.activations_and_grads.release()
    expected = torch.from_numpy(np.prod(per_layer, axis=0))
    torch.testing.assert_close(
        create_method("refinecam_fused")(tiny_model, x, targets),
        _normalise(expected),
        atol=1e-5,
        rtol=0,
    )


def test_finercam_compares_the_target_with_its_nearest_classes(tiny_model, batch):
    # FinerCAM (Zhang et al. 2025) weights y_c - alpha * mean(y_near); with three classes, the two
    # others are the comparison set, so the map differs from Grad-CAM's.
    x, targets = batch
    finer = create_method("finercam")(tiny_model, x, targets)
    plain = create_method("gradcam")(tiny_model, x, targets)
    assert torch.isfinite(finer).all() and (finer - plain).abs().amax() > 1e-3


def test_peers_explain_the_target_they_are_given(tiny_model, batch):
    x, targets = batch
    a = create_method("gradcam")(tiny_model, x, targets)
    b = create_method("gradcam")(tiny_model, x, (targets + 1) % 3)
    assert (a - b).abs().amax() > 1e-3


@pytest.mark.parametrize("name", ["gradcam", "layercam_fused", "eigencam"])
def test_minimal_and_full_backward_agree(tiny_model, batch, name):
    x, targets = batch
    minimal = create_method(name)(tiny_model, x, targets)
    full = create_method(f"{name}:backward=full")(tiny_model, x, targets)
    torch.testing.assert_close(minimal, full, atol=1e-6, rtol=0)


def test_peers_run_inside_inference_mode(tiny_model, batch):
    x, targets = batch
    expected = create_method("layercam_fused")(tiny_model, x, targets)
    with torch.inference_mode():
        x_inference = x.clone()
        maps = create_method("layercam_fused")(tiny_model, x_inference, targets)
    torch.testing.assert_close(maps, expected)


def test_taps_see_the_contract_features():
    backbone = create_backbone("efficientnet_lite0", weights=None).eval()
    wrapper = TappedBackbone(backbone)
    seen = {}
    wrapper.final.register_forward_hook(lambda m, i, o: seen.setdefault("final", o))
    backbone.trunk.bn2.register_forward_hook(lambda m, i, o: seen.setdefault("bn2", o))
    for k, tap in enumerate(wrapper.skips):
        tap.register_forward_hook(lambda m, i, o, k=k: seen.setdefault(k, o))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = wrapper(x)
        torch.testing.assert_close(logits, backbone(x))
    # For EfficientNet-Lite0, A is the output of the trunk's head (conv_head -> bn2 + ReLU6).
    assert seen["final"] is seen["bn2"]
    assert [backbone.skip_info[i].stride for i in fused_skip_indices(backbone)] == [8, 16]
    assert [backbone.skip_info[i].name for i in fused_skip_indices(backbone)] == [
        "blocks.2",
        "blocks.4",
    ]
    assert seen[2].shape[-1] == 8 and seen[3].shape[-1] == 4


def test_fused_layers_on_a_shallow_backbone(tiny_backbone):
    # Final stride 8: the skips at strides 2 and 4 are S/4 and S/2.
    assert [tiny_backbone.skip_info[i].stride for i in fused_skip_indices(tiny_backbone)] == [2, 4]
    layers = create_method("layercam_fused").layer_names(tiny_backbone)
    assert layers[0].startswith("skip block1 (stride 2") and layers[-1].startswith(
        "final features A"
    )


# -- native maps, "+guided" and the multi-scale baselines -----------------------------------------


def test_native_maps_are_at_the_layers_own_grid(tiny_model, batch):
    x, targets = batch  # 32×40 at stride 8: a 4×5 grid
    assert create_method("gradcam").native(tiny_model, x, targets).shape == (3, 4, 5)
    assert create_method("low_res").native(tiny_model, x, targets).shape == (3, 4, 5)
    # Fused layers are combined at the finest one's grid (the stride-2 skip here: 16×20).
    fine = fused_skip_indices(tiny_model.backbone)[0]
    stride = tiny_model.backbone.skip_info[fine].stride
    fused = create_method("layercam_fused").native(tiny_model, x, targets)
    assert fused.shape == (3, 32 // stride, 40 // stride)
    # The native map resized the library's way is the library's own map.
    native = create_method("gradcam").native(tiny_model, x, targets)
    full = create_method("gradcam")(tiny_model, x, targets)
    resized = torch.nn.functional.interpolate(
        native[:, None], size=(32, 40), mode="bilinear", align_corners=False
    )[:, 0]
    torch.testing.assert_close(_normalise(resized), full, rtol=0, atol=0.02)


def test_plus_guided_upsamples_the_native_map(tiny_model, batch):
    from hrcam import guided_upsample

    x, targets = batch
    method = create_method("gradcam+guided:colour_sigma=0.2")
    assert method.name == "gradcam+guided:colour_sigma=0.2" and method.family == "peer+guided"
    native = create_method("gradcam").native(tiny_model, x, targets)
    expected = guided_upsample(native, _images(tiny_model, x).pixels, colour_sigma=0.2)
    torch.testing.assert_close(method(tiny_model, x, targets), expected)
    # low_res+guided is the guided high-res CAM itself, of all or of the positive FC weights.
    torch.testing.assert_close(
        create_method("low_res+guided:weights=positive")(tiny_model, x, targets),
        create_method("high_res")(tiny_model, x, targets),  # the model's default
    )
    torch.testing.assert_close(
        create_method("low_res+guided")(tiny_model, x, targets),
        create_method("high_res:weights=all")(tiny_model, x, targets),
    )
    with pytest.raises(KeyError, match="unknown upsampler 'bilinear'"):
        create_method("gradcam+bilinear")
    with pytest.raises(ValueError, match="not a number"):
        create_method("gradcam+guided:colour_sigma=big")
    with pytest.raises(ValueError, match="unknown option"):
        create_method("gradcam+guided:alpha=0.3")
    assert create_method("gradcam+guided:stride=1").options == {"stride": 1}
    for bad in ("0", "1.5", "-2", "two"):
        with pytest.raises(ValueError, match="stride must be an integer >= 1"):
            create_method(f"gradcam+guided:stride={bad}")
    assert create_method("gradcam+guided:lattice_filter=0").options == {"lattice_filter": False}
    for key in ("lattice_filter", "coarse_to_fine"):
        with pytest.raises(ValueError, match=f"{key} must be 0 or 1, got 'maybe'"):
            create_method(f"gradcam+guided:{key}=maybe")


def test_enlarged_input_and_multiscale_baselines(tiny_model, batch):
    x, targets = batch
    twice = create_method("low_res:scale=2").native(tiny_model, x, targets)
    big = torch.nn.functional.interpolate(x, size=(64, 80), mode="bilinear", align_corners=False)
    torch.testing.assert_close(twice, _low_res(tiny_model, big, targets))
    fused = create_method("multiscale").native(tiny_model, x, targets)
    assert fused.shape == twice.shape  # on the finest (2×) grid
    cams = [
        upsample_cam(
            _low_res(
                tiny_model,
                torch.nn.functional.interpolate(
                    x, size=(round(32 * s), round(40 * s)), mode="bilinear", align_corners=False
                )
                if s != 1
                else x,
                targets,
            ),
            (8, 10),
        )
        for s in (1, 1.5, 2)
    ]
    torch.testing.assert_close(fused, torch.stack(cams).mean(0), rtol=1e-5, atol=1e-5)
    assert create_method("multiscale:scales=1/2")(tiny_model, x, targets).shape == (3, 32, 40)
    with pytest.raises(ValueError, match="scale must lie in"):
        create_method("low_res:scale=0.5")


def test_at_layer_resolution_gives_pytorch_grad_cams_map_before_its_resize():
    import torchvision
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from hrcam.methods import at_layer_resolution

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    x = torch.randn(2, 3, 64, 96)
    cam = GradCAM(model=model, target_layers=[model.layer4[-1]])
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(3)]
    with at_layer_resolution(cam):
        low = cam(input_tensor=x, targets=targets)
    assert low.shape == (2, 2, 3)  # layer4's grid at stride 32
    assert cam(input_tensor=x, targets=targets).shape == (2, 64, 96)  # restored afterwards
    with pytest.raises(TypeError, match="pytorch-grad-cam CAM object"):
        with at_layer_resolution(model):
            pass


def _low_res(model, x, targets):
    with torch.inference_mode():
        return model.backbone.cam(model.backbone.forward_features(x), targets)
