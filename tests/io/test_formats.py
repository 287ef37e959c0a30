"""NIfTI, MHA/NRRD, NumPy and 2D image input/output; geometry is kept exactly."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from helpers import make_volume, synthetic_chest
from m3lung.errors import InputError, IntensityError, M3LungWarning
from m3lung.io import grey_to_hu, read_ct, write_ct, write_mask
from m3lung.io.volume import CTVolume


@pytest.fixture
def vol() -> CTVolume:
    return make_volume(synthetic_chest(n=6, size=40))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd", ".npz"])
def test_roundtrip(vol, tmp_path, suffix):
    p = write_ct(vol, tmp_path / f"ct{suffix}")
    back = read_ct(p)
    np.testing.assert_array_equal(back.voxels, vol.voxels)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    assert back.is_hu


def test_nifti_in_ras_with_flipped_axes_reads_canonical(vol, tmp_path):
    """A NIfTI stored (x, y, z) in RAS+ with a diagonal affine (the usual nibabel layout)."""
    # canonical voxel (k, i, j) sits at LPS (x0 + j*sx, y0 + i*sy, z0 + k*sz). Store it RAS-indexed:
    # array axis 0 = R->L reversed (x runs R+, i.e. towards the patient's right), axis 1 = A->P reversed.
    _, h, w = vol.shape
    sz, sy, sx = vol.spacing
    data = vol.voxels.transpose(2, 1, 0)[::-1, ::-1, :]  # (x: L->R, y: P->A, z: I->S)
    lps_first = vol.world(0, h - 1, w - 1)  # voxel [0,0,0] of the stored array
    ras_first = lps_first * np.array([-1, -1, 1])
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = ras_first
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data).astype(np.int16), affine), tmp_path / "ras.nii.gz")
    back = read_ct(tmp_path / "ras.nii.gz")
    np.testing.assert_array_equal(back.voxels, vol.voxels)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)


def test_written_nifti_world_coordinates(vol, tmp_path):
    write_ct(vol, tmp_path / "a.nii.gz")
    img = nib.load(tmp_path / "a.nii.gz")
    k, i, j = 3, 7, 11
    ras = img.affine @ np.array([j, i, k, 1.0])
    np.testing.assert_allclose(ras[:3] * np.array([-1, -1, 1]), vol.world(k, i, j), atol=1e-4)
    assert np.asarray(img.dataobj)[j, i, k] == vol.voxels[k, i, j]


def test_mask_on_volume_grid(vol, tmp_path):
    mask = (vol.voxels < -500).astype(np.uint8)
    write_mask(mask, vol, tmp_path / "m.nii.gz")
    back = read_ct(tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(back.voxels, mask)
    with pytest.raises(InputError, match="does not match"):
        write_mask(mask[:2], vol, tmp_path / "bad.nii.gz")


def test_numpy_needs_spacing(vol, tmp_path):
    np.save(tmp_path / "a.npy", vol.voxels)
    with pytest.raises(InputError, match="spacing"):
        read_ct(tmp_path / "a.npy")
    back = read_ct(tmp_path / "a.npy", spacing=(2.0, 0.7, 0.7))
    np.testing.assert_array_equal(back.voxels, vol.voxels)
    assert back.spacing == (2.0, 0.7, 0.7)
    with pytest.raises(InputError, match="positive"):
        read_ct(tmp_path / "a.npy", spacing=(0, 1, 1))


def test_nan_and_inf_refused(vol, tmp_path):
    bad = vol.voxels.copy()
    bad[2, 5, 5] = np.nan
    bad[3, 1, 1] = np.inf
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(IntensityError, match=r"2 voxel\(s\) are NaN or infinite.*first at index 2"):
        read_ct(tmp_path / "nan.npy", spacing=(1, 1, 1))
    nib.save(nib.Nifti1Image(bad.transpose(2, 1, 0), np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(IntensityError, match="NaN"):
        read_ct(tmp_path / "nan.nii.gz")


def test_png_is_flagged_not_hu(tmp_path):
    img = (np.arange(64 * 48) % 256).reshape(48, 64).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "s.png")
    with pytest.warns(M3LungWarning, match="not Hounsfield"):
        v = read_ct(tmp_path / "s.png")
    assert v.shape == (1, 48, 64) and v.intensity == "uint8" and not v.is_hu
    with pytest.raises(IntensityError, match="needs Hounsfield units"):
        v.require_hu("the lung crop")
    hu = grey_to_hu(v, center=-600, width=1200)
    assert hu.is_hu and hu.voxels.min() == pytest.approx(-1200) and hu.voxels.max() == pytest.approx(0)


def test_colour_jpg_becomes_grey(tmp_path):
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "c.jpg")
    v = read_ct(tmp_path / "c.jpg")
    assert v.shape == (1, 20, 30) and 100 < v.voxels.mean() < 130


def test_scaled_nifti_is_read_in_float32_without_a_float64_copy(tmp_path):
    """scl_slope / scl_inter are applied (as nibabel would) but in float32: reading peaks at about two
    float32 volumes (four when the scaling went through nibabel's float64, measured 2026-12-01)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 3000, size=(256, 256, 40)).astype(np.int16)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.5, -1024.0)
    nib.save(img, tmp_path / "scaled.nii")
    expected = np.asanyarray(nib.load(tmp_path / "scaled.nii").dataobj)  # nibabel's own scaling, float64
    tracemalloc.start()
    v = read_ct(tmp_path / "scaled.nii")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert v.voxels.dtype == np.float32 and v.is_hu
    np.testing.assert_allclose(np.sort(v.voxels.ravel()), np.sort(expected.ravel().astype(np.float32)))
    assert peak < 2.5 * raw.size * 4
    # unscaled 8-bit data keep their type, and with it the 8-bit warning
    u8 = nib.Nifti1Image(np.full((8, 8, 3), 100, np.uint8), np.eye(4))
    u8.header.set_slope_inter(2.0, -1000.0)
    nib.save(u8, tmp_path / "u8scaled.nii.gz")
    assert read_ct(tmp_path / "u8scaled.nii.gz").voxels.max() == pytest.approx(-800.0)


def test_uint8_nifti_flagged(tmp_path):
    nib.save(nib.Nifti1Image(np.full((8, 8, 3), 100, np.uint8), np.eye(4)), tmp_path / "u8.nii.gz")
    with pytest.warns(M3LungWarning, match="8-bit"):
        v = read_ct(tmp_path / "u8.nii.gz")
    assert v.intensity == "uint8"


def test_not_hu_like_nifti_warns(tmp_path):
    nib.save(nib.Nifti1Image(np.full((8, 8, 3), 500, np.int16), np.eye(4)), tmp_path / "pos.nii.gz")
    with pytest.warns(M3LungWarning, match="may not be Hounsfield"):
        read_ct(tmp_path / "pos.nii.gz")


def test_unreadable_files(tmp_path):
    (tmp_path / "x.nii.gz").write_bytes(b"garbage" * 50)
    with pytest.raises(InputError, match="cannot read as NIfTI"):
        read_ct(tmp_path / "x.nii.gz")
    (tmp_path / "x.png").write_bytes(b"garbage" * 50)
    with pytest.raises(InputError, match="cannot read as an image"):
        read_ct(tmp_path / "x.png")
    (tmp_path / "x.mha").write_bytes(b"garbage" * 50)
    with pytest.raises(InputError, match="cannot read"):
        read_ct(tmp_path / "x.mha")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), tmp_path / "4d.nii.gz")
    with pytest.raises(InputError, match="4D"):
        read_ct(tmp_path / "4d.nii.gz")


