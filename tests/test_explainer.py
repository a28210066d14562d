"""The one call: Explainer.explain, its steps, its settings, and the explanation it returns."""

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam import (
    Explainer,
    GuidedUpsampler,
    ImageBatch,
    RefineOptions,
    guided_upsample,
    refine,
    upsample_cam,
)
from hrcam.checks import NonFiniteError


def _pixels(n=4, seed=0):
    torch.manual_seed(seed)
    return torch.rand(n, 3, 32, 32)


def test_explain_gives_all_three_maps_and_the_low_res_cam_is_exact(tiny_model):
    images = _pixels()
    e = tiny_model.explain(images)
    assert e.low_res.shape == (4, 4, 4) and e.high_res.shape == e.refined.shape == (4, 32, 32)
    assert e.probabilities.shape == (4, 3) and e.images.shape == (4, 32, 32, 3)
    torch.testing.assert_close(e.probabilities.sum(1), torch.ones(4))
    # Default target is the predicted class: the low-res CAM's mean plus the bias is its logit.
    with torch.inference_mode():
        logits = tiny_model.backbone(tiny_model.prepare(images).x)
    pred = logits.argmax(1)
    assert e.targets.tolist() == pred.tolist()
    torch.testing.assert_close(
        e.low_res.mean((1, 2)) + tiny_model.backbone.fc.bias[pred],
        logits.gather(1, pred[:, None])[:, 0],
        rtol=1e-5,
        atol=1e-5,
    )
    assert float(e.refined.min()) >= 0 and float(e.refined.max()) <= 1
    assert e.steps is None and e.errors == (None,) * 4


def test_explain_is_its_three_steps_and_the_refinement_is_hrcam_refine(tiny_model):
    images = _pixels(2)
    e = tiny_model.explain(images, steps=True)
    batch = tiny_model.prepare(images)
    cams = tiny_model.cams(batch)
    torch.testing.assert_close(cams.high_res, e.high_res)
    for i in range(2):
        steps = refine(cams.low_res[i], cams.high_res[i], batch.rgb[i])
        np.testing.assert_array_equal(steps.refined, e.refined[i].numpy())
        np.testing.assert_array_equal(steps.masked_image, e.steps[i].masked_image)
    # The guided high-res CAM: the positive-weight CAM upsampled, guided by the pixels.
    with torch.inference_mode():
        features = tiny_model.backbone.forward_features(batch.x)
        positive = tiny_model.backbone.cam(features, e.targets, weights="positive")
    torch.testing.assert_close(e.high_res, guided_upsample(positive, batch.pixels))


def test_every_kind_of_image_gives_the_same_maps(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "a.png")
    from_array = tiny_model.explain(picture)
    for other in (
        tmp_path / "a.png",
        str(tmp_path / "a.png"),
        Image.fromarray(picture),
        [picture],
        torch.from_numpy(picture).permute(2, 0, 1).float() / 255,
        tiny_model.prepare(picture),
    ):
        e = tiny_model.explain(other)
        torch.testing.assert_close(e.refined, from_array.refined, atol=1e-6, rtol=0)
        torch.testing.assert_close(e.high_res, from_array.high_res, atol=1e-6, rtol=0)


