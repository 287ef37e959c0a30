"""Prognosis statistics of seed 003 (Wang et al.): Kaplan–Meier, log-rank, Cox model with stepwise selection.

Seed 003 feeds the deep-learning feature with age, sex and comorbidity into a stepwise-selected Cox
proportional-hazards model (hospital stay as the time to event), splits patients into high and low
risk at the *training set's* median hazard, and compares the groups' Kaplan–Meier curves with the
log-rank test. lifelines does the fitting; this module does the selection and the bookkeeping.

Stepwise selection (``direction="both"``, the default): start from no covariate; at each step add the
candidate that improves the criterion most — the lowest AIC (``criterion="aic"``) or the smallest
Wald p-value below ``p_enter`` (``criterion="p"``) — then drop any selected covariate whose removal
improves the AIC, or whose p-value exceeds ``p_remove``; stop when nothing changes. ``"forward"``
only adds, ``"backward"`` starts from every candidate and only removes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from m3lung.errors import InputError


def kaplan_meier(durations: np.ndarray, events: np.ndarray) -> dict[str, Any]:
    """Survival curve with its 95 % interval: ``timeline``, ``survival``, ``ci_low``, ``ci_high``, ``median``."""
    from lifelines import KaplanMeierFitter

    d, e = _check_times(durations, events)
    km = KaplanMeierFitter().fit(d, e)
    ci = km.confidence_interval_survival_function_.to_numpy()
    return {
        "timeline": km.survival_function_.index.to_numpy(dtype=np.float64),
        "survival": km.survival_function_.to_numpy()[:, 0],
        "ci_low": ci[:, 0],
        "ci_high": ci[:, 1],
        "median": float(km.median_survival_time_),
    }


def logrank(durations: np.ndarray, events: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Log-rank test between two or more groups: ``statistic``, ``p``, ``dof``."""
    from lifelines.statistics import multivariate_logrank_test

    d, e = _check_times(durations, events)
    g = np.asarray(groups)
    if g.shape != d.shape or np.unique(g).size < 2:
        raise InputError("log-rank needs one group per patient and at least two groups")
    res = multivariate_logrank_test(d, g, e)
    return {"statistic": float(res.test_statistic), "p": float(res.p_value), "dof": float(res.degrees_of_freedom)}