def test_write_unknown_suffix(vol, tmp_path):
    with pytest.raises(InputError, match="suffix"):
        write_ct(vol, tmp_path / "a.xyz")


def test_writes_are_atomic(vol, tmp_path, monkeypatch):
    import m3lung.io.write as w

    target = tmp_path / "a.nii.gz"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(RuntimeError):
        w.write_nifti(vol, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


def test_very_long_scan_warns(tmp_path):
    np.save(tmp_path / "long.npy", np.full((1001, 4, 4), -1000, np.int16))
    with pytest.warns(M3LungWarning, match="1001 slices is unusually many"):
        v = read_ct(tmp_path / "long.npy", spacing=(1, 1, 1))
    assert v.n_slices == 1001


def test_read_mask_on_grid(vol, tmp_path):
    from m3lung.io import read_mask

    mask = (vol.voxels < -500).astype(np.uint8) * 2
    write_mask(mask, vol, tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.nii.gz", like=vol), mask)
    other = make_volume(synthetic_chest(n=6, size=40), spacing=(3.0, 0.7, 0.7))
    with pytest.raises(InputError, match="does not match"):
        read_mask(tmp_path / "m.nii.gz", like=other)
    write_ct(vol, tmp_path / "ct.nii.gz")
    with pytest.raises(InputError, match="not a label map"):
        read_mask(tmp_path / "ct.nii.gz")
