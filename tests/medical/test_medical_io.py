"""hrcam.medical reads DICOM files and series, NIfTI and 16-bit images as physical values placed
in RAS+ space, refuses what it cannot read with one line naming the file, and writes NIfTI
atomically. All data is made here, by hand, with known answers."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    generate_uid,
)

from hrcam.medical import (
    Scan,
    ScanError,
    is_scan_path,
    read_dicom,
    read_dicom_series,
    read_image16,
    read_nifti,
    read_scan,
    write_nifti,
)

PATIENT = ("Doe^Jane", "SECRET-ID-123", "19700101")
# A sagittal stack: rows run along +y, columns down along -z, so the normal is -x (LPS).
ALONG_ROW, ALONG_COLUMN = (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)
NORMAL = np.array([-1.0, 0.0, 0.0])
ORIGIN = np.array([30.0, -20.0, 40.0])
PIXEL_SPACING = (0.5, 0.8)  # between rows, between columns
GAP = 2.5
H, W = 3, 5


def _dicom(
    stored: np.ndarray,
    *,
    position=None,
    orientation=ALONG_ROW + ALONG_COLUMN,
    slope: float = 1.0,
    intercept: float = 0.0,
    series: str = "1.2.826.0.1.3680043.1",
    frames: int = 1,
) -> FileDataset:
    """A CT dataset around ``stored`` (uint16, (H, W) or (frames, H, W)), with patient data."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT
    ds.Modality, ds.SeriesInstanceUID = "CT", series
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = stored.astype(np.uint16).tobytes()
    if frames > 1:
        ds.NumberOfFrames = frames
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = list(PIXEL_SPACING)
    ds.SliceThickness = GAP
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.WindowCenter, ds.WindowWidth = [40, 300], [400, 1500]
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _physical(k: int) -> np.ndarray:
    """Slice k's values in HU: 100 per slice, 20 per row, 2 per column, from -1000."""
    r, c = np.mgrid[:H, :W]
    return (100 * k + 20 * r + 2 * c - 1000).astype(np.float32)


def _series(folder: Path, n: int = 4, *, depths=None, **options) -> Path:
    """Slices k = 0..n-1 at ORIGIN + depth_k * NORMAL, written under shuffled names, with slopes
    that differ from slice to slice."""
    depths = [k * GAP for k in range(n)] if depths is None else depths
    names = np.random.default_rng(0).permutation(len(depths))
    for k, depth in enumerate(depths):
        slope, intercept = (1.0, -1024.0) if k % 2 == 0 else (2.0, -1024.0)
        stored = (_physical(k) - intercept) / slope
        ds = _dicom(stored, position=ORIGIN + depth * NORMAL, slope=slope, intercept=intercept)
        for key, value in options.get("overrides", {}).get(k, {}).items():
            setattr(ds, key, value)
        _save(ds, folder / f"IM{names[k]:04d}.dcm")
    return folder


