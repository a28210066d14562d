import numpy as np
import pytest
import torch

from hrcam import Explainer, create_backbone, export_model, load_model
from hrcam.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from hrcam.upsample.expansion import ExpansionNetwork


def _outputs(model, x):
    """Every output of the model: each CAM (guided and the paper's) and the probabilities."""
    paper = model.replace(upsampler="paper").explain(x)
    e = model.explain(x)
    return [paper.high_res, e.high_res, e.low_res, e.probabilities, e.refined]


def test_training_checkpoint_round_trip(tiny_model, tmp_path):
    tiny_model.backbone.class_names = ["a", "b", "c"]
    optimizer = torch.optim.AdamW(tiny_model.expansion.parameters())
    save_checkpoint(
        tmp_path / "ck.pt",
        backbone=tiny_model.backbone,
        expansion=tiny_model.expansion,
        stage="expansion",
        epoch=3,
        config={"lr": 0.1, "data": tmp_path},
        metrics={"val_mse": 0.5},
        optimizer=optimizer,
    )
    payload = load_checkpoint(tmp_path / "ck.pt")
    assert payload["epoch"] == 3 and payload["config"]["data"] == str(tmp_path)
    assert "optimizer_state" in payload
    loaded = load_model(tmp_path / "ck.pt")
    assert loaded.class_names == ["a", "b", "c"]
    x = torch.randn(2, 3, 32, 32)
    for a, b in zip(_outputs(tiny_model, x), _outputs(loaded, x), strict=True):
        assert torch.equal(a, b)


def test_exported_model_round_trip(tiny_model, tmp_path):
    path = export_model(tiny_model, tmp_path / "m.safetensors", metadata={"note": "test"})
    assert path.with_suffix(".json").is_file()
    loaded = load_model(path)
    x = torch.randn(1, 3, 32, 32)
    for a, b in zip(_outputs(tiny_model, x), _outputs(loaded, x), strict=True):
        assert torch.equal(a, b)


def test_corrupt_and_foreign_checkpoints(tiny_model, tmp_path):
    save_checkpoint(tmp_path / "ok.pt", backbone=tiny_model.backbone, stage="classifier", epoch=1)
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_model(tmp_path / "cut.pt")
    assert "weights_only" not in str(info.value)  # never the advice to turn the safety off
    (tmp_path / "pickled.pt").write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n" + b"." * 10)
    with pytest.raises(CheckpointError, match="not written by hrcam") as info:
        load_model(tmp_path / "pickled.pt")
    assert "weights_only" not in str(info.value)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an hrcam checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(KeyError, match="neither a model file nor a known model"):
        load_model("no_such_model")


def test_checkpoint_and_backbone_mismatch(tiny_model, tmp_path):
    save_checkpoint(
        tmp_path / "ck.pt",
        backbone=tiny_model.backbone,
        expansion=tiny_model.expansion,
        stage="expansion",
        epoch=1,
    )
    payload = load_checkpoint(tmp_path / "ck.pt")
    # Weights of another architecture under the same description.
    other = create_backbone(
        "tiny_densenet", num_classes=3, block_config=(2, 1, 1), growth_rate=8, init_features=8
    )
    payload["backbone_state"] = other.state_dict()
    with pytest.raises(CheckpointError, match="localization network weights do not fit"):
        model_from_checkpoint(payload)
    # An expansion network built for a different backbone.
    with pytest.raises(ValueError, match="does not match the localization network"):
        Explainer(other, expansion=ExpansionNetwork.from_backbone(tiny_model.backbone))


