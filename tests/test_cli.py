"""The command line: summaries, outputs, and clear errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import make_volume, synthetic_chest
from m3lung.cli import main
from m3lung.io import write_dicom_series


@pytest.fixture
def series(tmp_path):
    vol = make_volume(synthetic_chest(n=6, size=64))
    return write_dicom_series(vol, tmp_path / "series", patient_id="P-9")


def test_info_text_and_json(series, capsys):
    assert main(["info", str(series)]) == 0
    out = capsys.readouterr().out
    assert "6 slices x 64 rows x 64 cols" in out and "modality:    CT" in out and "warnings:    0" in out
    assert main(["info", str(series), "--json", "--anonymize"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["slices"] == 6 and doc["spacing_mm"]["z"] == pytest.approx(2.0)
    assert doc["patient_id"] is None and doc["anonymized"] is True


def test_info_lists_warnings(tmp_path, capsys):
    from helpers import synthetic_chest as sc

    vol = make_volume(sc(n=6, size=32))
    pos = np.arange(6) * 2.0
    pos[4:] += 6.0
    vol.slice_positions = pos
    write_dicom_series(vol, tmp_path / "gappy")
    assert main(["info", str(tmp_path / "gappy")]) == 0
    out = capsys.readouterr().out
    assert "warnings:    1" in out and "gap" in out


def test_preprocess_writes_outputs(series, tmp_path, capsys):
    out = tmp_path / "pre"
    assert main(["preprocess", str(series), "--out", str(out), "--size", "64", "--margin", "3"]) == 0
    assert "6 slices cropped and windowed" in capsys.readouterr().out
    assert len(list((out / "slices").glob("slice_*.png"))) == 6
    doc = json.loads((out / "crop.json").read_text())
    assert doc["schema"] == "m3lung.preprocessed/1" and len(doc["slices"]) == 6
    z = np.load(out / "slices.npz")
    assert z["windowed"].shape == (6, 3, 64, 64) and z["boxes"].shape == (6, 4)
    assert (out / "lung_mask.nii.gz").exists()
    # an existing output is not overwritten silently
    assert main(["preprocess", str(series), "--out", str(out), "--size", "64"]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "empty"),
        (lambda p: (p.mkdir(), (p / "x.txt").write_text("x")), "no DICOM files"),
        (lambda p: None, "no such file"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, make, message):
    target = tmp_path / "in"
    make(target)
    assert main(["info", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m3lung: error: ") and message in err and "Traceback" not in err


def test_eight_bit_image_refused_by_preprocess(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "a.png")
    assert main(["preprocess", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]) == 2
    assert "needs Hounsfield units" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_entry_point_subprocess(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "m3lung.cli", "info", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such file" in r.stderr


def _truncated(tmp_path):
    folder = write_dicom_series(make_volume(synthetic_chest(n=4, size=32)), tmp_path / "s")
    f = sorted(folder.iterdir())[1]
    f.write_bytes(f.read_bytes()[:2000])
    return folder


def _no_rescale(tmp_path):
    import pydicom

    folder = write_dicom_series(make_volume(synthetic_chest(n=3, size=32)), tmp_path / "s")
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        del ds.RescaleIntercept
        del ds.RescaleSlope
        ds.save_as(f, enforce_file_format=True)
    return folder


def _nan_npy(tmp_path):
    a = synthetic_chest(n=3, size=16)
    a[1, 2, 3] = np.nan
    np.save(tmp_path / "a.npy", a)
    return tmp_path / "a.npy"


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (_truncated, [], "cannot decode the pixel data"),
        (_no_rescale, [], "cannot be Hounsfield units"),
        (_nan_npy, ["--spacing", "1", "1", "1"], "NaN or infinite"),
    ],
)
def test_bad_inputs_through_the_cli(tmp_path, capsys, make, extra, message):
    path = make(tmp_path)
    for cmd in (["info", str(path)], ["preprocess", str(path), "--out", str(tmp_path / "o")]):
        assert main([*cmd, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_skip_broken_skips_a_truncated_slice(tmp_path, capsys):
    path = _truncated(tmp_path)
    assert main(["info", str(path)]) == 2
    assert "cannot decode the pixel data" in capsys.readouterr().err
    assert main(["info", str(path), "--skip-broken"]) == 0
    out = capsys.readouterr().out
    assert "3 slices" in out and "pixel data cannot be decoded" in out


def test_phantom_command_writes_a_readable_cohort(tmp_path, capsys):
    import csv

    out = tmp_path / "cohort"
    args = ["phantom", "--out", str(out), "--per-class", "1", "--size", "64", "--slices", "8", "10", "--quiet"]
    assert main([*args, "--seed", "2"]) == 0
    assert "4 studies" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "cohort.csv").open()))
    assert [r["class_name"] for r in rows] == ["Healthy", "COVID-19", "H1N1", "CAP"]
    assert main(["info", str(out / rows[1]["path"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["slices"] == int(rows[1]["n_slices"])


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    from m3lung.systems.demo import demo_weights
    from m3lung.train.checkpoint import load_system

    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "synthetic data" in out and "read back identical" in out and "trained on phantoms only" in out
    folder = tmp_path / "demo" / "screen" / "demo-0000"
    report = json.loads((folder / "report.json").read_text())
    slice_doc, patient_doc = load_system(demo_weights())  # the shipped file: both networks, hashes intact
    assert patient_doc is not None and report["weights"]["slice_hash"] == slice_doc["weights_hash"]
    assert report["patient"]["decided_by"] == "network" and "screened   in" in out
    assert "synthetic cohort" in report["weights"]["trained_on"] and (folder / "lesion_map.nii.gz").exists()
    assert main(["demo"]) == 2 and "needs --out" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_dicom_reads_without_log_spam():
    """COVID-CT-MD's UUID-style UIDs make pydicom log one line per file; the CLI shows them only with -v."""
    from helpers import COVIDCTMD, COVIDCTMD_CASES, need_shared

    need_shared("covid-ct-md")
    folder = str(COVIDCTMD / COVIDCTMD_CASES["P002"][0])
    r = subprocess.run([sys.executable, "-m", "m3lung.cli", "info", folder], capture_output=True, text=True)
    assert r.returncode == 0 and "133" in r.stdout
    assert "Invalid value for VR UI" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "m3lung.cli", "-v", "info", folder], capture_output=True, text=True)
    assert r.returncode == 0 and "Invalid value for VR UI" in r.stderr


