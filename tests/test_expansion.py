import pytest
import torch

from hrcam import create_backbone
from hrcam.expansion import ExpansionNetwork, default_decoder_channels


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


def test_guided_upsampling_is_linear_and_convex(tiny_model):
    torch.manual_seed(0)
    expansion, backbone = tiny_model.expansion, tiny_model.backbone
    torch.nn.init.normal_(expansion.guidance_head.weight, std=0.5)  # as if trained
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        features, skips = backbone.forward_features(x, return_skips=True)
        decoded = expansion.decode(features, skips, x.shape[-2:])
        weights = expansion.guidance_weights(decoded, features.shape[-2:])
        assert weights.shape == (2, 9, 37, 45)
        torch.testing.assert_close(weights.sum(1), torch.ones(2, 37, 45))
        # Upsampling the K maps then weighting by the FC row == upsampling the CAM.
        up = expansion.guided_upsample(decoded, features)
        targets = torch.tensor([0, 2])
        cam_first = expansion.guided_upsample(decoded, backbone.cam(features, targets)[:, None])[
            :, 0
        ]
        torch.testing.assert_close(
            torch.einsum("bk,bkhw->bhw", backbone.fc.weight[targets], up),
            cam_first,
            rtol=1e-5,
            atol=1e-5,
        )
        # Convex: a constant map stays constant, values stay inside the neighbours' range.
        const = expansion.guided_upsample(decoded, torch.full((2, 1, *features.shape[-2:]), 3.0))
        torch.testing.assert_close(const, torch.full_like(const, 3.0))
        cam = backbone.cam(features, targets)
        assert cam_first.max() <= cam.max() + 1e-5 and cam_first.min() >= cam.min() - 1e-5


def test_untrained_guidance_is_a_smooth_interpolation(tiny_model):
    expansion, backbone = tiny_model.expansion, tiny_model.backbone
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        features, skips = backbone.forward_features(x, return_skips=True)
        decoded = expansion.decode(features, skips, (32, 32))
        ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
        up = expansion.guided_upsample(decoded, ramp)[0, 0]
    # A horizontal ramp stays a non-decreasing ramp along each row, constant down each column.
    assert (up[:, 1:] >= up[:, :-1] - 1e-6).all()
    torch.testing.assert_close(up, up[:1].expand_as(up))


def test_guided_pool_equals_pooling_the_guided_upsampling(tiny_model):
    expansion, backbone = tiny_model.expansion, tiny_model.backbone
    torch.nn.init.normal_(expansion.guidance_head.weight, std=0.5)
    x = torch.randn(2, 3, 64, 64)
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features, skips = backbone.forward_features(x, return_skips=True)
        decoded = expansion.decode(features, skips, x.shape[-2:])
        full = expansion.guided_upsample(decoded, features, image=image)
        for size in [(4, 4), (8, 8), (2, 4)]:
            torch.testing.assert_close(
                expansion.guided_pool(decoded, features, size, image=image),
                torch.nn.functional.adaptive_avg_pool2d(full, size),
                rtol=1e-5,
                atol=1e-5,
            )


def test_colour_term_block_path_equals_the_direct_formula(tiny_model):
    from hrcam.expansion import _neighbour_values

    expansion = tiny_model.expansion
    torch.manual_seed(0)
    for size, cells in [((64, 64), (4, 4)), ((66, 70), (5, 6))]:  # whole blocks, and not
        image = torch.rand(2, 3, *size)
        means = torch.nn.functional.adaptive_avg_pool2d(image, cells)
        direct = torch.stack(
            [-(image - v).pow(2).sum(1) for v in _neighbour_values(means, size)], 1
        )
        direct = direct / (2 * expansion.guide_sigma**2)
        ours = expansion._colour_term(image, cells)
        # Equal up to a per-pixel constant (|x|²), which the softmax removes.
        torch.testing.assert_close(ours.softmax(1), direct.softmax(1), rtol=1e-4, atol=1e-5)


def test_coarse_to_fine_climbs_one_doubling_per_stage():
    backbone = create_backbone(
        "tiny_densenet", num_classes=3, block_config=(1, 1, 1, 1)
    )  # stride 16
    expansion = ExpansionNetwork.from_backbone(backbone).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        features, skips = backbone.forward_features(x, return_skips=True)
        decoded = expansion.decode(features, skips, (64, 64))
        climbed = expansion._climb(features[:, :2], (64, 64), x)
        assert climbed.shape[-2:] == (
            32,
            32,
        )  # 4 → 8 → 16 → 32, then the guidance head's step to 64
        const = expansion.guided_upsample(decoded, torch.ones(1, 1, 4, 4), image=x)
        torch.testing.assert_close(const, torch.ones_like(const))
        expansion.coarse_to_fine = False
        assert expansion._climb(features[:, :2], (64, 64), x).shape[-2:] == (4, 4)