def _refused(call, path, *words: str) -> str:
    """Run ``call(path)``, expect a one-line ScanError starting with the path holding ``words``."""
    with pytest.raises(ScanError) as caught:
        call(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, message
    for secret in PATIENT:
        assert secret not in message
    return message


# --------------------------------------------------------------------------- DICOM series


def test_a_shuffled_series_is_sorted_by_position_and_rescaled_slice_by_slice(tmp_path):
    folder = _series(tmp_path / "ct")
    (folder / "notes.txt").write_text("not DICOM")  # other files in the folder are passed over
    scan = read_scan(folder)
    assert scan.kind == "dicom" and scan.ndim == 3 and scan.array.dtype == np.float32
    assert scan.array.shape == (4, H, W)
    for k in range(4):
        np.testing.assert_array_equal(scan.array[k], _physical(k))
    assert scan.source == str(folder)


def test_the_series_affine_maps_slice_row_column_to_ras_millimetres(tmp_path):
    scan = read_dicom_series(_series(tmp_path / "ct"))
    assert scan.affine.shape == (4, 4) and scan.affine.dtype == np.float64
    # index (0, 0, 0) is the first slice's ImagePositionPatient, LPS (30, -20, 40) -> RAS.
    np.testing.assert_allclose(scan.affine @ [0, 0, 0, 1], [-30.0, 20.0, 40.0, 1.0])
    # (3, 2, 4): 3 slices of 2.5 mm along -x, 2 rows of 0.5 mm along -z, 4 columns of 0.8 mm
    # along +y: LPS (22.5, -16.8, 39) -> RAS (-22.5, 16.8, 39).
    np.testing.assert_allclose(scan.affine @ [3, 2, 4, 1], [-22.5, 16.8, 39.0, 1.0])
    assert scan.spacing == pytest.approx((2.5, 0.5, 0.8))


def test_the_window_is_the_files_first_and_windowed_lies_in_0_1(tmp_path):
    scan = read_dicom_series(_series(tmp_path / "ct"))
    assert scan.window == (40.0, 400.0)
    shown = scan.windowed()
    assert shown.dtype == np.float32 and shown.shape == scan.array.shape
    assert shown.min() >= 0.0 and shown.max() <= 1.0
    # row 0 of every slice holds -1000..-692 HU, below the window's -160: black
    assert np.all(shown[:, 0] == 0.0)
    wide = scan.windowed((-800.0, 800.0))  # -1200 .. -400 HU
    np.testing.assert_allclose(wide[0, 0, 0], (-1000 + 1200) / 800)


def test_windowed_defaults_to_percentiles_and_a_constant_scan_gives_zeros():
    def scan(array):
        return Scan(array, (1.0, 1.0), np.eye(4), None, "x", "image", "")

    ramp = scan(np.arange(1001, dtype=np.float32).reshape(7, 143))
    shown = ramp.windowed()
    assert shown.min() == 0.0 and shown.max() == 1.0
    np.testing.assert_allclose(shown.ravel()[500], 0.5, atol=1e-6)
    assert np.all(scan(np.full((4, 4), 7.0, np.float32)).windowed() == 0)
    with pytest.raises(ValueError, match="width > 0"):
        ramp.windowed((10.0, 0.0))


def test_descriptions_carry_no_patient_data(tmp_path):
    scan = read_scan(_series(tmp_path / "ct"))
    assert scan.description == "CT, 4 slices of 3×5 pixels, 0.5×0.8 mm, 2.5 mm apart"
    for secret in PATIENT:
        assert secret not in repr(scan.description) + scan.source


def test_a_folder_with_two_series_is_refused(tmp_path):
    folder = _series(tmp_path / "ct", 2)
    other = _dicom(np.zeros((H, W)), position=ORIGIN + 9 * NORMAL, series="1.3.6.1.4.1.99")
    _save(other, folder / "other.dcm")
    message = _refused(read_dicom_series, folder, "2 series", "one series per folder")
    assert "1.2.826.0.1." in message and "1.3.6.1.4.1." in message


def test_uneven_gaps_are_refused_with_the_gaps(tmp_path):
    folder = _series(tmp_path / "ct", depths=[0.0, 2.5, 7.5])
    _refused(read_dicom_series, folder, "2.5 to 5 mm", "does not resample")


def test_slices_at_one_position_are_refused(tmp_path):
    folder = _series(tmp_path / "ct", depths=[0.0, 2.5, 2.5, 5.0])
    _refused(read_dicom_series, folder, "same position")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({1: {"ImageOrientationPatient": [1, 0, 0, 0, 1, 0]}}, ("oriented differently",)),
        ({1: {"Columns": W - 1}}, ("pixels but",)),
        ({2: {"PixelSpacing": [0.6, 0.8]}}, ("0.6×0.8 mm", "0.5×0.8 mm")),
    ],
)
def test_slices_that_differ_are_refused(tmp_path, overrides, words):
    folder = _series(tmp_path / "ct", 3, overrides=overrides)
    _refused(read_dicom_series, folder, *words)


def test_slices_without_positions_are_refused(tmp_path):
    folder = tmp_path / "ct"
    for k in range(2):
        _save(_dicom(_physical(k) + 1000, orientation=None), folder / f"{k}.dcm")
    _refused(read_dicom_series, folder, "ImagePositionPatient")


def test_files_without_pixels_are_passed_over_and_refused_when_alone(tmp_path):
    folder = _series(tmp_path / "ct", 3)
    directory = _dicom(np.zeros((H, W)))
    del directory.PixelData
    _save(directory, folder / "DICOMDIR")
    assert read_dicom_series(folder).array.shape == (3, H, W)
    _refused(read_dicom, folder / "DICOMDIR", "no pixel data")
    lonely = tmp_path / "lonely"
    _save(directory, lonely / "DICOMDIR")
    _refused(read_dicom_series, lonely, "1 DICOM file", "pixel data")
    _refused(read_dicom_series, tmp_path / "empty-is-missing", "no such file")
    (tmp_path / "photos").mkdir()
    _refused(read_dicom_series, tmp_path / "photos", "no DICOM file")


# --------------------------------------------------------------------------- DICOM files


