"""Sampling of training slices: which rows train, where a slice sits in its scan, height-matching weights."""

from __future__ import annotations

import numpy as np

from m3lung.data.slices import SliceTable, training_rows


def relative_height(table: SliceTable, rows: np.ndarray) -> np.ndarray:
    """Each row's height in its scan, 0 (first slice, feet end) to 1 (last slice, head end)."""
    n = np.bincount(table.patient, minlength=int(table.patient.max()) + 1)[table.patient[rows]]
    return table.index[rows] / np.maximum(n - 1, 1)


def height_matching_weights(table: SliceTable, rows: np.ndarray, cls: np.ndarray, bins: int) -> np.ndarray:
    """Factors (mean 1 within Healthy) that make the Healthy rows' height histogram that of the others.

    Rows of other classes get 1. A height bin with no Healthy slice cannot be matched and stays
    unweighted by the others; a bin with no diseased slice gets (almost) no Healthy draws.
    """
    b = np.minimum((relative_height(table, rows) * bins).astype(np.int64), bins - 1)
    healthy = cls == 0
    out = np.ones(rows.size)
    if healthy.all() or not healthy.any():
        return out
    h = np.bincount(b[healthy], minlength=bins).astype(np.float64)
    d = np.bincount(b[~healthy], minlength=bins).astype(np.float64)
    target = (d + 1e-3 * d.sum() / bins) / (d.sum() * (1 + 1e-3))  # a floor keeps every bin drawable
    ratio = np.divide(target, h / h.sum(), out=np.zeros(bins), where=h > 0)
    out[healthy] = ratio[b[healthy]]
    out[healthy] /= out[healthy].mean()
    return out


def select_training_rows(table: SliceTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The annotation-rule rows among ``rows`` (:func:`m3lung.data.slices.training_rows`), with their
    class and lesion targets: three (R,) arrays."""
    all_rows, cls, les = training_rows(table)
    keep = np.isin(all_rows, rows)
    return all_rows[keep], cls[keep], les[keep]
