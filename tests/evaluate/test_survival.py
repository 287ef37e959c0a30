"""Seed 003's prognosis statistics on simulated survival data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from m3lung.errors import InputError
from m3lung.evaluate.survival import CoxResult, cox_stepwise, kaplan_meier, logrank


def _cohort(seed: int, n: int = 800) -> pd.DataFrame:
    """Exponential times with hazard exp(1.0 · x1); x2, x3 are noise; exponential censoring."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, n))
    t = rng.exponential(1 / np.exp(1.0 * x1))
    c = rng.exponential(2, n)
    return pd.DataFrame({"T": np.minimum(t, c), "E": (t <= c).astype(int), "x1": x1, "x2": x2, "x3": x3})


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return _cohort(1)


@pytest.fixture(scope="module")
def fitted(cohort) -> CoxResult:
    return cox_stepwise(cohort, "T", "E", ["x1", "x2", "x3"])


@pytest.mark.parametrize(
    ("direction", "criterion"),
    [("both", "aic"), ("forward", "aic"), ("backward", "aic"), ("both", "p"), ("forward", "p"), ("backward", "p")],
)
def test_stepwise_finds_the_real_covariate(cohort, direction, criterion):
    r = cox_stepwise(cohort, "T", "E", ["x1", "x2", "x3"], direction=direction, criterion=criterion)
    assert "x1" in r.selected and not {"x2", "x3"} <= set(r.selected)
    hr = r.summary["x1"]
    assert 2.2 < hr["hazard_ratio"] < 3.3 and hr["ci_low"] < np.e < hr["ci_high"]  # true HR e¹
    assert hr["p"] < 1e-10 and hr["coef"] == pytest.approx(np.log(hr["hazard_ratio"]))
    assert r.concordance > 0.7 and r.steps
    assert r.aic == pytest.approx(r.model.AIC_partial_)


def test_aic_rule_agrees_with_the_likelihood_ratio_under_ties():
    # hospital stays in whole days: many tied times (lifelines uses Efron's ties, so must the null model's AIC)
    rng = np.random.default_rng(7)
    n = 300
    z = rng.normal(size=(6, n))
    df = pd.DataFrame({"T": np.ceil(rng.exponential(6 / np.exp(0.25 * z[0]))), "E": (rng.random(n) < 0.8).astype(int)})
    for i in range(6):
        df[f"z{i}"] = z[i]
    assert df["T"].nunique() < 40
    chosen = []
    for i in range(6):
        c = f"z{i}"
        lr = CoxPHFitter().fit(df[["T", "E", c]], "T", "E").log_likelihood_ratio_test().test_statistic
        r = cox_stepwise(df, "T", "E", [c])
        assert (r.selected == [c]) == (lr > 2.0)  # AIC falls iff 2 Δlog L > 2 · (1 parameter)
        if r.selected:
            chosen.append(c)
    assert "z0" in chosen and 1 <= len(chosen) < 6  # with these seeds: z0 (real) and z3 (LR 2.45)
    null = cox_stepwise(df, "T", "E", ["z1"])
    assert null.selected == [] and null.model is None and null.summary == {}
    assert null.aic == pytest.approx(CoxPHFitter().fit(df[["T", "E"]], "T", "E").AIC_partial_)
    assert null.concordance == 0.5 and (null.predict_hazard(df) == 1).all() and (null.risk_groups(df) == 0).all()


def test_collinear_candidate_is_skipped(cohort):
    df = cohort.assign(x4=2 * cohort["x1"])
    r = cox_stepwise(df, "T", "E", ["x1", "x4", "x2"])
    assert r.selected[0] in ("x1", "x4") and not {"x1", "x4"} <= set(r.selected)
    assert any(s.startswith("skip") for s in r.steps)
    with pytest.raises(InputError, match="could not be fitted"):
        cox_stepwise(df, "T", "E", ["x1", "x4"], direction="backward")