def test_exported_expansion_checks_backbone_fingerprint(tiny_model, tmp_path):
    path = export_model(tiny_model, tmp_path / "m.safetensors")
    sidecar = path.with_suffix(".json")
    text = sidecar.read_text().replace('"backbone_fingerprint": "', '"backbone_fingerprint": "0')
    sidecar.write_text(text)
    with pytest.raises(CheckpointError, match="different localization network"):
        load_model(path)


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os

    from hrcam.utils import atomic_save_json

    atomic_save_json({"a": 1}, tmp_path / "x.json")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_replaces_whole_files_and_leaves_nothing_behind(tmp_path):
    from hrcam.utils import atomic_write

    target = tmp_path / "out.bin"
    for payload in (b"first", b"second"):
        with atomic_write(target, "wb", durable=False) as f:
            f.write(payload)
        assert target.read_bytes() == payload
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"second"  # untouched, and no temporary left
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_atomic_npz_reads_back_with_np_load_and_deflates_only_what_shrinks(tmp_path):
    import zipfile

    from hrcam.utils import atomic_save_npz

    rng = np.random.default_rng(0)
    arrays = {
        "cam": rng.random((64, 64)).astype(np.float16),
        "small": np.arange(3, dtype=np.float32),
        "mask": rng.random((64, 64)) > 0.9,
        "label": np.int64(7),
        "options": np.array('{"alpha": 0.2}'),
    }
    atomic_save_npz(arrays, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        for name, value in arrays.items():
            np.testing.assert_array_equal(loaded[name], value)
            assert loaded[name].dtype == np.asarray(value).dtype
    with zipfile.ZipFile(tmp_path / "m.npz") as archive:
        kinds = {i.filename: i.compress_type for i in archive.infolist()}
    assert kinds["cam.npy"] == zipfile.ZIP_STORED
    assert {kinds[f"{n}.npy"] for n in ("small", "mask", "label", "options")} == {
        zipfile.ZIP_DEFLATED
    }
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left


def test_sequential_opencv_turns_the_pool_off_and_restores_it():
    import cv2

    from hrcam.utils import sequential_opencv

    before = cv2.getNumThreads()
    with pytest.raises(RuntimeError):
        with sequential_opencv():
            assert cv2.getNumThreads() in (0, 1)
            raise RuntimeError("restored on the way out too")
    assert cv2.getNumThreads() == before


def test_shipped_default_model_loads_offline():
    model = load_model("default")
    # the colour-guided high-res CAM, as its file names; the boundary head one argument away
    assert model.expansion is not None and model.upsampler.describe()["name"] == "guided"
    assert model.expansion.boundary_head is not None
    boundary = load_model("default", upsampler="boundary").upsampler
    assert boundary.describe()["name"] == "boundary" and boundary.mix == 0.5
    assert model.backbone.config["name"] == "efficientnet_lite0" and len(model.class_names) == 1000
    x = torch.zeros(1, 3, 224, 224)
    e = model.explain(x)
    assert e.high_res.shape == e.refined.shape == (1, 224, 224) and e.low_res.shape == (1, 7, 7)
    assert torch.isfinite(model.replace(upsampler="paper").explain(x).high_res).all()
    assert load_model("default", upsampler="paper").upsampler is not None
    assert load_model("default", upsampler="guided").upsampler.describe()["name"] == "guided"


def test_an_exported_model_names_the_high_res_cam_it_loads_with(tiny_backbone, tmp_path):
    from hrcam.checkpoint import CheckpointError

    expansion = ExpansionNetwork.from_backbone(
        tiny_backbone, decoder_channels=(16, 12, 8, 8), boundary_width=8
    )
    model = Explainer(tiny_backbone, expansion=expansion)
    assert model.upsampler.describe()["name"] == "boundary"  # auto: it has a head
    names = {}
    for high_res in (None, "guided", "paper"):
        path = export_model(model, tmp_path / f"{high_res}.safetensors", high_res=high_res)
        names[high_res] = load_model(path).upsampler.describe()["name"]
        assert load_model(path, upsampler="boundary").upsampler.describe()["name"] == "boundary"
    assert names == {None: "boundary", "guided": "guided", "paper": "paper"}
    with pytest.raises(ValueError, match="high_res must be one of"):
        export_model(model, tmp_path / "bad.safetensors", high_res="bilinear")
    plain = export_model(Explainer(tiny_backbone), tmp_path / "plain.safetensors", high_res="paper")
    with pytest.raises(CheckpointError, match="plain.json: .*expansion network"):
        load_model(plain)


def test_golden_values_of_the_shipped_model_on_chelsea():
    """The shipped model's answer on scikit-image's cat, pinned: a change to the weights, the
    port, the preprocessing or the CAM shows up here first."""
    from PIL import Image
    from skimage import data

    model = load_model("default")
    e = model.explain(Image.fromarray(data.chelsea()))
    top = e.top(0, k=5)
    assert [c.index for c in top] == [
        285,
        282,
        281,
        287,
        728,
    ]  # Egyptian cat, tiger cat, tabby, lynx, …
    expected = [0.793624, 0.087621, 0.070059, 0.010381, 0.001274]
    np.testing.assert_allclose([c.probability for c in top], expected, atol=1e-4)
    low = e.low_res[0].double()
    np.testing.assert_allclose(float(low.sum()), 514.786, rtol=1e-4)
    np.testing.assert_allclose(float((low**2).sum()), 7624.515, rtol=1e-4)


def test_foreign_weights_are_one_line_and_a_malicious_pickle_no_torch_warning(tmp_path):
    import os
    import pickle
    import warnings

    from hrcam import create_backbone

    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError) as info:
        create_backbone("tiny_densenet", num_classes=2, weights=str(tmp_path / "other.pt"))
    message = str(info.value)
    assert (
        "\n" not in message and "missing (" in message and "1 unexpected (conv.weight)" in message
    )

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo hacked",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's own warning about the file would fail here
        with pytest.raises(CheckpointError, match="hrcam reads only the tensors"):
            load_checkpoint(tmp_path / "evil.pt")
        with pytest.raises(ValueError, match="never code from a file"):
            create_backbone("tiny_densenet", num_classes=2, weights=str(tmp_path / "evil.pt"))
