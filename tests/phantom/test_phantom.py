"""Tests of the synthetic chest-CT phantom (small, fast configurations)."""

from __future__ import annotations

import csv
import json
import os
from functools import cache

import numpy as np
import pytest
from scipy import ndimage

from m3lung.errors import InputError
from m3lung.io import read_ct, read_mask
from m3lung.phantom import (
    LESION_CONSOLIDATION,
    LESION_GGO,
    LESION_NODULE,
    LUNG_LEFT,
    LUNG_RIGHT,
    MANIFEST_COLUMNS,
    PhantomConfig,
    PhantomStudy,
    make_cohort,
    make_study,
    write_cohort,
    write_study,
)

CFG = PhantomConfig.small(112, slices=(30, 40))
SEEDS = range(5)


@cache
def study(label: int, seed: int) -> PhantomStudy:
    return make_study(label, seed=seed, config=CFG)


def near_lung(s: PhantomStudy) -> np.ndarray:
    """The lungs grown by 3 pixels in plane (what the reconstruction blur can reach)."""
    return np.asarray(ndimage.binary_dilation(s.lung_mask > 0, np.ones((1, 3, 3), bool), iterations=3))


def pleura_distance(s: PhantomStudy) -> np.ndarray:
    """Distance (mm) of every lung voxel to the lung border."""
    return np.asarray(ndimage.distance_transform_edt(s.lung_mask > 0, sampling=s.volume.spacing))


# ---------------------------------------------------------------------------------------------- basics
def test_determinism() -> None:
    a = make_study(1, seed=7, config=CFG)
    b = make_study(1, seed=7, config=CFG)
    assert np.array_equal(a.volume.voxels, b.volume.voxels)
    assert np.array_equal(a.lung_mask, b.lung_mask)
    assert np.array_equal(a.lesion_mask, b.lesion_mask)
    assert a.lesions == b.lesions and a.volume.spacing == b.volume.spacing and a.volume.origin == b.volume.origin
    c = make_study(1, seed=8, config=CFG)
    assert c.volume.shape != a.volume.shape or not np.array_equal(c.volume.voxels, a.volume.voxels)


def test_paired_studies_share_the_patient() -> None:
    healthy, covid = make_study(0, seed=3, config=CFG), make_study(1, seed=3, config=CFG)
    assert np.array_equal(healthy.lung_mask, covid.lung_mask)
    changed = healthy.volume.voxels != covid.volume.voxels
    assert changed.any() and not (changed & ~near_lung(covid)).any()


def test_volume_format_and_slice_counts() -> None:
    for seed in SEEDS:
        s = study(seed % 4, seed)
        v = s.volume
        n, h, w = v.shape
        assert (h, w) == (112, 112) and CFG.slices[0] <= n <= CFG.slices[1]
        assert v.voxels.dtype == np.float32 and np.array_equal(v.voxels, np.round(v.voxels))
        assert v.voxels.min() >= -1024 and v.voxels.max() <= 3071
        assert v.source.format == "phantom" and v.source.patient_id == s.patient_id
        lo, hi = CFG.pixel_spacing
        assert lo <= v.spacing[1] == v.spacing[2] <= hi
        assert CFG.z_extent_mm[0] / n - 0.01 <= v.spacing[0] <= CFG.z_extent_mm[1] / n + 0.01
        assert s.lung_mask.shape == s.lesion_mask.shape == v.shape and s.slice_labels.shape == (n,)
        assert s.lung_mask.dtype == s.lesion_mask.dtype == s.slice_labels.dtype == np.uint8


def test_masks_and_slice_labels_consistent() -> None:
    for label in range(4):
        for seed in SEEDS:
            s = study(label, seed)
            assert not ((s.lesion_mask > 0) & (s.lung_mask == 0)).any(), "lesions outside the lungs"
            counts = np.count_nonzero(s.lesion_mask.reshape(len(s.slice_labels), -1), axis=1)
            assert np.array_equal(s.slice_labels, (counts >= CFG.min_lesion_pixels).astype(np.uint8))
            assert set(np.unique(s.lung_mask)) <= {0, LUNG_RIGHT, LUNG_LEFT}
            assert set(np.unique(s.lesion_mask)) <= {0, 1, 2, 3, 4}
            json.dumps(s.truth())


