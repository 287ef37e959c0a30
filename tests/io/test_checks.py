"""Decoded pixels are checked: slices that cannot be HU or do not fit their neighbours, decoder warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from helpers import make_volume, need_shared, synthetic_chest
from m3lung.errors import IntensityError, M3LungWarning
from m3lung.io import CTVolume, read_ct, write_dicom_series
from m3lung.io.checks import MAX_FLAGGED_FRACTION, check_slices, copied_slices, slice_stats

N = 20


@pytest.fixture
def vol() -> CTVolume:
    return make_volume(synthetic_chest(n=N, size=64))


def _file_of_slice(vol: CTVolume, folder: Path, k: int) -> Path:
    """The file written for canonical slice ``k`` (the writer stores slices by position)."""
    by_z = sorted(folder.iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    return by_z[k]


def _set_hu(f: Path, hu: np.ndarray) -> None:
    ds = pydicom.dcmread(f)
    slope, icpt = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    raw = np.round((hu - icpt) / slope)
    ds.PixelRepresentation = 1
    ds.PixelData = raw.astype(np.int16).tobytes()
    ds.save_as(f, enforce_file_format=True)


def _random_slice(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random stored pixels: HU -33792..31743 once rescaled with intercept -1024."""
    return rng.integers(-32768, 32768, size=shape).astype(np.float64) - 1024.0


def test_clean_synthetic_series_is_not_flagged(vol, tmp_path):
    write_dicom_series(vol, tmp_path / "s")
    with warnings.catch_warnings():
        warnings.simplefilter("error", M3LungWarning)
        back = read_ct(tmp_path / "s")
    assert back.warnings == []
    assert not slice_stats(back.voxels).flagged.any()


def test_random_pixel_slice_is_flagged_with_its_position(vol, tmp_path):
    write_dicom_series(vol, tmp_path / "s")
    k = 7
    _set_hu(_file_of_slice(vol, tmp_path / "s", k), _random_slice(np.random.default_rng(0), (64, 64)))
    with pytest.warns(M3LungWarning, match=rf"1 slice\(s\) hold many values outside -2048..4000 HU.*#{k} \("):
        back = read_ct(tmp_path / "s")
    assert back.voxels.min() < -30000 and back.voxels.max() > 30000
    assert any(f"#{k} (" in w and "outside" in w for w in back.warnings)
    assert sum("outside" in w for w in back.warnings) == 1 and len(back.warnings) == 1


def test_slice_unlike_both_neighbours_is_flagged(vol, tmp_path):
    # corrupt stream: 48 % of one slice's pixels replaced by values within the HU range (up to 2966 HU)
    write_dicom_series(vol, tmp_path / "s")
    k = 12
    rng = np.random.default_rng(1)
    hu = vol.voxels[k].astype(np.float64).copy()
    hit = rng.random(hu.shape) < 0.48
    hu[hit] = rng.integers(-1024, 2967, size=int(hit.sum()))
    _set_hu(_file_of_slice(vol, tmp_path / "s", k), hu)
    with pytest.warns(M3LungWarning, match=rf"1 slice\(s\) differ from both neighbours.*#{k} \("):
        back = read_ct(tmp_path / "s")
    assert back.voxels.max() <= 2966
    assert len(back.warnings) == 1 and f"#{k} (" in back.warnings[0]


def test_too_many_flagged_slices_refuse_the_volume(vol, tmp_path):
    write_dicom_series(vol, tmp_path / "s")
    rng = np.random.default_rng(2)
    bad = [3, 8, 13]  # 3 of 20 slices: over the 10 % allowed
    assert len(bad) > MAX_FLAGGED_FRACTION * N
    for k in bad:
        _set_hu(_file_of_slice(vol, tmp_path / "s", k), _random_slice(rng, (64, 64)))
    with pytest.raises(IntensityError, match=r"3 of 20 slices hold values that cannot be CT in HU") as err:
        read_ct(tmp_path / "s")
    assert "\n" not in str(err.value)


def test_noise_nifti_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    noise = rng.integers(-32768, 32768, size=(64, 64, 30)).astype(np.int16)
    nib.save(nib.Nifti1Image(noise, np.eye(4)), tmp_path / "noise.nii.gz")
    with pytest.raises(IntensityError, match="30 of 30 slices"):
        read_ct(tmp_path / "noise.nii.gz")


def test_masks_are_not_checked_as_hu(tmp_path):
    from m3lung.io import read_mask

    lab = np.zeros((32, 32, 12), np.uint8)
    lab[4:20, 4:20, 5] = 3  # one labelled slice between empty ones
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "m.nii.gz")
    assert read_mask(tmp_path / "m.nii.gz").max() == 3


# ------------------------------------------------------------------------------------------ the rules
def _array(n: int = 12, seed: int = 0) -> np.ndarray:
    return synthetic_chest(n=n, size=64, seed=seed)


