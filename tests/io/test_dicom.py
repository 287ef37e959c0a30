"""DICOM reading: order, orientation, HU, compression, multi-frame, and every kind of bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from helpers import make_volume, synthetic_chest
from m3lung.errors import DicomError, InputError, IntensityError, M3LungWarning
from m3lung.io import CTVolume, read_ct, scan_dicom, write_dicom_series


@pytest.fixture
def vol() -> CTVolume:
    return make_volume(synthetic_chest(n=8, size=64))


def _write(vol: CTVolume, folder: Path, **kw) -> Path:
    return write_dicom_series(vol, folder, **kw)


def _edit(folder: Path, fn) -> None:
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        fn(ds, f)
        ds.save_as(f, enforce_file_format=True)


def _assert_same(a: CTVolume, b: CTVolume) -> None:
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.voxels, b.voxels)
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-5)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-6)


def test_roundtrip_shuffled_names(vol, tmp_path):
    rng = np.random.default_rng(1)
    names = [f"{x:08x}" for x in rng.choice(2**31, size=vol.n_slices, replace=False)]
    _write(vol, tmp_path / "s", file_names=names)
    back = read_ct(tmp_path / "s")
    _assert_same(vol, back)
    assert back.source.format == "dicom" and back.source.modality == "CT"
    assert back.warnings == []


def test_order_never_from_names_or_instance_numbers(vol, tmp_path):
    # file names sort in reverse anatomical order and InstanceNumbers are scrambled
    names = [f"IM{n:03d}.dcm" for n in range(vol.n_slices)][::-1]
    _write(vol, tmp_path / "s", file_names=names)
    scramble = iter(np.random.default_rng(0).permutation(vol.n_slices) + 1)
    _edit(tmp_path / "s", lambda ds, f: setattr(ds, "InstanceNumber", int(next(scramble))))
    back = read_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.voxels, vol.voxels)


def test_source_index_follows_instance_number(vol, tmp_path):
    _write(vol, tmp_path / "s")  # InstanceNumber 1 = most superior slice, as scanners write
    back = read_ct(tmp_path / "s")
    assert back.source_index.tolist() == list(range(vol.n_slices))[::-1]
    assert back.source.instance_numbers[-1] == 1


def test_recursive_search(vol, tmp_path):
    _write(vol, tmp_path / "a" / "b" / "series")
    (tmp_path / "notes.txt").write_text("hello")
    back = read_ct(tmp_path)
    np.testing.assert_array_equal(back.voxels, vol.voxels)


@pytest.mark.parametrize("syntax", ["rle", "jpeg2000"])
def test_compressed_transfer_syntaxes(vol, tmp_path, syntax):
    _write(vol, tmp_path / syntax, transfer_syntax=syntax)
    ts = pydicom.dcmread(next((tmp_path / syntax).iterdir())).file_meta.TransferSyntaxUID
    assert ts.is_compressed
    back = read_ct(tmp_path / syntax)
    np.testing.assert_array_equal(back.voxels, vol.voxels)


def test_flipped_rows_are_reoriented(vol, tmp_path):
    # a series stored upside down (rows running posterior -> anterior) reads back in canonical orientation
    flipped = make_volume(vol.voxels[:, ::-1, :].copy())
    flipped.direction = np.array([[0.0, 0, 1], [0, -1, 0], [1, 0, 0]])
    _write(flipped, tmp_path / "s")
    back = read_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.voxels, vol.voxels)
    np.testing.assert_allclose(back.direction, np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]]), atol=1e-9)
    # the same physical voxel keeps its world position
    np.testing.assert_allclose(back.world(2, 0, 5), flipped.world(2, vol.shape[1] - 1, 5), atol=1e-4)


def test_feet_first_descending_normal(vol, tmp_path):
    # IOP with both cosines negated (patient rotated 180 degrees): normal still +z, rows and cols reversed
    rot = make_volume(vol.voxels[:, ::-1, ::-1].copy())
    rot.direction = np.array([[0.0, 0, 1], [0, -1, 0], [-1, 0, 0]])
    _write(rot, tmp_path / "s")
    back = read_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.voxels, vol.voxels)


def test_sagittal_series_becomes_axial(tmp_path):
    ax = make_volume(synthetic_chest(n=6, size=32), spacing=(1.0, 1.0, 1.0))
    # store it as sagittal images: array axes (x, z-down, y)... built directly from the axial truth
    sag_vox = np.ascontiguousarray(ax.voxels.transpose(2, 0, 1)[:, ::-1, :])  # (x, -z, y)
    sag = make_volume(sag_vox, spacing=(1.0, 1.0, 1.0))
    sag.direction = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    sag.origin = ax.world(ax.n_slices - 1, 0, 0)
    _write(sag, tmp_path / "s")
    with pytest.warns(M3LungWarning, match="not axial"):
        back = read_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.voxels, ax.voxels)
    np.testing.assert_allclose(back.origin, ax.origin, atol=1e-4)


def test_multiframe_enhanced_ct(vol, tmp_path):
    _write(vol, tmp_path / "s")
    files = sorted((tmp_path / "s").iterdir(), key=lambda f: -pydicom.dcmread(f).InstanceNumber)
    dss = [pydicom.dcmread(f) for f in files]  # inferior first
    ds = dss[0]
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    frames = []
    for d in dss[::-1]:  # frames stored superior first
        fg = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = d.ImagePositionPatient
        fg.PlanePositionSequence = Sequence([pp])
        pv = Dataset()
        pv.RescaleSlope, pv.RescaleIntercept = d.RescaleSlope, d.RescaleIntercept
        fg.PixelValueTransformationSequence = Sequence([pv])
        frames.append(fg)
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = ds.ImageOrientationPatient
    pm = Dataset()
    pm.PixelSpacing = ds.PixelSpacing
    pm.SliceThickness = ds.SliceThickness
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(dss)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope", "RescaleIntercept"):
        del ds[tag]
    ds.PixelData = b"".join(d.PixelData for d in dss[::-1])
    out = tmp_path / "mf.dcm"
    ds.save_as(out, enforce_file_format=True)
    back = read_ct(out)
    np.testing.assert_array_equal(back.voxels, vol.voxels)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-5)


def test_anonymize(vol, tmp_path):
    _write(vol, tmp_path / "s", patient_id="SECRET-42", patient_name="Doe^Jane")
    back = read_ct(tmp_path / "s", anonymize=True)
    assert back.source.patient_id is None
    assert "PatientName" not in back.source.metadata and "PatientID" not in back.source.metadata
    plain = read_ct(tmp_path / "s")
    assert plain.source.patient_id == "SECRET-42"
    assert back.source.series_uid != plain.source.series_uid and back.source.series_uid.startswith("2.25.")
    assert "SECRET" not in str(back.summary())


# ------------------------------------------------------------------------------------------ bad input
def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_ct(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(DicomError, match="empty"):
        read_ct(tmp_path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "c").write_bytes(b"not a dicom file at all" * 20)
    with pytest.raises(DicomError, match="no DICOM files"):
        read_ct(tmp_path)


def test_structured_report_only(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match=r"hold no image.*structured report"):
        read_ct(tmp_path)


def test_non_ct_modality_warns(vol, tmp_path):
    _write(vol, tmp_path / "s")
    _edit(tmp_path / "s", lambda ds, f: setattr(ds, "Modality", "MR"))
    with pytest.warns(M3LungWarning, match="Modality is MR"):
        back = read_ct(tmp_path / "s")
    assert any("Modality is MR" in w for w in back.warnings)


def test_missing_rescale_but_hu_like(vol, tmp_path):
    _write(vol, tmp_path / "s")

    def drop(ds, f):
        arr = ds.pixel_array.astype(np.int16) - 1024  # store real HU, signed, without rescale tags
        ds.PixelData = arr.tobytes()
        del ds.RescaleSlope
        del ds.RescaleIntercept

    _edit(tmp_path / "s", drop)
    with pytest.warns(M3LungWarning, match="already look like HU"):
        back = read_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.voxels, vol.voxels)


def test_missing_rescale_refused_when_not_hu(vol, tmp_path):
    _write(vol, tmp_path / "s")

    def drop(ds, f):
        del ds.RescaleSlope
        del ds.RescaleIntercept

    _edit(tmp_path / "s", drop)  # stored values are HU + 1024 >= 0: air would be ~0 HU
    with pytest.raises(IntensityError, match="cannot be Hounsfield"):
        read_ct(tmp_path / "s")
    back = read_ct(tmp_path / "s", rescale=(1.0, -1024.0))
    np.testing.assert_array_equal(back.voxels, vol.voxels)


def test_mixed_series_picks_largest_and_says_so(tmp_path):
    big = make_volume(synthetic_chest(n=8, size=48))
    small = make_volume(synthetic_chest(n=4, size=48, seed=3))
    _write(big, tmp_path / "big", series_uid="1.2.826.0.1.1", series_description="lung")
    _write(small, tmp_path / "small", series_uid="1.2.826.0.1.2", series_description="soft")
    with pytest.warns(M3LungWarning, match="2 image stacks") as rec:
        back = read_ct(tmp_path)
    assert back.n_slices == 8 and back.source.series_uid == "1.2.826.0.1.1"
    assert "read series 1.2.826.0.1.1" in str(rec[0].message)
    other = read_ct(tmp_path, series_uid="1.2.826.0.1.2")
    np.testing.assert_array_equal(other.voxels, small.voxels)
    with pytest.raises(DicomError, match=r"no series 9\.9"):
        read_ct(tmp_path, series_uid="9.9")
    assert len(scan_dicom(tmp_path).series) == 2


def test_duplicate_identical_slices_dropped(vol, tmp_path):
    _write(vol, tmp_path / "s")
    f = sorted((tmp_path / "s").iterdir())[3]
    shutil.copy(f, tmp_path / "s" / "copy.dcm")
    with pytest.warns(M3LungWarning, match="duplicates dropped"):
        back = read_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.voxels, vol.voxels)


def test_duplicate_position_different_images_refused(vol, tmp_path):
    _write(vol, tmp_path / "s")
    f = sorted((tmp_path / "s").iterdir())[3]
    ds = pydicom.dcmread(f)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    arr = ds.pixel_array.copy()
    arr[:10] += 100
    ds.PixelData = arr.tobytes()
    ds.save_as(tmp_path / "s" / "other.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="two different images at the same position"):
        read_ct(tmp_path / "s")


def test_gap_and_uneven_spacing_warn_with_positions(tmp_path):
    v = make_volume(synthetic_chest(n=10, size=32))
    pos = np.arange(10) * 2.0
    pos[6:] += 4.0  # two slices missing between index 5 and 6
    pos[2] += 0.5  # one uneven step
    v.slice_positions = pos
    _write(v, tmp_path / "s")
    with pytest.warns(M3LungWarning) as rec:
        back = read_ct(tmp_path / "s")
    msgs = " ".join(str(r.message) for r in rec)
    assert "gap" in msgs and "110.00→116.00" in msgs and "~2 missing" in msgs
    assert "uneven" in msgs
    np.testing.assert_allclose(back.slice_positions, pos, atol=1e-4)
    assert back.spacing[0] == pytest.approx(2.0)


def test_single_slice_warns(vol, tmp_path):
    _write(vol, tmp_path / "s")
    f = sorted((tmp_path / "s").iterdir())[0]
    with pytest.warns(M3LungWarning, match="single slice"):
        back = read_ct(f)
    assert back.n_slices == 1


def test_truncated_file(vol, tmp_path):
    _write(vol, tmp_path / "s")
    f = sorted((tmp_path / "s").iterdir())[2]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])  # pixel data cut in half
    with pytest.raises(DicomError, match=str(f.name)):
        read_ct(tmp_path / "s")


def test_skip_broken_skips_a_slice_whose_pixels_cannot_be_decoded(vol, tmp_path):
    # issue 17: the header parses but the pixel data is cut short; --skip-broken did not skip it
    _write(vol, tmp_path / "s")
    f = sorted((tmp_path / "s").iterdir())[3]
    f.write_bytes(f.read_bytes()[:2000])
    with pytest.raises(DicomError, match="cannot decode the pixel data"):
        read_ct(tmp_path / "s")
    with pytest.warns(M3LungWarning, match=f"skipped 1 DICOM file.*pixel data cannot be decoded.*{f.name}"):
        back = read_ct(tmp_path / "s", skip_broken=True)
    assert back.n_slices == vol.n_slices - 1
    assert f.name not in " ".join(back.source.files)
    assert any("gap" in w or "uneven" in w for w in back.warnings)


def test_skip_broken_with_no_decodable_slice_is_an_error(vol, tmp_path):
    _write(vol, tmp_path / "s")
    for f in (tmp_path / "s").iterdir():
        f.write_bytes(f.read_bytes()[:2000])
    with pytest.raises(DicomError, match="every file of the series cannot be decoded"):
        read_ct(tmp_path / "s", skip_broken=True)


def test_truncated_header_and_skip_broken(vol, tmp_path):
    _write(vol, tmp_path / "s")
    f = sorted((tmp_path / "s").iterdir())[2]
    f.write_bytes(f.read_bytes()[:300])  # cut inside the header
    with pytest.raises(DicomError, match="truncated or corrupt"):
        read_ct(tmp_path / "s")
    with pytest.warns(M3LungWarning):
        back = read_ct(tmp_path / "s", skip_broken=True)
    assert back.n_slices == vol.n_slices - 1
    assert any("gap" in w for w in back.warnings)


def test_nan_values_cannot_come_from_dicom_but_float_pixels_checked(tmp_path):
    # DICOM integer pixels cannot be NaN; a NIfTI can (tested in test_formats); here: an empty file
    p = tmp_path / "empty.dcm"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_ct(p)


def test_no_modality_tag_warns(vol, tmp_path):
    _write(vol, tmp_path / "s")

    def drop(ds, f):
        del ds.Modality

    _edit(tmp_path / "s", drop)
    with pytest.warns(M3LungWarning, match="no Modality tag"):
        read_ct(tmp_path / "s")


def test_large_series_memory_guard(monkeypatch, vol, tmp_path):
    import m3lung.io.dicom as d

    _write(vol, tmp_path / "s")
    monkeypatch.setattr(os, "sysconf", lambda name: 1 if name == "SC_AVPHYS_PAGES" else 4096)
    with pytest.raises(DicomError, match="memory"):
        d.read_dicom(tmp_path / "s")


def test_decoder_panic_is_a_dicom_error(vol, tmp_path):
    # fuzz finding: an RLE stream whose runs overrun the image makes pylibjpeg-rle panic with a
    # PanicException, a BaseException that escaped `except Exception` as a traceback
    _write(vol, tmp_path / "s", transfer_syntax="rle")
    f = sorted((tmp_path / "s").iterdir())[0]
    data = bytearray(f.read_bytes())
    start = data.rfind(b"\xe0\x7f\x10\x00") + 12  # PixelData value: items of the encapsulated stream
    start += 8 + int.from_bytes(data[start + 4 : start + 8], "little") + 8  # skip the offset table, item header
    n = len(data) - 8 - start  # the first (only) fragment, up to the sequence delimiter
    header = np.zeros(16, "<u4")
    header[:3] = 2, 64, 64 + (n - 64) // 2  # two segments, each all replicate runs of 128 bytes
    data[start : start + n] = (header.tobytes() + bytes([0x81, 0x10]) * n)[:n]
    f.write_bytes(bytes(data))
    with pytest.raises(DicomError, match="cannot decode the pixel data"):
        read_ct(tmp_path / "s")


@pytest.mark.parametrize(
    ("keyword", "raw", "why"),
    [
        ("Rows", b"", "Rows/Columns"),  # fuzz finding: int(None) TypeError while scanning
        ("Columns", b"\x00\x00", "Rows/Columns"),
        ("NumberOfFrames", b"2147483647", "more than a file"),  # fuzz finding: listed 2**31 frames (a hang)
        ("NumberOfFrames", b"-3", "not a positive integer"),  # ... and this one dropped the slice silently
    ],
)
def test_impossible_image_size_is_a_broken_file(vol, tmp_path, keyword, raw, why):
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    _write(vol, tmp_path / "s")
    f = sorted((tmp_path / "s").iterdir())[2]
    ds = pydicom.dcmread(f)
    tag = Tag(tag_for_keyword(keyword))
    if tag in ds:
        del ds[tag]
    raw = raw + (b" " if len(raw) % 2 else b"")
    ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
    ds.save_as(f)
    with pytest.raises(DicomError, match=why):
        read_ct(tmp_path / "s")
    with pytest.warns(M3LungWarning, match="skipped 1 unreadable"):
        back = read_ct(tmp_path / "s", skip_broken=True)
    assert back.n_slices == vol.n_slices - 1


@pytest.mark.parametrize("how", ["empty", "junk"])
def test_lost_file_of_a_series_is_a_warning(vol, tmp_path, how):
    # fuzz finding: an end slice's file emptied (no suffix) or overwritten with junk (.dcm) vanished
    # from the volume without a word
    names = [f"CT.1.2.{k}" for k in range(vol.n_slices)] if how == "empty" else None  # UID names
    _write(vol, tmp_path / "s", file_names=names)
    f = sorted((tmp_path / "s").iterdir())[0]
    f.write_bytes(b"" if how == "empty" else np.random.default_rng(1).integers(0, 256, 3000, np.uint8).tobytes())
    with pytest.warns(M3LungWarning, match="named like DICOM are empty or not DICOM"):
        back = read_ct(tmp_path / "s")
    assert back.n_slices == vol.n_slices - 1


@pytest.mark.parametrize(
    ("tag", "value", "message"),
    [
        ("BitsStored", 40, r"BitsStored \(40\) is not a valid value"),
        ("PixelRepresentation", 2, r"PixelRepresentation \(2\) is not a valid value"),
        ("HighBit", 16, r"HighBit \(16\) is not a valid value"),
        ("BitsStored", 1, r"HighBit \(\d+\) is not BitsStored \(1\) - 1"),
    ],
)
def test_pixel_format_tags_that_cannot_describe_the_pixels_make_the_file_broken(tmp_path, tag, value, message):
    """Fuzz findings (seeds 864, 928): a pixel-format tag no decoder can honour changed voxels silently."""
    folder = write_dicom_series(make_volume(synthetic_chest(n=6, size=32)), tmp_path / "s")
    f = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(f)
    setattr(ds, tag, value)
    ds.save_as(f, enforce_file_format=True)
    with pytest.raises(DicomError, match=message):
        read_ct(folder)
    with pytest.warns(M3LungWarning, match="skipped 1 unreadable"):
        assert read_ct(folder, skip_broken=True).n_slices == 5


def test_junk_under_a_uid_style_name_is_named(tmp_path):
    """Fuzz finding (seeds 1322, 1704): junk named like a slice of a UID-named series vanished silently."""
    folder = write_dicom_series(make_volume(synthetic_chest(n=6, size=32)), tmp_path / "s")
    uid = tmp_path / "u"
    uid.mkdir()
    for i, f in enumerate(sorted(folder.iterdir())[:5]):
        shutil.copy(f, uid / f"CT.1.2.3.{100 + i}")
    (uid / "CT.1.2.3.105").write_bytes(b"junk" * 500)
    with pytest.warns(M3LungWarning, match=r"CT\.1\.2\.3\.105 \(not DICOM\)"):
        assert read_ct(uid).n_slices == 5
