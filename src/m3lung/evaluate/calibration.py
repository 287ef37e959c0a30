"""Calibration of a probability: reliability curve and the Hosmer–Lemeshow test (seed 003's way).

Both work on a binary outcome ``y`` (N,) in {0, 1} and a predicted probability ``p`` (N,) in [0, 1].
Hosmer–Lemeshow groups the patients into ``groups`` groups of (nearly) equal size by sorted ``p``
(deciles by default; patients with equal ``p`` stay in sorted order, so ties may straddle a group
boundary), and compares observed and expected events in each:
H = Σ_g (O_g − E_g)² / (E_g (1 − E_g / n_g)), with ``groups − 2`` degrees of freedom (chi-square).
Groups whose expected variance is zero (all p = 0 or all p = 1) add nothing.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from m3lung.errors import InputError


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yy = np.asarray(y, dtype=np.float64).ravel()
    pp = np.asarray(p, dtype=np.float64).ravel()
    if yy.shape != pp.shape or yy.size == 0:
        raise InputError(f"outcomes and probabilities must be equally long non-empty vectors, got {yy.size}, {pp.size}")
    if not np.isin(yy, (0.0, 1.0)).all():
        raise InputError("outcomes must be 0 or 1")
    if not np.isfinite(pp).all() or pp.min() < 0 or pp.max() > 1:
        raise InputError("probabilities must be finite and within [0, 1]")
    return yy, pp


def calibration_curve(
    y: np.ndarray, p: np.ndarray, *, n_bins: int = 10, strategy: Literal["quantile", "uniform"] = "quantile"
) -> dict[str, np.ndarray]:
    """Per bin: ``mean_predicted``, ``observed`` (event rate) and ``count``; empty bins are left out."""
    yy, pp = _check(y, p)
    if n_bins < 1:
        raise InputError("n_bins must be at least 1")
    if strategy == "quantile":
        edges = np.quantile(pp, np.linspace(0, 1, n_bins + 1))
    elif strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    else:
        raise InputError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    b = np.clip(np.searchsorted(edges[1:-1], pp, side="right"), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    keep = count > 0
    return {
        "mean_predicted": (np.bincount(b, pp, n_bins) / np.maximum(count, 1))[keep],
        "observed": (np.bincount(b, yy, n_bins) / np.maximum(count, 1))[keep],
        "count": count[keep],
    }


def hosmer_lemeshow(y: np.ndarray, p: np.ndarray, *, groups: int = 10) -> tuple[float, int, float]:
    """(statistic, degrees of freedom, p-value) of the Hosmer–Lemeshow test (module docstring)."""
    from scipy.stats import chi2

    yy, pp = _check(y, p)
    if groups < 3 or groups > yy.size:
        raise InputError(f"groups must be between 3 and the number of patients ({yy.size}), got {groups}")
    order = np.argsort(pp, kind="stable")
    g = np.empty(yy.size, dtype=np.int64)
    g[order] = np.arange(yy.size) * groups // yy.size
    n = np.bincount(g, minlength=groups).astype(np.float64)
    observed = np.bincount(g, yy, groups)
    expected = np.bincount(g, pp, groups)
    var = expected * (1 - expected / np.maximum(n, 1))
    ok = var > 0
    stat = float((((observed - expected) ** 2)[ok] / var[ok]).sum())
    dof = groups - 2
    return stat, dof, float(chi2.sf(stat, dof))
