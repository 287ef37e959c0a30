"""Tables laid out like seed 001 Table II and seed 004 Table 6."""

from __future__ import annotations

import json

import numpy as np

from m3lung.evaluate import (
    bootstrap_figures,
    classification_figures,
    table_patient_level,
    table_per_class,
    to_jsonable,
)


def test_table_ii_layout():
    c = np.array([[99, 2, 1, 0], [1, 95, 0, 0], [0, 0, 41, 0], [7, 3, 0, 43]])
    y = np.repeat(np.arange(4), c.sum(1))
    p = np.concatenate([np.repeat(np.arange(4), row) for row in c])
    classes = ("Healthy", "COVID-19", "H1N1", "CAP")
    figs = bootstrap_figures(y, p, classes=classes, n_resamples=200)
    text = table_patient_level(
        {"Ours": figs, "Other": classification_figures(y, p, classes=classes)}, classes, pvalues={"Other": 0.0004}
    )
    head, rule, ours, other = text.splitlines()
    assert head.startswith("| Method | Healthy Sen. | Healthy Spec. | COVID-19 Sen.") and head.endswith(
        "| Acc. | FPE | FNE | FDPE |"
    )
    assert "| 95.21 [" in ours and ours.endswith("| 2.94 | 4.21 | 1.58 |") and "(p < 0.001)" in other
    assert rule.count("---") == head.count("|") - 1


def test_table_6_layout_with_three_and_two_classes():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    three = ("NP", "CAP", "COVID-19")
    text = table_per_class(classification_figures(y, p, classes=three), three)
    assert "| CAP | 1.000 | 0.667 | 0.800 |" in text and text.splitlines()[-1].startswith("| Accuracy | 0.667")
    two = ("Normal", "COVID")
    t2 = table_patient_level({"x": classification_figures(y[:4] // 2, p[:4] // 2, classes=two)}, two)
    assert "FDPE" not in t2 and "FPE | FNE" in t2


def _labels(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(len(c)), c.sum(1))
    p = np.concatenate([np.repeat(np.arange(len(c)), row) for row in c])
    return y, p


def test_table_ii_cells_with_auc_interval_and_pvalue():
    classes = ("Healthy", "COVID-19", "H1N1", "CAP")
    y, p = _labels(np.array([[99, 2, 1, 0], [1, 95, 0, 0], [0, 0, 41, 0], [7, 3, 0, 43]]))
    s = np.eye(4)[p] + 0.01 * np.arange(y.size)[:, None] / y.size
    figs = bootstrap_figures(y, p, s, classes=classes, n_resamples=100, seed=3)
    text = table_patient_level({"Other": figs, "Ours": figs}, classes, pvalues={"Other": 0.0123})
    head, _, other, ours = text.splitlines()
    assert "| Healthy Sen. | Healthy Spec. | Healthy AUC | COVID-19 Sen." in head
    lo, hi = (f"{100 * v:.2f}" for v in figs["acc"][1:])
    assert f"| 95.21 [{lo}~{hi}] (p = 0.012) |" in other and f"| 95.21 [{lo}~{hi}] |" in ours
    # Healthy: Sen. 99/102, Spec. 182/190 (8 diseased called healthy); H1N1 Sen. 41/41
    assert other.startswith("| Other | 97.06 | 95.79 | ") and "| 100.00 |" in other
    assert ours.endswith("| 2.94 | 4.21 | 1.58 |")
    assert len(head.split("|")) == len(ours.split("|"))


def test_missing_figures_print_as_dashes_and_names_are_escaped():
    classes = ("A|B", "C")
    y = np.array([0, 0, 0])
    text = table_patient_level({"sys|1": classification_figures(y, y, classes=classes, healthy=None)}, classes)
    assert "A\\|B Sen." in text and "| sys\\|1 | 100.00 | – | – | 100.00 | 100.00 |" in text


def test_table_6_reproduces_xu_patients_with_intervals():
    xu = ("COVID-19", "IAVP", "NIF")
    y, p = _labels(np.array([[26, 3, 1], [4, 25, 1], [2, 1, 27]]))
    plain = table_per_class(classification_figures(y, p, classes=xu, healthy=None), xu)
    # 26/32 = 0.8125 is printed 0.813 as in the paper (halves rounded up)
    assert plain.splitlines()[:3] == [
        "| Class | Recall | Precision | F1-score |",
        "|---|---|---|---|",
        "| COVID-19 | 0.867 | 0.813 | 0.839 |",
    ]
    assert "| IAVP | 0.833 | 0.862 | 0.847 |" in plain and "| NIF | 0.900 | 0.931 | 0.915 |" in plain
    assert plain.splitlines()[-1] == "| Accuracy | 0.867 | | |"
    boot = bootstrap_figures(y, p, classes=xu, healthy=None, n_resamples=100)
    lo, hi = boot["sen[NIF]"][1:]
    assert f"| NIF | 0.900 [{lo:.3f}~{hi:.3f}] |" in table_per_class(boot, xu)


def test_to_jsonable_gives_strict_json():
    y, p = _labels(np.array([[5, 1, 0], [0, 4, 1], [0, 0, 0]]))
    figs = bootstrap_figures(y, p, classes=("NP", "CAP", "COVID-19"), n_resamples=50)
    data = to_jsonable({"ours": figs, "n": np.int64(11), "ok": np.bool_(True), "v": np.arange(2.0)})
    back = json.loads(json.dumps(data, allow_nan=False))
    assert back["ours"]["acc"] == list(figs["acc"]) and back["n"] == 11 and back["ok"] is True
    assert back["ours"]["sen[COVID-19]"] == [None, None, None] and back["v"] == [0.0, 1.0]