def test_padding_outside_the_field_of_view_is_not_counted():
    v = _array()
    yy, xx = np.mgrid[0:64, 0:64]
    v[:, (yy - 31.5) ** 2 + (xx - 31.5) ** 2 > 31**2] = -3024.0  # GE-style padding: ~21 % of each slice
    st = slice_stats(v)
    assert not st.flagged.any()
    v[5, 30:40, 30:40] = -3500.0  # a second, lower value is not padding
    assert slice_stats(v).flagged_range.tolist() == [k == 5 for k in range(12)]


def test_small_metal_is_not_flagged_but_much_is():
    v = _array()
    v[4, 30:33, 30:33] = 20000.0  # a clip in extended-scale HU: 9 of 4096 voxels
    assert not slice_stats(v).flagged.any()
    v[4, 20:40, 20:40] = 20000.0  # 10 % of the slice
    assert slice_stats(v).flagged_range.tolist() == [k == 4 for k in range(12)]


def test_a_gap_in_the_series_flags_no_slice():
    v = _array(n=30)
    v = np.concatenate([v[:12], v[20:]])  # eight slices missing: one large step between 11 and 12
    jump = v.copy()
    jump[12:] += 80.0  # and the anatomy changes across the gap
    st = slice_stats(jump)
    assert st.neighbour_diff[11] > 60 and not st.flagged.any()


def test_end_slice_corruption_is_flagged():
    v = _array()
    rng = np.random.default_rng(4)
    v[-1] = rng.uniform(-1000, 3000, size=v[-1].shape)
    assert slice_stats(v).flagged_neighbour.tolist() == [k == 11 for k in range(12)]


def test_short_series_skip_the_neighbour_test():
    v = _array(n=4)
    v[1] = 3000.0 - v[1]
    assert not slice_stats(v).flagged_neighbour.any()


def test_eight_bit_volumes_are_not_checked():
    v = make_volume(np.full((6, 8, 8), 255.0, np.float32), intensity="uint8")
    v.voxels[2] = 0.0
    check_slices(v)
    assert v.warnings == []


# ------------------------------------------------------------------------------------------ decoders
def test_decoder_warning_surfaces_naming_the_file(vol, tmp_path):
    write_dicom_series(vol, tmp_path / "s")
    f = _file_of_slice(vol, tmp_path / "s", 4)
    ds = pydicom.dcmread(f)
    ds.PixelData = ds.PixelData + b"\0" * 64  # excess bytes: pydicom warns and drops them
    ds.save_as(f, enforce_file_format=True)
    with pytest.warns(M3LungWarning, match=rf"the pixel decoder warned about 1 file\(s\): {f}: .*excess"):
        back = read_ct(tmp_path / "s")
    assert any(str(f) in w and "decoder" in w for w in back.warnings)


# ------------------------------------------------------------------------------------------ real data
def test_real_covidctmd_volumes_are_not_flagged(covidctmd_volumes):
    for name, v in covidctmd_volumes.items():
        st = slice_stats(v.voxels)
        assert not st.flagged.any(), name
        assert not any("corrupt" in w for w in v.warnings), name


@pytest.mark.parametrize("rel", ["lungmask", "totalsegmentator/example_ct_dicom", "totalsegmentator/ct_cropped.nii.gz"])
def test_real_dicom_variants_are_not_flagged(rel):
    path = need_shared("dicom-variants", *rel.split("/"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = read_ct(path)
    assert not slice_stats(v.voxels).flagged.any()
    assert not any("corrupt" in w for w in v.warnings)


def test_phantom_studies_are_not_flagged():
    from m3lung.phantom import PhantomConfig, make_study

    for label in range(4):
        study = make_study(label, seed=0, index=label, config=PhantomConfig.small())
        st = slice_stats(study.volume.voxels)
        assert not st.flagged.any(), label
        check_slices(study.volume)
        assert study.volume.warnings == []


def test_copied_and_blank_slices_warn(tmp_path):
    # fuzz findings: one file's pixel data copied into another (even a distant slice of the same series)
    # and a zeroed pixel stream were read without a word
    write_dicom_series(make_volume(synthetic_chest(n=8, size=64)), tmp_path / "s")
    files = sorted((tmp_path / "s").iterdir())
    src, dst = pydicom.dcmread(files[1]), pydicom.dcmread(files[5])
    dst.PixelData = src.PixelData
    dst.save_as(files[5])
    with pytest.warns(M3LungWarning, match="identical images"):
        vol = read_ct(tmp_path / "s")
    assert copied_slices(vol.voxels) == ([[2, 6]], [])  # files 1 and 5 count from the head
    # a blank slice (its stream zeroed) where the neighbour test cannot judge: a two-slice series
    pair = make_volume(synthetic_chest(n=2, size=64))
    pair.voxels[1] = -1024.0
    with pytest.warns(M3LungWarning, match="one value only"):
        check_slices(pair)
    assert copied_slices(synthetic_chest(n=8, size=64)) == ([], [])  # an intact series
