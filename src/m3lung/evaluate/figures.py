"""Figures as the seed papers draw them: ROC curves per class and confusion matrices (seed 001), calibration
curves and Kaplan–Meier curves of risk groups (seed 003).

Every function writes ``<out_stem>.png`` (150 dpi) and ``<out_stem>.svg`` and returns the two paths in
that order. Each file is written to a temporary file beside it and moved into place
(:func:`m3lung.io.atomic.atomic_file`), so a reader never sees half a figure. matplotlib (the ``figures``
extra) is imported only when a figure is drawn, and draws on its own Agg canvas: no pyplot, no global state, no window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from m3lung._extras import require
from m3lung.errors import InputError
from m3lung.io.atomic import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150


def _figure(width: float = 5.0, height: float = 4.5) -> Figure:
    """A new figure on its own Agg canvas (no pyplot)."""
    require("matplotlib", "figures", "figures")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_stem: str | os.PathLike[str]) -> list[Path]:
    """Write ``out_stem.png`` and ``out_stem.svg`` atomically; return their paths."""
    stem = Path(out_stem)
    if not stem.name:
        raise InputError(f"the output stem {str(out_stem)!r} names no file")
    paths = []
    for fmt in ("png", "svg"):
        target = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_file(target) as tmp:
            # no date in the SVG and no software tag in the PNG: nothing that changes from run to run but the figure
            meta = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(tmp, dpi=DPI, format=fmt, metadata=meta)
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
    """One-vs-rest ROC curve of every class, with its AUC in the legend (seed 001's figure).

    Parameters
    ----------
    y_true : (N,) array of int
        True class index of every sample, in ``range(K)``.
    proba : (N, K) array of float
        Score (probability) of every class.
    classes : sequence of K str
        Class names, in column order.
    out_stem : path
        Output path without suffix; ``.png`` and ``.svg`` are added.
    title : str, optional
        Figure title (default "ROC, one vs rest").

    Returns
    -------
    list of Path
        ``[out_stem.png, out_stem.svg]``.

    Notes
    -----
    Curves and AUCs come from scikit-learn's ``roc_curve`` and ``roc_auc_score`` with class ``k`` as
    the positive class and ``proba[:, k]`` as its score. A class without positive samples (or without
    negative ones) has no ROC curve: it is left out and named in the legend instead. The dashed
    diagonal is a random score.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    names = [str(c) for c in classes]
    k = len(names)
    if k < 2:
        raise InputError(f"a ROC figure needs at least two classes, got {k}")
    y = np.asarray(y_true)
    s = np.asarray(proba, dtype=np.float64)
    if y.ndim != 1 or s.shape != (y.size, k):
        raise InputError(f"labels must be (N,) and scores (N, K) = ({y.size}, {k}); got {y.shape} and {s.shape}")
    if y.size == 0:
        raise InputError("no samples to draw a ROC curve from")
    if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()):
        raise InputError("labels must be class indices (integers)")
    if y.min() < 0 or y.max() >= k:
        raise InputError(f"labels must be class indices in 0..{k - 1}, got values from {y.min()} to {y.max()}")
    if not np.isfinite(s).all():
        raise InputError("scores must be finite (no NaN or inf)")

    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="chance (AUC 0.500)")
    for i, name in enumerate(names):
        pos = y == i
        if not pos.any() or pos.all():
            why = "no positive case" if not pos.any() else "no negative case"
            ax.plot([], [], " ", label=f"{name}: {why}, no curve")
            continue
        fpr, tpr, _ = roc_curve(pos, s[:, i])
        auc = float(roc_auc_score(pos, s[:, i]))
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {auc:.3f}, n+ = {int(pos.sum())})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 − specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title(title or "ROC, one vs rest")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, out_stem)


def plot_confusion(
    c: np.ndarray,
    classes: Sequence[str],
    out_stem: str | os.PathLike[str],
    *,
    normalize: bool = False,
    title: str | None = None,
) -> list[Path]:
    """Heat map of a confusion matrix C[true, pred] with the count and the row percentage in each cell.

    Parameters
    ----------
    c : (K, K) array of counts >= 0
        Rows = true class, columns = predicted class.
    classes : sequence of K str
        Class names.
    out_stem : path
        Output path without suffix; ``.png`` and ``.svg`` are added.
    normalize : bool
        Colour the cells by row share (sensitivity on the diagonal) instead of by count. The cell
        text shows both either way.
    title : str, optional
        Figure title (default "Confusion matrix").

    Returns
    -------
    list of Path
        ``[out_stem.png, out_stem.svg]``.
    """
    names = [str(n) for n in classes]
    k = len(names)
    m = np.asarray(c, dtype=np.float64)
    if k < 1 or m.shape != (k, k):
        raise InputError(f"the confusion matrix must be (K, K) = ({k}, {k}) for {k} class names, got {m.shape}")
    if not np.isfinite(m).all() or (m < 0).any():
        raise InputError("the confusion matrix must hold finite, non-negative counts")
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    shown = share if normalize else m
    top = float(shown.max()) or 1.0

    fig = _figure(1.1 * k + 2.6, 1.0 * k + 2.0)
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else top)
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label("share of the true class" if normalize else "count")
    size = 9 if k <= 4 else 7
    for i in range(k):
        for j in range(k):
            pct = f"{100 * share[i, j]:.1f}%" if rows[i, 0] > 0 else "–"
            count = f"{m[i, j]:.0f}" if m[i, j] == round(m[i, j]) else f"{m[i, j]:.3g}"
            ax.text(
                j,
                i,
                f"{count}\n{pct}",
                ha="center",
                va="center",
                fontsize=size,
                color="white" if shown[i, j] > 0.55 * (1 if normalize else top) else "black",
            )
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix"))
    return _save(fig, out_stem)


