"""Figures as the papers draw them: ROC curves per class, confusion matrices, calibration, Kaplan–Meier.

Every function writes ``<out_stem>.png`` (150 dpi) and ``<out_stem>.svg`` atomically and returns both
paths. matplotlib runs without a display (an Agg canvas per figure, no global state).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.errors import InputError
from m3lung.io.atomic import atomic_file


def _figure(width: float = 5.0, height: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out_stem: str | os.PathLike[str]) -> list[Path]:
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".svg"):
        target = stem.with_name(stem.name + suffix)
        with atomic_file(target) as tmp:
            fig.savefig(tmp, dpi=150, format=suffix[1:])
        paths.append(target)
    return paths


def plot_roc(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    out_stem: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> list[Path]:
    """One-vs-rest ROC curve of every class with its AUC; classes without positives or negatives are noted."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y_true)
    s = np.asarray(proba, dtype=np.float64)
    if s.ndim != 2 or s.shape != (y.size, len(classes)):
        raise InputError(f"scores must be (N, K) = ({y.size}, {len(classes)}), got {s.shape}")
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="chance")
    for k, name in enumerate(classes):
        pos = y == k
        if pos.all() or not pos.any():
            ax.plot([], [], " ", label=f"{name}: not computable (one class only)")
            continue
        fpr, tpr, _ = roc_curve(pos, s[:, k])
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {roc_auc_score(pos, s[:, k]):.3f})")
    ax.set(
        xlabel="1 − specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), title=title or "ROC, one vs rest"
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out_stem)


def plot_confusion(
    c: np.ndarray,
    classes: Sequence[str],
    out_stem: str | os.PathLike[str],
    *,
    normalize: bool = False,
    title: str | None = None,
) -> list[Path]:
    """Heat map of C[true, pred] with the count and the row percentage in each cell."""
    m = np.asarray(c, dtype=np.float64)
    k = len(classes)
    if m.shape != (k, k):
        raise InputError(f"confusion matrix must be ({k}, {k}), got {m.shape}")
    rows = m.sum(1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig = _figure(1.3 * k + 2, 1.2 * k + 1.5)
    ax = fig.add_subplot()
    im = ax.imshow(share if normalize else m, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    top = (share if normalize else m).max() or 1
    for i in range(k):
        for j in range(k):
            val = share[i, j] if normalize else m[i, j]
            ax.text(
                j,
                i,
                f"{int(m[i, j])}\n{100 * share[i, j]:.1f}%",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if val > 0.6 * top else "black",
            )
    ax.set_xticks(range(k), list(classes), rotation=30, ha="right")
    ax.set_yticks(range(k), list(classes))
    ax.set(xlabel="predicted", ylabel="truth", title=title or "Confusion matrix")
    return _save(fig, out_stem)


def plot_calibration(
    y: np.ndarray, p: np.ndarray, out_stem: str | os.PathLike[str], *, n_bins: int = 10, title: str | None = None
) -> list[Path]:
    """Reliability diagram (quantile bins) above a histogram of the predicted probabilities."""
    from m3lung.evaluate.calibration import calibration_curve, hosmer_lemeshow

    curve = calibration_curve(y, p, n_bins=n_bins)
    fig = _figure(5, 6)
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1, label="perfect")
    ax.plot(curve["mean_predicted"], curve["observed"], "o-", label="observed")
    label = ""
    if np.asarray(y).size >= 3 * 3:
        stat, dof, pv = hosmer_lemeshow(y, p, groups=min(10, np.asarray(y).size // 3))
        label = f" (Hosmer–Lemeshow {stat:.2f}, df {dof}, p {pv:.3f})"
    ax.set(ylabel="observed frequency", ylim=(-0.02, 1.02), title=(title or "Calibration") + label)
    ax.title.set_fontsize(8)
    ax.legend(loc="upper left", fontsize=8)
    hist.hist(np.asarray(p, dtype=np.float64), bins=20, range=(0, 1), color="0.5")
    hist.set(xlabel="predicted probability", ylabel="patients", xlim=(0, 1))
    return _save(fig, out_stem)


def plot_kaplan_meier(
    durations: np.ndarray,
    events: np.ndarray,
    groups: np.ndarray,
    out_stem: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    logrank_p: float | None = None,
) -> list[Path]:
    """Kaplan–Meier curves with 95 % bands per group (lifelines), the log-rank p in the title when given."""
    from lifelines import KaplanMeierFitter

    d = np.asarray(durations, dtype=np.float64)
    e = np.asarray(events).astype(bool)
    g = np.asarray(groups)
    values = list(np.unique(g))
    names = list(labels) if labels is not None else [str(v) for v in values]
    if len(names) != len(values):
        raise InputError(f"{len(names)} labels for {len(values)} groups")
    fig = _figure()
    ax = fig.add_subplot()
    for v, name in zip(values, names, strict=True):
        sel = g == v
        km = KaplanMeierFitter().fit(d[sel], e[sel], label=f"{name} (n={int(sel.sum())})")
        km.plot_survival_function(ax=ax, ci_show=True)
    t = title or "Kaplan–Meier"
    if logrank_p is not None:
        t += f" (log-rank p = {logrank_p:.3g})"
    ax.set(xlabel="time", ylabel="probability of no event", title=t, ylim=(0, 1.02))
    return _save(fig, out_stem)