def test_hu_plausible() -> None:
    s = study(0, 1)
    v = s.volume.voxels
    corners = np.concatenate([v[:, :6, :6].ravel(), v[:, :6, -6:].ravel()])
    assert abs(corners.mean() + 1000) < 10 and corners.std() < 45
    lung = v[s.lung_mask > 0]
    assert -900 < np.median(lung) < -780
    body = v[(s.lung_mask == 0) & (v > -200) & (v < 200)]
    assert body.size > 0.1 * v.size and -120 < np.median(body) < 80
    assert v.max() > 400  # bone


def test_orientation() -> None:
    for seed in SEEDS:
        s = study(0, seed)
        v, lung = s.volume.voxels, s.lung_mask
        n, _, w = v.shape
        lz = np.nonzero(lung.reshape(n, -1).any(axis=1))[0]
        k = int(lz[0] + 0.4 * (lz[-1] - lz[0]))  # heart level
        rows, cols = np.nonzero(lung[k] > 0)
        r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
        # right lung (label 1) on the image left
        assert np.nonzero(lung[k] == LUNG_RIGHT)[1].mean() < np.nonzero(lung[k] == LUNG_LEFT)[1].mean()
        # heart: soft tissue between the lungs, anterior half, right of the image centre
        soft = (v[k] > 0) & (v[k] < 100) & (lung[k] == 0)
        soft[:r0, :] = soft[(r0 + r1) // 2 :, :] = False
        soft[:, :c0] = soft[:, c1:] = False
        assert np.nonzero(soft)[1].mean() > (c0 + c1) / 2
        # spine: bone behind the lungs' centre, near the middle column
        bone_r, bone_c = np.nonzero(v[k] > 250)
        central = np.abs(bone_c - (c0 + c1) / 2) < 0.1 * w
        assert bone_r[central].mean() > (r0 + r1) / 2


def test_table_below_the_body() -> None:
    cfg = PhantomConfig.small(256, slices=(6, 8))
    for seed in range(3):
        s = make_study(0, seed=seed, config=cfg)
        v = s.volume.voxels
        col = v[len(v) // 2, :, v.shape[2] // 2]
        body_rows = np.nonzero(col > -500)[0]
        breaks = np.nonzero(np.diff(body_rows) > 1)[0]
        assert breaks.size >= 1, "no air gap between the body and the table"
        gap = col[body_rows[breaks[0]] + 1 : body_rows[breaks[0] + 1]]
        assert gap.min() < -900 and 3.0 <= gap.size * s.volume.spacing[1] <= 25.0
        assert col[body_rows[breaks[0] + 1] :].max() > -300  # the table's thin plates (partial volume)
        assert body_rows[0] > 5  # air above the body


# ---------------------------------------------------------------------------------------------- classes
def test_healthy_has_no_lesion_and_artefacts_are_not_lesions() -> None:
    cfg = PhantomConfig.small(112, slices=(30, 40), artefact_probability=1.0)
    never = PhantomConfig.small(112, slices=(30, 40), artefact_probability=0.0)
    for seed in SEEDS:
        s = make_study(0, seed=seed, config=cfg)
        assert not s.lesion_mask.any() and not s.slice_labels.any() and s.lesions == []
        assert len(s.artefacts) == 1 and s.artefacts[0]["kind"] in ("cardiac_pulsation", "respiratory_motion")
        plain = make_study(0, seed=seed, config=never)
        assert plain.artefacts == []
        diff = s.volume.voxels != plain.volume.voxels
        assert diff.any() and not (diff & ~near_lung(s)).any()
    assert all(not study(0, seed).lesion_mask.any() for seed in SEEDS)


def test_covid_bilateral_peripheral_lower() -> None:
    bilateral, ratios = 0, []
    for seed in SEEDS:
        s = study(1, seed)
        les = s.lesion_mask > 0
        assert les.any() and 2 <= len(s.lesions) <= 8
        sides = set(np.unique(s.lung_mask[les]))
        bilateral += sides == {LUNG_RIGHT, LUNG_LEFT}
        dist = pleura_distance(s)
        lung = s.lung_mask > 0
        ratios.append(dist[les].mean() / dist[lung].mean())
        z = np.arange(len(s.slice_labels))[:, None, None]
        zl = np.broadcast_to(z, les.shape)
        assert zl[les].mean() < zl[lung].mean() + 0.05 * len(s.slice_labels)
        ggo = s.volume.voxels[s.lesion_mask == LESION_GGO]
        if ggo.size > 50:
            assert -750 < ggo.mean() < -250
    assert bilateral >= 4
    assert max(ratios) < 1.0 and np.median(ratios) < 0.8, ratios


def test_h1n1_consolidation_and_nodules() -> None:
    nodules = 0
    for seed in SEEDS:
        s = study(2, seed)
        codes = set(np.unique(s.lesion_mask))
        assert LESION_CONSOLIDATION in codes
        nodules += LESION_NODULE in codes
        kinds = {d["kind"] for d in s.lesions}
        assert "peribronchovascular_consolidation" in kinds
        cons = s.volume.voxels[s.lesion_mask == LESION_CONSOLIDATION]
        assert -300 < cons.mean() < 60  # partial volume of thin sleeves at 112 px
        # central: consolidation lies farther from the pleura than COVID ground glass
        dist = pleura_distance(s)
        assert dist[s.lesion_mask == LESION_CONSOLIDATION].mean() > 5.0
    assert nodules >= 3


def test_cap_lobar_consolidation_in_one_lung() -> None:
    for seed in SEEDS:
        s = study(3, seed)
        les = s.lesion_mask > 0
        assert les.any()
        sides = np.bincount(s.lung_mask[les], minlength=3)
        assert sides.max() >= 0.8 * les.sum()
        cons = s.volume.voxels[s.lesion_mask == LESION_CONSOLIDATION]
        assert cons.size > 0 and -150 < cons.mean() < 80
        assert any(d["kind"] in ("lobar_consolidation", "segmental_consolidation") for d in s.lesions)


def test_lesion_hu_by_class() -> None:
    ggo = np.concatenate([study(1, seed).volume.voxels[study(1, seed).lesion_mask == LESION_GGO] for seed in SEEDS])
    cons = np.concatenate(
        [study(3, seed).volume.voxels[study(3, seed).lesion_mask == LESION_CONSOLIDATION] for seed in SEEDS]
    )
    assert -750 < ggo.mean() < -250 and cons.mean() > ggo.mean() + 300


def test_lesion_descriptions() -> None:
    for label in (1, 2, 3):
        s = study(label, 0)
        for d in s.lesions:
            assert {"kind", "code", "lung", "lobe", "zone", "centre_voxel", "centre_lps_mm", "radii_mm"} <= set(d)
            assert d["lung"] in ("right", "left") and d["zone"] in ("upper", "middle", "lower")
            assert d["lobe"] in ("RUL", "RML", "RLL", "LUL", "LLL")


def test_cohort_ids_and_config_errors() -> None:
    ids = [s.patient_id for s in make_cohort(1, seed=0, config=PhantomConfig.small(64, slices=(8, 10)))]
    assert ids == ["syn-0000-healthy", "syn-0001-covid", "syn-0002-h1n1", "syn-0003-cap"]
    with pytest.raises(InputError):
        PhantomConfig(slices=(40, 30))
    with pytest.raises(InputError):
        PhantomConfig(artefact_probability=1.5)
    with pytest.raises(InputError):
        make_study(4, seed=0, config=CFG)


# ---------------------------------------------------------------------------------------------- writing
def test_write_study_dicom_round_trip(tmp_path: os.PathLike[str]) -> None:
    s = study(1, 2)
    paths = write_study(s, tmp_path, format="dicom", seed=5)
    files = sorted(os.listdir(paths["ct"]))
    assert len(files) == s.volume.n_slices and all(len(f) == 16 for f in files)
    back = read_ct(paths["ct"])
    assert np.array_equal(back.voxels, s.volume.voxels)
    np.testing.assert_allclose(back.spacing, s.volume.spacing, atol=1e-4)
    np.testing.assert_allclose(back.origin, s.volume.origin, atol=1e-4)
    in_slice_order = [os.path.basename(f) for f in back.source.files]
    assert sorted(in_slice_order) == files and in_slice_order != files  # names do not follow the slices
    assert np.array_equal(read_mask(paths["lesion_mask"], like=back), s.lesion_mask)
    truth = json.loads(paths["truth"].read_text())
    assert truth["slice_labels"] == s.slice_labels.tolist() and truth["label"] == 1
    assert "inferior" in truth["slice_order"] and truth["spacing_mm"] == list(s.volume.spacing)
    again = write_study(s, tmp_path / "again", format="dicom", seed=5)
    assert sorted(os.listdir(again["ct"])) == files


def test_write_study_nifti_round_trip(tmp_path: os.PathLike[str]) -> None:
    s = study(3, 1)
    paths = write_study(s, tmp_path, format="nifti")
    back = read_ct(paths["ct"])
    assert np.array_equal(back.voxels, s.volume.voxels)
    np.testing.assert_allclose(back.spacing, s.volume.spacing, atol=1e-4)
    np.testing.assert_allclose(back.origin, s.volume.origin, atol=1e-4)
    assert np.array_equal(read_mask(paths["lung_mask"], like=back), s.lung_mask)


def test_write_cohort_manifest_and_resume(tmp_path: os.PathLike[str]) -> None:
    cfg = PhantomConfig.small(64, slices=(8, 12))
    manifest = write_cohort(tmp_path, per_class=1, seed=3, config=cfg, progress=False)
    rows = list(csv.DictReader(manifest.open()))
    assert tuple(rows[0]) == MANIFEST_COLUMNS and len(rows) == 4
    assert [int(r["label"]) for r in rows] == [0, 1, 2, 3]
    for r in rows:
        ct = read_ct(os.path.join(tmp_path, r["path"]))
        assert ct.n_slices == int(r["n_slices"]) and abs(ct.spacing[0] - float(r["spacing_z"])) < 1e-4
    assert int(rows[0]["n_lesion_slices"]) == 0 and int(rows[1]["n_lesion_slices"]) > 0
    truths = {r["patient_id"]: os.path.join(tmp_path, r["patient_id"], "truth.json") for r in rows}
    mtimes = {k: os.stat(p).st_mtime_ns for k, p in truths.items()}
    before = manifest.read_text()
    write_cohort(tmp_path, per_class=1, seed=3, config=cfg, progress=False)
    assert {k: os.stat(p).st_mtime_ns for k, p in truths.items()} == mtimes
    assert manifest.read_text() == before
    os.remove(truths["syn-0002-h1n1"])
    write_cohort(tmp_path, per_class=1, seed=3, config=cfg, progress=False)
    assert os.path.exists(truths["syn-0002-h1n1"])
    assert os.stat(truths["syn-0001-covid"]).st_mtime_ns == mtimes["syn-0001-covid"]
    assert manifest.read_text() == before


# ------------------------------------------------------------------------ nothing a user made is overwritten
TINY = PhantomConfig.small(size=32, slices=(4, 6))


def _cohort(out, **kw):
    args = {"per_class": 1, "seed": 0, "config": TINY, "progress": False, **kw}
    return write_cohort(out, **args)


def _snapshot(folder) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(d, f), folder): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(folder)
        for f in files
    }


