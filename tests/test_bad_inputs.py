"""The table of bad and hostile inputs (issue 17): each through the command line, with the exit status, the
one-line message and the outputs it must leave. Screening uses the shipped demo weights (no training).

Exit statuses: 0 done, 2 an error (or a study that failed), 3 a study that is not assessable.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from helpers import make_volume, synthetic_chest
from m3lung.cli import main
from m3lung.io import write_ct, write_dicom_series

pytestmark = pytest.mark.slow


def _nifti(tmp: Path, name: str, voxels: np.ndarray) -> str:
    write_ct(make_volume(np.asarray(voxels, np.float32)), tmp / name)
    return str(tmp / name)


def _series(tmp: Path, edit: Callable[[pydicom.Dataset], None] | None = None) -> str:
    folder = write_dicom_series(make_volume(synthetic_chest(n=6, size=64)), tmp / "series")
    for f in sorted(folder.iterdir()):
        if edit is not None:
            ds = pydicom.dcmread(f)
            edit(ds)
            ds.save_as(f, enforce_file_format=True)
    return str(folder)


def _huge_nifti(tmp: Path) -> str:
    """A 4 KB .nii.gz whose header says it holds 6.3 GB (512 x 512 x 12000 int16)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((512, 512, 12000))
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(np.eye(4), code=1)
    with gzip.open(tmp / "bomb.nii.gz", "wb") as fh:
        fh.write(hdr.binaryblock + b"\0" * 4100)
    return str(tmp / "bomb.nii.gz")


def _weights_without_config(tmp: Path) -> str:
    from m3lung.train.checkpoint import CHECKPOINT_FORMAT

    torch.save({"format": CHECKPOINT_FORMAT, "kind": "slice_net", "state_dict": {}}, tmp / "w.pt")
    return str(tmp / "w.pt")


def _screen(path_of: Callable[[Path], str], *extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["screen", path_of(tmp), "--out", str(tmp / "out"), "--device", "cpu", "--quiet", *extra]


def _pixel_spacing_zero(ds: pydicom.Dataset) -> None:
    ds.PixelSpacing = [0, 0]


def _slope_zero(ds: pydicom.Dataset) -> None:
    ds.RescaleSlope = 0


rng = np.random.default_rng(0)
# (id, argv from a tmp folder, exit status, a piece of the one-line message (stderr or stdout), what stays)
CASES = [
    ("noise-2000-slices", _screen(lambda t: _nifti(t, "noise.nii.gz", rng.uniform(-1024, 3000, (2000, 48, 48)))), 3,
     "noise: not assessable, no class given", "report_without_class"),
    ("all-zero", _screen(lambda t: _nifti(t, "zero.nii.gz", np.zeros((24, 64, 64)))), 3,
     "a blank volume", "report_without_class"),
    ("all-1e30", _screen(lambda t: _nifti(t, "huge.nii.gz", np.full((24, 64, 64), 1e30))), 2,
     "cannot be CT in HU", "failure_recorded"),
    ("a-1x1x1-volume", _screen(lambda t: _nifti(t, "one.nii.gz", np.zeros((1, 1, 1)))), 3,
     "not assessable", "report_without_class"),
    ("pixel-spacing-0", _screen(lambda t: _series(t, _pixel_spacing_zero)), 2,
     "PixelSpacing", "failure_recorded"),
    ("rescale-slope-0", _screen(lambda t: _series(t, _slope_zero)), 2, "RescaleSlope 0", "failure_recorded"),
    ("a-6GB-nifti-bomb", _screen(_huge_nifti), 2, "would need about", "failure_recorded"),
    ("empty-weights-file", _screen(lambda t: _series(t), "--weights", "{tmp}/empty.pt"), 2,
     "cannot load as weights", "nothing"),
    ("weights-without-config", _screen(lambda t: _series(t), "--weights", "{weights_without_config}"), 2,
     "holds no model config", "nothing"),
    ("threshold-2", _screen(lambda t: _series(t), "--threshold", "2"), 2,
     "--threshold must be in [0, 1)", "nothing"),
    ("out-is-a-file", lambda t: ["screen", _series(t), "--out", str(t / "file"), "--quiet"], 2,
     "(--out) is a file, not a folder", "nothing"),
    ("train-epochs-negative", lambda t: ["train", "slice", "--recipe", "slice_tiny", "--data", str(t / "d"),
     "--out", str(t / "run"), "--set", "train.epochs=-1", "--quiet"], 2, "train.epochs must be at least 1", "nothing"),
    ("train-batch-size-0", lambda t: ["train", "slice", "--recipe", "slice_tiny", "--data", str(t / "d"),
     "--out", str(t / "run"), "--set", "train.batch_size=0", "--quiet"], 2, "train.batch_size must be at least 1",
     "nothing"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "argv", "code", "message", "leaves"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, capsys, case, argv, code, message, leaves):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "file").write_text("not a folder")
    args = [
        a.replace("{tmp}", str(tmp_path)).replace("{weights_without_config}", _weights_without_config(tmp_path))
        if "{" in a
        else a
        for a in argv(tmp_path)
    ]
    assert main(args) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert message in out + err, out + err
    if code == 2 and leaves == "nothing":
        assert err.startswith("m3lung: error: ") and len(err.strip().splitlines()) == 1, err
    out_dir = tmp_path / "out"
    if leaves == "report_without_class":
        (report_file,) = out_dir.glob("*/report.json")
        report = json.loads(report_file.read_text())
        assert report["assessable"] is False and report["patient"]["label"] is None
        (row,) = csv.DictReader((out_dir / "summary.csv").open())
        assert row["label"] == "not assessable"
    elif leaves == "failure_recorded":
        (failure,) = json.loads((out_dir / "failures.json").read_text())
        assert message in failure["error"] and not list(out_dir.glob("*/report.json"))
    else:
        assert not out_dir.exists() or not list(out_dir.glob("*/report.json"))
    assert not [p for p in (out_dir.iterdir() if out_dir.exists() else []) if p.name.startswith(".")]


def test_one_bad_study_never_ends_the_batch(tmp_path, capsys):
    """Good, garbage and broken studies in one batch: every one is accounted for, the good one screened."""
    from m3lung.phantom import PhantomConfig, make_study

    study = make_study(1, seed=0, config=PhantomConfig.small(size=96, slices=(20, 22)), patient_id="good")
    write_ct(study.volume, tmp_path / "good.nii.gz")
    bad = [_nifti(tmp_path, "one.nii.gz", np.zeros((1, 1, 1))), _series(tmp_path, _pixel_spacing_zero)]
    (tmp_path / "summary.csv.nii.gz").write_bytes(b"junk")
    paths = [str(tmp_path / "good.nii.gz"), *bad, str(tmp_path / "summary.csv.nii.gz")]
    assert main(["screen", *paths, "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"]) == 2
    out = tmp_path / "out"
    rows = {r["study_id"]: r["label"] for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["one"] == "not assessable" and rows["good"] in ("Healthy", "COVID-19", "H1N1", "CAP")
    failed = {f["study_id"] for f in json.loads((out / "failures.json").read_text())}
    assert failed == {"series", "summary.csv_study"} and (out / "summary.csv").is_file()