def test_one_dicom_file_is_an_image_placed_in_ras(tmp_path):
    path = _save(_dicom(_physical(0) + 1024, position=ORIGIN, intercept=-1024), tmp_path / "a")
    scan = read_scan(path)  # no extension: found by its DICM marker
    assert scan.ndim == 2 and scan.kind == "dicom"
    np.testing.assert_array_equal(scan.array, _physical(0))
    assert scan.spacing == (0.5, 0.8) and scan.window == (40.0, 400.0)
    # (row 2, column 4): LPS (30, -20 + 3.2, 40 - 1) -> RAS (-30, 16.8, 39)
    np.testing.assert_allclose(scan.affine @ [2, 4, 0, 1], [-30.0, 16.8, 39.0, 1.0])
    assert scan.description == "CT, 3×5 pixels, 0.5×0.8 mm"


def test_a_file_without_geometry_gets_a_spacing_only_affine(tmp_path):
    path = _save(_dicom(np.ones((H, W)), orientation=None), tmp_path / "plain.dcm")
    scan = read_dicom(path)
    np.testing.assert_allclose(scan.affine, np.diag([0.5, 0.8, 2.5, 1.0]))


def test_the_bundled_ct_sample_reads_in_hounsfield_units():
    sample = pydicom.data.get_testdata_file("CT_small.dcm")
    if sample is None:
        pytest.skip("pydicom's CT_small.dcm is not installed")
    scan = read_dicom(sample)
    raw = pydicom.dcmread(sample).pixel_array
    np.testing.assert_array_equal(scan.array, raw.astype(np.float32) - 1024)
    assert scan.array.shape == (128, 128)


def test_a_multi_frame_file_is_a_volume(tmp_path):
    stored = np.stack([_physical(k) + 1000 for k in range(3)])
    ds = _dicom(stored, frames=3)
    ds.SpacingBetweenSlices = 3.0
    scan = read_dicom(_save(ds, tmp_path / "multi.dcm"))
    assert scan.array.shape == (3, H, W)
    np.testing.assert_array_equal(scan.array, stored.astype(np.float32))
    assert scan.spacing == (3.0, 0.5, 0.8)


def test_multi_frame_positions_sort_the_frames(tmp_path):
    depths = [5.0, 0.0, 2.5]  # frame order on disk: slice 2, 0, 1
    stored = np.stack([_physical(int(d / GAP)) + 1000 for d in depths])
    ds = _dicom(stored, orientation=None, frames=3)
    del ds.PixelSpacing
    shared = Dataset()
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = list(ALONG_ROW + ALONG_COLUMN)
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = list(PIXEL_SPACING)
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = []
    for depth in depths:
        frame = Dataset()
        frame.PlanePositionSequence = [Dataset()]
        frame.PlanePositionSequence[0].ImagePositionPatient = list(ORIGIN + depth * NORMAL)
        ds.PerFrameFunctionalGroupsSequence.append(frame)
    scan = read_dicom(_save(ds, tmp_path / "enhanced.dcm"))
    for k in range(3):
        np.testing.assert_array_equal(scan.array[k], _physical(k) + 1000)
    np.testing.assert_allclose(scan.affine @ [2, 0, 0, 1], [-(30.0 - 5.0), 20.0, 40.0, 1.0])
    assert scan.spacing == pytest.approx((2.5, 0.5, 0.8))


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless])
def test_compressed_pixels_no_decoder_reads_give_the_decoder_line(tmp_path, syntax):
    ds = _dicom(np.zeros((H, W)))
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"not a codestream" * 4])
    ds["PixelData"].VR = "OB"
    path = _save(ds, tmp_path / "compressed.dcm")
    _refused(read_dicom, path, syntax.name, "pip install pylibjpeg", "gdcmconv --raw")


def test_files_that_are_not_dicom_or_not_there_are_refused(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"hello, not a DICOM file" * 10)
    _refused(read_scan, junk, "not a DICOM file")
    _refused(read_dicom, tmp_path / "missing.dcm", "no such file")
    _refused(read_scan, tmp_path / "missing.nii.gz", "no such file")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    _refused(read_scan, notes, "not a scan")


# --------------------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("name", ["map.nii.gz", "map.nii"])
def test_nifti_round_trip_keeps_values_and_affine(tmp_path, name):
    rng = np.random.default_rng(1)
    array = rng.normal(size=(4, 5, 6)).astype(np.float32)
    affine = np.array(
        [[0.0, -0.9, 0.1, 12.0], [1.1, 0.0, 0.0, -7.0], [0.0, 0.2, 2.5, 3.5], [0, 0, 0, 1]]
    )
    write_nifti(tmp_path / "first" / name, array, affine)
    scan = read_scan(tmp_path / "first" / name)
    assert scan.kind == "nifti" and scan.array.dtype == np.float32
    np.testing.assert_array_equal(scan.array, array)
    np.testing.assert_allclose(scan.affine, affine, atol=1e-6)
    write_nifti(tmp_path / name, scan.array, scan.affine)
    again = read_nifti(tmp_path / name)
    np.testing.assert_array_equal(again.array, array)
    np.testing.assert_allclose(again.affine, affine, atol=1e-6)
    assert again.spacing == pytest.approx(np.linalg.norm(affine[:3, :3], axis=0), rel=1e-6)


