"""The boundary head of the expansion network, the random walk over its boundaries, and the
boundary upsampler in the one call."""

import pytest
import torch
import torch.nn.functional as F

import hrcam
from hrcam.upsample import ExpansionNetwork, create_upsampler
from hrcam.upsample.boundary_head import BoundaryHead, BoundaryUpsampler, affinity_loss
from hrcam.upsample.walk import boundary_walk, walk_multiscale, walk_steps, walk_weights


@pytest.fixture
def bounded_model(tiny_backbone):
    torch.manual_seed(2)
    expansion = ExpansionNetwork.from_backbone(
        tiny_backbone, decoder_channels=(16, 12, 8, 8), boundary_width=8
    )
    return hrcam.Explainer(tiny_backbone, expansion=expansion).eval()


def _square(n=32):
    boundary = torch.zeros(n, n)
    boundary[8, 8:24] = boundary[23, 8:24] = boundary[8:24, 8] = boundary[8:24, 23] = 1.0
    cam = torch.zeros(n, n)
    cam[12:20, 12:20] = 1.0
    return cam[None], boundary[None]


def test_the_head_gives_boundary_probabilities_on_a_quarter_grid(tiny_backbone):
    head = BoundaryHead.from_backbone(tiny_backbone, width=8)
    x = torch.randn(2, 3, 32, 32)
    features, skips = tiny_backbone.forward_features(x, return_skips=True)
    b = head(skips, features)
    assert b.shape == (2, 8, 8) and 0 <= b.min() and b.max() <= 1
    logits = head.logits(skips, features)
    logits.sum().backward()  # trainable end to end, the backbone's tensors untouched
    assert all(p.grad is not None for p in head.parameters())


def test_the_compiled_walk_equals_the_torch_walk():
    torch.manual_seed(0)
    maps, bounds = torch.rand(3, 20, 27), torch.rand(3, 20, 27)
    weights = walk_weights(bounds, 6.0)
    assert torch.allclose(weights.sum(1), torch.ones(3, 20, 27))
    assert (weights[:, :3, 0] == 0).all() and (weights[:, ::3, :, 0] == 0).all()  # outside: 0
    compiled = walk_steps(maps, weights, 40)
    with torch.enable_grad():
        torch_path = walk_steps(maps.clone().requires_grad_(), weights, 40)
    torch.testing.assert_close(compiled, torch_path.detach(), atol=1e-5, rtol=0)


def test_the_hed_walk_keeps_its_edge_rule_compiled():
    # at the grid's edge a missing neighbour is the nearest pixel inside (replicate padding)
    torch.manual_seed(1)
    maps, bounds = torch.rand(2, 16, 16), torch.rand(2, 16, 16)
    got = boundary_walk(maps, bounds, beta=4.0, steps=30, scale=1)
    x, b = maps[:, None], bounds[:, None]
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    pb = F.pad(b, (1, 1, 1, 1), mode="replicate")
    w = torch.cat([(1 - torch.maximum(b, pb[..., 1 + dy : 17 + dy, 1 + dx : 17 + dx])).pow(4.0)
                   for dy, dx in shifts], 1)  # fmt: skip
    w = w / w.sum(1, keepdim=True)
    for _ in range(30):
        p = F.pad(x, (1, 1, 1, 1), mode="replicate")
        x = (w * torch.cat([p[..., 1 + dy : 17 + dy, 1 + dx : 17 + dx] for dy, dx in shifts], 1)).sum(1, keepdim=True)  # fmt: skip
    torch.testing.assert_close(got, x[:, 0], atol=1e-5, rtol=0)


def test_the_multiscale_walk_fills_a_closed_outline_and_does_not_cross_it():
    cam, boundary = _square(64)
    walked = walk_multiscale(
        F.interpolate(cam[:, None], scale_factor=4)[:, 0], boundary, beta=10, steps=(50, 200)
    )
    assert walked.shape == (1, 256, 256)
    inside = walked[0, 40:90, 40:90]
    assert inside.min() > 0.5 * inside.max()
    # hardly anything crossed the one-pixel wall (the coarse level's resize smears one pixel)
    assert walked[0, :24].max() < 1e-2 * inside.max()
    free = walk_multiscale(
        F.interpolate(cam[:, None], scale_factor=4)[:, 0], 0 * boundary, beta=10, steps=(50, 200)
    )
    assert free[0, :24].max() > 0.1 * free[0, 40:90, 40:90].max()  # without it, it does
    assert 0 <= walked.min() and walked.max() <= 1
    with pytest.raises(ValueError, match="steps must be"):
        walk_multiscale(cam, boundary, steps=())


def test_the_affinity_loss_rewards_a_boundary_between_object_and_background():
    cams = torch.zeros(1, 16, 16)
    cams[:, :, :8] = 1.0  # confident object on the left, background on the right
    between = torch.zeros(1, 16, 16)
    between[:, :, 7:9] = 1.0
    inside = torch.zeros(1, 16, 16)
    inside[:, :, 3:5] = 1.0
    assert affinity_loss(between, cams, radius=3) < affinity_loss(inside, cams, radius=3)
    with pytest.raises(ValueError, match="must both be"):
        affinity_loss(between, cams[:, :8])


def test_auto_picks_the_boundary_upsampler_when_the_model_has_a_head(tiny_model, bounded_model):
    assert tiny_model.upsampler.describe()["name"] == "guided"  # no head: guided
    upsampler = bounded_model.upsampler
    assert isinstance(upsampler, BoundaryUpsampler)
    assert upsampler.head is bounded_model.expansion.boundary_head
    with pytest.raises(ValueError, match="boundary head"):
        create_upsampler("boundary", expansion=tiny_model.expansion)
    with pytest.raises(ValueError, match="steps must be"):
        BoundaryUpsampler(upsampler.head, steps=(0.5,))
    with pytest.raises(ValueError, match="beta must be > 0"):
        BoundaryUpsampler(upsampler.head, beta=0)
    with pytest.raises(TypeError, match="must be a BoundaryHead"):
        BoundaryUpsampler(object())
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        bounded_model.expansion.add_boundary_head(0)


