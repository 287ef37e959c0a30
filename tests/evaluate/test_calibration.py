"""Calibration curve and the Hosmer–Lemeshow test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from m3lung.errors import InputError
from m3lung.evaluate import calibration_curve, hosmer_lemeshow


def test_hand_computed_example():
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    stat, dof, pv = hosmer_lemeshow(y, p, groups=3)
    # groups of 3 by sorted p: (O, E, n) = (1, 0.6, 3), (1, 1.5, 3), (2, 2.4, 3)
    expected = sum((o - e) ** 2 / (e * (1 - e / 3)) for o, e in ((1, 0.6), (1, 1.5), (2, 2.4)))
    assert stat == pytest.approx(expected) and dof == 1 and pv == pytest.approx(chi2.sf(expected, 1))


def test_calibrated_and_miscalibrated_scores():
    rng = np.random.default_rng(0)
    p = rng.random(2000)
    good = (rng.random(2000) < p).astype(int)
    bad = (rng.random(2000) < p**2).astype(int)
    assert hosmer_lemeshow(good, p)[2] > 0.05 and hosmer_lemeshow(bad, p)[2] < 1e-6
    curve = calibration_curve(good, p, n_bins=5)
    assert curve["count"].sum() == 2000 and np.abs(curve["observed"] - curve["mean_predicted"]).max() < 0.06
    assert len(calibration_curve(good, p, n_bins=4, strategy="uniform")["count"]) == 4


def test_bad_input():
    with pytest.raises(InputError):
        hosmer_lemeshow(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]), groups=3)
    with pytest.raises(InputError):
        hosmer_lemeshow(np.array([0, 1, 1]), np.array([0.1, 1.2, 0.3]), groups=3)
