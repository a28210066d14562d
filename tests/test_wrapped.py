"""hrcam.from_model: the classifiers people already have, wrapped without copying them.

For every family the wrap accepts: its logits through hrcam equal ``module(x)`` and the CAM
identity (spatial mean + bias = logit) holds; for the heads that have no exact CAM, the error
names the head. Random initialisation throughout (nothing is downloaded).
"""

import pytest
import timm
import torch
import torchvision

from hrcam import create_backbone, from_model

# (constructor, input size of the check): torchvision families with a GAP + linear head.
TORCHVISION = [
    ("resnet18", 64),
    ("resnext50_32x4d", 64),
    ("densenet121", 64),
    ("efficientnet_b0", 64),
    ("efficientnet_v2_s", 64),
    ("regnet_y_400mf", 64),
    ("mobilenet_v2", 64),
    ("mnasnet0_5", 64),
    ("shufflenet_v2_x0_5", 64),
    ("swin_t", 96),
]
TIMM = [
    ("resnet18", {}, 64),
    ("efficientnet_b0", {}, 64),
    ("regnety_002", {}, 64),
    ("swin_tiny_patch4_window7_224", {}, 224),
    ("deit_tiny_patch16_224", {"global_pool": "avg", "fc_norm": False}, 224),
]


def _check_identities(model, module, size, *, grid):
    torch.manual_seed(1)
    x = torch.randn(2, 3, size, size)
    backbone = model.backbone
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), module(x), rtol=1e-5, atol=1e-5)
        features, skips = backbone.forward_features(x, return_skips=True)
        logits = backbone.forward_head(features)
        for target in (0, 7):
            cam = backbone.cam(features, torch.full((2,), target))
            torch.testing.assert_close(
                cam.mean((1, 2)) + backbone.fc.bias[target], logits[:, target], rtol=1e-4, atol=1e-4
            )
    assert tuple(features.shape[-2:]) == grid
    for info, skip in zip(backbone.skip_info, skips, strict=True):
        assert skip.shape[1] == info.channels and skip.shape[-1] == -(-size // info.stride)
    e = model.replace(input_size=size).explain(torch.rand(2, 3, size, size))
    assert e.high_res.shape == e.refined.shape == (2, size, size) and e.low_res.shape == (2, *grid)


@pytest.mark.parametrize(("name", "size"), TORCHVISION, ids=[c[0] for c in TORCHVISION])
def test_torchvision_families_keep_their_logits_and_the_cam_identity(name, size):
    torch.manual_seed(0)
    module = getattr(torchvision.models, name)(weights=None, num_classes=10)
    model = from_model(module, input_size=size)
    grid = -(-size // 32)
    _check_identities(model, module, size, grid=(grid, grid))
    assert model.backbone.fc is module.get_submodule(model.backbone._classifier_path)  # no copy
    assert model.backbone.feature_stride == 32 and model.class_names[3] == "class_3"


@pytest.mark.parametrize(("name", "kwargs", "size"), TIMM, ids=[c[0] for c in TIMM])
def test_timm_families_keep_their_logits_and_the_cam_identity(name, kwargs, size):
    torch.manual_seed(0)
    module = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    model = from_model(module)
    grid = size // model.backbone.feature_stride
    _check_identities(model, module, size, grid=(grid, grid))
    assert model.backbone.input_size == module.pretrained_cfg["input_size"][-1]  # timm's default


def test_a_vit_with_averaged_tokens_has_its_cam_on_the_patch_grid():
    module = timm.create_model(
        "deit_tiny_patch16_224", pretrained=False, global_pool="avg", fc_norm=False
    )
    model = from_model(module)
    assert model.backbone.feature_stride == 16 and model.backbone.skip_info == ()
    assert model.explain(torch.rand(1, 3, 224, 224)).low_res.shape == (1, 14, 14)
    assert model.class_names[0] == "tench"  # 1000 classes: ImageNet's names by default


def test_the_wrap_follows_the_users_module_as_it_changes():
    module = torchvision.models.resnet18(weights=None, num_classes=4)
    model = from_model(module, input_size=64, class_names=list("abcd"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        module.fc.weight.mul_(2)
        torch.testing.assert_close(model.backbone(x), module(x))
    assert model.class_names == list("abcd") and not module.training


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: torchvision.models.mobilenet_v3_small(weights=None), "Linear → Hardswish"),
        (lambda: torchvision.models.convnext_tiny(weights=None), "normalises after pooling"),
        (
            lambda: torchvision.models.VisionTransformer(
                image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=16
            ),
            "class token",
        ),
        (lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), "no adaptive average pooling"),
        (lambda: timm.create_model("convnext_atto"), "NormMlpClassifierHead.*after pooling"),
        (lambda: timm.create_model("mobilenetv3_small_050"), "layers between pooling"),
        (lambda: timm.create_model("deit_tiny_patch16_224"), "pools with 'token'"),
        (
            lambda: timm.create_model("deit_tiny_patch16_224", global_pool="avg"),
            "fc_norm=False",
        ),
        (lambda: timm.create_model("resnet18", global_pool="max"), "pools with 'max'"),
    ],
    ids=[
        "tv-mobilenetv3",
        "tv-convnext",
        "tv-vit",
        "sequential",
        "timm-convnext",
        "timm-mobilenetv3",
        "timm-vit-token",
        "timm-vit-fc-norm",
        "timm-maxpool",
    ],
)
def test_heads_without_an_exact_cam_are_refused_by_name(build, match):
    with pytest.raises(ValueError, match=match) as info:
        from_model(build())
    assert "guided_upsample" in str(info.value)  # and it says what to do instead


