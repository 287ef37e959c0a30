"""``m3lung screen``: report contents, geometry of the lesion map, chunking, batches, shards, bad input."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

import m3lung
from m3lung.cli import main
from m3lung.errors import IntensityError
from m3lung.io import read_ct
from m3lung.models import PatientNet, PatientNetConfig
from m3lung.systems.batch import parse_shard, screen_many, studies_from
from m3lung.systems.screening import REPORT_SCHEMA, Screener
from m3lung.train.checkpoint import WeightsError, save_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def screener(tiny_system):
    return Screener(tiny_system / "patient" / "system.pt", device="cpu", batch_size=7)


def _study(tiny_system, k=1):
    return sorted((tiny_system / "data").glob("syn-*"))[k]


def test_report_contents_and_outputs(tiny_system, screener, tmp_path):
    folder = _study(tiny_system)
    report = screener.screen(folder / "ct")
    d = report.to_dict()
    n = d["study"]["n_slices"]
    assert d["schema"] == REPORT_SCHEMA and d["patient"]["decided_by"] == "network"
    assert np.allclose(np.array(d["slices"]["p_multi"]).sum(1), 1, atol=1e-3) and len(d["slices"]["p_lesion"]) == n
    for rule in ("network", "nonparametric", "maxpool"):
        assert d["patient"][rule]["label"] in m3lung.CLASSES
        assert sum(d["patient"][rule]["probs"]) == pytest.approx(1, abs=1e-3)
    assert report.label == d["patient"]["network"]["label"] and 0 <= d["infected_share"] <= 1
    assert d["weights"]["patient_hash"] and "synthetic cohort" in d["weights"]["trained_on"]
    out = report.write(tmp_path / "study")
    assert {p.name for p in out.iterdir()} == {"report.json", "report.html", "lesion_map.nii.gz"}
    assert json.loads((out / "report.json").read_text())["study"]["n_slices"] == n
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(report.shown) and "http" not in html
    # the lesion map lies on the study's own grid: same shape and affine as the phantom's masks
    img = nib.load(out / "lesion_map.nii.gz")
    ref = nib.load(folder / "lesion_mask.nii.gz")
    assert img.shape == ref.shape and np.allclose(img.affine, ref.affine)
    assert img.get_data_dtype() == np.uint8 and img.dataobj.slope == pytest.approx(1 / 255)
    data = img.dataobj.get_unscaled().transpose(2, 1, 0)  # stored uint8, back to (slices, rows, cols)
    assert np.array_equal(data, report.lesion_map) and 0 <= img.get_fdata().max() <= 1


def test_chunks_change_nothing(tiny_system, screener):
    vol = read_ct(_study(tiny_system, 2) / "ct")
    whole = screener.screen(vol)
    chunked = Screener(tiny_system / "patient" / "system.pt", device="cpu", chunk=4).screen(vol)
    assert np.allclose(whole.data["slices"]["p_multi"], chunked.data["slices"]["p_multi"], atol=1e-4)
    assert whole.data["patient"]["network"]["probs"] == pytest.approx(
        chunked.data["patient"]["network"]["probs"], abs=1e-4
    )
    assert np.abs(whole.lesion_map.astype(int) - chunked.lesion_map.astype(int)).max() <= 1


def test_single_slice_and_every(tiny_system, screener):
    vol = read_ct(_study(tiny_system, 3) / "ct")
    one = vol.with_voxels(vol.voxels[5:6], slice_positions=np.zeros(1), source_index=np.zeros(1, int))
    rep = screener.screen(one)
    assert rep.data["study"]["n_slices"] == 1 and len(rep.shown) == 1
    rep = Screener(tiny_system / "patient" / "system.pt", device="cpu", every=5).screen(vol)
    assert rep.shown.tolist() == list(range(0, vol.n_slices, 5)) and rep.crops.shape[0] == len(rep.shown)


def test_batch_skips_done_studies_and_records_failures(tiny_system, screener, tmp_path):
    paths = [_study(tiny_system, k) / "ct" for k in (0, 1)]
    empty = tmp_path / "empty"
    empty.mkdir()
    studies = studies_from([*paths, empty])
    assert [s.study_id for s in studies] == [f"{p.parent.name}_ct" for p in paths] + ["empty"]
    res = screen_many(screener, studies, tmp_path / "out", progress=False)
    assert len(res["screened"]) == 2 and res["failed"][0]["study_id"] == "empty"
    assert "empty" in (tmp_path / "out" / "failures.json").read_text()
    summary = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and summary[0].startswith("study_id,path,label,p_Healthy")
    again = screen_many(screener, studies[:2], tmp_path / "out", progress=False)
    assert len(again["skipped"]) == 2 and not again["screened"]
    left = [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert not left  # no half-written folder stays behind


def test_shards_partition_the_batch(tiny_system):
    studies = studies_from(sorted(str(p / "ct") for p in (tiny_system / "data").glob("syn-*")))
    parts = [[s for k, s in enumerate(studies) if k % 3 == i - 1] for i in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(studies) and len({s.study_id for p in parts for s in p}) == len(studies)
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (1, 1)
    for bad in ("0/2", "3/2", "a/b", "1"):
        with pytest.raises(m3lung.M3LungError, match="--shard"):
            parse_shard(bad)


def test_manifest(tiny_system, tmp_path):
    study = _study(tiny_system)
    shutil.copytree(study / "ct", tmp_path / "scan")
    (tmp_path / "list.csv").write_text("path,study_id\nscan,first\n")
    assert [(s.study_id, s.path) for s in studies_from([tmp_path / "list.csv"])] == [("first", str(tmp_path / "scan"))]
    (tmp_path / "bad.csv").write_text("file\nscan\n")
    with pytest.raises(m3lung.M3LungError, match="'path' column"):
        studies_from([tmp_path / "bad.csv"])


def test_weights_that_do_not_fit(tiny_system, tmp_path):
    net = PatientNet(PatientNetConfig(feature_dim=64, heads=2, head_dim=8))
    save_model(tmp_path / "p.pt", net, kind="patient_net", config=net.config.to_dict(), provenance={})
    with pytest.raises(WeightsError, match="reads 64-d slice features but the slice network"):
        Screener(tiny_system / "slice" / "best.pt", patient_weights=tmp_path / "p.pt")
    with pytest.raises(WeightsError, match="holds a 'patient_net' model"):
        Screener(tmp_path / "p.pt")


def test_slice_weights_alone_use_the_nonparametric_rule(tiny_system):
    rep = m3lung.screen(_study(tiny_system) / "ct", weights=tiny_system / "slice" / "best.pt", device="cpu")
    assert rep.data["patient"]["network"] is None and rep.data["patient"]["decided_by"] == "nonparametric"
    assert rep.label == rep.data["patient"]["nonparametric"]["label"]


def test_grey_images_are_refused(tiny_system, screener, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(IntensityError):
        screener.screen(tmp_path / "x.png")


def test_cli_screen(tiny_system, tmp_path, capsys):
    study = _study(tiny_system) / "ct"
    args = ["screen", str(study), str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]
    code = main([*args, "--weights", str(tiny_system / "patient" / "system.pt"), "--quiet", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 2 and "ct:" in out and "nothing: no such file or folder" in err and "Traceback" not in err
    assert (tmp_path / "o" / "ct" / "report.html").exists()


def test_finer_maps_change_only_the_maps(tiny_system, screener, tmp_path):
    """--map-shifts 2: the lesion map is drawn on a finer grid; every probability and the decision stay."""
    vol = read_ct(_study(tiny_system, 2) / "ct")
    plain = screener.screen(vol)
    fine = Screener(tiny_system / "patient" / "system.pt", device="cpu", batch_size=7, map_shifts=2).screen(vol)
    assert plain.data["weights"]["slice_config"]["map_shifts"] == 1
    assert fine.data["weights"]["slice_config"]["map_shifts"] == 2
    assert np.allclose(plain.data["slices"]["p_multi"], fine.data["slices"]["p_multi"], atol=1e-4)
    assert plain.data["patient"]["network"]["probs"] == pytest.approx(
        fine.data["patient"]["network"]["probs"], abs=1e-4
    )
    assert fine.lesion_map.shape == plain.lesion_map.shape and not np.array_equal(fine.lesion_map, plain.lesion_map)
    weights = str(tiny_system / "patient" / "system.pt")
    study = str(_study(tiny_system) / "ct")
    args = ["screen", study, "--out", str(tmp_path / "o"), "--quiet", "--device", "cpu", "--weights", weights]
    assert main([*args, "--map-shifts", "3"]) == 2
    # --map-flip: the mirrored slice's map averaged in; again only the maps move
    assert main([*args, "--map-flip"]) == 0
    flipped = Screener(weights, device="cpu", batch_size=7, map_flip=True).screen(vol)
    assert flipped.data["weights"]["slice_config"]["map_flip"] is True
    assert plain.data["weights"]["slice_config"]["map_flip"] is False
    assert np.allclose(plain.data["slices"]["p_multi"], flipped.data["slices"]["p_multi"], atol=1e-4)
    assert flipped.lesion_map.shape == plain.lesion_map.shape
    assert not np.array_equal(flipped.lesion_map, plain.lesion_map)
