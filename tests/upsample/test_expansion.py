import pytest
import torch

from hrcam import create_backbone
from hrcam.upsample.expansion import ExpansionNetwork, default_decoder_channels


@pytest.mark.parametrize("size", [(32, 32), (37, 29), (33, 64)])
def test_output_at_input_resolution_for_any_size(tiny_model, size):
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        features, skips = tiny_model.backbone.forward_features(x, return_skips=True)
        decoded = tiny_model.expansion.decode(features, skips, size)
        assert decoded.full().shape == (2, 8, *size)
        assert tiny_model.expansion.reconstruct(decoded).shape == (2, 3, *size)


def test_folded_heads_equal_the_materialised_k_channel_maps(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 40, 36)
    expansion, backbone = tiny_model.expansion, tiny_model.backbone
    with torch.no_grad():
        features, skips = backbone.forward_features(x, return_skips=True)
        decoded = expansion.decode(features, skips, x.shape[-2:])
        a_high = expansion.high_res_features(decoded)  # (B, K, H, W), built explicitly here only
        assert a_high.shape == (3, backbone.num_features, 40, 36)
        weights = backbone.fc.weight[torch.tensor([0, 2, 1])]
        expected = torch.einsum("bk,bkhw->bhw", weights, a_high)
        torch.testing.assert_close(
            expansion.class_maps(decoded, weights), expected, rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(
            expansion.reconstruct(decoded),
            expansion.reconstruction_head(a_high),
            rtol=1e-5,
            atol=1e-5,
        )
        pooled = torch.nn.functional.adaptive_avg_pool2d(a_high, features.shape[-2:])
        torch.testing.assert_close(
            expansion.pooled_features(decoded, features.shape[-2:]), pooled, rtol=1e-5, atol=1e-5
        )


def test_mirrors_backbone_stages():
    backbone = create_backbone("efficientnet_lite0", weights=None)
    expansion = ExpansionNetwork.from_backbone(backbone)
    # Stride 32 → 16 → 8 → 4 → 2 → (sub-pixel) 1: four stages, one per skip, then the sub-pixel head.
    assert expansion._stage_strides == [16, 8, 4, 2]
    assert [s.skip_proj is not None for s in expansion.stages] == [True] * 4
    assert len(default_decoder_channels(5)) == 6
    no_skip = ExpansionNetwork.from_backbone(backbone, skip_connections=False)
    assert all(s.skip_proj is None for s in no_skip.stages)


def test_config_round_trip_and_mismatch(tiny_backbone):
    expansion = ExpansionNetwork.from_backbone(tiny_backbone, upsample="transposed")
    rebuilt = ExpansionNetwork.from_config(expansion.config)
    assert rebuilt.config == expansion.config
    rebuilt.load_state_dict(expansion.state_dict())
    other = create_backbone("tiny_densenet", num_classes=3, block_config=(1, 1))
    with pytest.raises(ValueError, match="does not match the localization network"):
        expansion.check_backbone(other)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"feature_stride": 12}, "power of two"),
        ({"decoder_channels": (8, 8)}, "needs 4 widths"),
        ({"upsample": "nearest"}, "upsample must be"),
    ],
)
def test_bad_configuration(kwargs, match):
    args = {"num_features": 8, "feature_stride": 8, "skip_info": [("a", 2, 4), ("b", 4, 4)]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ExpansionNetwork(
            args.pop("num_features"), args.pop("feature_stride"), args.pop("skip_info"), **args
        )


def test_configs_of_hrcam_0_1_load_without_their_guidance_head(tiny_backbone):
    expansion = ExpansionNetwork.from_backbone(tiny_backbone)
    old = {**expansion.config, "guided": True, "guide_sigma": 0.1, "coarse_to_fine": True}
    assert ExpansionNetwork.from_config(old).config == expansion.config
