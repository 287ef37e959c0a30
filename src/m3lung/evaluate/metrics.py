"""Classification figures: confusion matrix C[true, pred], accuracy, one-vs-rest AUC."""

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