def test_the_boundary_upsampler_in_the_one_call(bounded_model):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32)
    explanation = bounded_model.explain(images)
    guided = bounded_model.replace(upsampler="guided").explain(images)
    assert explanation.high_res.shape == guided.high_res.shape == (3, 32, 32)
    assert torch.isfinite(explanation.refined).all()
    for walked, source in zip(explanation.high_res, guided.high_res, strict=True):
        assert source.min() - 1e-5 <= walked.min() and walked.max() <= source.max() + 1e-5
    assert not torch.allclose(explanation.high_res, guided.high_res)
    # the same maps whatever the batch (the chunks of a fixed shape)
    one = bounded_model.explain(images[1:2])
    torch.testing.assert_close(one.high_res[0], explanation.high_res[1], atol=1e-6, rtol=0)


def test_a_method_spec_asks_for_it(tiny_model, bounded_model):
    from hrcam.methods import create_method

    method = create_method("refined:mode=boundary")
    assert method.explainer_for(bounded_model).upsampler is bounded_model.upsampler
    assert method.matches(bounded_model)
    with pytest.raises(ValueError, match="boundary head"):
        method.check_model(tiny_model)
    guided = create_method("high_res:mode=guided").explainer_for(bounded_model)
    assert guided.upsampler.describe()["name"] == "guided"


def test_mix_in_a_method_spec(tiny_model, bounded_model):
    from hrcam.methods import create_method

    walked = create_method("high_res:mix=0").explainer_for(bounded_model).upsampler
    assert isinstance(walked, BoundaryUpsampler) and walked.mix == 0.0
    assert walked.head is bounded_model.upsampler.head
    assert create_method("refined:mix=0.5").matches(bounded_model)  # the shipped share
    assert not create_method("refined:mix=0.25,mode=boundary").matches(bounded_model)
    with pytest.raises(ValueError, match="add mode=boundary"):
        create_method("high_res:mix=0").check_model(tiny_model)  # a guided explainer
    with pytest.raises(ValueError, match="mode=guided has none"):
        create_method("high_res:mix=0,mode=guided")
    with pytest.raises(ValueError, match=r"mix must lie in \[0, 1\]"):
        create_method("refined:mix=2")
    with pytest.raises(ValueError, match="not a number"):
        create_method("high_res:mix=half")
    with pytest.raises(ValueError, match="unknown boundary upsampler option"):
        bounded_model.upsampler.replace(scale=2)


def test_weights_change_the_map_the_walk_starts_from(bounded_model):
    from hrcam.methods import create_method

    own = bounded_model.upsampler
    assert own.guided.cam_weights == "positive"
    method = create_method("high_res:weights=all")
    upsampler = method.explainer_for(bounded_model).upsampler
    # still the walk over the same head, from the guided map of every FC weight
    assert isinstance(upsampler, BoundaryUpsampler) and upsampler.head is own.head
    assert (upsampler.guided.cam_weights, upsampler.mix, upsampler.steps) == (
        "all",
        own.mix,
        own.steps,
    )
    assert not method.matches(bounded_model)
    assert create_method("high_res:weights=positive").matches(bounded_model)
    images = torch.rand(2, 3, 32, 32)
    start = bounded_model.replace(upsampler=own.guided.__class__(cam_weights="all"))
    expected = bounded_model.replace(upsampler=own.replace(guided=start.upsampler))
    ours = method.explainer_for(bounded_model).explain(images).high_res
    torch.testing.assert_close(ours, expected.explain(images).high_res, atol=0, rtol=0)
    assert not torch.allclose(ours, bounded_model.explain(images).high_res)
    paper = bounded_model.replace(upsampler="paper")
    with pytest.raises(ValueError, match="has none; add mode=guided"):
        method.explainer_for(paper)
    assert create_method("high_res:weights=all,mode=guided").explainer_for(paper).upsampler == (
        own.guided.__class__(cam_weights="all")
    )


def test_the_head_travels_with_the_model(bounded_model, tmp_path):
    path = tmp_path / "model.safetensors"
    hrcam.export_model(bounded_model, path)
    loaded = hrcam.load_model(path)
    assert isinstance(loaded.upsampler, BoundaryUpsampler)
    for (name, a), (_, b) in zip(
        bounded_model.expansion.boundary_head.state_dict().items(),
        loaded.expansion.boundary_head.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(
        loaded.explain(images).high_res, bounded_model.explain(images).high_res
    )
    plain = ExpansionNetwork.from_config(bounded_model.expansion.config)
    assert plain.boundary_head is not None and plain.boundary_head.width == 8


def test_mix_keeps_a_share_of_the_guided_map(bounded_model):
    head = bounded_model.expansion.boundary_head
    images = torch.rand(2, 3, 32, 32)
    guided = bounded_model.replace(upsampler="guided").explain(images).high_res
    walked = bounded_model.replace(upsampler=BoundaryUpsampler(head, mix=0.0)).explain(images)
    whole = bounded_model.replace(upsampler=BoundaryUpsampler(head, mix=1.0)).explain(images)
    half = bounded_model.replace(upsampler=BoundaryUpsampler(head, mix=0.5)).explain(images)
    torch.testing.assert_close(whole.high_res, guided)
    torch.testing.assert_close(half.high_res, (walked.high_res + guided) / 2)
    with pytest.raises(ValueError, match="mix must lie in"):
        BoundaryUpsampler(head, mix=1.5)
