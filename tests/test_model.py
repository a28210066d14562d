import pytest
import torch
from PIL import Image

from hrcam import HRCAM, guided_upsample, upsample_cam


def test_generate_cams_agrees_with_each_method(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    cams = tiny_model.generate_cams(x)
    high, low, probs = cams.high_res, cams.low_res, cams.probabilities
    assert high.shape == (4, 32, 32) and low.shape == (4, 4, 4) and probs.shape == (4, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    torch.testing.assert_close(tiny_model.low_res_cam(x), low)
    torch.testing.assert_close(tiny_model.high_res_cam(x), high)
    torch.testing.assert_close(tiny_model.predict(x), probs)
    # Default target is the predicted class: the low-res CAM's identity with that logit.
    logits = tiny_model(x)
    pred = logits.argmax(1)
    torch.testing.assert_close(
        low.mean((1, 2)) + tiny_model.backbone.fc.bias[pred],
        logits.gather(1, pred[:, None])[:, 0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_targets_by_index_name_and_per_image(tiny_model):
    tiny_model.backbone.class_names = ["cat", "dog", "fox"]
    x = torch.randn(2, 3, 32, 32)
    by_index = tiny_model.low_res_cam(x, target=1)
    torch.testing.assert_close(tiny_model.low_res_cam(x, target="dog"), by_index)
    torch.testing.assert_close(tiny_model.low_res_cam(x, target="DOG"), by_index)
    torch.testing.assert_close(tiny_model.low_res_cam(x, target="1"), by_index)
    per_image = tiny_model.low_res_cam(x, target=["cat", 2])
    torch.testing.assert_close(per_image[0], tiny_model.low_res_cam(x, target=0)[0])
    torch.testing.assert_close(per_image[1], tiny_model.low_res_cam(x, target=2)[1])
    with pytest.raises(ValueError, match="did you mean 'dog'"):
        tiny_model.low_res_cam(x, target="dgo")
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        tiny_model.low_res_cam(x, target=3)
    with pytest.raises(ValueError, match="one per image"):
        tiny_model.low_res_cam(x, target=[0, 1, 2])


def test_topk_and_upsample(tiny_model):
    x = torch.randn(2, 3, 32, 32)
    p, idx = tiny_model.topk(x, k=5)  # more than the 3 classes: clipped
    assert p.shape == idx.shape == (2, 3)
    assert (p[:, :-1] >= p[:, 1:]).all()
    cam = torch.arange(4.0).reshape(1, 2, 2)
    up = upsample_cam(cam, (4, 4))
    assert up.shape == (1, 4, 4)
    # Half-pixel centres: the corners keep the corner values, the mean is kept.
    assert up[0, 0, 0] == 0 and up[0, -1, -1] == 3
    torch.testing.assert_close(up.mean(), cam.mean())


def test_preprocess_handles_odd_images(tiny_model, tmp_path):
    for name, image in {
        "gray.png": Image.new("L", (7, 9), 128),
        "palette.png": Image.new("RGB", (40, 30), (10, 200, 30)).convert("P"),
        "rgba.png": Image.new("RGBA", (50, 50), (0, 0, 0, 128)),
    }.items():
        image.save(tmp_path / name)
        x = tiny_model.preprocess(tmp_path / name)
        assert x.shape == (1, 3, 32, 32)
    big = tiny_model.preprocess(Image.new("RGB", (600, 400)), size=None)
    assert big.shape == (1, 3, 400, 600)
    img = tiny_model.to_image(tiny_model.preprocess(Image.new("RGB", (32, 32), (255, 0, 0))))
    assert img.shape == (32, 32, 3) and tuple(img[0, 0]) == (255, 0, 0)


def test_without_expansion_every_map_but_the_papers(tiny_backbone):
    model = HRCAM(tiny_backbone).eval()
    x = torch.randn(2, 3, 32, 32)
    cams = model.generate_cams(x)
    high, low = cams.high_res, cams.low_res
    assert model.high_res_mode == "guided" and low.shape == (2, 4, 4)
    positive = model.low_res_cam(x, weights="positive")
    torch.testing.assert_close(high, guided_upsample(positive, model.unnormalize(x)))
    model.cam_weights = "all"
    torch.testing.assert_close(model.high_res_cam(x), guided_upsample(low, model.unnormalize(x)))
    with pytest.raises(ValueError, match="needs an expansion network"):
        model.high_res_mode = "paper"
    with pytest.raises(ValueError, match="needs an expansion network"):
        HRCAM(tiny_backbone, high_res="paper")
    with pytest.raises(RuntimeError, match="train-expansion"):
        model.reconstruct(x)


def test_high_res_modes(tiny_model):
    x = torch.randn(2, 3, 32, 32)
    assert tiny_model.high_res_mode == "guided"  # "auto"
    tiny_model.high_res_mode = "paper"
    paper = tiny_model.high_res_cam(x)
    tiny_model.high_res_mode = "auto"
    assert tiny_model.high_res_mode == "guided"
    cams = tiny_model.generate_cams(x)
    high = cams.high_res
    assert not torch.allclose(high, paper)
    # The guided CAM mixes the (positive-weight) low-res CAM's values: it stays in their range.
    positive = tiny_model.low_res_cam(x, weights="positive")
    assert (high.amax((1, 2)) <= positive.amax((1, 2)) + 1e-5).all()
    assert (high.amin((1, 2)) >= positive.amin((1, 2)) - 1e-5).all()
    with pytest.raises(ValueError, match="one of auto, guided, paper"):
        tiny_model.high_res_mode = "fancy"


def test_guided_options_reach_the_upsampler(tiny_backbone):
    x = torch.randn(1, 3, 32, 32)
    plain = HRCAM(tiny_backbone).eval()
    spatial = HRCAM(tiny_backbone, guided_options={"colour_sigma": 0.0}).eval()
    low = plain.low_res_cam(x, weights="positive")
    torch.testing.assert_close(
        spatial.high_res_cam(x), guided_upsample(low, plain.unnormalize(x), colour_sigma=0.0)
    )


def test_cams_are_read_by_name_and_select_rows(tiny_model):
    x = torch.randn(3, 3, 32, 32)
    cams = tiny_model.generate_cams(x, target=[0, 2, 1])
    assert cams.targets.tolist() == [0, 2, 1]
    with pytest.raises(TypeError):
        high, low, probs, targets = cams  # a dataclass: no positional unpacking to get wrong
    part = cams.select([2, 0])
    torch.testing.assert_close(part.low_res, cams.low_res[[2, 0]])
    assert part.targets.tolist() == [1, 0] and part.high_res.shape == (2, 32, 32)
