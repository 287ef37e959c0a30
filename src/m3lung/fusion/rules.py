"""Patient-level decision rules over the per-slice outputs of one CT volume (M³Lung-Sys Appendix I).

Both rules take the slice network's outputs for every slice of *one* volume and return a
:class:`FusionResult`. Class indices: 0 Healthy, 1 COVID-19, 2 H1N1, 3 CAP (:data:`m3lung.CLASSES`).

* :func:`nonparametric_assessment` — the paper's non-parametric rule. Per slice,
  ``p⁰ = P_l⁰ + P_l¹·P_m⁰`` and ``pᵏ = P_l¹·P_mᵏ`` (k = 1, 2, 3), where ``P_l`` is the lesion head
  (index 0 without lesion, 1 with lesion) and ``P_m`` the 4-class head. ``𝔑ᵏ`` counts the slices whose
  argmax over ``(p⁰, …, p³)`` is k. The volume is Healthy when ``𝔑⁰/N > T`` (strictly); otherwise it
  takes the disease with the most votes, ``argmax(𝔑¹, 𝔑², 𝔑³)``.
* :func:`max_pooling` — the max-pooling baseline: ``score_k = max over slices of P_mᵏ`` for each
  disease k; Healthy when every score is below the threshold, otherwise the disease with the highest
  score.

Choices (the paper leaves them open):

* Ties between diseases (equal votes, equal max scores) go to the first class of ``tie_order``,
  by default COVID-19 before H1N1 before CAP.
* Ties between the four ``p`` of one slice go to the lower class index (Healthy first), as
  :func:`numpy.argmax` does.
* ``FusionResult.probs`` of the non-parametric rule is the share of slices voting for each class,
  ``𝔑 / N``. It sums to 1 but is a vote share, not a calibrated probability, and its argmax need not
  be the label: with ``T = 0.99`` a volume with 95 % Healthy votes is still called diseased.
* ``FusionResult.probs`` of max pooling is ``[1 - max_k score_k, score_1, score_2, score_3]``
  normalised to sum 1. With the default threshold 0.5 its argmax is the label (up to exact ties).

Everything is vectorised over slices; a volume of any length costs a few numpy passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from m3lung.errors import InputError

__all__ = ["DEFAULT_TIE_ORDER", "FusionResult", "max_pooling", "nonparametric_assessment"]

#: Diseases in the order that breaks ties: COVID-19, then H1N1, then CAP.
DEFAULT_TIE_ORDER: tuple[int, int, int] = (1, 2, 3)
_N_CLASSES = 4
#: How far outside [0, 1] a probability may stray (rounding) before it is an error.
_RANGE_TOL = 1e-4
#: How far from 1 the rows of a probability table may sum before it is an error.
_SUM_TOL = 1e-3


@dataclass(frozen=True)
class FusionResult:
    """The decision of one rule for one volume.

    label : the predicted class index (0 Healthy, 1 COVID-19, 2 H1N1, 3 CAP).
    probs : (4,) float64 patient-level probability vector (summing to 1); see the module docstring for
        what it means under each rule.
    counts : (4,) int64 number of slices whose per-slice argmax is each class (for the non-parametric
        rule the argmax of ``p``, for max pooling the argmax of ``p_multi``).
    slice_probs : (N, 4) float64 per-slice class probabilities the rule voted with (``p`` for the
        non-parametric rule, ``p_multi`` for max pooling).
    rule : "nonparametric" or "maxpool".
    threshold : the threshold the decision used.
    """

    label: int
    probs: np.ndarray
    counts: np.ndarray
    slice_probs: np.ndarray
    rule: str
    threshold: float = field(default=float("nan"))

    def to_dict(self, classes: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-able summary: ``probs``, ``label`` (a class name), ``counts`` and ``threshold``."""
        if classes is None:
            from m3lung.classes import CLASSES

            classes = CLASSES
        return {
            "probs": [float(v) for v in self.probs],
            "label": str(classes[self.label]),
            "counts": [int(v) for v in self.counts],
            "threshold": float(self.threshold),
        }


