"""Bootstrap over patients: 95 % intervals for every figure, and paired p-values between two systems.

Resamples draw *patients* with replacement (rows are patients; with ``groups``, rows are slices and
a patient's slices go in or out together), the paper's way (M³Lung-Sys: "95 % CI by bootstrap over
patients, 1000 resamples; p-value between two systems by paired bootstrap"). All resamples are
computed at once: one index matrix, one bincount for all confusion matrices, rank-based AUCs.

Intervals are percentile intervals of the resampled figures (NaN resamples, e.g. one lacking a class
for an AUC, are left out). The paired p-value is two-sided and shift-to-null: with d the observed
difference metric(A) − metric(B) and d*ᵢ the resampled ones, p = (1 + #{|d*ᵢ − d| ≥ |d|}) / (1 + R),
capped at 1; a system against itself (d = 0 everywhere) gives exactly 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from m3lung.errors import InputError
from m3lung.evaluate.classification import (
    check_inputs,
    classification_figures,
    confusion_stack,
    count_figures,
    score_figures,
)


def resample_indices(n_rows: int, *, n_resamples: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """(R, M) row indices of R bootstrap resamples (M = rows per resample; whole groups when given)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.integers(0, n_rows, size=(n_resamples, n_rows))
    g = np.asarray(groups)
    if g.shape != (n_rows,):
        raise InputError(f"groups must give one patient per row ({n_rows}), got shape {g.shape}")
    _, inv = np.unique(g, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    sizes = np.bincount(inv)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    picks = rng.integers(0, sizes.size, size=(n_resamples, sizes.size))
    # every resample has a different number of rows: pad with the first pick's rows would bias, so
    # resamples are expanded group by group into a ragged list and padded with -1 (masked later)
    lengths = sizes[picks].sum(1)
    width = int(lengths.max())
    out = np.full((n_resamples, width), -1, dtype=np.int64)
    for r in range(n_resamples):  # loop over resamples only; rows are gathered with array ops
        idx = np.concatenate([order[starts[p] : starts[p] + sizes[p]] for p in picks[r]])
        out[r, : idx.size] = idx
    return out


def _figures(
    y: np.ndarray, p: np.ndarray, s: np.ndarray | None, idx: np.ndarray, classes: Sequence[str], healthy: int | None
) -> dict[str, np.ndarray]:
    k = len(classes)
    valid = idx >= 0
    safe = np.where(valid, idx, 0)
    yy, pp = y[safe], p[safe]
    if valid.all():
        conf = confusion_stack(yy, pp, k)
    else:  # padded rows (grouped resamples) go to a spare cell that is dropped
        yk = np.where(valid, yy, k)
        pk = np.where(valid, pp, k)
        conf = confusion_stack(yk, pk, k + 1)[:, :k, :k]
    figs = count_figures(conf, classes, healthy)
    if s is not None:
        if valid.all():
            figs.update(score_figures(yy, s[safe], classes))
        else:
            figs.update(_grouped_scores(yy, s[safe], valid, classes))
    return figs


def _grouped_scores(y: np.ndarray, s: np.ndarray, valid: np.ndarray, classes: Sequence[str]) -> dict[str, np.ndarray]:
    """AUCs of ragged resamples: padding gets a score below everything and counts as neither class."""
    from m3lung.evaluate.classification import auc_stack

    k = len(classes)
    aucs = []
    for j in range(k):
        score = np.where(valid, s[:, :, j], -np.inf)
        positive = (y == j) & valid
        # padded rows rank lowest; remove them from the negatives by correcting the counts below
        n_pad = (~valid).sum(1)
        ranks_auc = auc_stack(positive, score)  # treats padding as negatives ranked lowest
        n_pos = positive.sum(1)
        n_neg_all = positive.shape[1] - n_pos
        n_neg = n_neg_all - n_pad
        with np.errstate(invalid="ignore", divide="ignore"):
            # U counted padding as n_pos * n_pad extra wins; take them out and renormalise
            u = ranks_auc * n_pos * n_neg_all - n_pos * n_pad
            aucs.append(np.where((n_pos > 0) & (n_neg > 0), u / np.maximum(n_pos * n_neg, 1), np.nan))
    a = np.stack(aucs, 1)
    ok = np.isfinite(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        macro = np.where(ok.any(1), np.where(ok, a, 0).sum(1) / np.maximum(ok.sum(1), 1), np.nan)
    out = {f"auc[{name}]": a[:, j] for j, name in enumerate(classes)}
    out["macro_auc"] = macro
    return out


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

    The point estimate is the figure on all the data; (low, high) the ``1 - alpha`` percentile
    interval over ``n_resamples`` bootstrap resamples of patients (``groups``: patient of each row).
    """
    if n_resamples < 1 or not 0 < alpha < 1:
        raise InputError(f"need n_resamples >= 1 and 0 < alpha < 1, got {n_resamples}, {alpha}")
    k = len(classes)
    y, p, s = check_inputs(y_true, y_pred, proba, k)
    point = classification_figures(y, p, s, classes=classes, healthy=healthy)
    idx = resample_indices(y.size, n_resamples=n_resamples, seed=seed, groups=groups)
    figs = _figures(y, p, s, idx, classes, healthy)
    out = {}
    for key, value in point.items():
        vals = figs[key]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        else:
            lo = hi = float("nan")
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
) -> float:
    """Two-sided paired-bootstrap p-value of metric(A) − metric(B) on the same patients (module docstring)."""
    k = len(classes)
    y, pa, sa = check_inputs(y_true, a_pred, a_proba, k)
    _, pb, sb = check_inputs(y_true, b_pred, b_proba, k)
    fa = classification_figures(y, pa, sa, classes=classes, healthy=healthy)
    fb = classification_figures(y, pb, sb, classes=classes, healthy=healthy)
    if metric not in fa or metric not in fb:
        raise InputError(f"unknown or unavailable figure {metric!r}; one of {', '.join(sorted(set(fa) & set(fb)))}")
    d = fa[metric] - fb[metric]
    if not np.isfinite(d):
        return float("nan")
    idx = resample_indices(y.size, n_resamples=n_resamples, seed=seed)
    da = _figures(y, pa, sa, idx, classes, healthy)[metric]
    db = _figures(y, pb, sb, idx, classes, healthy)[metric]
    diff = da - db
    diff = diff[np.isfinite(diff)]
    if d == 0 or diff.size == 0:
        return 1.0
    extreme = np.count_nonzero(np.abs(diff - d) >= abs(d))
    return float(min(1.0, (1 + extreme) / (1 + diff.size)))
