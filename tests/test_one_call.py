"""Every front-end gives the one call's maps: ``hrcam explain``, ``hrcam evaluate``, the app and
the method registry all run ``Explainer.explain`` (or its steps) on the same decoded pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam import export_model, from_model, load_model
from hrcam.app import ExplainerSession
from hrcam.cli import main as cli
from hrcam.data.annotations import LocalizationDataset
from hrcam.evaluation import evaluate_localization
from hrcam.methods import create_method

from .conftest import output_folder
from .test_evaluate import make_pets_tree


def _close(a, b) -> None:
    np.testing.assert_allclose(
        np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=0, atol=1e-6
    )


@pytest.fixture
def photo(tmp_path):
    from skimage import data

    path = tmp_path / "photos" / "cat.jpg"
    path.parent.mkdir()
    Image.fromarray(data.chelsea()).save(path, quality=92)
    return path


def test_explain_command_and_app_give_the_one_calls_maps_on_the_default_model(photo, tmp_path):
    explainer = load_model("default")
    one = explainer.explain(photo, steps=True)
    assert one.target(0).name == "Egyptian cat"
    out = tmp_path / "out"
    args = ["explain", str(photo), "-o", str(out), "--maps-dtype", "float32", "--no-progress"]
    assert cli([*args, "--no-pipeline"]) == 0
    maps = np.load(output_folder(out, "cat") / "maps.npz")
    _close(maps["low_res_cam"], one.low_res[0])
    _close(maps["high_res_cam"], one.high_res[0])
    _close(maps["refined_cam"], one.refined[0])
    _close(maps["probabilities"], one.probabilities[0])

    session = ExplainerSession(explainer)
    loaded = session.load(photo)
    views = session.views(loaded.key, loaded.top5[0].index)
    _close(views.explanation.refined[0], one.refined[0])
    _close(views.explanation.high_res[0], one.high_res[0])
    np.testing.assert_array_equal(views.steps.masked_image, one.steps[0].masked_image)


def test_evaluate_and_the_methods_give_the_one_calls_maps(tiny_model, tmp_path):
    root = make_pets_tree(tmp_path / "pets", broken=False, empty=False)
    dataset = LocalizationDataset(root)
    name = dataset.names[0]
    path = dataset[0].path
    one = tiny_model.explain(path)
    results = evaluate_localization(
        tiny_model,
        dataset,
        ["low_res", "high_res", "refined"],
        batch_size=1,
        limit=1,
        num_examples=1,
        warmup=False,
        progress=False,
    )
    example = results.examples[0]
    assert example.name == name and example.target == int(one.targets[0])
    _close(example.maps["refined"], one.refined[0])
    _close(example.maps["high_res"], one.high_res[0])
    batch = tiny_model.prepare(path)
    for spec, want in (("refined", one.refined), ("high_res", one.high_res)):
        _close(create_method(spec)(tiny_model, batch, one.targets)[0], want[0])


def test_a_wrapped_torchvision_model_gets_the_refined_cam_in_one_call(photo):
    import torchvision

    torch.manual_seed(0)
    explainer = from_model(torchvision.models.resnet18(weights=None, num_classes=5), input_size=96)
    e = explainer.explain([photo, photo], targets=[1, 3], steps=True)
    assert e.refined.shape == (2, 96, 96) and e.targets.tolist() == [1, 3]
    assert float(e.refined.min()) >= 0 and float(e.refined.max()) <= 1
    assert e.low_res.shape == (2, 3, 3) and e.steps[0].masked_image.shape == (96, 96, 3)
    _close(e.refined[0], explainer.explain(photo, 1).refined[0])


def test_an_exported_model_explains_as_the_model_it_was(tiny_model, tmp_path):
    path = export_model(tiny_model, tmp_path / "tiny.safetensors")
    images = torch.rand(2, 3, 32, 32)
    again = load_model(path).explain(images)
    torch.testing.assert_close(again.refined, tiny_model.explain(images).refined)
