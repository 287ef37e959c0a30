"""Classification figures: confusion matrix C[true, pred], accuracy, one-vs-rest AUC, error rates, Sen/Spec."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int counts, rows = truth, columns = prediction."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of exact matches (NaN for no samples)."""
    t = np.asarray(y_true)
    return float(np.mean(t == np.asarray(y_pred))) if t.size else float("nan")


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of a binary task (NaN when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    t = np.asarray(y_true).astype(int)
    if t.size == 0 or t.min() == t.max():
        return float("nan")
    return float(roc_auc_score(t, np.asarray(score, dtype=np.float64)))


def one_vs_rest_auc(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per-class one-vs-rest AUC (n_classes,) from class probabilities (N, n_classes)."""
    p = np.asarray(proba)
    t = np.asarray(y_true)
    return np.array([roc_auc(t == k, p[:, k]) for k in range(p.shape[1])])


def _square_counts(c: np.ndarray) -> np.ndarray:
    """``c`` as a (K, K) float64 matrix of non-negative finite counts, K >= 2; else ValueError."""
    m = np.asarray(c, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"a confusion matrix must be square (K, K) with K >= 2, got shape {m.shape}")
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError("a confusion matrix must hold finite, non-negative counts")
    return m


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def error_rates(c: np.ndarray) -> dict[str, float]:
    """Patient-level error rates of M³Lung-Sys (Table IV) from a confusion matrix C[true, pred].

    Class 0 is Healthy, every other class a disease. Returns fractions in [0, 1] (NaN when the
    denominator is empty):

    * ``acc``: correct / all;
    * ``fpe`` (false-positive error): healthy predicted as any disease / all healthy;
    * ``fne`` (false-negative error): diseased predicted healthy / all diseased;
    * ``fdpe`` (false-disease-prediction error): diseased predicted as another disease / all diseased.

    ``fpe = 1 - sensitivity[Healthy]`` and ``fne = 1 - specificity[Healthy]``; ``1 - acc`` is the
    count-weighted mix of the three.
    """
    m = _square_counts(c)
    healthy = m[0].sum()
    diseased = m[1:].sum()
    wrong_disease = m[1:, 1:].sum() - np.trace(m[1:, 1:])
    return {
        "acc": _ratio(np.trace(m), m.sum()),
        "fpe": _ratio(healthy - m[0, 0], healthy),
        "fne": _ratio(m[1:, 0].sum(), diseased),
        "fdpe": _ratio(wrong_disease, diseased),
    }


def sensitivity_specificity(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest sensitivity and specificity per class, each (K,), from C[true, pred].

    Sensitivity_k = C[k, k] / row k; specificity_k = (samples of other classes not predicted k) /
    (samples of other classes). NaN where the denominator is empty.
    """
    m = _square_counts(c)
    tp = np.diag(m)
    pos = m.sum(axis=1)
    neg = m.sum() - pos
    fp = m.sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        sen = np.where(pos > 0, tp / np.where(pos > 0, pos, 1.0), np.nan)
        spec = np.where(neg > 0, (neg - fp) / np.where(neg > 0, neg, 1.0), np.nan)
    return sen, spec
