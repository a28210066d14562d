"""The one call on medical inputs: volumes through a network of volumes, scans through a network
of images, one or three channels."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import hrcam
from hrcam.checks import ShapeError

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")


class Tiny3d(nn.Module):
    """A GAP + FC network of volumes, small enough for a test."""

    def __init__(self, in_chans=1, classes=2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(in_chans, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv3d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.body(x)).flatten(1))


class Tiny2d(nn.Module):
    def __init__(self, in_chans=1, classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_chans, 8, 3, stride=4, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.pool(self.body(x)).flatten(1))


@pytest.fixture
def volume_explainer():
    torch.manual_seed(0)
    return hrcam.from_model(Tiny3d(), class_names=["normal", "lesion"], input_size=32)


def _volume(seed=0, shape=(20, 40, 36)):
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 10, shape).astype(np.float32)
    v[5:12, 10:25, 8:20] += 200  # a bright block, in Hounsfield-like units
    return v


def test_a_volume_gets_three_exact_maps_at_the_networks_size(volume_explainer):
    e = volume_explainer.explain(_volume(), steps=True)
    assert e.low_res.shape == (1, 8, 8, 8)
    assert e.high_res.shape == e.refined.shape == (1, 32, 32, 32)
    assert e.images.shape == (1, 32, 32, 32) and e.images.dtype == np.uint8
    batch = volume_explainer.prepare(_volume())
    with torch.inference_mode():
        logits = volume_explainer.backbone(batch.x)
    t = int(e.targets[0])
    bias = volume_explainer.backbone.fc.bias[t]
    torch.testing.assert_close(e.low_res[0].mean() + bias, logits[0, t], rtol=1e-5, atol=1e-5)
    assert 0 <= float(e.refined.min()) and float(e.refined.max()) <= 1
    assert e.steps[0].full_segment.shape == (32, 32, 32)
    record = e.arrays(0)
    assert record["refined_cam"].shape == (32, 32, 32)


def test_every_kind_of_volume_input_gives_the_same_maps(volume_explainer, tmp_path):
    v = _volume()
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(v, affine), path)
    from_array = volume_explainer.explain(v)
    from_path = volume_explainer.explain(str(path))
    from_scan = volume_explainer.explain(hrcam.medical.read_scan(path))
    np.testing.assert_allclose(from_path.refined.numpy(), from_array.refined.numpy(), atol=1e-6)
    np.testing.assert_array_equal(from_scan.refined.numpy(), from_path.refined.numpy())
    # A tensor in [0, 1] is taken as it is; a batch of them too.
    pixels = volume_explainer.prepare(v).pixels
    assert volume_explainer.explain(pixels).refined.shape == (1, 32, 32, 32)
    two = volume_explainer.explain([v, str(path)], targets="lesion")
    assert two.targets.tolist() == [1, 1]


def test_the_window_decides_what_the_network_sees(volume_explainer):
    v = _volume()
    wide = volume_explainer.replace(window=(0.0, 1000.0)).prepare(v).pixels
    narrow = volume_explainer.replace(window=(100.0, 50.0)).prepare(v).pixels
    assert float(wide.max()) < 0.8 and float(narrow.max()) == 1.0
    with pytest.raises(ValueError, match="window must be"):
        volume_explainer.replace(window=(0.0, -1.0))


def test_flip_and_the_paper_upsampler_on_volumes(volume_explainer):
    flipped = volume_explainer.replace(flip=True).explain(_volume())
    assert flipped.high_res.shape == (1, 32, 32, 32)
    with pytest.raises(ValueError, match="upsampler is 2-D"):
        hrcam.Explainer(volume_explainer.backbone, upsampler=_NeedsSkips())


class _NeedsSkips:
    needs_skips = True

    def upsample(self, inputs):
        raise AssertionError

    def describe(self):
        return {"name": "needs-skips"}


def test_mixing_images_and_volumes_is_refused_in_one_line(volume_explainer, tmp_path):
    with pytest.raises(ShapeError, match=r"a volume array must be \(D, H, W\)"):
        volume_explainer.explain(np.zeros((32, 32), dtype=np.float32))
    png = tmp_path / "xray.png"
    Image.fromarray(np.full((40, 40), 3000, dtype=np.uint16)).save(png)
    with pytest.raises(ShapeError, match="but this network takes volumes"):
        volume_explainer.explain(str(png))
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), path)
    image_explainer = hrcam.from_model(Tiny2d(), input_size=32)
    with pytest.raises(ShapeError, match="needs a network of volumes"):
        image_explainer.explain(str(path))


@pytest.mark.parametrize("in_chans", [1, 3])
def test_2d_scans_go_through_a_network_of_images_of_one_or_three_channels(in_chans, tmp_path):
    torch.manual_seed(1)
    explainer = hrcam.from_model(Tiny2d(in_chans=in_chans), input_size=64)
    values = (np.arange(80 * 96, dtype=np.uint16).reshape(80, 96) * 7) % 4000
    png = tmp_path / "xray.png"
    Image.fromarray(values).save(png)  # uint16: a 16-bit PNG
    ct = pydicom.examples.get_path("ct") if hasattr(pydicom, "examples") else None
    sources = [str(png)] + ([str(ct)] if ct else [])
    e = explainer.explain(sources, steps=True)
    assert e.refined.shape == (len(sources), 64, 64)
    assert e.images.shape == (len(sources), 64, 64, 3)  # gray, as pictures
    batch = explainer.prepare(str(png))
    assert batch.x.shape == (1, in_chans, 64, 64)
    # The 16-bit range is kept: the picture spans the window, not the lowest 8 bits.
    assert batch.rgb.max() > 200 and len(np.unique(batch.rgb)) > 100
    # A photograph given to a network of one channel is taken as its luminance.
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    got = explainer.prepare(rgb).pixels
    assert got.shape[1] == in_chans
    green = 0 if in_chans == 1 else 1
    expected = 0.587 if in_chans == 1 else 1.0
    assert abs(float(got[0, green].mean()) - expected) < 1e-3
