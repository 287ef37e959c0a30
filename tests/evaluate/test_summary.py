"""``m3lung evaluate``: predictions in, figures with intervals, p-values, tables and plots out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m3lung.cli import main
from m3lung.evaluate.predictions import write_predictions

PAPER = ("Healthy", "COVID-19", "H1N1", "CAP")


def _write(path, acc, seed, n=120, classes=PAPER):
    rng = np.random.default_rng(seed)
    k = len(classes)
    y = np.arange(n) % k
    p = np.where(rng.random(n) < acc, y, (y + 1) % k)
    s = rng.random((n, k))
    s[np.arange(n), p] += 1
    s /= s.sum(1, keepdims=True)
    ids = [f"pt{i:03d}" for i in range(n)]
    order = rng.permutation(n)  # the second file lists the patients in another order
    return write_predictions(path, [ids[i] for i in order], y[order], p[order], s[order], classes)


def test_cli_tables_json_figures_and_compare(tmp_path, capsys):
    a = _write(tmp_path / "ours.csv", 0.95, 0)
    b = _write(tmp_path / "other.csv", 0.6, 1)
    assert main(["evaluate", str(a), "--compare", str(b), "--bootstrap", "200", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert (
        "| Method | Healthy Sen." in out and "| ours |" in out and "| other |" in out and "(p = 0.005)" in out
    )  # 200 resamples: p >= 1/201
    data = json.loads((tmp_path / "o" / "figures.json").read_text())
    assert data["n_patients"] == 120 and data["bootstrap"]["resamples"] == 200
    lo, hi = data["systems"]["ours"]["acc"][1:]
    assert lo <= data["systems"]["ours"]["acc"][0] <= hi and data["pvalues_vs_first"]["other"]["acc"] < 0.01
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"roc.png", "roc.svg", "confusion.png", "confusion.svg", "calibration_COVID-19.png", "tables.md"} <= names
    assert set(data["hosmer_lemeshow"]) == set(PAPER)
    assert main(["evaluate", str(a), "--json", "--bootstrap", "50", "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["bootstrap"]["seed"] == 3


def test_three_classes_without_probabilities(tmp_path, capsys):
    (tmp_path / "p.csv").write_text(
        "patient_id,label,pred\n" + "".join(f"p{i},{i % 3},{(i * 7) % 3}\n" for i in range(30))
    )
    assert main(["evaluate", str(tmp_path / "p.csv"), "--classes", "NP,CAP,COVID-19", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "NP Sen." in out and "AUC" not in out and "| CAP |" in out


def test_errors_are_one_line(tmp_path, capsys):
    a = _write(tmp_path / "a.csv", 0.9, 0)
    b = _write(tmp_path / "b.csv", 0.9, 1, n=100)
    assert main(["evaluate", str(a), "--compare", str(b)]) == 2
    assert "not scored on the same patients" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["evaluate", "slice", "x", "y"]) == 2
    capsys.readouterr()
    assert main(["evaluate", "slice", str(tmp_path), "--data", str(tmp_path), "--map-shifts", "2"]) == 2
    assert "not a training run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xd8", "not UTF-8 text"),
        (b"patient_id,label,pred\na,0\n", "line 2: 2 field(s) where the header has 3"),
    ],
)
def test_binary_ragged_or_empty_csv_through_the_cli(tmp_path, capsys, data, message):
    (tmp_path / "p.csv").write_bytes(data)
    assert main(["evaluate", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(tmp_path / "p.csv") in err and "Traceback" not in err
    assert err.count("\n") == 1