# ------------------------------------------------------------------------------------------ validation
def _prob_table(a: Any, name: str, n_cols: int, n_rows: int | None = None) -> np.ndarray:
    """``a`` as a finite (N, n_cols) float64 table of probabilities whose rows sum to 1; else InputError."""
    x = np.asarray(a, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_cols:
        raise InputError(f"{name} must have shape (N, {n_cols}) (one row per slice), got {x.shape}")
    if x.shape[0] < 1:
        raise InputError(f"{name} has no slices; a volume needs at least one")
    if n_rows is not None and x.shape[0] != n_rows:
        raise InputError(f"{name} has {x.shape[0]} slices but p_multi has {n_rows}; both must describe the same volume")
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x).all(axis=1)))
        raise InputError(f"{name} holds NaN or infinite values in {bad} slice(s)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
        raise InputError(f"{name} must hold probabilities in [0, 1], got values in [{lo:.6g}, {hi:.6g}]")
    err = float(np.abs(x.sum(axis=1) - 1.0).max())
    if err > _SUM_TOL:
        raise InputError(
            f"the rows of {name} must sum to 1 (softmax outputs), the worst is off by {err:.3g}; "
            "pass probabilities, not logits"
        )
    return np.clip(x, 0.0, 1.0)


def _lesion_table(p_lesion: Any, n_rows: int) -> np.ndarray:
    """``p_lesion`` as (N, 2) [without, with lesion]; a (N,) vector is taken as P(with lesion)."""
    x = np.asarray(p_lesion, dtype=np.float64)
    if x.ndim == 1:
        if x.shape[0] != n_rows:
            raise InputError(f"p_lesion has {x.shape[0]} slices but p_multi has {n_rows}")
        if not np.isfinite(x).all():
            raise InputError("p_lesion holds NaN or infinite values")
        if x.min() < -_RANGE_TOL or x.max() > 1.0 + _RANGE_TOL:
            raise InputError(f"p_lesion must hold probabilities in [0, 1], got [{x.min():.6g}, {x.max():.6g}]")
        x = np.clip(x, 0.0, 1.0)
        return np.stack([1.0 - x, x], axis=1)
    return _prob_table(x, "p_lesion", 2, n_rows)


def _tie_order(tie_order: Sequence[int]) -> np.ndarray:
    order = np.asarray(tuple(tie_order), dtype=np.int64)
    if order.shape != (3,) or sorted(order.tolist()) != [1, 2, 3]:
        raise InputError(f"tie_order must be an ordering of the disease classes (1, 2, 3), got {tuple(tie_order)}")
    return order


def _pick_disease(values: np.ndarray, order: np.ndarray) -> int:
    """The disease k in 1..3 with the largest ``values[k]``; equal values go to the first of ``order``."""
    return int(order[int(np.argmax(values[order]))])


# ------------------------------------------------------------------------------------------ rules
def nonparametric_assessment(
    p_lesion: np.ndarray,
    p_multi: np.ndarray,
    *,
    threshold: float = 0.99,
    tie_order: Sequence[int] = DEFAULT_TIE_ORDER,
) -> FusionResult:
    """The non-parametric patient assessment of M³Lung-Sys (Appendix I).

    Parameters
    ----------
    p_lesion : (N, 2) lesion-head probabilities per slice (index 0 without lesion, 1 with lesion); a
        (N,) vector is read as P(with lesion).
    p_multi : (N, 4) 4-class probabilities per slice (Healthy, COVID-19, H1N1, CAP).
    threshold : T in [0, 1); Healthy when the share of Healthy votes ``𝔑⁰/N`` is strictly above T.
    tie_order : the diseases in the order that breaks equal vote counts (default COVID-19, H1N1, CAP).

    Returns
    -------
    FusionResult with ``probs = 𝔑 / N`` (vote shares), ``counts = 𝔑`` and ``slice_probs = p`` (N, 4).
    """
    pm = _prob_table(p_multi, "p_multi", _N_CLASSES)
    pl = _lesion_table(p_lesion, pm.shape[0])
    if not 0.0 <= float(threshold) < 1.0:
        raise InputError(f"threshold must be in [0, 1), got {threshold}")
    order = _tie_order(tie_order)

    p = pl[:, 1:2] * pm  # p^k = P_l^1 · P_m^k for every class ...
    p[:, 0] += pl[:, 0]  # ... and p^0 gains P_l^0
    n = p.shape[0]
    counts = np.bincount(p.argmax(axis=1), minlength=_N_CLASSES).astype(np.int64)
    label = 0 if counts[0] / n > threshold else _pick_disease(counts, order)
    return FusionResult(
        label=label,
        probs=counts / float(n),
        counts=counts,
        slice_probs=p,
        rule="nonparametric",
        threshold=float(threshold),
    )


def max_pooling(
    p_multi: np.ndarray,
    p_lesion: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    tie_order: Sequence[int] = DEFAULT_TIE_ORDER,
) -> FusionResult:
    """The max-pooling baseline: each disease scores its highest slice probability.

    Parameters
    ----------
    p_multi : (N, 4) 4-class probabilities per slice.
    p_lesion : not used by the rule; accepted (and checked) so that both rules share a call shape.
    threshold : in [0, 1]; Healthy when every disease score is strictly below it (a score equal to the
        threshold makes the volume diseased).
    tie_order : the diseases in the order that breaks equal scores.

    Returns
    -------
    FusionResult with ``probs`` = ``[1 - max score, score_1, score_2, score_3]`` normalised to sum 1,
    ``counts`` = slices whose ``p_multi`` argmax is each class and ``slice_probs = p_multi``.
    """
    pm = _prob_table(p_multi, "p_multi", _N_CLASSES)
    if p_lesion is not None:
        _lesion_table(p_lesion, pm.shape[0])
    if not 0.0 <= float(threshold) <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}")
    order = _tie_order(tie_order)

    scores = pm.max(axis=0)  # (4,): score_k = max over slices; index 0 is not used by the rule
    top = float(scores[1:].max())
    label = 0 if top < threshold else _pick_disease(scores, order)
    raw = np.concatenate([[1.0 - top], scores[1:]])
    counts = np.bincount(pm.argmax(axis=1), minlength=_N_CLASSES).astype(np.int64)
    return FusionResult(
        label=label,
        probs=raw / raw.sum(),  # the sum is at least 1 - top + top = 1
        counts=counts,
        slice_probs=pm,
        rule="maxpool",
        threshold=float(threshold),
    )