def test_a_dicom_series_written_as_nifti_keeps_its_place(tmp_path):
    scan = read_dicom_series(_series(tmp_path / "ct"))
    write_nifti(tmp_path / "ct.nii.gz", scan.windowed(), scan.affine)
    back = read_nifti(tmp_path / "ct.nii.gz")
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-5)
    np.testing.assert_allclose(back.array, scan.windowed())


def test_nifti_scaling_is_applied_and_singleton_axes_kept(tmp_path):
    image = nibabel.Nifti1Image(np.arange(6, dtype=np.int16).reshape(2, 3, 1), np.eye(4))
    image.header.set_slope_inter(2.0, -1.0)
    nibabel.save(image, tmp_path / "flat.nii")
    scan = read_nifti(tmp_path / "flat.nii")
    assert scan.array.shape == (2, 3, 1)
    np.testing.assert_array_equal(scan.array[..., 0], np.arange(6).reshape(2, 3) * 2.0 - 1.0)


def test_nifti_with_one_volume_in_4d_is_3d_and_several_are_refused(tmp_path):
    nibabel.save(
        nibabel.Nifti1Image(np.ones((2, 3, 4, 1), np.float32), np.eye(4)), tmp_path / "one.nii"
    )
    assert read_nifti(tmp_path / "one.nii").array.shape == (2, 3, 4)
    path = tmp_path / "series.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((2, 3, 4, 3), np.float32), np.eye(4)), path)
    _refused(read_nifti, path, "4-D series of 3 volumes", "img.slicer[..., 0]")


def test_nifti_with_nan_is_refused_with_the_count(tmp_path):
    array = np.zeros((2, 3, 4), np.float32)
    array[0, 0, :2] = np.nan
    array[1, 2, 3] = np.inf
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), tmp_path / "nan.nii")
    _refused(read_nifti, tmp_path / "nan.nii", "3 non-finite")


def test_a_file_named_nifti_that_is_not_is_refused(tmp_path):
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"definitely not gzip")
    _refused(read_scan, fake, "not a readable NIfTI file")


def test_write_nifti_stores_2d_as_3d_and_checks_its_input(tmp_path):
    write_nifti(tmp_path / "flat.nii.gz", np.ones((3, 5)), np.eye(4))
    assert read_nifti(tmp_path / "flat.nii.gz").array.shape == (3, 5, 1)
    with pytest.raises(ValueError, match=r"\.nii or \.nii\.gz"):
        write_nifti(tmp_path / "map.png", np.ones((3, 5)), np.eye(4))
    with pytest.raises(ValueError, match="shape"):
        write_nifti(tmp_path / "map.nii", np.ones((3,)), np.eye(4))
    with pytest.raises(ValueError, match="non-finite"):
        write_nifti(tmp_path / "map.nii", np.full((3, 5), np.nan), np.eye(4))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "cam.nii.gz"
    write_nifti(path, np.ones((2, 3, 4)), np.eye(4))
    before = path.read_bytes()

    def half_written(image, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nibabel, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_nifti(path, np.zeros((2, 3, 4)), np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.nii.gz"]
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- 16-bit images


@pytest.mark.parametrize("name", ["xray.png", "xray.tif"])
def test_16_bit_images_keep_their_full_range(tmp_path, name):
    values = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 4000) + 3
    Image.fromarray(values).save(tmp_path / name)
    scan = read_scan(tmp_path / name)
    assert scan.kind == "image" and scan.ndim == 2
    np.testing.assert_array_equal(scan.array, values.astype(np.float32))
    assert scan.array.max() > 255 and scan.window is None
    assert scan.description.startswith("16-bit")


def test_rgb_images_become_luminance(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "green.png")
    scan = read_image16(tmp_path / "green.png")
    np.testing.assert_allclose(scan.array, round(0.587 * 200), atol=1)
    assert "luminance of RGB" in scan.description


def test_a_broken_image_is_refused(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG nothing more")
    _refused(read_scan, tmp_path / "broken.png", "not a recognised image")


# --------------------------------------------------------------------------- is_scan_path


def test_is_scan_path_knows_each_kind(tmp_path):
    series = _series(tmp_path / "ct", 2)
    bare = _save(_dicom(np.zeros((H, W))), tmp_path / "IM0001")
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(tmp_path / "photos" / "a.png")
    for scan in ("a.nii", "b.NII.GZ", "c.dcm", "d.dicom", series, bare):
        assert is_scan_path(tmp_path / scan), scan
    for other in ("photos", "photos/a.png", "cat.jpg", "missing-folder"):
        assert not is_scan_path(tmp_path / other), other
