"""Prognosis statistics of seed 003 (Wang et al.): Kaplan–Meier, log-rank, Cox model with stepwise selection.

Seed 003 feeds the deep-learning feature with age, sex and comorbidity into a stepwise-selected Cox
proportional-hazards model (hospital stay as the time to event), splits patients into high and low
risk at the *training set's* median hazard, applies the same cut-off to the validation sets, and
compares the groups' Kaplan–Meier curves with the log-rank test. lifelines does the estimation
(``KaplanMeierFitter``, ``CoxPHFitter`` with Efron's handling of tied times, ``logrank_test``,
``multivariate_logrank_test``); this module adds input checks, the stepwise search and the risk split. lifelines is
an optional extra (``pip install 'm3lung[survival]'``), imported when a function here runs.

Durations are in any unit (seed 003: days in hospital); ``events`` is 1 where the event was observed
(discharge) and 0 where the patient was censored.

Stepwise selection (:func:`cox_stepwise`)
    ``criterion="aic"``: like R's ``step``/``stepAIC``. Every step tries each allowed move — adding
    one candidate that is not selected (``"forward"``, ``"both"``), removing one that is
    (``"backward"``, ``"both"``) — and makes the one with the lowest partial AIC,
    ``AIC = −2 log PL + 2 k`` (lifelines' ``AIC_partial_``; the model without covariates has
    ``k = 0``), as long as it is lower than the current model's AIC. The AIC falls at every step, so
    the search ends.

    ``criterion="p"``: the classic entry/removal rule. Every step first adds the unselected candidate
    with the smallest Wald p-value (in the model of the selected covariates plus that candidate) if
    that p-value is below ``p_enter`` (``"forward"``, ``"both"``), then removes the selected
    covariate with the largest Wald p-value if it is above ``p_remove`` (``"backward"``, ``"both"``).
    ``p_enter <= p_remove`` is required, and a set of covariates met before ends the search, so it
    cannot cycle.

    ``"forward"`` and ``"both"`` start without covariates, ``"backward"`` with all candidates. A
    candidate set whose Cox fit fails (no convergence, collinear covariates) is skipped and noted in
    :attr:`CoxResult.steps`. The reported hazard ratios, intervals and p-values come from the final
    model and ignore the selection (as is usual, and as in seed 003).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from m3lung._extras import require
from m3lung.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


def _check_times(durations: Any, events: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float64 durations >= 0 and (N,) bool events; InputError otherwise."""
    d = np.asarray(durations, dtype=np.float64)
    e = np.asarray(events)
    if d.ndim != 1 or e.shape != d.shape or d.size == 0:
        raise InputError(
            f"durations and events must be equally long, non-empty vectors (N,), got shapes {d.shape} and {e.shape}"
        )
    if not np.isfinite(d).all() or (d < 0).any():
        raise InputError("durations must be finite and non-negative")
    if e.dtype.kind not in "biuf" or not np.isin(e, (0, 1)).all():
        raise InputError("events must be 0/1 (1 = the event happened, 0 = censored)")
    return d, e.astype(bool)


def _check_groups(groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups)
    if g.shape != (n,):
        raise InputError(f"groups must hold one value per patient ({n},), got shape {g.shape}")
    if g.dtype.kind == "f" and not np.isfinite(g).all():
        raise InputError("groups must not contain NaN")
    return g


