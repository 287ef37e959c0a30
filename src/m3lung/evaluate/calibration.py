"""Calibration of a probability: reliability curve and the Hosmer–Lemeshow test, as seed 003 reports them.

Both functions take a binary outcome ``y`` (N,) in {0, 1} and a predicted probability ``p`` (N,) in
[0, 1] of the outcome being 1 (for a K-class model: one class against the rest).

Reliability curve (:func:`calibration_curve`)
    ``p`` is cut into ``n_bins`` bins, either of equal width on [0, 1] (``"uniform"``) or at the
    quantiles of ``p`` (``"quantile"``, bins of about equal count). Bins are closed on the right,
    ``(lower, upper]`` (the first one also holds its lower edge), exactly as scikit-learn's
    ``sklearn.calibration.calibration_curve`` cuts them, so that equal probabilities always share a
    bin. Empty bins (quantile edges that coincide because of ties) are left out.

Hosmer–Lemeshow test (:func:`hosmer_lemeshow`)
    Patients are ranked by ``p`` and split into ``groups`` groups of (nearly) equal size, the
    "deciles of risk" for ``groups=10``. Tied probabilities are never split: every patient gets the
    group of the *middle* of their block of ties, ``floor((r − 0.5) · groups / N)`` with ``r`` the
    average (1-based) rank, so the result does not depend on the order of the rows. Groups that ties
    leave empty are dropped. With ``G`` non-empty groups, ``n_g`` patients, ``O_g`` observed and
    ``E_g = Σ p`` expected events in group ``g``,

        H = Σ_g (O_g − E_g)² / (E_g (1 − E_g / n_g)),

    which is compared with a chi-square distribution of ``G − 2`` degrees of freedom (``groups − 2``
    when no group is empty). A group whose probabilities are all 0 or all 1 has no variance: it adds
    nothing when its outcomes agree (``O_g = E_g``) and makes ``H`` infinite (p-value 0) when they do
    not. When ties leave fewer than 3 groups the test is undefined: statistic and p-value are NaN.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from m3lung.errors import InputError


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float64 outcomes in {0, 1} and probabilities in [0, 1]; InputError otherwise."""
    yy = np.asarray(y, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    if yy.ndim != 1 or pp.ndim != 1 or yy.shape != pp.shape or yy.size == 0:
        raise InputError(
            f"outcomes and probabilities must be equally long, non-empty vectors (N,), got shapes {yy.shape} "
            f"and {pp.shape}"
        )
    if not np.isin(yy, (0.0, 1.0)).all():
        raise InputError("outcomes must be 0 or 1 (1 = the event / the positive class)")
    if not np.isfinite(pp).all() or pp.min() < 0 or pp.max() > 1:
        raise InputError("probabilities must be finite and within [0, 1]")
    return yy, pp


def calibration_curve(
    y: np.ndarray,
    p: np.ndarray,
    *,
    n_bins: int = 10,
    strategy: Literal["quantile", "uniform"] = "quantile",
) -> dict[str, np.ndarray]:
    """Reliability curve of the probabilities ``p`` against the outcomes ``y``.

    Parameters
    ----------
    y : (N,) array of 0/1
        Observed outcome.
    p : (N,) array of float in [0, 1]
        Predicted probability of ``y == 1``.
    n_bins : int
        Number of bins (at least 1).
    strategy : {"quantile", "uniform"}
        Bins at the quantiles of ``p`` (about equal counts) or of equal width on [0, 1]; see the
        module docstring for the edges.

    Returns
    -------
    dict
        ``mean_predicted`` (B,) mean ``p`` per bin, ``observed`` (B,) event rate per bin and
        ``count`` (B,) patients per bin (int64), for the B <= ``n_bins`` non-empty bins in order
        of increasing ``p``. ``mean_predicted`` and ``observed`` equal scikit-learn's
        ``calibration_curve`` output ``(prob_pred, prob_true)``.
    """
    yy, pp = _check(y, p)
    if int(n_bins) != n_bins or n_bins < 1:
        raise InputError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    if strategy == "quantile":
        edges = np.quantile(pp, np.linspace(0.0, 1.0, n_bins + 1))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise InputError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    b = np.searchsorted(edges[1:-1], pp, side="left")  # (lower, upper]: ties share a bin
    count = np.bincount(b, minlength=n_bins)
    keep = count > 0
    return {
        "mean_predicted": np.bincount(b, pp, n_bins)[keep] / count[keep],
        "observed": np.bincount(b, yy, n_bins)[keep] / count[keep],
        "count": count[keep].astype(np.int64),
    }


def hosmer_lemeshow(y: np.ndarray, p: np.ndarray, *, groups: int = 10) -> tuple[float, int, float]:
    """Hosmer–Lemeshow goodness-of-fit test of the probabilities ``p`` (see the module docstring).

    Parameters
    ----------
    y : (N,) array of 0/1
        Observed outcome.
    p : (N,) array of float in [0, 1]
        Predicted probability of ``y == 1``.
    groups : int
        Number of risk groups (10 = deciles of ``p``); between 3 and N.

    Returns
    -------
    statistic : float
        ``H`` (NaN when ties leave fewer than 3 groups, inf when a group with all ``p`` in {0, 1}
        contradicts its outcomes).
    dof : int
        Degrees of freedom, the number of non-empty groups − 2 (0 when fewer than 3 groups).
    p_value : float
        Upper tail of the chi-square distribution with ``dof`` degrees of freedom at ``H``; a small
        value means the probabilities are miscalibrated.
    """
    from scipy.stats import chi2, rankdata

    yy, pp = _check(y, p)
    if int(groups) != groups or not 3 <= groups <= yy.size:
        raise InputError(f"groups must be an integer between 3 and the number of patients ({yy.size}), got {groups!r}")
    n_groups = int(groups)
    rank = rankdata(pp, method="average")  # tied values share the rank of their block's middle
    g = np.floor((rank - 0.5) * n_groups / yy.size).astype(np.int64)
    n = np.bincount(g, minlength=n_groups).astype(np.float64)
    observed = np.bincount(g, yy, n_groups)
    expected = np.bincount(g, pp, n_groups)
    used = n > 0
    n, observed, expected = n[used], observed[used], expected[used]
    dof = int(n.size) - 2
    if dof < 1:
        return float("nan"), 0, float("nan")
    var = expected * (1.0 - expected / n)
    diff2 = (observed - expected) ** 2
    degenerate = var <= 1e-12 * n
    if (degenerate & (diff2 > 1e-12)).any():
        return float("inf"), dof, 0.0
    stat = float((diff2[~degenerate] / var[~degenerate]).sum())
    return stat, dof, float(chi2.sf(stat, dof))
