"""Patient-level figures of the decision rules: each rule's labels on cached scans, its figures, a table.

A *decision* of a rule over S scans is ``(labels (S,) int, probs (S, 4))``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.classes import CLASSES
from m3lung.data.features import ScanFeatures, mean_windows
from m3lung.evaluate.metrics import confusion_matrix, error_rates
from m3lung.fusion import max_pooling, nonparametric_assessment

Decisions = Mapping[str, tuple[np.ndarray, np.ndarray]]


def fusion_decisions(
    scans: Sequence[ScanFeatures], *, threshold: float = 0.99, maxpool_threshold: float = 0.5
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Labels (S,) and probabilities (S, 4) of the non-parametric rule and max pooling per scan.

    Both read the window-averaged slice probabilities; the non-parametric rule needs the lesion head's
    (scans without are left out of it, and the rule out of the result when no scan has them).
    """
    out: dict[str, tuple[list[int], list[np.ndarray]]] = {"nonparametric": ([], []), "maxpool": ([], [])}
    for s in scans:
        _, pm, pl = mean_windows(s)
        if pl is not None:
            r = nonparametric_assessment(pl, pm, threshold=threshold)
            out["nonparametric"][0].append(r.label)
            out["nonparametric"][1].append(r.probs)
        m = max_pooling(pm, threshold=maxpool_threshold)
        out["maxpool"][0].append(m.label)
        out["maxpool"][1].append(m.probs)
    return {k: (np.array(v[0], dtype=np.int64), np.array(v[1])) for k, v in out.items() if v[0]}


def rule_figures(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, FPE, FNE, FDPE (fractions) and the confusion matrix C[true, pred] of one rule."""
    c = confusion_matrix(y, pred, 4)
    figs = {k: float(v) for k, v in error_rates(c).items()}
    return {**figs, "confusion": c.tolist(), "n_scans": int(y.size)}


def decision_table(scans: Sequence[ScanFeatures], decisions: Decisions) -> list[dict[str, Any]]:
    """One row per scan: its id, class name, slice count, each rule's label and rounded probabilities."""
    return [
        {
            "patient_id": s.patient_id,
            "label": CLASSES[s.label],
            "n_slices": s.n_slices,
            **{name: CLASSES[int(pred[i])] for name, (pred, _) in decisions.items()},
            **{f"p_{name}": [round(float(v), 4) for v in probs[i]] for name, (_, probs) in decisions.items()},
        }
        for i, s in enumerate(scans)
    ]


def write_rule_predictions(
    folder: str | os.PathLike[str], scans: Sequence[ScanFeatures], y: np.ndarray, decisions: Decisions
) -> list[Path]:
    """Each rule's decisions as ``predictions_<rule>.csv`` in ``folder``, the format ``m3lung evaluate``
    reads (:func:`m3lung.evaluate.predictions.write_predictions`)."""
    from m3lung.evaluate.predictions import write_predictions

    ids = [s.patient_id for s in scans]
    return [
        write_predictions(Path(folder) / f"predictions_{name}.csv", ids, y.tolist(), pred.tolist(), probs, CLASSES)
        for name, (pred, probs) in decisions.items()
    ]
