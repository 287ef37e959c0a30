"""The input quality gate: garbage refused with the right reason, chests (synthetic and real) accepted."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from helpers import make_volume, need_shared, synthetic_chest
from m3lung.io import CTVolume
from m3lung.phantom import PhantomConfig, make_study
from m3lung.preprocess import ChestQuality, QualityConfig, assess_chest

DEMO = PhantomConfig.small(size=256, slices=(40, 48))  # the demo's phantom size


def vol(x: np.ndarray, spacing: tuple[float, float, float] = (5.0, 1.4, 1.4)) -> CTVolume:
    return CTVolume(voxels=np.asarray(x, dtype=np.float32), spacing=spacing)


def _disc(size: int, r: float, cy: float = 0.5, cx: float = 0.5) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy * size) ** 2 + (xx - cx * size) ** 2 <= (r * size) ** 2


def water_cylinder(n: int = 12, size: int = 128) -> np.ndarray:
    x = np.full((n, size, size), -1000.0, np.float32)
    x[:, _disc(size, 0.4)] = 0.0
    return x + np.random.default_rng(0).normal(0, 10, x.shape).astype(np.float32)


def head_blob(n: int = 12, size: int = 128) -> np.ndarray:
    x = np.full((n, size, size), -1000.0, np.float32)
    x[:, _disc(size, 0.4)] = 1200.0  # skull
    x[:, _disc(size, 0.37)] = 35.0  # brain
    x[:, _disc(size, 0.03, cy=0.2)] = -1000.0  # a sinus
    return x + np.random.default_rng(1).normal(0, 10, x.shape).astype(np.float32)


def abdomen(n: int = 12, size: int = 128) -> np.ndarray:
    x = np.full((n, size, size), -1000.0, np.float32)
    x[:, _disc(size, 0.42)] = -100.0  # fat
    x[:, _disc(size, 0.37)] = 45.0  # organs
    x[:, _disc(size, 0.05, cy=0.75)] = 700.0  # vertebra
    rng = np.random.default_rng(2)
    for _ in range(6):  # bowel and stomach gas
        x[:, _disc(size, rng.uniform(0.01, 0.04), rng.uniform(0.35, 0.6), rng.uniform(0.35, 0.65))] = -1000.0
    return x + rng.normal(0, 10, x.shape).astype(np.float32)


def study(label: int = 0, seed: int = 0, config: PhantomConfig = DEMO) -> CTVolume:
    return make_study(label, seed=seed, config=config).volume


def sub(v: CTVolume, ks: slice | np.ndarray) -> CTVolume:
    return v.with_voxels(np.ascontiguousarray(v.voxels[ks]), slice_positions=None, source_index=None)


# ---------------------------------------------------------------------------------------- garbage
GARBAGE = {
    "uniform noise": (lambda: np.random.default_rng(0).uniform(-1024, 3000, (40, 128, 128)), "above 2000 HU"),
    "all zero": (lambda: np.zeros((20, 128, 128)), "blank volume"),
    "all -1024 (air only)": (lambda: np.full((20, 128, 128), -1024.0), "no body"),
    "all 1e30": (lambda: np.full((20, 128, 128), 1e30), "cannot be Hounsfield units"),
    "all NaN": (lambda: np.full((20, 128, 128), np.nan), "NaN, infinite"),
    "all +inf": (lambda: np.full((20, 128, 128), np.inf), "NaN, infinite"),
    "water cylinder": (water_cylinder, "no lung found"),
    "head-like blob": (head_blob, "no lung found"),
    "abdomen with gas": (abdomen, "no lung found"),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_is_not_assessable_with_the_reason(name):
    build, reason = GARBAGE[name]
    q = assess_chest(vol(build()))
    assert isinstance(q, ChestQuality)
    assert not q.assessable
    assert any(reason in r for r in q.reasons), q.reasons
    assert q.notes == []


def test_noise_is_refused_for_density_and_for_lung():
    q = assess_chest(vol(np.random.default_rng(3).uniform(-1024, 3000, (30, 128, 128))))
    assert q.figures["dense_fraction"] > 0.2
    assert any("no lung found" in r for r in q.reasons)


def test_eight_bit_grey_values_read_as_hu_are_refused():
    v = study(1, seed=5)
    grey = np.round(np.clip((v.voxels + 1000.0) / 1400.0 * 255.0, 0, 255))
    q = assess_chest(v.with_voxels(grey))
    assert not q.assessable
    assert any("8-bit grey image" in r for r in q.reasons)
    assert any("air or lung" in r for r in q.reasons)


def test_uint8_intensity_volume_is_refused():
    v = CTVolume(voxels=np.full((1, 64, 64), 128.0, np.float32), spacing=(1.0, 1.0, 1.0), intensity="uint8")
    q = assess_chest(v)
    assert not q.assessable and "not Hounsfield units" in q.reasons[0]


def test_phantom_slices_below_the_lung_bases_are_refused():
    s = make_study(0, seed=5, config=DEMO)
    none = np.nonzero(~s.lung_mask.reshape(s.lung_mask.shape[0], -1).any(axis=1))[0]
    low = none[none < s.volume.n_slices // 2]
    assert low.size >= 2
    q = assess_chest(sub(s.volume, low))
    assert not q.assessable
    assert any("no lung found" in r for r in q.reasons)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 8, 8), (0, 64, 64)])
def test_tiny_or_empty_volume_is_refused_without_crashing(shape):
    q = assess_chest(vol(np.zeros(shape)))
    assert not q.assessable and "pixels" in q.reasons[0]


def test_non_positive_spacing_is_refused():
    q = assess_chest(make_volume(synthetic_chest(), spacing=(0.0, 0.7, 0.7)))
    assert not q.assessable
    assert any("spacing" in r for r in q.reasons)
    json.dumps(q.to_dict())  # lung_ml is NaN there: it becomes null


# ---------------------------------------------------------------------------------------- robustness
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30, -1e30])
def test_a_few_absurd_voxels_in_a_chest_refuse_it_without_crashing(bad):
    v = study(2, seed=1)
    x = v.voxels.copy()
    x[::3, ::4, ::4] = bad  # about 2 % of voxels
    before = x.copy()
    q = assess_chest(v.with_voxels(x))
    assert not q.assessable
    assert any("cannot be Hounsfield units" in r for r in q.reasons)
    np.testing.assert_array_equal(x, before)  # the caller's array is not modified
    json.dumps(q.to_dict())


def test_the_callers_volume_is_not_modified():
    v = study(3, seed=0)
    before = v.voxels.copy()
    assess_chest(v)
    np.testing.assert_array_equal(v.voxels, before)


# ---------------------------------------------------------------------------------------- chests
@pytest.mark.parametrize("label", range(4))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("size", [128, 256])
def test_phantom_studies_are_assessable(label, seed, size):
    cfg = PhantomConfig.small() if size == 128 else DEMO
    q = assess_chest(study(label, seed, cfg))
    assert q.assessable, q.reasons
    assert q.reasons == [] and q.notes == []
    assert 800 < q.figures["lung_ml"] < 7000
    assert q.figures["lung_slice_fraction"] > 0.5


@pytest.mark.slow
def test_full_size_phantom_is_assessable():
    q = assess_chest(study(3, 0, PhantomConfig(slices=(60, 70))))
    assert q.assessable and q.notes == [], q.reasons


def test_small_synthetic_chest_is_assessable():
    q = assess_chest(make_volume(synthetic_chest()))
    assert q.assessable, q.reasons


def test_lung_bases_only_series_is_assessable_with_notes():
    q = assess_chest(sub(study(3, seed=5), slice(0, 20)))
    assert q.assessable, q.reasons
    assert any("head to feet" in n for n in q.notes)


def test_single_slice_is_assessable_with_a_note():
    v = study(0, seed=5)
    k = v.n_slices // 2
    q = assess_chest(sub(v, slice(k, k + 1)))
    assert q.assessable, q.reasons
    assert any("only 1 slice" in n for n in q.notes)


def test_small_field_of_view_crop_is_assessable_with_a_note():
    v = study(0, seed=0)
    q = assess_chest(v.with_voxels(np.ascontiguousarray(v.voxels[:, 80:176, 80:176])))
    assert q.assessable, q.reasons
    assert q.figures["crop_slice_fraction"] > 0.5
    assert any("cut inside the body" in n for n in q.notes)


def test_figures_and_to_dict():
    q = assess_chest(study(1, seed=0))
    d = q.to_dict()
    assert json.loads(json.dumps(d)) == d
    fr = q.figures
    for key in ("air_fraction", "lung_fraction", "soft_tissue_fraction", "bone_fraction", "lung_ml", "n_slices"):
        assert key in d["figures"]
    parts = ("air_fraction", "lung_fraction", "soft_tissue_fraction", "bone_fraction", "dense_fraction")
    assert sum(fr[k] for k in parts) <= 1.0 + 1e-9
    assert fr["n_slices"] == study(1, seed=0).n_slices


# ---------------------------------------------------------------------------------------- thresholds used
def test_lung_slice_share_threshold_flips_the_verdict():
    v = study(0, seed=0)
    q = assess_chest(v)
    assert q.assessable
    strict = QualityConfig(lung_slice_share=q.figures["max_lung_share"] + 0.01)
    q2 = assess_chest(v, strict)
    assert not q2.assessable and any("no lung found" in r for r in q2.reasons)


def test_dense_fraction_threshold_is_used():
    x = vol(np.random.default_rng(0).uniform(-1024, 3000, (20, 128, 128)))
    assert any("above 2000 HU" in r for r in assess_chest(x).reasons)
    lax = assess_chest(x, QualityConfig(max_dense_fraction=0.5))
    assert not any("above 2000 HU" in r for r in lax.reasons)


def test_crop_padding_is_what_finds_the_lungs_of_a_small_field_of_view():
    v = study(0, seed=0)
    crop = v.with_voxels(np.ascontiguousarray(v.voxels[:, 80:176, 80:176]))
    assert assess_chest(crop).assessable
    # never treating a slice as a crop: the lungs touch the image edge and the mask drops them
    assert not assess_chest(crop, QualityConfig(crop_border_air=0.0)).assessable


def test_note_thresholds_are_used():
    v = study(0, seed=0)
    assert assess_chest(v).notes == []
    q = assess_chest(v, QualityConfig(few_slices=1000, small_lung_ml=1e6, short_scan_mm=1e4))
    assert q.assessable
    assert len(q.notes) == 3


def test_sampling_settings_do_not_change_the_verdict():
    v = study(2, seed=1)
    a = assess_chest(v)
    b = assess_chest(v, QualityConfig(max_mask_slices=8, max_histogram_voxels=50_000))
    assert a.assessable and b.assessable
    assert b.figures["sampled_slices"] == 8
    assert abs(a.figures["air_fraction"] - b.figures["air_fraction"]) < 0.03
    assert abs(a.figures["lung_ml"] - b.figures["lung_ml"]) < 0.25 * a.figures["lung_ml"]


# ---------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.parametrize("name", ["P002", "cap002", "normal001"])
def test_real_covidctmd_volumes_are_assessable(covidctmd_volumes, name):
    q = assess_chest(covidctmd_volumes[name])
    assert q.assessable, q.reasons
    assert q.notes == []
    assert 2500 < q.figures["lung_ml"] < 6000
    assert q.figures["max_lung_share"] > 0.2


def _read(*parts: str) -> CTVolume:
    from m3lung.io import read_ct

    p = need_shared(*parts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_ct(p)


@pytest.mark.realdata
def test_real_chest_crop_is_assessable_as_a_small_field_of_view():
    q = assess_chest(_read("dicom-variants", "totalsegmentator", "ct_cropped.nii.gz"))
    assert q.assessable, q.reasons
    assert any("cut inside the body" in n for n in q.notes)
    assert q.figures["lung_ml"] > 1000


@pytest.mark.realdata
def test_real_one_slice_series_is_assessable_with_a_note():
    q = assess_chest(_read("dicom-variants", "lungmask"))
    assert q.assessable, q.reasons
    assert any("only 2 slice" in n for n in q.notes)


@pytest.mark.realdata
def test_real_upper_abdomen_series_is_not_assessable():
    """Decided (module docstring): its air is stomach and bowel gas; the lung is a sliver."""
    q = assess_chest(_read("dicom-variants", "totalsegmentator", "example_ct_dicom"))
    assert not q.assessable
    assert any("no lung found" in r for r in q.reasons)
    assert q.figures["max_lung_share"] < 0.05