def test_write_cohort_records_its_settings_and_resumes_with_them(tmp_path) -> None:
    manifest = _cohort(tmp_path / "c")
    settings = json.loads((tmp_path / "c" / "cohort.json").read_text())
    assert settings["per_class"] == 1 and settings["seed"] == 0 and settings["format"] == "dicom"
    assert settings["config"] == TINY.to_dict()
    before = manifest.read_text()
    os.remove(manifest)  # interrupted before the manifest, one study unfinished
    os.remove(tmp_path / "c" / "syn-0003-cap" / "truth.json")
    _cohort(tmp_path / "c")
    assert manifest.read_text() == before


@pytest.mark.parametrize(
    ("change", "mine", "theirs"),
    [
        ({"per_class": 2}, "per class 1", "per class 2"),
        ({"seed": 4}, "seed 0", "seed 4"),
        ({"format": "nifti"}, "dicom", "nifti"),
        ({"config": PhantomConfig.small(size=40, slices=(4, 6))}, "32x32 px", "40x40 px"),
        ({"config": PhantomConfig.small(size=32, slices=(5, 7))}, "4-6 slices", "5-7 slices"),
    ],
)
def test_write_cohort_refuses_a_cohort_made_with_other_settings(tmp_path, change, mine, theirs) -> None:
    # issue 17: `m3lung train slice --data C` silently rewrote C's cohort.csv and its DICOMs
    _cohort(tmp_path / "c")
    before = _snapshot(tmp_path / "c")
    with pytest.raises(InputError, match="holds a synthetic cohort made with") as err:
        _cohort(tmp_path / "c", **change)
    msg = str(err.value)
    assert "\n" not in msg and mine in msg and theirs in msg and msg.index(mine) < msg.index(theirs)
    assert "--overwrite" in msg and "another folder" in msg
    assert _snapshot(tmp_path / "c") == before
    manifest = _cohort(tmp_path / "c", overwrite=True, **change)
    assert json.loads((tmp_path / "c" / "cohort.json").read_text())["config"] == change.get("config", TINY).to_dict()
    rows = list(csv.DictReader(manifest.open()))
    assert len(rows) == 4 * change.get("per_class", 1)
    for r in rows:
        truth = json.loads((tmp_path / "c" / r["patient_id"] / "truth.json").read_text())
        assert truth["seed"] == change.get("seed", 0) and truth["format"] == change.get("format", "dicom")


