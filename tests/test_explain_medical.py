"""``hrcam explain`` on medical inputs: a NIfTI volume and a DICOM series through a MONAI
network of volumes, maps written back as NIfTI with the scan's affine, slices as pictures."""

from __future__ import annotations

import copy
import json
import textwrap

import numpy as np
import pytest
from PIL import Image

import hrcam
from hrcam.cli import main as cli

from .conftest import output_folder

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
pytest.importorskip("monai")

NETS = textwrap.dedent(
    """
    import torch
    from monai.networks.nets import DenseNet121

    def volumes():
        torch.manual_seed(0)
        net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2, init_features=8,
                          growth_rate=4, block_config=(1, 1, 1, 1))
        net.class_names = ["normal", "lesion"]
        return net

    def images():
        torch.manual_seed(0)
        return DenseNet121(spatial_dims=2, in_channels=1, out_channels=3, init_features=8,
                           growth_rate=4, block_config=(1, 1, 1, 1))
    """
)


@pytest.fixture
def scans(tmp_path):
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(0)
    volume = rng.normal(0, 20, (30, 40, 36)).astype(np.float32)
    volume[8:16, 10:25, 12:24] += 300
    affine = np.array([[0.9, 0, 0, -20], [0, 0.9, 0, 10], [0, 0, 2.5, 5], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "scan.nii.gz")
    base = pydicom.dcmread(pydicom.examples.get_path("ct"))
    series = tmp_path / "series"
    series.mkdir()
    uid = generate_uid()
    for k in range(8):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = uid, generate_uid(), k + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelData = rng.normal(0, 20, (ds.Rows, ds.Columns)).astype(np.int16).tobytes()
        ds.save_as(series / f"slice{(k * 5) % 8}.dcm")  # names out of slice order
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    (tmp_path / "nets.py").write_text(NETS)
    return tmp_path


def test_a_nifti_volume_and_a_dicom_series_are_explained_into_nifti_and_slices(scans):
    out = scans / "out"
    args = ["explain", str(scans / "scan.nii.gz"), str(scans / "series"), str(scans / "photo.jpg")]
    code = cli(
        [*args, "--model", f"{scans / 'nets.py'}:volumes", "--input-size", "32", "-o", str(out)]
    )
    assert code == 1  # the photograph failed; the scans did not
    summary = json.loads((out / "summary.json").read_text())
    failed = [r for r in summary["results"] if not r["ok"]]
    assert len(failed) == 1 and "a 2-D image, and this model takes volumes" in failed[0]["error"]
    folder = output_folder(out, "scan")
    written = nib.load(folder / "cam_refined.nii.gz")
    source = nib.load(scans / "scan.nii.gz")
    assert written.shape == source.shape == (30, 40, 36)
    np.testing.assert_allclose(written.affine, source.affine)
    refined = written.get_fdata()
    assert 0 <= refined.min() and refined.max() <= 1
    record = json.loads((folder / "predictions.json").read_text())
    assert record["shape"] == [30, 40, 36] and record["target"]["name"] in ("normal", "lesion")
    image = Image.open(folder / "image.jpg")
    assert tuple(record["size"]) == image.size and image.size[0] == image.size[1]  # 2×2 slices
    for key in ("cam_low", "cam_high", "cam_refined", "masked"):
        assert Image.open(folder / f"{key}.jpg").size == image.size
    series = output_folder(out, "series")
    assert nib.load(series / "cam_high.nii.gz").shape == (8, 128, 128)
    page = (out / "index.html").read_text()
    assert "volume of 30×40×36 voxels" in page and "cam_refined.nii.gz" in page
    # Resumed: nothing is explained again, the series tied to its folder.
    before = (series / "maps.npz").stat().st_mtime_ns
    cli(
        [
            *args,
            "--model",
            f"{scans / 'nets.py'}:volumes",
            "--input-size",
            "32",
            "-o",
            str(out),
            "--skip-existing",
        ]
    )
    assert (series / "maps.npz").stat().st_mtime_ns == before


def test_an_exported_network_of_volumes_explains_from_its_file(scans):
    explainer = hrcam.load_model(f"{scans / 'nets.py'}:volumes").replace(input_size=32)
    plain = hrcam.from_model(explainer.backbone.model, input_size=32)  # no builder: exported
    model = hrcam.export_model(plain, scans / "lesions.safetensors")
    out = scans / "out"
    assert cli(["explain", str(scans / "scan.nii.gz"), "--model", str(model), "-o", str(out)]) == 0
    written = nib.load(output_folder(out, "scan") / "cam_low.nii.gz")
    assert written.shape == (30, 40, 36)


def test_a_2d_dicom_goes_through_a_network_of_gray_images(scans):
    out = scans / "out"
    ct = pydicom.examples.get_path("ct")
    code = cli(
        [
            "explain",
            str(ct),
            "--model",
            f"{scans / 'nets.py'}:images",
            "--input-size",
            "64",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    folder = output_folder(out, "CT_small")
    written = nib.load(folder / "cam_refined.nii.gz")
    assert written.shape[:2] == (128, 128)
    assert Image.open(folder / "image.jpg").mode == "RGB"
    assert (folder / "pipeline.jpg").is_file()


def test_a_volume_given_to_a_network_of_images_is_one_failed_item(scans):
    out = scans / "out"
    code = cli(
        [
            "explain",
            str(scans / "scan.nii.gz"),
            str(scans / "photo.jpg"),
            "--model",
            f"{scans / 'nets.py'}:images",
            "-o",
            str(out),
        ]
    )
    assert code == 1
    failed = [r for r in json.loads((out / "summary.json").read_text())["results"] if not r["ok"]]
    assert [("a volume, and this model takes 2-D images" in r["error"]) for r in failed] == [True]


def test_window_flag_reads_scans_through_the_window_given(scans, capsys):
    model = ["--model", f"{scans / 'nets.py'}:volumes", "--input-size", "32"]
    scan = str(scans / "scan.nii.gz")
    assert cli(["explain", scan, *model, "-o", str(scans / "own")]) == 0
    assert cli(["explain", scan, *model, "--window", "150,20", "-o", str(scans / "narrow")]) == 0
    own = np.asarray(Image.open(output_folder(scans / "own", "scan") / "image.jpg"))
    narrow = np.asarray(Image.open(output_folder(scans / "narrow", "scan") / "image.jpg"))
    # a window of 140-160 over values near 0 and 300: the picture is black and white only
    assert np.mean((narrow > 40) & (narrow < 215)) < np.mean((own > 40) & (own < 215))
    with pytest.raises(SystemExit):
        cli(["explain", scan, *model, "--window", "40", "-o", str(scans / "bad")])
    assert "CENTRE,WIDTH such as 40,400" in capsys.readouterr().err
