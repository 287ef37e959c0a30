"""Bootstrap over patients: 95 % intervals for every figure, and paired p-values between two systems.

Resamples draw *patients* with replacement, the papers' way (seed 001: "95 % CI by bootstrap over
patients, 1000 resamples"; its p-values from the same resamples evaluated for both systems). Rows
are patients; with ``groups`` rows are slices (or anything finer) and a patient's rows go in or out
together, as often as the patient is drawn.

A resample is held as patient multiplicities: ``counts[r, g]`` is how often patient g was drawn
into resample r (:func:`resample_counts`; the R × G draws come from one ``Generator.integers`` call
per block of resamples and are turned into counts by one ``bincount``). Every figure then follows
without building the resampled data:

* confusion matrices of all resamples = counts (R, G) @ per-patient confusion counts (G, K·K), so
  every count figure (accuracy, Sen/Spec/precision/F1, FPE/FNE/FDPE) comes from one (R, K, K) stack;
* AUCs are weighted Mann–Whitney statistics. The rows are sorted by score once per class; for a
  resample each row weighs its patient's count, and the weights of positives and negatives summed
  per distinct score (ties) give U = Σ pos-weight × (negative weight below + ½ negative weight
  tied) exactly, with no per-resample sort. A resample lacking a class gets NaN.

Work is done in blocks of about 4 M array elements, so slice-level data (tens of thousands of rows)
needs no more memory than patient-level data. Resamples depend only on ``seed``, ``n_resamples``
and the number of patients, so a data set whose every patient is one row and the same data with
each row split into several identical slices give the same intervals.

Intervals are percentile intervals of the resampled figures, NaN resamples left out (all NaN: NaN
interval). The paired p-value is two-sided and shift-to-null: with d the observed difference
metric(A) − metric(B) and d*ᵢ the resampled ones (the same patients for both systems),
p = (1 + #{i : |d*ᵢ − d| ≥ |d|}) / (1 + R) over the R resamples where the difference is defined.
The +1 keeps p above 0 (its floor is 1/(R + 1), 0.000999 for R = 1000, matching seed 001's
"p < 0.001"); d = 0 (a system against itself, or two systems equally good on the data) gives
exactly 1; an undefined d gives NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from m3lung.errors import InputError
from m3lung.evaluate.classification import (
    _div,
    _nanmean,
    check_classes,
    check_inputs,
    classification_figures,
    count_figures,
)

#: elements of one block of resampled arrays (counts (r, G) or row weights (r, N)); bounds memory
_BLOCK = 1 << 22


@dataclass(frozen=True)
class _ScoreColumn:
    """One class's scores, rows sorted by score: patient (N,), positive (N,) and first row of each tie run (L,)."""

    unit: np.ndarray
    positive: np.ndarray
    starts: np.ndarray


@dataclass(frozen=True)
class _System:
    """One system's data as needed per resample: per-patient confusion counts (G, K·K) and score columns."""

    unit_conf: np.ndarray
    columns: tuple[_ScoreColumn, ...] | None