def test_write_cohort_into_a_folder_of_other_files(tmp_path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"not empty and holds no synthetic cohort \(notes.txt\)"):
        _cohort(tmp_path / "mine")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    _cohort(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "mine" / "cohort.csv").is_file()
    (tmp_path / "empty").mkdir()
    _cohort(tmp_path / "empty")  # an empty folder is fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        _cohort(tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_text() == "x"


def test_write_cohort_accepts_an_older_cohort_without_settings_only_when_it_fits(tmp_path) -> None:
    manifest = _cohort(tmp_path / "c")
    os.remove(tmp_path / "c" / "cohort.json")  # made before cohort.json existed
    before = _snapshot(tmp_path / "c")
    for change in ({"per_class": 2}, {"seed": 1}, {"format": "nifti"}, {"config": PhantomConfig.small(40, (4, 6))}):
        with pytest.raises(InputError, match=r"holds a synthetic cohort \(cohort.csv, no cohort.json\)"):
            _cohort(tmp_path / "c", **change)
        assert _snapshot(tmp_path / "c") == before
    text = manifest.read_text()
    _cohort(tmp_path / "c")  # the same settings: used as it is, and its settings recorded
    assert manifest.read_text() == text
    after = _snapshot(tmp_path / "c")
    assert {k: after[k] for k in before if k != "cohort.csv"} == {k: v for k, v in before.items() if k != "cohort.csv"}
    assert json.loads((tmp_path / "c" / "cohort.json").read_text())["seed"] == 0


def test_phantom_command_overwrite(tmp_path, capsys) -> None:
    from m3lung.cli import main

    base = ["phantom", "--out", str(tmp_path / "c"), "--per-class", "1", "--size", "32", "--slices", "4", "6"]
    assert main([*base, "--quiet"]) == 0
    assert main([*base, "--quiet", "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m3lung: error: ") and err.count("\n") == 1 and "seed 0" in err and "seed 2" in err
    assert main([*base, "--quiet", "--seed", "2", "--overwrite"]) == 0
    assert json.loads((tmp_path / "c" / "cohort.json").read_text())["seed"] == 2
    (tmp_path / "f").write_text("x")
    assert main(["phantom", "--out", str(tmp_path / "f"), "--per-class", "1", "--size", "32", "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