def _check_times(durations: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(durations, dtype=np.float64).ravel()
    e = np.asarray(events).ravel()
    if d.shape != e.shape or d.size == 0:
        raise InputError("durations and events must be equally long non-empty vectors")
    if not np.isfinite(d).all() or (d < 0).any():
        raise InputError("durations must be finite and non-negative")
    if not np.isin(e, (0, 1, True, False)).all():
        raise InputError("events must be 0/1 (1 = the event happened, 0 = censored)")
    return d, e.astype(bool)


@dataclass
class CoxResult:
    """A fitted Cox model after stepwise selection (see the module docstring)."""

    selected: list[str]
    summary: dict[str, dict[str, float]]
    concordance: float
    aic: float
    median_hazard: float
    steps: list[str] = field(default_factory=list)
    model: Any = None

    def predict_hazard(self, df: Any) -> np.ndarray:
        """Partial hazard exp(xβ) of every row of ``df`` (which must hold the selected covariates)."""
        if not self.selected:
            return np.ones(len(df))
        return np.asarray(self.model.predict_partial_hazard(df[self.selected]), dtype=np.float64).ravel()

    def risk_groups(self, df: Any) -> np.ndarray:
        """1 = high risk (partial hazard above the training set's median), 0 = low risk."""
        return (self.predict_hazard(df) > self.median_hazard).astype(np.int64)


def _fit(df: Any, duration_col: str, event_col: str, covariates: Sequence[str], penalizer: float) -> Any:
    from lifelines import CoxPHFitter

    cph = CoxPHFitter(penalizer=penalizer)
    cph.fit(df[[duration_col, event_col, *covariates]], duration_col=duration_col, event_col=event_col)
    return cph


def _score(model: Any, criterion: str = "aic") -> float:
    return float(model.AIC_partial_)


def cox_stepwise(
    df: Any,
    duration_col: str,
    event_col: str,
    candidates: Sequence[str],
    *,
    direction: Literal["both", "forward", "backward"] = "both",
    criterion: Literal["aic", "p"] = "aic",
    p_enter: float = 0.05,
    p_remove: float = 0.10,
    penalizer: float = 0.0,
    max_steps: int = 100,
) -> CoxResult:
    """Stepwise-select covariates among ``candidates`` for a Cox model of ``df`` (a pandas DataFrame)."""
    missing = [c for c in (duration_col, event_col, *candidates) if c not in df.columns]
    if missing:
        raise InputError(f"columns not in the data: {', '.join(missing)}")
    if direction not in ("both", "forward", "backward") or criterion not in ("aic", "p"):
        raise InputError(f"unknown direction {direction!r} or criterion {criterion!r}")
    selected: list[str] = list(candidates) if direction == "backward" else []
    steps: list[str] = []

    def aic_of(cov: Sequence[str]) -> float:
        if not cov:
            # the null model: partial likelihood 0 parameters; fit with one covariate fixed is not
            # possible in lifelines, so compare against +inf (any covariate that fits is an improvement
            # only when its own test says so under criterion "p"; under "aic", AIC of the null model)
            return _null_aic(df, duration_col, event_col)
        return _score(_fit(df, duration_col, event_col, cov, penalizer), "aic")

    current = aic_of(selected)
    for _ in range(max_steps):
        changed = False
        if direction in ("both", "forward"):
            best: tuple[float, str] | None = None
            for c in candidates:
                if c in selected:
                    continue
                model = _fit(df, duration_col, event_col, [*selected, c], penalizer)
                if criterion == "aic":
                    value = _score(model, "aic")
                    if value < current and (best is None or value < best[0]):
                        best = (value, c)
                else:
                    pv = float(model.summary.loc[c, "p"])
                    if pv < p_enter and (best is None or pv < best[0]):
                        best = (pv, c)
            if best is not None:
                selected.append(best[1])
                current = aic_of(selected)
                steps.append(f"add {best[1]}")
                changed = True
        if direction in ("both", "backward") and selected:
            model = _fit(df, duration_col, event_col, selected, penalizer)
            drop: str | None = None
            if criterion == "aic":
                trials = {c: aic_of([s for s in selected if s != c]) for c in selected}
                c_best = min(trials, key=lambda c: trials[c])
                if trials[c_best] < current:
                    drop = c_best
            else:
                pvals = model.summary["p"]
                worst = str(pvals.idxmax())
                if float(pvals.max()) > p_remove:
                    drop = worst
            if drop is not None:
                selected.remove(drop)
                current = aic_of(selected)
                steps.append(f"remove {drop}")
                changed = True
        if not changed:
            break
    final = _fit(df, duration_col, event_col, selected, penalizer) if selected else None
    summary: dict[str, dict[str, float]] = {}
    if final is not None:
        s = final.summary
        for c in selected:
            summary[c] = {
                "hazard_ratio": float(s.loc[c, "exp(coef)"]),
                "ci_low": float(s.loc[c, "exp(coef) lower 95%"]),
                "ci_high": float(s.loc[c, "exp(coef) upper 95%"]),
                "p": float(s.loc[c, "p"]),
            }
    result = CoxResult(
        selected=selected,
        summary=summary,
        concordance=float(final.concordance_index_) if final is not None else 0.5,
        aic=current,
        median_hazard=1.0,
        steps=steps,
        model=final,
    )
    result.median_hazard = float(np.median(result.predict_hazard(df)))
    return result


def _null_aic(df: Any, duration_col: str, event_col: str) -> float:
    """AIC of the Cox model without covariates: −2 log partial likelihood (Breslow ties), no parameters."""
    d = df[duration_col].to_numpy(dtype=np.float64)
    e = df[event_col].to_numpy().astype(bool)
    # log partial likelihood with all hazards equal: Σ over events of −log(number at risk)
    at_risk = (d[None, :] >= d[e][:, None]).sum(1)
    return float(2 * np.log(at_risk).sum())
