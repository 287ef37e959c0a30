"""Weakly supervised lesion maps against lesion masks: pointing game and Dice."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def pointing_game(maps: np.ndarray, masks: np.ndarray, *, tolerance_px: int = 0) -> np.ndarray:
    """For each (H, W) map: is its maximum inside the mask (grown by ``tolerance_px``)? -> (N,) bool.

    ``maps`` (N, H, W) and ``masks`` (N, H, W) share a grid; ties take the first maximum in raster order.
    """
    m = np.asarray(maps)
    k = np.asarray(masks, dtype=bool)
    if m.shape != k.shape:
        raise ValueError(f"maps {m.shape} and masks {k.shape} differ in shape")
    if tolerance_px > 0:
        k = ndi.binary_dilation(k, structure=np.ones((1, 3, 3), bool), iterations=tolerance_px)
    flat = m.reshape(m.shape[0], -1).argmax(axis=1)
    return k.reshape(k.shape[0], -1)[np.arange(m.shape[0]), flat]


def dice(maps: np.ndarray, masks: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Dice of ``maps >= threshold`` against ``masks``, per map (N,); 1 when both are empty."""
    a = np.asarray(maps) >= threshold
    b = np.asarray(masks, dtype=bool)
    inter = (a & b).reshape(a.shape[0], -1).sum(1)
    total = a.reshape(a.shape[0], -1).sum(1) + b.reshape(b.shape[0], -1).sum(1)
    return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))
