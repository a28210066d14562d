"""--model FILE.py:FUNCTION: a user's own network on the command line, and its export."""

import textwrap

import numpy as np
import pytest
import torch

import hrcam
from hrcam.builders import BuilderError, is_builder_spec

pytest.importorskip("monai")

BUILDER = textwrap.dedent(
    """
    import torch
    from monai.networks.nets import DenseNet121

    def build():
        torch.manual_seed(3)
        net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2,
                          init_features=8, growth_rate=4, block_config=(1, 1, 1, 1))
        net.class_names = ["normal", "lesion"]
        return net

    def explainer():
        import hrcam
        return hrcam.from_model(build(), input_size=48).replace(window=(0.0, 100.0))

    def broken():
        raise RuntimeError("no weights here")

    def not_a_network():
        return 42
    """
)


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "my_nets.py"
    path.write_text(BUILDER)
    return path


def test_a_builder_file_gives_the_wrapped_network_of_volumes(nets):
    explainer = hrcam.load_model(f"{nets}:build")
    assert explainer.spatial_dims == 3 and explainer.class_names == ["normal", "lesion"]
    assert explainer.backbone.config["builder"] == f"{nets}:build"
    e = explainer.explain(np.random.default_rng(0).random((40, 40, 40)).astype(np.float32))
    assert e.refined.shape == (1, 96, 96, 96)
    own = hrcam.load_model(f"{nets}:explainer")
    assert own.input_size == (48, 48, 48) and own.window == (0.0, 100.0)


def test_builder_failures_are_one_line(nets, tmp_path):
    cases = {
        f"{nets}:broken": "the builder failed: RuntimeError: no weights here",
        f"{nets}:not_a_network": "returned a int",
        f"{nets}:missing": "has no function 'missing'",
        f"{tmp_path / 'nowhere.py'}:build": "not found",
        "no_such_package.nets:build": "cannot import no_such_package.nets",
    }
    for spec, message in cases.items():
        with pytest.raises(BuilderError, match=message) as info:
            hrcam.load_model(spec)
        assert "\n" not in str(info.value)
    assert is_builder_spec("pkg.mod:fn") and is_builder_spec("a/b.py:fn")
    assert not is_builder_spec("C:model.pt") and not is_builder_spec("timm/resnet50")


def test_an_exported_builder_network_loads_back_with_its_weights(nets, tmp_path):
    explainer = hrcam.load_model(f"{nets}:build")
    with torch.no_grad():  # weights the builder does not make: they must come from the export
        explainer.backbone.fc.weight.mul_(-2.0)
    out = hrcam.export_model(explainer, tmp_path / "lesions.safetensors")
    again = hrcam.load_model(out)
    x = torch.randn(1, 1, 48, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(again.backbone(x), explainer.backbone(x))
    assert again.class_names == ["normal", "lesion"] and again.spatial_dims == 3


@pytest.mark.parametrize("kind", ["monai-3d", "torchvision"])
def test_a_wrapped_network_without_a_builder_is_exported_traced(kind, tmp_path):
    """No function rebuilds it: its trunk is traced beside the weights, and the loaded model
    gives the same logits and CAMs without the user's code."""
    torch.manual_seed(7)
    if kind == "monai-3d":
        from monai.networks.nets import DenseNet121

        module = DenseNet121(
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            init_features=8,
            growth_rate=4,
            block_config=(1, 1, 1, 1),
        )
        explainer = hrcam.from_model(module, class_names=["a", "b"], input_size=32)
        x = torch.randn(2, 1, 32, 32, 32)
    else:
        import torchvision

        module = torchvision.models.resnet18(weights=None, num_classes=3)
        explainer = hrcam.from_model(module, class_names=["a", "b", "c"], input_size=64)
        x = torch.randn(2, 3, 64, 64)
    out = hrcam.export_model(explainer, tmp_path / "net.safetensors")
    assert (tmp_path / "net.trunk.pt2").is_file()
    again = hrcam.load_model(out)
    assert type(again.backbone).__name__ == "TracedBackbone"
    assert again.backbone.spatial_dims == explainer.backbone.spatial_dims
    assert again.class_names == explainer.class_names
    with torch.no_grad():
        torch.testing.assert_close(again.backbone(x), module(x), rtol=1e-4, atol=1e-4)
        targets = torch.tensor([0, 1])
        features = again.backbone.forward_features(x)
        torch.testing.assert_close(
            again.backbone.cam(features, targets),
            explainer.backbone.cam(explainer.backbone.forward_features(x), targets),
            rtol=1e-4,
            atol=1e-4,
        )
    (tmp_path / "net.trunk.pt2").unlink()
    with pytest.raises(hrcam.checkpoint.CheckpointError, match="net.trunk.pt2 is missing"):
        hrcam.load_model(out)
