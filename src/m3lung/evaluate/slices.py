"""Slice-level figures from arrays: 4-class figures, where the errors fall, lesion maps against masks.

The arrays are one row per slice: ``cls`` (N,) true class, ``probs`` (N, C) predicted probabilities,
``maps`` (N, H, W) with-lesion maps in [0, 1] and ``masks`` (N, H, W) bool lesion masks on the same grid.
"""

from __future__ import annotations

import numpy as np

from m3lung.classes import CLASSES
from m3lung.evaluate.maps import dice, pointing_game
from m3lung.evaluate.metrics import accuracy, confusion_matrix, one_vs_rest_auc


def class_figures(cls: np.ndarray, probs: np.ndarray, n_classes: int) -> dict[str, object]:
    """``acc``, ``auc_<class>`` (one vs rest, NaN where a class is absent), ``auc_macro`` (their mean over
    the defined ones) and ``confusion`` (C[true, predicted], nested lists) of ``probs`` against ``cls``."""
    out: dict[str, object] = {"acc": accuracy(cls, probs.argmax(1))}
    aucs = one_vs_rest_auc(cls, probs)
    for k, a in enumerate(aucs):
        out[f"auc_{CLASSES[k].lower()}"] = float(a)
    out["auc_macro"] = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
    out["confusion"] = confusion_matrix(cls, probs.argmax(1), n_classes).tolist()
    return out


def accuracy_breakdown(
    cls: np.ndarray, pred: np.ndarray, height: np.ndarray, lesion_area: np.ndarray | None = None
) -> dict[str, dict[str, list[float]]]:
    """Where the 4-class errors are: healthy slices by height in the scan, lesion slices by lesion area.

    ``height`` (N,) is each slice's relative height in its scan (0 = most inferior slice, 1 = most
    superior), ``lesion_area`` (N,) its lesion's share of the lung crop (None: unknown).
    ``acc_healthy_by_height``: accuracy on healthy slices (class 0) in five bins of height.
    ``acc_by_lesion_area``: accuracy on the other slices in quartiles of lesion area (with at least 4).
    """
    out: dict[str, dict[str, list[float]]] = {}
    ok = (cls == pred).astype(float)
    healthy = cls == 0
    if healthy.any():
        edges = np.linspace(0, 1, 6)
        b = np.clip(np.digitize(height, edges[1:-1]), 0, 4)
        out["acc_healthy_by_height"] = {
            "bin_edges": edges.round(2).tolist(),
            "acc": [
                float(ok[healthy & (b == k)].mean()) if (healthy & (b == k)).any() else float("nan") for k in range(5)
            ],
            "n": [float((healthy & (b == k)).sum()) for k in range(5)],
        }
    sick = cls > 0
    if lesion_area is not None and sick.sum() >= 4:
        edges = np.quantile(lesion_area[sick], [0, 0.25, 0.5, 0.75, 1])
        b = np.clip(np.digitize(lesion_area, edges[1:-1]), 0, 3)
        out["acc_by_lesion_area"] = {
            "quartile_edges": edges.round(5).tolist(),
            "acc": [float(ok[sick & (b == k)].mean()) if (sick & (b == k)).any() else float("nan") for k in range(4)],
            "n": [float((sick & (b == k)).sum()) for k in range(4)],
        }
    return out


def map_figures(maps: np.ndarray, masks: np.ndarray, prototype: str, *, main: bool = True) -> dict[str, float]:
    """Pointing game and Dice@0.5 of ``maps`` against ``masks``, keyed by prototype (and plainly when main).

    With ``main`` also ``pointing_game_tolerant``: a hit within ``pointing_game_tolerance_px`` of the
    lesion, the 15 px at 224 px of the original pointing game (Zhang et al., 2016) scaled to the maps.
    """
    pg = float(pointing_game(maps, masks).mean())
    dc = float(dice(maps, masks, threshold=0.5).mean())
    out = {f"pointing_game[{prototype}]": pg, f"dice@0.5[{prototype}]": dc}
    if main:
        out.update({"pointing_game": pg, "dice@0.5": dc})
        tol = max(1, round(15 * maps.shape[-1] / 224))
        out["pointing_game_tolerant"] = float(pointing_game(maps, masks, tolerance_px=tol).mean())
        out["pointing_game_tolerance_px"] = float(tol)
    return out


def pointing_game_chance(masks: np.ndarray) -> float:
    """The mean lesion area fraction of ``masks``: how often a point dropped at random hits a lesion."""
    return float(masks.reshape(masks.shape[0], -1).mean(1).mean())


def pointing_game_by_class(maps: np.ndarray, masks: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """``pointing_game_<class>``: the pointing game on the slices of each scan class in ``label`` (N,)."""
    hits = pointing_game(maps, masks)
    return {f"pointing_game_{CLASSES[int(k)].lower()}": float(hits[label == k].mean()) for k in np.unique(label)}


def positions_in(rows: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Where each row of ``sub`` sits in ``rows`` (every row of ``sub`` is one of ``rows``)."""
    if np.all(np.diff(rows) > 0):
        return np.searchsorted(rows, sub)
    where = {int(r): i for i, r in enumerate(rows)}
    return np.array([where[int(r)] for r in sub])
