"""Seed 003's prognosis statistics on simulated survival data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from m3lung.errors import InputError
from m3lung.evaluate.survival import cox_stepwise, kaplan_meier, logrank


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(1)
    n = 1000
    x1, x2, x3 = rng.normal(size=(3, n))
    t = rng.exponential(1 / np.exp(1.0 * x1))  # true log-hazard ratio of x1: 1.0; x2, x3 noise
    c = rng.exponential(2, n)
    return pd.DataFrame({"T": np.minimum(t, c), "E": (t <= c).astype(int), "x1": x1, "x2": x2, "x3": x3})


@pytest.mark.parametrize(("direction", "criterion"), [("both", "aic"), ("forward", "p"), ("backward", "p")])
def test_stepwise_finds_the_real_covariate(cohort, direction, criterion):
    r = cox_stepwise(cohort, "T", "E", ["x1", "x2", "x3"], direction=direction, criterion=criterion)
    assert "x1" in r.selected and not {"x2", "x3"} <= set(r.selected)
    hr = r.summary["x1"]
    assert 2.2 < hr["hazard_ratio"] < 3.3 and hr["ci_low"] < np.e < hr["ci_high"]
    assert r.concordance > 0.7


def test_risk_groups_by_median_hazard_separate(cohort):
    r = cox_stepwise(cohort, "T", "E", ["x1", "x2", "x3"])
    g = r.risk_groups(cohort)
    assert 0.45 < g.mean() < 0.55  # the training median splits the training set in halves
    assert logrank(cohort["T"], cohort["E"], g)["p"] < 0.01


def test_kaplan_meier_and_identical_groups(cohort):
    km = kaplan_meier(cohort["T"], cohort["E"])
    assert km["median"] == pytest.approx(KaplanMeierFitter().fit(cohort["T"], cohort["E"]).median_survival_time_)
    assert np.all(np.diff(km["survival"]) <= 0) and np.all(km["ci_low"] <= km["survival"])
    d = np.r_[cohort["T"][:200], cohort["T"][:200]]
    e = np.r_[cohort["E"][:200], cohort["E"][:200]]
    assert logrank(d, e, np.repeat([0, 1], 200))["p"] > 0.99
    with pytest.raises(InputError):
        logrank(d, e, np.zeros(400))
    with pytest.raises(InputError):
        cox_stepwise(cohort, "T", "E", ["nope"])