def test_partial_hazard_and_risk_groups(cohort, fitted):
    h = fitted.predict_hazard(cohort)
    beta = np.array([fitted.summary[c]["coef"] for c in fitted.selected])
    x = cohort[fitted.selected].to_numpy()
    np.testing.assert_allclose(np.log(h), (x - x.mean(0)) @ beta, atol=1e-9)  # exp((x − x̄)·β)
    g = fitted.risk_groups(cohort)
    assert g.dtype == np.int64 and set(np.unique(g)) == {0, 1}
    assert g.mean() == pytest.approx(0.5, abs=0.01)  # the training median splits the training set in halves
    assert fitted.median_hazard == pytest.approx(np.median(h))
    assert logrank(cohort["T"], cohort["E"], g)["p"] < 0.01
    # seed 003: the training cut-off applied to an independent validation cohort still separates
    val = _cohort(2, 300)
    gv = fitted.risk_groups(val)
    assert 0.3 < gv.mean() < 0.7 and logrank(val["T"], val["E"], gv)["p"] < 0.01


def test_kaplan_meier_matches_lifelines(cohort):
    km = kaplan_meier(cohort["T"], cohort["E"])
    ref = KaplanMeierFitter().fit(cohort["T"], cohort["E"])
    assert km["median"] == pytest.approx(ref.median_survival_time_)
    np.testing.assert_allclose(km["survival"], ref.survival_function_.to_numpy()[:, 0])
    np.testing.assert_allclose(km["timeline"], ref.timeline)
    assert np.all(np.diff(km["survival"]) <= 0) and np.all(km["ci_low"] <= km["survival"] + 1e-12)
    assert np.all(km["survival"] <= km["ci_high"] + 1e-12)
    assert km["at_risk"][0] == len(cohort) and np.all(np.diff(km["at_risk"]) <= 0)
    assert km["n"] == len(cohort) and km["events"] == int(cohort["E"].sum())
    # nobody has the event: the median survival is infinite
    assert kaplan_meier(np.array([1.0, 2.0, 3.0]), np.zeros(3))["median"] == np.inf


def test_logrank(cohort):
    d = np.r_[cohort["T"][:200], cohort["T"][:200]]
    e = np.r_[cohort["E"][:200], cohort["E"][:200]]
    same = logrank(d, e, np.repeat(["a", "b"], 200))
    assert same["p"] > 0.99 and same["dof"] == 1 and same["n_groups"] == 2
    tertile = np.digitize(cohort["x1"], np.quantile(cohort["x1"], [1 / 3, 2 / 3]))
    three = logrank(cohort["T"], cohort["E"], tertile)
    ref = multivariate_logrank_test(cohort["T"], tertile, cohort["E"])
    assert three["statistic"] == pytest.approx(ref.test_statistic) and three["dof"] == 2 and three["p"] < 1e-10
    two = logrank(cohort["T"], cohort["E"], tertile == 2)
    ref2 = multivariate_logrank_test(cohort["T"], tertile == 2, cohort["E"])
    assert two["statistic"] == pytest.approx(ref2.test_statistic) and two["p"] == pytest.approx(ref2.p_value)


def test_bad_input(cohort):
    d, e = cohort["T"].to_numpy(), cohort["E"].to_numpy()
    with pytest.raises(InputError, match="two groups"):
        logrank(d, e, np.zeros(len(d)))
    with pytest.raises(InputError, match="one value per patient"):
        logrank(d, e, np.zeros(3))
    with pytest.raises(InputError, match="non-negative"):
        kaplan_meier(-d, e)
    with pytest.raises(InputError, match="0/1"):
        kaplan_meier(d, e * 2)
    with pytest.raises(InputError, match="nope"):
        cox_stepwise(cohort, "T", "E", ["nope"])
    with pytest.raises(InputError, match="NaN"):
        cox_stepwise(cohort.assign(x2=np.where(cohort.index == 3, np.nan, cohort["x2"])), "T", "E", ["x1", "x2"])
    with pytest.raises(InputError, match="numeric"):
        cox_stepwise(cohort.assign(sex="F"), "T", "E", ["x1", "sex"])
    with pytest.raises(InputError, match="no events"):
        cox_stepwise(cohort.assign(E=0), "T", "E", ["x1"])
    with pytest.raises(InputError, match="p_enter"):
        cox_stepwise(cohort, "T", "E", ["x1"], criterion="p", p_enter=0.2, p_remove=0.1)
    with pytest.raises(InputError, match="direction"):
        cox_stepwise(cohort, "T", "E", ["x1"], direction="sideways")  # type: ignore[arg-type]
    r = cox_stepwise(cohort, "T", "E", ["x1"])
    with pytest.raises(InputError, match="x1"):
        r.risk_groups(cohort.drop(columns="x1"))