def kaplan_meier(durations: np.ndarray, events: np.ndarray, *, alpha: float = 0.05) -> dict[str, Any]:
    """Kaplan–Meier estimate of the survival function (lifelines ``KaplanMeierFitter``).

    Parameters
    ----------
    durations : (N,) array of float >= 0
        Time to the event or to censoring.
    events : (N,) array of 0/1
        1 = the event was observed, 0 = censored.
    alpha : float
        The confidence band is ``1 − alpha`` (lifelines' exponential Greenwood interval).

    Returns
    -------
    dict
        ``timeline`` (T,) times (0 and every distinct duration), ``survival`` (T,) S(t), ``ci_low``
        and ``ci_high`` (T,) the band, ``at_risk`` (T,) patients at risk just before each time,
        ``median`` the median survival time (inf when S(t) never falls to 0.5), ``n`` and ``events``.
    """
    require("lifelines", "survival", "survival statistics")
    from lifelines import KaplanMeierFitter

    d, e = _check_times(durations, events)
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be within (0, 1), got {alpha}")
    km = KaplanMeierFitter(alpha=alpha).fit(d, e)
    ci = km.confidence_interval_survival_function_.to_numpy(dtype=np.float64)
    timeline = km.survival_function_.index.to_numpy(dtype=np.float64)
    return {
        "timeline": timeline,
        "survival": km.survival_function_.to_numpy(dtype=np.float64)[:, 0],
        "ci_low": ci[:, 0],
        "ci_high": ci[:, 1],
        "at_risk": km.event_table["at_risk"].reindex(timeline).to_numpy(dtype=np.int64),
        "median": float(km.median_survival_time_),
        "n": int(d.size),
        "events": int(e.sum()),
    }