def patient_units(n_rows: int, groups: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Patient index 0..G-1 of each row (N,) and the number of patients G.

    Without ``groups`` every row is its own patient; otherwise ``groups`` (N,) holds any patient key
    (ids, names) per row.
    """
    if groups is None:
        return np.arange(n_rows), n_rows
    g = np.asarray(groups)
    if g.shape != (n_rows,):
        raise InputError(f"groups must give one patient per row ({n_rows},), got shape {g.shape}")
    _, inverse = np.unique(g, return_inverse=True)
    unit = inverse.reshape(-1).astype(np.int64)
    return unit, int(unit.max()) + 1


def _count_blocks(n_units: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Multiplicities (r, G) int64 of consecutive blocks of resamples (module docstring)."""
    rng = np.random.default_rng(seed)
    per = max(1, _BLOCK // n_units)
    for start in range(0, n_resamples, per):
        r = min(per, n_resamples - start)
        idx = rng.integers(0, n_units, size=(r, n_units))
        flat = (np.arange(r)[:, None] * n_units + idx).ravel()
        yield np.bincount(flat, minlength=r * n_units).reshape(r, n_units)


def resample_counts(n_units: int, *, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """How often each of ``n_units`` patients is drawn into each resample: (n_resamples, n_units) int64.

    These are the resamples that :func:`bootstrap_figures`, :func:`bootstrap_replicates` and
    :func:`paired_bootstrap_pvalue` use for the same ``seed``; every row sums to ``n_units``.
    """
    _check_settings(n_resamples, 0.05)
    if n_units < 1:
        raise InputError(f"need at least one patient to resample, got {n_units}")
    return np.concatenate(list(_count_blocks(n_units, n_resamples, seed)))


def _check_settings(n_resamples: int, alpha: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise InputError(f"n_resamples must be a whole number >= 1, got {n_resamples!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")


def _prepare(y: np.ndarray, p: np.ndarray, s: np.ndarray | None, unit: np.ndarray, n_units: int, k: int) -> _System:
    unit_conf = np.bincount(unit * k * k + y * k + p, minlength=n_units * k * k).reshape(n_units, k * k)
    columns = None
    if s is not None:
        cols = []
        for j in range(k):
            order = np.argsort(s[:, j], kind="stable")
            sorted_s = s[order, j]
            starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
            cols.append(_ScoreColumn(unit[order], y[order] == j, starts))
        columns = tuple(cols)
    return _System(unit_conf.astype(np.float64), columns)


def _weighted_auc(col: _ScoreColumn, counts: np.ndarray) -> np.ndarray:
    """AUC (r,) of one class for resamples given as patient multiplicities ``counts`` (r, G) float64."""
    r = counts.shape[0]
    n = col.unit.size
    out = np.empty(r)
    step = max(1, _BLOCK // n)
    ties = col.starts.size < n
    for a in range(0, r, step):
        w = counts[a : a + step][:, col.unit]  # weight of every sorted row, (s, N)
        pos = np.where(col.positive, w, 0.0)
        neg = w - pos
        if ties:
            pos = np.add.reduceat(pos, col.starts, axis=1)
            neg = np.add.reduceat(neg, col.starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        u = (pos * (below + 0.5 * neg)).sum(1)
        out[a : a + step] = _div(u, pos.sum(1) * neg.sum(1))
    return out


def _block_figures(
    system: _System, counts: np.ndarray, classes: tuple[str, ...], healthy: int | None, scores: bool
) -> dict[str, np.ndarray]:
    k = len(classes)
    c = counts.astype(np.float64)
    figs = count_figures((c @ system.unit_conf).reshape(-1, k, k), classes, healthy)
    if scores and system.columns is not None:
        aucs = np.stack([_weighted_auc(col, c) for col in system.columns], 1)
        figs.update({f"auc[{name}]": aucs[:, j] for j, name in enumerate(classes)})
        figs["macro_auc"] = _nanmean(aucs)
    return figs


def _replicates(
    systems: Sequence[_System],
    n_units: int,
    classes: tuple[str, ...],
    healthy: int | None,
    n_resamples: int,
    seed: int,
    scores: bool = True,
) -> list[dict[str, np.ndarray]]:
    blocks: list[list[dict[str, np.ndarray]]] = [[] for _ in systems]
    for counts in _count_blocks(n_units, n_resamples, seed):
        for i, system in enumerate(systems):
            blocks[i].append(_block_figures(system, counts, classes, healthy, scores))
    return [{key: np.concatenate([b[key] for b in bs]) for key in bs[0]} for bs in blocks]


def bootstrap_replicates(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    *,
    classes: Sequence[str],
    healthy: int | None = 0,
    n_resamples: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every figure of :func:`~m3lung.evaluate.classification_figures` on each bootstrap resample.

    Parameters are those of :func:`bootstrap_figures`. Returns the same keys, each an
    (n_resamples,) float64 array (NaN where the figure is undefined on that resample); resample r
    is the data with patient g taken ``resample_counts(G, n_resamples=n_resamples, seed=seed)[r, g]``
    times.
    """
    names = check_classes(classes, healthy)
    _check_settings(n_resamples, 0.05)
    y, p, s = check_inputs(y_true, y_pred, proba, len(names))
    unit, n_units = patient_units(y.size, groups)
    system = _prepare(y, p, s, unit, n_units, len(names))
    return _replicates([system], n_units, names, healthy, n_resamples, seed)[0]


def bootstrap_figures(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    *,
    classes: Sequence[str],
    healthy: int | None = 0,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
) -> dict[str, tuple[float, float, float]]:
    """Every figure of :func:`~m3lung.evaluate.classification_figures` as (point, low, high).

    Parameters
    ----------
    y_true, y_pred, proba, classes, healthy
        As for :func:`~m3lung.evaluate.classification_figures`: labels and predictions (N,),
        optional scores (N, K), K class names, index of the healthy class or None.
    n_resamples : int
        Bootstrap resamples (the papers use 1000).
    seed : int
        Seed of the resampling; the same seed gives the same intervals.
    alpha : float
        The intervals cover ``1 - alpha`` (0.05: 95 % intervals).
    groups : (N,) array, optional
        Patient of each row when rows are slices; whole patients are resampled. Without it every
        row is a patient.

    Returns
    -------
    dict of str to (float, float, float)
        Same keys as :func:`~m3lung.evaluate.classification_figures`: the figure on all the data
        and the ``alpha/2`` and ``1 - alpha/2`` percentiles of its resampled values (NaN resamples
        left out; NaN bounds when no resample defines the figure).
    """
    names = check_classes(classes, healthy)
    _check_settings(n_resamples, alpha)
    y, p, s = check_inputs(y_true, y_pred, proba, len(names))
    point = classification_figures(y, p, s, classes=names, healthy=healthy)
    reps = bootstrap_replicates(
        y, p, s, classes=names, healthy=healthy, n_resamples=n_resamples, seed=seed, groups=groups
    )
    out = {}
    for key, value in point.items():
        vals = reps[key][np.isfinite(reps[key])]
        if vals.size:
            lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        else:
            lo = hi = np.nan
        out[key] = (value, float(lo), float(hi))
    return out


def paired_bootstrap_pvalue(
    y_true: np.ndarray,
    a_pred: np.ndarray,
    b_pred: np.ndarray,
    a_proba: np.ndarray | None = None,
    b_proba: np.ndarray | None = None,
    *,
    metric: str = "acc",
    classes: Sequence[str],
    healthy: int | None = 0,
    n_resamples: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> float:
    """Two-sided paired-bootstrap p-value of metric(A) − metric(B) on the same patients.

    Parameters
    ----------
    y_true : (N,) int
        True classes, shared by both systems.
    a_pred, b_pred : (N,) int
        Predictions of systems A and B for the same rows.
    a_proba, b_proba : (N, K) float, optional
        Their scores; needed when ``metric`` is an AUC.
    metric : str
        Any key of :func:`~m3lung.evaluate.classification_figures` (``acc``, ``fpe``,
        ``auc[COVID-19]``, ``macro_auc`` …).
    classes, healthy, n_resamples, seed, groups
        As for :func:`bootstrap_figures`; both systems are evaluated on the same resamples.

    Returns
    -------
    float
        p in (0, 1] by the shift-to-null rule of the module docstring: exactly 1 when the observed
        difference is 0, NaN when the metric is undefined on the data.
    """
    names = check_classes(classes, healthy)
    _check_settings(n_resamples, 0.05)
    k = len(names)
    y, pa, sa = check_inputs(y_true, a_pred, a_proba, k)
    _, pb, sb = check_inputs(y_true, b_pred, b_proba, k)
    fa = classification_figures(y, pa, sa, classes=names, healthy=healthy)
    fb = classification_figures(y, pb, sb, classes=names, healthy=healthy)
    if metric not in fa or metric not in fb:
        known = ", ".join(sorted(set(fa) & set(fb)))
        raise InputError(f"figure {metric!r} is unknown or not available for both systems; one of: {known}")
    d = fa[metric] - fb[metric]
    if not np.isfinite(d):
        return float("nan")
    if d == 0:
        return 1.0
    scores = metric == "macro_auc" or metric.startswith("auc[")
    unit, n_units = patient_units(y.size, groups)
    sys_a = _prepare(y, pa, sa if scores else None, unit, n_units, k)
    sys_b = _prepare(y, pb, sb if scores else None, unit, n_units, k)
    ra, rb = _replicates([sys_a, sys_b], n_units, names, healthy, n_resamples, seed, scores)
    diff = ra[metric] - rb[metric]
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return float("nan")
    extreme = np.count_nonzero(np.abs(diff - d) >= abs(d))
    return float((1 + extreme) / (1 + diff.size))