def test_python_dash_m_m3lung():
    r = subprocess.run([sys.executable, "-m", "m3lung", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("m3lung ")
    r = subprocess.run([sys.executable, "-m", "m3lung", "systems", "--json"], capture_output=True, text=True)
    systems = json.loads(r.stdout)
    assert r.returncode == 0 and systems[0]["name"] == "m3lung" and systems[0]["classes"][3] == "CAP"
    assert [s["name"] for s in systems[0]["stages"]] == ["slice", "patient"] and "slice_cpu" in str(systems)


def test_library_warnings_are_one_line(capsys):
    from m3lung.cli import _show_warning

    _show_warning("pixdim[1,2,3] should be\n non-zero", UserWarning, "/x/site-packages/nibabel/nifti1.py", 3)
    err = capsys.readouterr().err
    assert err == "m3lung: warning: pixdim[1,2,3] should be non-zero (UserWarning from nibabel)\n"


def test_a_file_where_a_folder_is_expected(series, tmp_path, capsys):
    # issue 17: FileExistsError / NotADirectoryError tracebacks; the file is never replaced
    (tmp_path / "f").write_text("mine")
    for cmd, what in (
        (["preprocess", str(series), "--out", str(tmp_path / "f")], "the output folder (--out) is a file"),
        (["preprocess", str(series), "--out", str(tmp_path / "f"), "--overwrite"], "(--out) is a file"),
        (["preprocess", str(series), "--out", str(tmp_path / "f" / "o")], "cannot be made: "),
        (["phantom", "--out", str(tmp_path / "f"), "--per-class", "1", "--size", "32"], "the cohort folder is a file"),
        (["features", "--weights", "w.pt", "--data", str(tmp_path / "f"), "--out", "o"], "(--data) is a file"),
        (["features", "--weights", "w.pt", "--data", str(tmp_path / "nope"), "--out", "o"], "no such folder"),
    ):
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert what in err and err.count("\n") == 1 and "Traceback" not in err, (cmd, err)
    assert (tmp_path / "f").read_text() == "mine"


def test_features_out_that_is_a_file(tmp_path, capsys):
    from m3lung.phantom import PhantomConfig, write_cohort

    write_cohort(tmp_path / "c", per_class=1, seed=0, config=PhantomConfig.small(32, (4, 6)), progress=False)
    (tmp_path / "f").write_text("mine")
    cmd = ["features", "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path / "c"), "--out", str(tmp_path / "f")]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert "the feature cache folder (--out) is a file, not a folder" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["notes.txt", "blob.bin", "scan"])
def test_a_file_that_is_neither_dicom_nor_a_known_format(tmp_path, capsys, name):
    (tmp_path / name).write_bytes(b"hello, not an image\n" * 10)
    assert main(["info", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert "not a DICOM file, and not a format m3lung reads by its suffix (.nii/.nii.gz/.mha" in err
    assert "not its folder" not in err and err.count("\n") == 1