def logrank(durations: np.ndarray, events: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Log-rank test that two or more groups share one survival function.

    Parameters
    ----------
    durations : (N,) array of float >= 0
        Time to the event or to censoring.
    events : (N,) array of 0/1
        1 = the event was observed, 0 = censored.
    groups : (N,) array
        Group of every patient (any labels; at least two distinct values).

    Returns
    -------
    dict
        ``statistic`` (chi-square), ``p`` (p-value), ``dof`` (groups − 1) and ``n_groups``.
        Two groups use lifelines ``logrank_test``, more ``multivariate_logrank_test``.
    """
    require("lifelines", "survival", "survival statistics")
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    d, e = _check_times(durations, events)
    g = _check_groups(groups, d.size)
    values = np.unique(g)
    if values.size < 2:
        raise InputError(f"the log-rank test needs at least two groups, got {values.size}")
    if values.size == 2:
        a, b = g == values[0], g == values[1]
        res = logrank_test(d[a], d[b], event_observed_A=e[a], event_observed_B=e[b])
    else:
        res = multivariate_logrank_test(d, g, e)
    return {
        "statistic": float(res.test_statistic),
        "p": float(res.p_value),
        "dof": float(values.size - 1),
        "n_groups": float(values.size),
    }


@dataclass
class CoxResult:
    """A Cox proportional-hazards model after stepwise selection (see the module docstring).

    Attributes
    ----------
    selected : list of str
        Covariates of the final model, in the order they were selected (``"backward"``: the order of
        the candidates).
    summary : dict
        Per selected covariate: ``coef`` (log hazard ratio per unit), ``hazard_ratio``, ``ci_low`` and
        ``ci_high`` (95 % interval of the hazard ratio), ``se`` and ``p`` (Wald test), all floats.
    concordance : float
        Harrell's C of the final model on the training data (0.5 without covariates).
    aic : float
        Partial AIC of the final model.
    median_hazard : float
        Median partial hazard of the training data: the cut-off between low and high risk.
    steps : list of str
        The moves the search made (``"add x1 (AIC 812.3)"``, ``"remove x3 (p 0.41)"``) and skipped
        fits.
    model : lifelines.CoxPHFitter or None
        The fitted final model (None without covariates).
    """

    selected: list[str]
    summary: dict[str, dict[str, float]]
    concordance: float
    aic: float
    median_hazard: float = 1.0
    steps: list[str] = field(default_factory=list)
    model: Any = None

    def predict_hazard(self, df: pd.DataFrame) -> np.ndarray:
        """Partial hazard of every row of ``df``, shape (len(df),).

        ``exp((x − x̄) · β)`` with ``x̄`` the training means of the selected covariates (lifelines'
        ``predict_partial_hazard``): the hazard relative to an average training patient. All ones
        when no covariate was selected. ``df`` must hold the selected covariates, finite.
        """
        if not self.selected or self.model is None:
            return np.ones(len(df), dtype=np.float64)
        x = _covariates(df, self.selected)
        return np.asarray(self.model.predict_partial_hazard(x), dtype=np.float64).ravel()

    def risk_groups(self, df: pd.DataFrame) -> np.ndarray:
        """(len(df),) int64: 1 = high risk (partial hazard above :attr:`median_hazard`), 0 = low risk.

        The cut-off is the training set's median, also for other data (seed 003's validation sets);
        a hazard exactly at the median counts as low risk.
        """
        return (self.predict_hazard(df) > self.median_hazard).astype(np.int64)


def _covariates(df: Any, names: Sequence[str]) -> Any:
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise InputError(f"columns not in the data: {', '.join(map(str, missing))}")
    x = df[list(names)]
    try:
        values = x.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"covariates must be numeric (encode categories as 0/1 columns): {exc}") from exc
    if not np.isfinite(values).all():
        bad = [c for c, ok in zip(names, np.isfinite(values).all(axis=0), strict=True) if not ok]
        raise InputError(f"covariates contain NaN or infinite values: {', '.join(map(str, bad))}")
    return x


class _Fitter:
    """Fits Cox models of covariate subsets of one data set, each subset once."""

    def __init__(self, df: Any, duration_col: str, event_col: str, penalizer: float) -> None:
        self.df = df
        self.duration_col = duration_col
        self.event_col = event_col
        self.penalizer = penalizer
        self.cache: dict[frozenset[str], Any] = {}

    def fit(self, covariates: Sequence[str]) -> Any:
        """The fitted ``CoxPHFitter``, or None when the fit fails."""
        require("lifelines", "survival", "survival statistics")
        from lifelines import CoxPHFitter
        from lifelines.exceptions import ConvergenceError

        key = frozenset(covariates)
        if key not in self.cache:
            cols = [self.duration_col, self.event_col, *covariates]
            try:
                model = CoxPHFitter(penalizer=self.penalizer if covariates else 0.0).fit(
                    self.df[cols], duration_col=self.duration_col, event_col=self.event_col
                )
            except (ConvergenceError, np.linalg.LinAlgError, ZeroDivisionError):
                model = None
            self.cache[key] = model
        return self.cache[key]


def cox_stepwise(
    df: pd.DataFrame,
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
    """Select covariates among ``candidates`` for a Cox model of ``df`` stepwise (module docstring).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient: the duration, the event indicator and the numeric candidate covariates.
    duration_col, event_col : str
        Columns of the time to event (>= 0) and of the event indicator (1 = observed, 0 = censored).
    candidates : sequence of str
        Covariates the search may use (seed 003: the deep-learning feature(s), age, sex, comorbidity).
    direction : {"both", "forward", "backward"}
        Moves allowed (module docstring).
    criterion : {"aic", "p"}
        Partial AIC or Wald p-values with ``p_enter`` / ``p_remove``.
    p_enter, p_remove : float
        Thresholds of ``criterion="p"``; ``0 < p_enter <= p_remove <= 1``.
    penalizer : float
        L2 penalty of lifelines' ``CoxPHFitter`` (0 = plain partial likelihood; the AIC then uses
        the penalised likelihood).
    max_steps : int
        Upper bound on the number of moves.

    Returns
    -------
    CoxResult
        The selected covariates, the final model's summary, concordance and AIC, and the training
        median partial hazard that splits low from high risk.
    """
    if direction not in ("both", "forward", "backward"):
        raise InputError(f"direction must be 'both', 'forward' or 'backward', got {direction!r}")
    if criterion not in ("aic", "p"):
        raise InputError(f"criterion must be 'aic' or 'p', got {criterion!r}")
    if not 0 < p_enter <= p_remove <= 1:
        raise InputError(f"need 0 < p_enter <= p_remove <= 1, got p_enter={p_enter}, p_remove={p_remove}")
    if penalizer < 0:
        raise InputError(f"penalizer must be >= 0, got {penalizer}")
    cands = list(dict.fromkeys(candidates))
    if not cands:
        raise InputError("no candidate covariates given")
    if duration_col in cands or event_col in cands:
        raise InputError("the duration and event columns cannot be candidate covariates")
    for col in (duration_col, event_col):
        if col not in df.columns:
            raise InputError(f"column {col!r} not in the data")
    d, e = _check_times(df[duration_col].to_numpy(), df[event_col].to_numpy())
    if not e.any():
        raise InputError("no events in the data: a Cox model cannot be fitted")
    x = _covariates(df, cands)
    data = x.astype(np.float64)
    data.insert(0, event_col, e.astype(np.int64))
    data.insert(0, duration_col, d)

    fitter = _Fitter(data, duration_col, event_col, penalizer)
    selected = list(cands) if direction == "backward" else []
    start = fitter.fit(selected)
    if start is None:
        raise InputError(
            f"the Cox model of {', '.join(selected) or 'no covariates'} could not be fitted (collinear covariates or "
            "no convergence): drop redundant candidates, or use direction='forward'"
        )
    steps: list[str] = []
    skipped: set[frozenset[str]] = set()

    def fit_or_note(cov: list[str]) -> Any:
        model = fitter.fit(cov)
        if model is None and frozenset(cov) not in skipped:
            skipped.add(frozenset(cov))
            steps.append(f"skip {' + '.join(cov)}: the Cox fit failed (collinear or not converging)")
        return model

    can_add = direction in ("both", "forward")
    can_remove = direction in ("both", "backward")
    current = float(start.AIC_partial_)
    seen = {frozenset(selected)}
    for _ in range(max_steps):
        if criterion == "aic":
            moves: list[tuple[float, str, list[str]]] = []
            if can_add:
                for c in cands:
                    if c not in selected and (m := fit_or_note([*selected, c])) is not None:
                        moves.append((float(m.AIC_partial_), f"add {c}", [*selected, c]))
            if can_remove:
                for c in selected:
                    rest = [s for s in selected if s != c]
                    if (m := fit_or_note(rest)) is not None:
                        moves.append((float(m.AIC_partial_), f"remove {c}", rest))
            if not moves:
                break
            aic, what, new = min(moves, key=lambda mv: mv[0])
            if not aic < current:
                break
            selected, current = new, aic
            steps.append(f"{what} (AIC {aic:.2f})")
            continue
        changed = False
        if can_add:
            best: tuple[float, str] | None = None
            for c in cands:
                if c in selected or frozenset([*selected, c]) in seen:
                    continue
                m = fit_or_note([*selected, c])
                if m is not None:
                    pv = float(m.summary.loc[c, "p"])
                    if pv < p_enter and (best is None or pv < best[0]):
                        best = (pv, c)
            if best is not None:
                selected = [*selected, best[1]]
                seen.add(frozenset(selected))
                steps.append(f"add {best[1]} (p {best[0]:.3g})")
                changed = True
        if can_remove and selected:
            m = fitter.fit(selected)
            pvals = m.summary["p"]
            worst = str(pvals.idxmax())
            rest = [s for s in selected if s != worst]
            if float(pvals.max()) > p_remove and frozenset(rest) not in seen and fit_or_note(rest) is not None:
                selected = rest
                seen.add(frozenset(selected))
                steps.append(f"remove {worst} (p {float(pvals.max()):.3g})")
                changed = True
        if not changed:
            break

    final = fitter.fit(selected) if selected else None
    summary: dict[str, dict[str, float]] = {}
    if final is not None:
        s = final.summary
        for c in selected:
            summary[c] = {
                "coef": float(s.loc[c, "coef"]),
                "hazard_ratio": float(s.loc[c, "exp(coef)"]),
                "ci_low": float(s.loc[c, "exp(coef) lower 95%"]),
                "ci_high": float(s.loc[c, "exp(coef) upper 95%"]),
                "se": float(s.loc[c, "se(coef)"]),
                "p": float(s.loc[c, "p"]),
            }
    result = CoxResult(
        selected=selected,
        summary=summary,
        concordance=float(final.concordance_index_) if final is not None else 0.5,
        aic=float(final.AIC_partial_) if final is not None else float(fitter.fit([]).AIC_partial_),
        steps=steps,
        model=final,
    )
    result.median_hazard = float(np.median(result.predict_hazard(data)))
    return result
