"""Every classification figure the seed papers report, from labels and predictions, for one or many resamples.

Figures (fractions 0–1; NaN where a denominator is empty), keyed by the class *names* given:

* ``acc`` — trace / total;
* ``sen[c]``, ``spec[c]``, ``prec[c]``, ``f1[c]`` — one-vs-rest sensitivity (recall), specificity,
  precision and F1 of class c (seed 004 Table 6 reports recall, precision and F1); ``auc[c]`` —
  one-vs-rest ROC AUC from the scores of class c (when scores are given; equal to scikit-learn's
  ``roc_auc_score``, ties counted one half);
* ``macro_sen``, ``macro_spec``, ``macro_prec``, ``macro_f1``, ``macro_auc`` — their unweighted means
  over the classes where they are defined (scikit-learn's ``average="macro"`` agrees whenever every
  class occurs and is predicted; where a class is never predicted it counts a precision of 0 instead);
* ``fpe``, ``fne`` and (K ≥ 3) ``fdpe`` — M³Lung-Sys's error rates against the "no disease" class
  ``healthy`` (seed 001 Table II): healthy called diseased / healthy (= 1 − ``sen[Healthy]``);
  diseased called healthy / diseased (= 1 − ``spec[Healthy]``); diseased called the wrong disease /
  diseased. With class 0 healthy they equal :func:`m3lung.evaluate.metrics.error_rates`.

The work is done on stacks of confusion matrices (R, K, K) and score matrices (R, N), so the
bootstrap (:mod:`m3lung.evaluate.bootstrap`) derives all its resamples' count figures in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from m3lung.errors import InputError


def check_classes(classes: Sequence[str], healthy: int | None) -> tuple[str, ...]:
    """The class names as a tuple, after checking that there are at least two distinct ones and ``healthy`` fits."""
    if isinstance(classes, (str, bytes)):
        raise InputError(f"classes must be a list of class names, not the single string {classes!r}")
    names = tuple(str(c) for c in classes)
    if len(names) < 2:
        raise InputError(f"at least two classes are needed, got {list(names)}")
    if len(set(names)) != len(names):
        raise InputError(f"class names must be distinct (they name the figures), got {list(names)}")
    if healthy is not None and (isinstance(healthy, bool) or not 0 <= int(healthy) < len(names)):
        raise InputError(f"healthy class index {healthy!r} is not one of 0..{len(names) - 1}")
    return names


def _class_indices(name: str, v: np.ndarray, n_classes: int) -> np.ndarray:
    if v.dtype == np.bool_ or not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise InputError(f"{name} must be integer class indices 0..{n_classes - 1}, got dtype {v.dtype}")
    if np.issubdtype(v.dtype, np.floating) and not (np.isfinite(v).all() and (v == np.round(v)).all()):
        raise InputError(f"{name} must be whole-number class indices 0..{n_classes - 1}")
    if v.min() < 0 or v.max() >= n_classes:
        raise InputError(f"{name} must be class indices 0..{n_classes - 1}, found values {v.min():g}..{v.max():g}")
    return v.astype(np.int64)


def check_inputs(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated labels (N,) int64, predictions (N,) int64 and scores (N, K) float64 or None.

    Labels and predictions are class indices 0..K-1 (integers, or floats holding whole numbers).
    Scores may be any finite numbers: probabilities, logits or unnormalised scores; rows need not sum
    to 1, since an AUC only uses the order of the scores within one class column.
    """
    y = np.asarray(y_true)
    p = np.asarray(y_pred)
    if y.ndim != 1 or p.shape != y.shape or y.size == 0:
        raise InputError(f"labels and predictions must be two equally long non-empty vectors, got {y.shape}, {p.shape}")
    y64 = _class_indices("labels", y, n_classes)
    p64 = _class_indices("predictions", p, n_classes)
    s = None
    if proba is not None:
        try:
            s = np.asarray(proba, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InputError(f"scores must be numbers: {e}") from None
        if s.shape != (y.size, n_classes):
            raise InputError(f"scores must be (N, K) = ({y.size}, {n_classes}), got {s.shape}")
        if not np.isfinite(s).all():
            raise InputError("scores must be finite (no NaN or inf)")
    return y64, p64, s


def confusion_stack(y: np.ndarray, p: np.ndarray, n_classes: int) -> np.ndarray:
    """(R, K, K) confusion matrices of R label/prediction rows (R, N) in one bincount."""
    y2 = np.atleast_2d(y)
    p2 = np.atleast_2d(p)
    r = y2.shape[0]
    k = n_classes
    flat = (np.arange(r)[:, None] * k * k + y2 * k + p2).ravel()
    return np.bincount(flat, minlength=r * k * k).reshape(r, k, k).astype(np.float64)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def count_figures(c: np.ndarray, classes: Sequence[str], healthy: int | None = 0) -> dict[str, np.ndarray]:
    """Every count-based figure of a stack of confusion matrices (R, K, K): a dict of (R,) arrays."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim == 2:
        c = c[None]
    k = c.shape[-1]
    total = c.sum((1, 2))
    tp = np.diagonal(c, axis1=1, axis2=2)
    pos = c.sum(2)
    predicted = c.sum(1)
    neg = total[:, None] - pos
    fp = predicted - tp
    sen = _div(tp, pos)
    spec = _div(neg - fp, neg)
    prec = _div(tp, predicted)
    f1 = _div(2 * tp, pos + predicted)
    out: dict[str, np.ndarray] = {"acc": _div(np.trace(c, axis1=1, axis2=2), total)}
    for j, name in enumerate(classes):
        out[f"sen[{name}]"] = sen[:, j]
        out[f"spec[{name}]"] = spec[:, j]
        out[f"prec[{name}]"] = prec[:, j]
        out[f"f1[{name}]"] = f1[:, j]
    out["macro_sen"] = _nanmean(sen)
    out["macro_spec"] = _nanmean(spec)
    out["macro_prec"] = _nanmean(prec)
    out["macro_f1"] = _nanmean(f1)
    if healthy is not None:
        h = healthy
        others = [j for j in range(k) if j != h]
        n_h = pos[:, h]
        n_d = total - n_h
        out["fpe"] = _div(n_h - c[:, h, h], n_h)
        out["fne"] = _div(c[:, others, h].sum(1), n_d)
        if k >= 3:
            sub = c[:, others][:, :, others]
            wrong = sub.sum((1, 2)) - np.trace(sub, axis1=1, axis2=2)
            out["fdpe"] = _div(wrong, n_d)
    return out


def _nanmean(a: np.ndarray) -> np.ndarray:
    """Mean over axis 1 ignoring NaN; NaN (without a warning) where a row has no value."""
    ok = np.isfinite(a)
    return _div(np.where(ok, a, 0).sum(1), ok.sum(1).astype(np.float64))


def auc_stack(positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of R rows at once: ``positive`` (R, N) bool, ``score`` (R, N); NaN for a row with one class.

    Mann–Whitney form with average ranks for ties (the same number as scikit-learn's ``roc_auc_score``).
    """
    pos = np.atleast_2d(positive).astype(bool)
    s = np.atleast_2d(score)
    ranks = rankdata(s, axis=1)
    n_pos = pos.sum(1).astype(np.float64)
    n_neg = pos.shape[1] - n_pos
    u = (ranks * pos).sum(1) - n_pos * (n_pos + 1) / 2
    return _div(u, n_pos * n_neg)


def score_figures(y: np.ndarray, s: np.ndarray, classes: Sequence[str]) -> dict[str, np.ndarray]:
    """``auc[c]`` per class and ``macro_auc`` for R resamples: labels (R, N), scores (R, N, K)."""
    y2 = np.atleast_2d(y)
    s3 = s if s.ndim == 3 else s[None]
    aucs = np.stack([auc_stack(y2 == j, s3[:, :, j]) for j in range(len(classes))], 1)
    out = {f"auc[{name}]": aucs[:, j] for j, name in enumerate(classes)}
    out["macro_auc"] = _nanmean(aucs)
    return out


def classification_figures(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    *,
    classes: Sequence[str],
    healthy: int | None = 0,
) -> dict[str, float]:
    """Every figure of the module docstring for one set of predictions.

    Parameters
    ----------
    y_true, y_pred : (N,) int
        True and predicted class indices 0..K-1 of N patients (or slices); floats holding whole numbers
        are accepted.
    proba : (N, K) float, optional
        Per-class scores for the AUCs: probabilities or any finite scores (logits, unnormalised
        outputs); rows need not sum to 1, only the order within a column matters. ``y_pred`` is not
        derived from them.
    classes : sequence of K distinct str
        Class names, in index order; they name the per-class keys (``sen[COVID-19]``).
    healthy : int or None
        Index of the "no disease" class for ``fpe``/``fne``/``fdpe``; None leaves them out.

    Returns
    -------
    dict of str to float
        ``acc``; ``sen[c]``, ``spec[c]``, ``prec[c]``, ``f1[c]`` per class; ``macro_sen``,
        ``macro_spec``, ``macro_prec``, ``macro_f1``; with ``proba`` also ``auc[c]`` and ``macro_auc``;
        with ``healthy`` ``fpe`` and ``fne``, plus ``fdpe`` when K >= 3. Fractions 0–1, NaN where
        undefined.
    """
    names = check_classes(classes, healthy)
    y, p, s = check_inputs(y_true, y_pred, proba, len(names))
    figs = count_figures(confusion_stack(y, p, len(names)), names, healthy)
    if s is not None:
        figs.update(score_figures(y, s, names))
    return {key: float(v[0]) for key, v in figs.items()}
