"""Bootstrap intervals over patients and paired p-values."""

from __future__ import annotations

import numpy as np
import pytest

from m3lung.evaluate import bootstrap_figures, paired_bootstrap_pvalue

PAPER = ("Healthy", "COVID-19", "H1N1", "CAP")


def _system(n: int, acc: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    right = rng.random(n) < acc
    p = np.where(right, y, (y + rng.integers(1, 4, n)) % 4)
    s = rng.random((n, 4))
    s[np.arange(n), p] += 1
    return y, p, s


def test_interval_contains_the_point_and_narrows_with_more_patients():
    widths = []
    for n in (50, 800):
        y, p, s = _system(n, 0.8, 1)
        f = bootstrap_figures(y, p, s, classes=PAPER, n_resamples=500, seed=0)
        for key, (point, lo, hi) in f.items():
            if np.isfinite(lo):
                assert lo <= point <= hi, key
        widths.append(f["acc"][2] - f["acc"][1])
    assert widths[1] < widths[0] / 2


def test_seeded_and_grouped():
    y, p, s = _system(120, 0.7, 2)
    a = bootstrap_figures(y, p, s, classes=PAPER, n_resamples=300, seed=5)
    assert a == bootstrap_figures(y, p, s, classes=PAPER, n_resamples=300, seed=5)
    assert a["acc"] != bootstrap_figures(y, p, s, classes=PAPER, n_resamples=300, seed=6)["acc"]
    groups = np.repeat(np.arange(120), 3)  # every patient as three identical slices
    g = bootstrap_figures(
        np.repeat(y, 3), np.repeat(p, 3), np.repeat(s, 3, 0), classes=PAPER, n_resamples=300, seed=5, groups=groups
    )
    for key in ("acc", "macro_auc", "fpe", "auc[CAP]", "f1[H1N1]"):
        assert g[key] == pytest.approx(a[key]), key


def test_paired_pvalues():
    y, good, s_good = _system(300, 0.95, 3)
    _, bad, s_bad = _system(300, 0.6, 3)
    assert paired_bootstrap_pvalue(y, good, good, s_good, s_good, classes=PAPER, n_resamples=200) == 1.0
    assert paired_bootstrap_pvalue(y, good, bad, classes=PAPER, n_resamples=500) < 0.01
    p_auc = paired_bootstrap_pvalue(y, good, bad, s_good, s_bad, metric="macro_auc", classes=PAPER, n_resamples=500)
    assert p_auc < 0.01