def test_odd_images_are_converted_and_resized(tiny_model, tmp_path):
    for name, image in {
        "gray.png": Image.new("L", (7, 9), 128),
        "palette.png": Image.new("RGB", (40, 30), (10, 200, 30)).convert("P"),
        "rgba.png": Image.new("RGBA", (50, 50), (0, 0, 0, 128)),
    }.items():
        image.save(tmp_path / name)
        batch = tiny_model.prepare(tmp_path / name)
        assert batch.x.shape == (1, 3, 32, 32) and batch.rgb.shape == (1, 32, 32, 3)
    red = tiny_model.prepare(Image.new("RGB", (64, 48), (255, 0, 0)))
    assert tuple(red.rgb[0, 0, 0]) == (255, 0, 0)
    torch.testing.assert_close(red.pixels[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    wide = tiny_model.replace(input_size=(32, 48)).prepare(Image.new("RGB", (600, 400)))
    assert wide.x.shape == (1, 3, 32, 48)
    with pytest.raises(ValueError, match="no image"):
        tiny_model.prepare([])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny_model.prepare(torch.rand(2, 1, 32, 32))


def test_targets_by_index_name_and_per_image(tiny_model):
    tiny_model.backbone.class_names = ["cat", "dog", "fox"]
    images = _pixels(2)
    by_index = tiny_model.explain(images, 1).low_res
    for same in ("dog", "DOG", "1", torch.tensor(1)):
        torch.testing.assert_close(tiny_model.explain(images, same).low_res, by_index)
    per_image = tiny_model.explain(images, ["cat", 2])
    assert per_image.targets.tolist() == [0, 2]
    assert per_image.target(0).name == "cat"
    torch.testing.assert_close(per_image.low_res[1], tiny_model.explain(images, 2).low_res[1])
    with pytest.raises(ValueError, match="did you mean 'dog'"):
        tiny_model.explain(images, "dgo")
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        tiny_model.explain(images, 3)
    with pytest.raises(ValueError, match="one per image"):
        tiny_model.explain(images, [0, 1, 2])


def test_top_classes_and_upsample(tiny_model):
    e = tiny_model.explain(_pixels(2))
    top = e.top(0, k=5)  # more than the 3 classes: clipped
    assert len(top) == 3 and top[0].probability >= top[1].probability >= top[2].probability
    assert top[0].index == int(e.targets[0]) and e.target(0) == top[0]
    cam = torch.arange(4.0).reshape(1, 2, 2)
    up = upsample_cam(cam, (4, 4))
    # Half-pixel centres: the corners keep the corner values, the mean is kept.
    assert up[0, 0, 0] == 0 and up[0, -1, -1] == 3
    torch.testing.assert_close(up.mean(), cam.mean())


def test_upsample_cam_refuses_what_it_cannot_resize():
    with pytest.raises(ValueError, match="positive integers"):
        upsample_cam(torch.rand(1, 2, 2), (0, 0))
    with pytest.raises(ValueError, match="non-finite"):
        upsample_cam(torch.tensor([[[float("nan"), 1.0]]]), (4, 4))


def test_settings_are_immutable_and_a_change_is_a_new_explainer_sharing_the_networks(tiny_model):
    with pytest.raises(AttributeError):
        tiny_model.flip = True
    paper = tiny_model.replace(upsampler="paper", refine_options=RefineOptions.preset("paper"))
    assert paper.backbone is tiny_model.backbone and paper.upsampler is tiny_model.expansion
    assert tiny_model.upsampler == GuidedUpsampler()
    assert tiny_model.refine_options == RefineOptions()
    images = _pixels(2)
    assert not torch.allclose(paper.explain(images).high_res, tiny_model.explain(images).high_res)
    with pytest.raises(ValueError, match="unknown explainer setting"):
        tiny_model.replace(colour=1)


def test_without_an_expansion_network_every_map_but_the_papers(tiny_backbone):
    explainer = Explainer(tiny_backbone).eval()
    images = _pixels(2)
    e = explainer.explain(images)
    assert e.refined.shape == (2, 32, 32)
    with pytest.raises(ValueError, match="needs an expansion network"):
        explainer.replace(upsampler="paper")
    with pytest.raises(ValueError, match="train-expansion"):
        explainer.reconstruct(explainer.prepare(images))
    with pytest.raises(ValueError, match="guided"):
        explainer.replace(upsampler="fancy")


def test_the_guided_upsamplers_options_reach_it(tiny_backbone):
    images = _pixels(1)
    plain = Explainer(tiny_backbone).eval()
    spatial = plain.replace(upsampler=GuidedUpsampler(colour_sigma=0.0, cam_weights="all"))
    e = spatial.explain(images)
    torch.testing.assert_close(
        e.high_res, guided_upsample(e.low_res, spatial.prepare(images).pixels, colour_sigma=0.0)
    )
    # The guided CAM mixes the (positive-weight) low-res CAM's values: it stays in their range.
    d = plain.explain(images)
    batch = plain.prepare(images)
    with torch.inference_mode():
        features = tiny_backbone.forward_features(batch.x)
        positive = tiny_backbone.cam(features, d.targets, weights="positive")
    assert (d.high_res.amax((1, 2)) <= positive.amax((1, 2)) + 1e-5).all()
    assert (d.high_res.amin((1, 2)) >= positive.amin((1, 2)) - 1e-5).all()


def test_a_third_upsampler_is_a_class_of_its_own(tiny_model):
    class Bilinear:
        needs_skips = True

        def upsample(self, inputs):
            assert len(inputs.skips) == len(inputs.backbone.skip_info)
            return upsample_cam(inputs.low_res, inputs.size)

        def describe(self):
            return {"name": "bilinear"}

    explainer = tiny_model.replace(upsampler=Bilinear())
    e = explainer.explain(_pixels(2))
    torch.testing.assert_close(e.high_res, upsample_cam(e.low_res, (32, 32)))
    assert explainer.describe()["upsampler"] == {"name": "bilinear"}
    with pytest.raises(TypeError, match="upsample"):
        tiny_model.replace(upsampler=object())


def test_flip_averages_with_the_mirrored_image_and_keeps_the_prediction(tiny_model):
    images = _pixels(2)
    flipped = tiny_model.replace(flip=True).explain(images)
    plain = tiny_model.explain(images)
    mirrored = tiny_model.explain(images.flip(3), plain.targets)
    torch.testing.assert_close(flipped.high_res, (plain.high_res + mirrored.high_res.flip(2)) / 2)
    torch.testing.assert_close(flipped.probabilities, plain.probabilities)


def test_non_finite_cams_raise_or_are_reported_per_image(tiny_model):
    bad = tiny_model.backbone
    images = _pixels(2)
    cams = tiny_model.cams(tiny_model.prepare(images))
    broken = type(cams)(
        cams.low_res.clone().index_put_((torch.tensor([1]),), torch.tensor(float("nan"))),
        cams.high_res,
        cams.probabilities,
        cams.targets,
    )
    batch = tiny_model.prepare(images)
    with pytest.raises(NonFiniteError, match="image 1"):
        tiny_model.refine(broken, batch)
    e = tiny_model.refine(broken, batch, strict=False, steps=True)
    assert e.errors[0] is None and "non-finite" in e.errors[1]
    assert torch.isnan(e.refined[1]).all() and not torch.isnan(e.refined[0]).any()
    assert e.steps[1] is None and bad is tiny_model.backbone


def test_cams_and_batches_are_read_by_name_and_select_rows(tiny_model):
    batch = tiny_model.prepare(_pixels(3))
    cams = tiny_model.cams(batch, [0, 2, 1])
    assert cams.targets.tolist() == [0, 2, 1]
    with pytest.raises(TypeError):
        high, low, probs, targets = cams  # a dataclass: no positional unpacking to get wrong
    part = cams.select([2, 0])
    torch.testing.assert_close(part.low_res, cams.low_res[[2, 0]])
    assert part.targets.tolist() == [1, 0] and part.high_res.shape == (2, 32, 32)
    rows = batch.select([2, 0])
    torch.testing.assert_close(rows.x, batch.x[[2, 0]])
    np.testing.assert_array_equal(rows.rgb, batch.rgb[[2, 0]])
    again = ImageBatch.from_normalized(batch.x, tiny_model.backbone.mean, tiny_model.backbone.std)
    np.testing.assert_array_equal(again.rgb, batch.rgb)


def test_input_sizes_out_of_range_are_refused_with_the_range(tiny_model):
    for size in (2, 100_000, (32, 0), "big"):
        with pytest.raises(ValueError, match=r"input_size must be .*\[8, 4096\]"):
            tiny_model.replace(input_size=size)


def test_an_explanation_gives_the_maps_npz_record(tiny_model):
    e = tiny_model.explain(_pixels(1), steps=True)
    arrays = e.arrays(0, dtype="float16")
    assert arrays["refined_cam"].dtype == np.float16 and arrays["low_res_cam"].shape == (4, 4)
    assert int(arrays["target"]) == int(e.targets[0])
    with pytest.raises(ValueError, match="steps=True"):
        tiny_model.explain(_pixels(1)).arrays(0)


def test_an_images_maps_are_the_same_bits_whatever_else_is_in_its_batch(tiny_model):
    images = _pixels(7, seed=3)
    assert tiny_model.cpu_chunk == 4  # 7 images: one full chunk and one padded
    whole = tiny_model.explain(images)
    for rows in (slice(5, 6), slice(3, 7), slice(0, 2)):
        part = tiny_model.explain(images[rows])
        for name in ("low_res", "high_res", "refined", "probabilities"):
            np.testing.assert_array_equal(
                getattr(part, name).numpy(), getattr(whole, name)[rows].numpy(), err_msg=name
            )


def test_the_cpu_chunk_shrinks_with_the_input_size(tiny_backbone):
    sizes = {224: 4, 320: 1, 112: 4, 160: 4, 300: 2}
    for side, chunk in sizes.items():
        explainer = Explainer(tiny_backbone, input_size=side)
        assert explainer.cpu_chunk == chunk, side


def test_logits_are_the_networks_in_the_explainers_chunks(tiny_model):
    images = _pixels(6, seed=4)
    batch = tiny_model.prepare(images)
    logits = tiny_model.logits(batch.x)
    assert logits.shape == (6, 3)
    with torch.inference_mode():
        torch.testing.assert_close(logits, tiny_model.backbone(batch.x), rtol=1e-5, atol=1e-5)
    # The same bits as the probabilities the CAMs come with, whatever the batch.
    np.testing.assert_array_equal(
        logits.softmax(1).numpy(), tiny_model.cams(batch).probabilities.numpy()
    )
    np.testing.assert_array_equal(logits[4:].numpy(), tiny_model.logits(batch.x[4:]).numpy())
    assert [kept for _, kept in tiny_model.chunks(batch.x)] == [4, 2]
