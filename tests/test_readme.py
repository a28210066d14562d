"""The README's code examples that must keep working, run as they are written there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- readme-example: {re.escape(name)} -->\s*```python\n(.*?)```", text, re.S
    )
    assert match, f"README has no example marked {name!r}"
    return match.group(1)


def test_pytorch_grad_cam_example_sharpens_the_map_offline():
    namespace: dict = {}
    exec(compile(_example("pytorch-grad-cam"), "README.md", "exec"), namespace)  # noqa: S102
    low, sharp, rgb = namespace["low"], namespace["sharp"], namespace["rgb"]
    assert low.shape == (1, 7, 7) and sharp.shape == (1, 224, 224)
    assert torch.isfinite(sharp).all() and rgb.min() >= 0 and rgb.max() <= 1
    # The upsampled map is made of the 7×7 map's own values.
    assert low.min() - 1e-5 <= sharp.min() and sharp.max() <= low.max() + 1e-5


def _blocks() -> list[str]:
    return re.findall(r"<!-- readme-example: ([\w-]+) -->", README.read_text(encoding="utf-8"))


def test_every_python_block_of_the_readme_is_an_example_that_runs():
    text = README.read_text(encoding="utf-8")
    assert text.count("```python") == len(_blocks()) >= 4


@pytest.mark.parametrize("name", [n for n in _blocks() if n not in ("pytorch-grad-cam", "medical")])
def test_readme_example_runs(name, tmp_path, monkeypatch):
    from PIL import Image
    from skimage import data

    monkeypatch.chdir(tmp_path)
    Image.fromarray(data.chelsea()).save("cat.jpg")
    namespace: dict = {}
    exec(compile(_example(name), "README.md", "exec"), namespace)  # noqa: S102
    maps = [v for v in namespace.values() if type(v).__name__ == "Explanation"]
    assert maps or "refined" in namespace, "the example explains something"
    for e in maps:
        assert torch.isfinite(e.refined).all() and e.refined.shape[-2:] == (224, 224)


def test_medical_example_explains_a_nifti_volume_and_a_dicom_series(tmp_path, monkeypatch):
    nib = pytest.importorskip("nibabel")
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("monai")
    import copy

    import numpy as np
    from pydicom.uid import generate_uid

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.normal(0, 50, (40, 48, 36)).astype(np.float32), np.eye(4)),
             "scan.nii.gz")  # fmt: skip
    base = pydicom.dcmread(pydicom.examples.get_path("ct"))
    Path("ct_series").mkdir()
    uid = generate_uid()
    for k in range(6):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, 3.0 * k]
        ds.save_as(f"ct_series/{k}.dcm")
    namespace: dict = {}
    exec(compile(_example("medical"), "README.md", "exec"), namespace)  # noqa: S102
    refined = namespace["refined"]
    assert refined.shape == (2, 96, 96, 96)
    assert torch.isfinite(refined).all() and 0 <= refined.min() and refined.max() <= 1


def test_the_readme_is_a_manual_not_a_notebook():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 350
    first_screen = "\n".join(lines[:30])
    for command in ("make demo", "make test", "source .venv/bin/activate"):
        assert command in first_screen