def test_timm_registry_keeps_the_trained_head(tmp_path):
    """A timm state dict saved with a seeded head loads back through hrcam with the same logits."""
    torch.manual_seed(5)
    reference = timm.create_model("resnet18", pretrained=False, num_classes=6).eval()
    with torch.no_grad():
        reference.fc.weight.normal_(std=0.5)
        reference.fc.bias.uniform_(-1, 1)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    ours = create_backbone("timm/resnet18", weights=str(tmp_path / "resnet18.pth")).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    assert ours.num_classes == 6
    # And this backbone's own state dict (trunk.* / fc.*) round-trips too.
    torch.save(ours.state_dict(), tmp_path / "hrcam.pth")
    again = create_backbone("timm/resnet18", num_classes=6, weights=str(tmp_path / "hrcam.pth"))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), reference(x), rtol=1e-5, atol=1e-5)


def test_timm_registry_refuses_a_non_linear_head():
    with pytest.raises(ValueError, match="after pooling"):
        create_backbone("timm/convnext_atto")


monai_nets = pytest.importorskip("monai.networks.nets")


@pytest.mark.parametrize(
    "build",
    [
        lambda: monai_nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2),
        lambda: monai_nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=3),
        lambda: monai_nets.EfficientNetBN(
            "efficientnet-b0", spatial_dims=3, in_channels=2, num_classes=2, pretrained=False
        ),
        lambda: monai_nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=4),
    ],
    ids=["densenet121-3d", "resnet10-3d", "efficientnet-b0-3d-2ch", "densenet121-2d-gray"],
)
def test_monai_classifiers_are_wrapped_with_exact_cams_in_2d_and_3d(build):
    torch.manual_seed(0)
    module = build()
    explainer = from_model(module, input_size=64)
    backbone = explainer.backbone
    spatial = 3 if _is_3d(module) else 2
    assert backbone.spatial_dims == spatial and backbone.skip_info == ()
    assert (
        backbone.mean == (0.0,) * backbone.in_chans and backbone.std == (1.0,) * backbone.in_chans
    )
    x = torch.randn(2, backbone.in_chans, *(64,) * spatial)
    with torch.no_grad():
        expected = module(x)
        features = backbone.forward_features(x)
        logits = backbone.forward_head(features)
        targets = expected.argmax(1)
        cams = backbone.cam(features, targets)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert cams.shape == (2, *features.shape[2:])
    # The CAM is exact: its mean plus the bias is the target's logit.
    mean = cams.flatten(1).mean(1) + backbone.fc.bias[targets]
    torch.testing.assert_close(
        mean, expected.gather(1, targets[:, None])[:, 0], rtol=1e-4, atol=1e-4
    )


def _is_3d(module):
    return any(isinstance(m, torch.nn.Conv3d) for m in module.modules())


def test_a_hand_written_network_is_wrapped_and_an_mlp_head_refused():
    class Small(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, stride=2), torch.nn.ReLU())
            self.pool = torch.nn.AdaptiveAvgPool3d(1)
            self.head = head

        def forward(self, x):
            return self.head(self.pool(self.body(x)).flatten(1))

    wrapped = from_model(Small(torch.nn.Linear(8, 2)), input_size=32)
    assert wrapped.backbone.spatial_dims == 3 and wrapped.backbone.feature_stride == 2
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with pytest.raises(ValueError, match="does not reproduce its logits"):
        from_model(Small(mlp), input_size=32)
