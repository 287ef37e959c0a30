"""Bootstrap intervals over patients and paired p-values."""

from __future__ import annotations

import numpy as np
import pytest

from m3lung.errors import InputError
from m3lung.evaluate import (
    bootstrap_figures,
    bootstrap_replicates,
    classification_figures,
    paired_bootstrap_pvalue,
    resample_counts,
)
from m3lung.evaluate.bootstrap import patient_units

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


def _close_or_both_nan(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-12


@pytest.mark.parametrize("grouped", [False, True])
def test_every_resample_equals_the_figures_of_the_resampled_patients(grouped):
    rng = np.random.default_rng(4)
    # grouped: 40 patients with 1..6 slices each, labels and scores varying within a patient
    groups = np.repeat(rng.permutation(40), rng.integers(1, 7, 40)) if grouped else None
    n = 40 if groups is None else groups.size
    y = rng.integers(0, 4, n)
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, 4, n))
    s = np.round(rng.random((n, 4)), 1)  # many ties
    reps = bootstrap_replicates(y, p, s, classes=PAPER, n_resamples=25, seed=9, groups=groups)
    unit, n_units = patient_units(n, groups)
    counts = resample_counts(n_units, n_resamples=25, seed=9)
    assert counts.shape == (25, n_units) and (counts.sum(1) == n_units).all()
    for r in range(25):
        rows = np.repeat(np.arange(n), counts[r][unit])  # every row as often as its patient was drawn
        direct = classification_figures(y[rows], p[rows], s[rows], classes=PAPER)
        assert set(direct) == set(reps)
        for key, value in direct.items():
            assert _close_or_both_nan(reps[key][r], value), (r, key)


def test_undefined_resamples_are_left_out():
    y = np.array([0] * 20 + [1] * 20 + [2])  # one H1N1 patient: absent from about a third of the resamples
    p = y.copy()
    s = np.eye(4)[y] + 0.1
    reps = bootstrap_replicates(y, p, s, classes=PAPER, n_resamples=200, seed=1)
    missing = np.isnan(reps["auc[H1N1]"])
    assert 0.2 < missing.mean() < 0.5 and np.isnan(reps["auc[CAP]"]).all()
    f = bootstrap_figures(y, p, s, classes=PAPER, n_resamples=200, seed=1)
    assert f["auc[H1N1]"] == (1.0, 1.0, 1.0) and f["sen[H1N1]"] == (1.0, 1.0, 1.0)
    assert all(np.isnan(v) for v in f["auc[CAP]"]) and all(np.isnan(v) for v in f["sen[CAP]"])
    assert f["macro_auc"] == (1.0, 1.0, 1.0)


def test_confidence_level_and_bad_settings():
    y, p, _ = _system(200, 0.8, 7)
    wide = bootstrap_figures(y, p, classes=PAPER, n_resamples=400, alpha=0.01)["acc"]
    narrow = bootstrap_figures(y, p, classes=PAPER, n_resamples=400, alpha=0.5)["acc"]
    assert wide[1] < narrow[1] <= narrow[0] <= narrow[2] < wide[2]
    for kwargs in ({"n_resamples": 0}, {"alpha": 1.0}, {"groups": np.zeros(3)}, {"n_resamples": 2.5}):
        with pytest.raises(InputError):
            bootstrap_figures(y, p, classes=PAPER, **kwargs)
    with pytest.raises(InputError):
        paired_bootstrap_pvalue(y, p, p, metric="auc[CAP]", classes=PAPER)  # no scores given
    with pytest.raises(InputError):
        paired_bootstrap_pvalue(y, p, p, metric="kappa", classes=PAPER)


def test_pvalue_is_symmetric_seeded_and_grouped():
    y, good, _ = _system(150, 0.8, 11)
    _, other, _ = _system(150, 0.7, 12)
    other = np.where(np.random.default_rng(0).random(150) < 0.5, good, other)  # correlated systems
    p_ab = paired_bootstrap_pvalue(y, good, other, classes=PAPER, n_resamples=300, seed=2)
    assert p_ab == paired_bootstrap_pvalue(y, other, good, classes=PAPER, n_resamples=300, seed=2)
    assert 1 / 301 <= p_ab <= 1
    # the same patients as three identical slices each, resampled by patient: the same p-value
    groups = np.repeat(np.arange(150), 3)
    rep = [np.repeat(v, 3) for v in (y, good, other)]
    assert paired_bootstrap_pvalue(*rep, classes=PAPER, n_resamples=300, seed=2, groups=groups) == pytest.approx(p_ab)
    # equal accuracy with different errors: d = 0 gives exactly 1
    a = np.array([0, 1, 2, 3, 0, 1])
    b = np.array([0, 1, 2, 3, 1, 0])
    assert paired_bootstrap_pvalue(a, a[[0, 1, 2, 3, 5, 4]], b, classes=PAPER) == 1.0
