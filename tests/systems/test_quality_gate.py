"""The input quality gate in front of every system: garbage is *not assessable*, never a confident class."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from helpers import make_volume
from m3lung.cli import main
from m3lung.io import write_ct

pytestmark = pytest.mark.slow


def _nifti(tmp_path, name, voxels):
    path = tmp_path / f"{name}.nii.gz"
    write_ct(make_volume(np.asarray(voxels, np.float32)), path)
    return path


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("noise", lambda r: r.uniform(-1024, 3000, (2000, 48, 48)), "above 2000 HU"),
        ("zeros", lambda r: np.zeros((20, 64, 64)), "a blank volume"),
        ("air", lambda r: np.full((20, 64, 64), -1024.0), "no body in the volume"),
    ],
)
def test_garbage_is_not_assessable(tmp_path, capsys, name, make, reason):
    path = _nifti(tmp_path, name, make(np.random.default_rng(0)))
    out = tmp_path / "out"
    assert main(["screen", str(path), "--out", str(out), "--device", "cpu", "--quiet"]) == 3
    printed = capsys.readouterr().out
    assert f"{name}: not assessable, no class given" in printed and reason in printed
    report = json.loads((out / name / "report.json").read_text())
    assert report["assessable"] is False and report["patient"]["label"] is None and report["patient"]["probs"] is None
    assert report["quality"]["reasons"] and report["patient"]["rules"] == [] and report["patient"]["decided_by"] is None
    assert not (out / name / "lesion_map.nii.gz").exists() and "slices" not in report
    assert "Not assessable: no class is given" in (out / name / "report.html").read_text()
    (row,) = csv.DictReader((out / "summary.csv").open())
    assert row["label"] == "not assessable" and row["p_CAP"] == "" and row["p_Healthy"] == ""


def test_the_gate_is_what_refuses(tmp_path, capsys):
    """Without the gate the same noise gets a class: the gate, not chance, keeps garbage out."""
    path = _nifti(tmp_path, "noise", np.random.default_rng(1).uniform(-1024, 3000, (40, 48, 48)))
    args = ["screen", str(path), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet", "--no-quality-gate"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "noise" / "report.json").read_text())
    assert report["assessable"] is True and report["patient"]["label"] in report["patient"]["classes"]
    assert "quality" not in report and "quality_gate" not in report["timings_s"]


def test_a_chest_passes_the_gate(tmp_path, capsys):
    from m3lung.phantom import PhantomConfig, make_study

    study = make_study(2, seed=3, config=PhantomConfig.small(size=128, slices=(30, 32)), patient_id="chest")
    write_ct(study.volume, tmp_path / "chest.nii.gz")
    assert main(["screen", str(tmp_path / "chest.nii.gz"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    report = json.loads((tmp_path / "o" / "chest" / "report.json").read_text())
    assert report["assessable"] is True and report["quality"]["assessable"] is True
    assert report["patient"]["label"] in report["patient"]["classes"] and "quality_gate" in report["timings_s"]
