"""Calibration curve and the Hosmer–Lemeshow test (seed 003's calibration analysis)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2
from sklearn.calibration import calibration_curve as sk_calibration_curve

from m3lung.errors import InputError
from m3lung.evaluate.calibration import calibration_curve, hosmer_lemeshow


def _hl_by_hand(groups_ope):
    """H from (O, E, n) per group."""
    return sum((o - e) ** 2 / (e * (1 - e / n)) for o, e, n in groups_ope)


def test_hand_computed_example():
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    # three groups of three by sorted p: (O, E, n) = (1, 0.6, 3), (1, 1.5, 3), (2, 2.4, 3)
    expected = _hl_by_hand([(1, 0.6, 3), (1, 1.5, 3), (2, 2.4, 3)])
    perm = np.random.default_rng(0).permutation(9)
    stat, dof, pv = hosmer_lemeshow(y[perm], p[perm], groups=3)
    assert stat == pytest.approx(expected) and dof == 1 and pv == pytest.approx(chi2.sf(expected, 1))


def test_ties_stay_in_one_group():
    # blocks of ties: 0.2 x4 (ranks 1-4, middle 2.5 -> group 0), 0.5 x2 (middle 5.5 -> 1), 0.8 x3 (middle 8 -> 2)
    p = np.array([0.2] * 4 + [0.5] * 2 + [0.8] * 3)
    y = np.array([0, 1, 0, 0, 1, 0, 1, 1, 0])
    expected = _hl_by_hand([(1, 0.8, 4), (1, 1.0, 2), (2, 2.4, 3)])
    assert expected == pytest.approx(0.04 / 0.64 + 0.16 / 0.48)
    stat, dof, _ = hosmer_lemeshow(y, p, groups=3)
    assert stat == pytest.approx(expected) and dof == 1
    # rounded probabilities: many ties, yet the result does not depend on the order of the rows
    rng = np.random.default_rng(3)
    q = np.round(rng.random(500), 1)
    yy = (rng.random(500) < q).astype(int)
    perm = rng.permutation(500)
    assert hosmer_lemeshow(yy, q) == pytest.approx(hosmer_lemeshow(yy[perm], q[perm]), rel=1e-12)


def test_deciles_match_equal_split_without_ties():
    rng = np.random.default_rng(5)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(int)
    order = np.argsort(p)
    parts = [(y[i].sum(), p[i].sum(), i.size) for i in np.array_split(order, 10)]
    stat, dof, pv = hosmer_lemeshow(y, p)
    assert stat == pytest.approx(_hl_by_hand(parts)) and dof == 8 and pv == pytest.approx(chi2.sf(stat, 8))


def test_empty_and_degenerate_groups():
    # only two distinct probabilities: fewer than 3 groups, the test is undefined
    stat, dof, pv = hosmer_lemeshow(np.array([0, 1] * 10), np.array([0.3] * 10 + [0.6] * 10))
    assert np.isnan(stat) and dof == 0 and np.isnan(pv)
    # five distinct values for 10 groups: 5 non-empty groups, 3 degrees of freedom
    p = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 20)
    y = (np.random.default_rng(0).random(100) < p).astype(int)
    assert hosmer_lemeshow(y, p)[1] == 3
    # a group of p = 0 whose outcomes agree adds nothing; one that has an event makes H infinite
    p = np.array([0.0, 0.0, 0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1])
    assert hosmer_lemeshow(y, p, groups=3)[0] == pytest.approx(_hl_by_hand([(1, 1.5, 3), (2, 2.4, 3)]))
    y[0] = 1
    assert hosmer_lemeshow(y, p, groups=3) == (np.inf, 1, 0.0)


def test_calibrated_and_miscalibrated_scores():
    rng = np.random.default_rng(0)
    p = rng.random(2000)
    good = (rng.random(2000) < p).astype(int)  # y ~ Bernoulli(p): calibrated
    bad = (rng.random(2000) < p**2).astype(int)  # y ~ Bernoulli(p²): p over-predicts
    assert hosmer_lemeshow(good, p)[2] > 0.05
    assert hosmer_lemeshow(bad, p)[2] < 1e-6
    curve = calibration_curve(good, p, n_bins=5)
    assert curve["count"].sum() == 2000 and np.abs(curve["observed"] - curve["mean_predicted"]).max() < 0.06
    over = calibration_curve(bad, p, n_bins=5)
    assert (over["observed"] < over["mean_predicted"]).all()


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_curve_matches_scikit_learn(strategy):
    rng = np.random.default_rng(2)
    p = rng.beta(2, 5, 700)
    y = (rng.random(700) < p).astype(int)
    curve = calibration_curve(y, p, n_bins=8, strategy=strategy)
    prob_true, prob_pred = sk_calibration_curve(y, p, n_bins=8, strategy=strategy)
    np.testing.assert_allclose(curve["observed"], prob_true)
    np.testing.assert_allclose(curve["mean_predicted"], prob_pred)
    assert curve["count"].sum() == 700 and curve["count"].dtype == np.int64
    if strategy == "quantile":
        assert curve["count"].min() >= 87 and curve["count"].max() <= 88


def test_curve_keeps_ties_together_and_drops_empty_bins():
    p = np.array([0.0] * 6 + [0.25, 0.5, 0.75, 1.0])
    y = np.array([0] * 6 + [0, 1, 1, 1])
    # quantile edges 0, 0, 0, 0.1, 0.55, 1; bins (lower, upper]: {0 x6}, {}, {}, {0.25, 0.5}, {0.75, 1}
    curve = calibration_curve(y, p, n_bins=5)
    assert curve["count"].tolist() == [6, 2, 2]
    np.testing.assert_allclose(curve["mean_predicted"], [0.0, 0.375, 0.875])
    np.testing.assert_allclose(curve["observed"], [0.0, 0.5, 1.0])
    assert calibration_curve(y, p, n_bins=4, strategy="uniform")["count"].tolist() == [7, 1, 1, 1]


@pytest.mark.parametrize(
    ("y", "p", "kwargs"),
    [
        ([0, 2, 1], [0.1, 0.2, 0.3], {}),
        ([0, 1, 1], [0.1, 1.2, 0.3], {}),
        ([0, 1, 1], [0.1, np.nan, 0.3], {}),
        ([0, 1], [0.1, 0.2, 0.3], {}),
        ([], [], {}),
        ([0, 1, 1], [0.1, 0.2, 0.3], {"groups": 2}),
        ([0, 1, 1], [0.1, 0.2, 0.3], {"groups": 4}),
    ],
)
def test_bad_input(y, p, kwargs):
    with pytest.raises(InputError):
        hosmer_lemeshow(np.array(y), np.array(p), **kwargs)


def test_bad_curve_settings():
    y, p = np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="strategy"):
        calibration_curve(y, p, strategy="kmeans")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="n_bins"):
        calibration_curve(y, p, n_bins=0)