def plot_calibration(
    y: np.ndarray,
    p: np.ndarray,
    out_stem: str | os.PathLike[str],
    *,
    n_bins: int = 10,
    strategy: Literal["quantile", "uniform"] = "quantile",
    title: str | None = None,
) -> list[Path]:
    """Reliability diagram above a histogram of the predicted probabilities (seed 003, figure 3b).

    Parameters
    ----------
    y : (N,) array of 0/1
        Observed outcome.
    p : (N,) array of float in [0, 1]
        Predicted probability of ``y == 1``.
    out_stem : path
        Output path without suffix; ``.png`` and ``.svg`` are added.
    n_bins : int
        Bins of :func:`m3lung.evaluate.calibration.calibration_curve`.
    strategy : {"quantile", "uniform"}
        Their placement.
    title : str, optional
        Figure title (default "Calibration").

    Returns
    -------
    list of Path
        ``[out_stem.png, out_stem.svg]``.

    Notes
    -----
    The legend gives the Hosmer–Lemeshow test (deciles, fewer groups below 30 samples; left out below
    9 samples or when ties leave fewer than 3 groups).
    """
    from m3lung.evaluate.calibration import calibration_curve, hosmer_lemeshow

    curve = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    pp = np.asarray(p, dtype=np.float64)
    label = "observed"
    if pp.size >= 9:
        stat, dof, pv = hosmer_lemeshow(y, pp, groups=min(10, pp.size // 3))
        if not np.isnan(stat):
            label += f"\nHosmer–Lemeshow χ² = {stat:.2f}, df {dof}, p = {pv:.3g}"

    fig = _figure(5.0, 6.0)
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    ax.plot(curve["mean_predicted"], curve["observed"], "o-", lw=1.5, ms=4, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("observed frequency")
    ax.set_title(title or "Calibration")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    hist.hist(pp, bins=20, range=(0, 1), color="0.5")
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("samples")
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
    xlabel: str = "time",
) -> list[Path]:
    """Kaplan–Meier curve with its 95 % band for every group (seed 003, supplementary figure S1).

    Parameters
    ----------
    durations : (N,) array of float >= 0
        Time to the event or to censoring (e.g. days in hospital).
    events : (N,) array of 0/1
        1 = the event was observed, 0 = censored (censored times are marked ``+``).
    groups : (N,) array
        Group of every patient, e.g. the 0/1 of :meth:`m3lung.evaluate.survival.CoxResult.risk_groups`.
    out_stem : path
        Output path without suffix; ``.png`` and ``.svg`` are added.
    labels : sequence of str, optional
        One name per group, in the order of the sorted distinct values of ``groups`` (default: the
        values themselves). The legend adds each group's size.
    title : str, optional
        Figure title (default "Kaplan–Meier").
    logrank_p : float, optional
        Log-rank p-value (:func:`m3lung.evaluate.survival.logrank`) to print in the title.
    xlabel : str
        Label of the time axis, with its unit (e.g. "days in hospital").

    Returns
    -------
    list of Path
        ``[out_stem.png, out_stem.svg]``.
    """
    from m3lung.evaluate.survival import _check_groups, _check_times, kaplan_meier

    d, e = _check_times(durations, events)
    g = _check_groups(groups, d.size)
    values = list(np.unique(g))
    names = [str(v) for v in values] if labels is None else [str(n) for n in labels]
    if len(names) != len(values):
        raise InputError(f"{len(names)} labels for {len(values)} groups ({', '.join(map(str, values))})")

    fig = _figure(6.0, 4.5)
    ax = fig.add_subplot()
    for i, (v, name) in enumerate(zip(values, names, strict=True)):
        sel = g == v
        km = kaplan_meier(d[sel], e[sel])
        color = f"C{i % 10}"
        ax.step(km["timeline"], km["survival"], where="post", color=color, lw=1.8, label=f"{name} (n = {sel.sum()})")
        ax.fill_between(km["timeline"], km["ci_low"], km["ci_high"], step="post", color=color, alpha=0.2, lw=0)
        censored = np.unique(d[sel][~e[sel]])
        if censored.size:
            at = np.searchsorted(km["timeline"], censored, side="right") - 1
            ax.plot(censored, km["survival"][at], "+", color=color, ms=6, mew=1)
    text = title or "Kaplan–Meier"
    if logrank_p is not None:
        text += f"\nlog-rank p = {logrank_p:.3g}" if logrank_p >= 1e-4 else "\nlog-rank p < 0.0001"
    ax.set_title(text)
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability of no event")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, out_stem)
