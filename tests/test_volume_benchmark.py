"""The 3-D localization benchmark: lesion volumes, a 3-D TinyDenseNet trained on NIfTI class
folders, and voxel scores of hrcam's maps next to MONAI's."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from hrcam.backbones import create_backbone
from hrcam.checkpoint import save_checkpoint
from hrcam.cli import main
from hrcam.data.folders import ClassFolderDataset, build_volume_transform, folder_kind
from hrcam.datasets.lesion_volumes import LESION_CLASSES, make_lesion_volumes, render_volume
from hrcam.evaluation.volumes import (
    deletion_insertion_volumes,
    evaluate_volumes,
    read_volume_dataset,
)
from hrcam.explainer import Explainer

nib = pytest.importorskip("nibabel")

SIDE = 32


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    out = tmp_path_factory.mktemp("vol") / "lesions"
    make_lesion_volumes(
        out, side=SIDE, train_per_class=2, test_per_class=2, radius=(4, 7), progress=False
    )
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = create_backbone(
        "tiny_densenet",
        num_classes=3,
        spatial_dims=3,
        in_chans=1,
        input_size=SIDE,
        growth_rate=4,
        class_names=[f"{k}_{c}" for k, c in enumerate(LESION_CLASSES)],
    )
    path = tmp_path_factory.mktemp("ckpt") / "net.pt"
    save_checkpoint(path, backbone=net, stage="classifier", epoch=0, config={}, metrics={})
    return path


def test_render_volume_mask_is_exactly_the_lesion():
    for label in range(3):
        volume, mask = render_volume(label, np.random.default_rng(label), side=SIDE, radius=(4, 7))
        assert volume.dtype == np.int16 and mask.shape == (SIDE,) * 3
        assert 100 < mask.sum() < SIDE**3 // 4
        # the lesion is brighter than the tissue around it (it adds ~250 on average)
        ring = np.logical_xor(mask, ndimage.binary_dilation(mask, iterations=2))
        assert volume[mask].mean() > volume[ring].mean() + 100


def test_make_lesion_volumes_layout(lesions):
    meta = json.loads((lesions / "meta.json").read_text())
    assert meta["counts"]["train"] == {f"{k}_{c}": 2 for k, c in enumerate(LESION_CLASSES)}
    samples = read_volume_dataset(lesions / "eval")
    assert len(samples) == 6 and {s.label for s in samples} == {0, 1, 2}
    image = nib.load(samples[0].image)
    mask = np.asarray(nib.load(samples[0].mask).dataobj)
    assert image.shape == mask.shape == (SIDE,) * 3 and set(np.unique(mask)) == {0, 1}
    # test/ holds the eval volumes under their classes
    assert (
        lesions / "test" / f"{samples[0].label}_{samples[0].label_name}" / samples[0].image.name
    ).is_file()
    assert folder_kind(lesions / "train") == "volumes"
    with pytest.raises(FileExistsError, match="exists"):
        make_lesion_volumes(lesions, side=SIDE, train_per_class=1, test_per_class=1, progress=False)


def test_volume_folders_train_transform(lesions):
    net = create_backbone("tiny_densenet", num_classes=3, spatial_dims=3, in_chans=1)
    transform = build_volume_transform(size=24, mean=net.mean, std=net.std, train=True)
    data = ClassFolderDataset(lesions / "train", transform)
    assert data.volumes and data.classes == [f"{k}_{c}" for k, c in enumerate(LESION_CLASSES)]
    x, label = data[0]
    assert x.shape == (1, 24, 24, 24) and label == 0
    # normalised with the network's 0.5 / 0.25 of windowed intensity
    raw = build_volume_transform(size=24, mean=(0.0,), std=(1.0,), train=False)(
        data.loader(data.files[0])
    )
    assert 0 <= raw.min() and raw.max() <= 1


def test_mixed_folder_is_refused(tmp_path, lesions):
    mixed = tmp_path / "mixed" / "a"
    mixed.mkdir(parents=True)
    (mixed / "v.nii.gz").write_bytes((lesions / "eval" / "images" / "v00000.nii.gz").read_bytes())
    from PIL import Image

    Image.new("RGB", (8, 8)).save(mixed / "p.png")
    with pytest.raises(ValueError, match="both images and NIfTI volumes"):
        folder_kind(tmp_path / "mixed")


def test_tiny_densenet_3d_cam_is_exact():
    net = create_backbone(
        "tiny_densenet", num_classes=3, spatial_dims=3, in_chans=1, growth_rate=4, input_size=SIDE
    ).eval()
    explainer = Explainer(net)
    # mean of the CAM + bias = logit, for the explained volumes
    batch = explainer.prepare(list(torch.rand(2, SIDE, SIDE, SIDE)))
    cams = explainer.cams(batch, targets=[2, 1])
    assert cams.low_res.shape == (2, SIDE // 8, SIDE // 8, SIDE // 8)
    with torch.no_grad():
        logits = net(batch.x)
    means = cams.low_res.flatten(1).mean(1) + net.fc.bias[[2, 1]]
    torch.testing.assert_close(means, logits[[0, 1], [2, 1]], atol=1e-4, rtol=1e-4)


def test_deletion_insertion_volumes_tracks_the_ranked_voxels():
    # one "class" is the mean of the first half of the volume: deleting it first drops fastest
    def model(x):
        score = x[:, :, : x.shape[2] // 2].mean(dim=(1, 2, 3, 4)) * 10
        return torch.stack([score, -score], dim=1)

    volume = torch.zeros(1, 1, 8, 8, 8)
    volume[:, :, :4] = 1  # its blur is dimmer in the first half, which insertion restores
    good = torch.zeros(8, 8, 8)
    good[:4] = 1
    good_out = deletion_insertion_volumes(model, volume, good, 0, steps=8)
    bad_out = deletion_insertion_volumes(model, volume, 1 - good, 0, steps=8)
    assert good_out["deletion"].shape == (9,)
    assert good_out["deletion_auc"] < bad_out["deletion_auc"]
    assert good_out["insertion_auc"] > bad_out["insertion_auc"]


def test_evaluate_volumes_scores_ours_and_monai(lesions, checkpoint):
    pytest.importorskip("monai")
    from hrcam.checkpoint import load_model

    explainer = load_model(checkpoint)
    results = evaluate_volumes(
        explainer,
        lesions / "eval",
        [
            "low_res",
            "high_res",
            "refined",
            "refined:preset=paper",
            "monai_cam",
            "monai_gradcam",
            "monai_gradcampp",
        ],
        faithfulness=1,
        faithfulness_steps=4,
        examples=2,
        progress=False,
    )
    methods = results["methods"]
    assert results["run"]["num_scored"] == 6 and results["bad"] == []
    for entry in methods.values():
        assert 0 <= entry["voxel_pxap"] <= 100
        low, high = entry["voxel_pxap_interval"]
        assert low <= entry["voxel_pxap"] <= high
        assert "deletion_auc" in entry and "insertion_auc" in entry
    # MONAI's CAM is the same low-res CAM, trilinearly upsampled as hrcam's low_res is scored
    assert methods["monai_cam"]["voxel_pxap"] == pytest.approx(
        methods["low_res"]["voxel_pxap"], abs=0.05
    )
    assert results["comparison"]["peer"].startswith("monai_")
    assert len(results["examples"]) == 2


def test_hrcam_evaluate_on_volumes_writes_results(lesions, checkpoint, tmp_path, capsys):
    pytest.importorskip("monai")
    out = tmp_path / "eval"
    code = main(
        ["evaluate", str(lesions / "eval"), "--model", str(checkpoint), "--split", "second-half",
         "--methods", "low_res,refined,monai_gradcam", "-o", str(out), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "results.json").read_text())
    assert record["run"]["num_scored"] == 3 and record["run"]["split"] == "second-half"
    assert set(record["methods"]) == {"low_res", "refined", "monai_gradcam"}
    assert (out / "examples.png").stat().st_size > 1000
    assert "voxel PxAP" in capsys.readouterr().out
    code = main(
        ["evaluate", str(lesions / "eval"), "--model", str(checkpoint), "--methods", "gradcam",
         "-o", str(tmp_path / "bad"), "--no-progress"]
    )  # fmt: skip
    assert code == 2
    assert "unknown method 'gradcam' for volumes" in capsys.readouterr().err
    for spec, message in (
        ("refined:alpha=x", "alpha='x' is not a float"),
        ("refined:mode=paper", "refined takes refinement options only"),
        ("low_res:alpha=0.5", "only refined takes options on volumes"),
    ):
        code = main(
            ["evaluate", str(lesions / "eval"), "--model", str(checkpoint), "--methods", spec,
             "-o", str(tmp_path / "bad"), "--no-progress"]
        )  # fmt: skip
        assert code == 2 and message in capsys.readouterr().err


def test_train_classifier_on_volume_folders(lesions, tmp_path):
    out = tmp_path / "cls"
    code = main(
        ["train-classifier", str(lesions), "-o", str(out), "--backbone", "tiny_densenet",
         "--input-size", "24", "--growth-rate", "4", "--epochs", "1", "--batch-size", "3",
         "--workers", "0", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    from hrcam.checkpoint import load_model

    explainer = load_model(out / "last.pt")
    assert explainer.spatial_dims == 3 and explainer.backbone.in_chans == 1
    explanation = explainer.explain(lesions / "eval" / "images" / "v00000.nii.gz")
    assert explanation.refined.shape == (1, 24, 24, 24)


def test_train_classifier_refuses_volumes_for_an_image_network(lesions, tmp_path, capsys):
    code = main(
        ["train-classifier", str(lesions), "-o", str(tmp_path / "x"), "--backbone",
         "efficientnet_lite0", "--epochs", "1", "--no-progress"]
    )  # fmt: skip
    assert code != 0
    assert "--backbone tiny_densenet" in capsys.readouterr().err


def test_lesion_volumes_refuses_bad_sizes_in_one_line(tmp_path, capsys):
    for args, message in (
        (["--side", "16"], "side must be at least 24 voxels, got 16"),
        (["--radius", "9", "4"], "radius must be (min, max) with 2 <= min <= max"),
        (["--train-per-class", "-1"], "train_per_class must be >= 0, got -1"),
    ):
        code = main(["data", "lesion-volumes", "--out", str(tmp_path / "v"), *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v").exists()
