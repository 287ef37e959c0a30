"""Tables laid out like seed 001 Table II and seed 004 Table 6."""

from __future__ import annotations

import numpy as np

from m3lung.evaluate import bootstrap_figures, classification_figures, table_patient_level, table_per_class


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
