"""The learned guide: it starts at the colour guide, and it can learn from there."""

import pytest
import torch
import torch.nn.functional as F
from learned_guide import GuideNetwork

from hrcam import guided_upsample


@pytest.fixture
def batch(tiny_backbone):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    features, skips = tiny_backbone.forward_features(images, return_skips=True)
    cams = tiny_backbone.cam(features, torch.tensor([0, 1]))
    return images, skips, cams


def test_with_its_learned_channels_at_zero_it_is_the_colour_guide(tiny_backbone, batch):
    images, skips, cams = batch
    net = GuideNetwork.from_backbone(tiny_backbone, colour_sigma=0.1).eval()
    with torch.no_grad():
        net.fuse[-1].weight.zero_()
        out = net.upsample(cams, net(images, skips))
    # (the learned guide guides every level, as guided_upsample does with stride=1)
    torch.testing.assert_close(out, guided_upsample(cams, images, colour_sigma=0.1, stride=1))


def test_at_initialisation_every_layer_gets_a_gradient(tiny_backbone, batch):
    # Regression: learned channels initialised at exactly zero are a saddle of the range
    # kernel (every pixel at its cells' mean), where no gradient reaches them.
    images, skips, cams = batch
    net = GuideNetwork.from_backbone(tiny_backbone)
    up = net.upsample(cams.detach(), net(images, [s.detach() for s in skips]))
    target = F.interpolate(cams.detach()[:, None] ** 2, size=(32, 32), mode="bilinear")[:, 0]
    F.mse_loss(up, target).backward()
    for name in ("fuse.4.weight", "colour.weight", "project.0.weight", "log_rgb_scale"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_a_guide_for_other_skips_is_refused_by_name(tiny_backbone):
    net = GuideNetwork.from_backbone(tiny_backbone)
    net.skip_info = net.skip_info[:-1]
    with pytest.raises(ValueError, match="trained for skips"):
        net.check_backbone(tiny_backbone)
