"""Lesion maps from the lung crop back to the scan's own pixels, and the infected share of the lung.

The slice network sees each slice's lung crop resized to S x S (``m3lung.preprocess.lung_crop``), so
its lesion maps live on that crop. :func:`uncrop_maps` is the inverse of
:func:`m3lung.preprocess.resize.crop_resize`: every map is resized (bilinear, pixel-centre aligned) to
its slice's box and pasted into an otherwise zero slice, for all slices at once.
"""

from __future__ import annotations

import numpy as np

from m3lung.errors import InputError


def _interpolation_matrices(start: np.ndarray, stop: np.ndarray, size: int, length: int) -> np.ndarray:
    """(n, length, size) bilinear weights taking ``size`` crop samples to pixels 0..length-1 of each slice.

    Pixel p of slice k samples the crop at u = (p - start_k + 0.5) * size / (stop_k - start_k) - 0.5
    (pixel centres aligned, clamped to the crop); rows of pixels outside [start_k, stop_k) are zero.
    """
    n = start.shape[0]
    span = np.maximum(stop - start, 1).astype(np.float64)
    pix = np.arange(length, dtype=np.float64)[None, :]
    pos = np.clip((pix - start[:, None] + 0.5) * (size / span[:, None]) - 0.5, 0, size - 1)
    i0 = np.minimum(np.floor(pos).astype(np.int64), max(size - 2, 0))
    w1 = (pos - i0) if size > 1 else np.zeros_like(pos)
    inside = (pix >= start[:, None]) & (pix < stop[:, None])
    mat = np.zeros((n, length, size), dtype=np.float32)
    k = np.arange(n)[:, None]
    p = np.arange(length)[None, :]
    mat[k, p, i0] = np.where(inside, 1 - w1, 0)
    if size > 1:
        mat[k, p, i0 + 1] += np.where(inside, w1, 0)
    return mat


def uncrop_maps(maps: np.ndarray, boxes: np.ndarray, shape: tuple[int, int], *, chunk: int = 32) -> np.ndarray:
    """Put crop-space maps back into their slices.

    Parameters
    ----------
    maps : (N, S, S) float maps on the lung crops (any S; rows and columns may differ).
    boxes : (N, 4) int half-open ``(row0, col0, row1, col1)`` crop boxes in the slices' pixels.
    shape : (H, W) of the slices.
    chunk : slices per vectorised pass (bounds memory for long scans).

    Returns
    -------
    (N, H, W) float32: the maps resized bilinearly into their boxes, 0 outside. Each slice is two
    batched matrix products, rows (H x S) @ map (S x S) @ columns (S x W), all slices of a chunk at once.
    """
    m = np.asarray(maps, dtype=np.float32)
    b = np.asarray(boxes, dtype=np.int64)
    if m.ndim != 3 or b.shape != (m.shape[0], 4):
        raise InputError(f"uncrop_maps: maps (N, S, S) and boxes (N, 4) expected, got {m.shape} and {b.shape}")
    n, sr, sc = m.shape
    h, w = shape
    out = np.empty((n, h, w), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        rows = _interpolation_matrices(b[s:e, 0], b[s:e, 2], sr, h)  # (n, H, S)
        cols = _interpolation_matrices(b[s:e, 1], b[s:e, 3], sc, w)  # (n, W, S)
        np.matmul(np.matmul(rows, m[s:e]), cols.transpose(0, 2, 1), out=out[s:e])
    return out


def infected_share(lesion: np.ndarray, lung: np.ndarray, *, spacing: tuple[float, float, float] | None = None) -> float:
    """Share of the lung taken by lesion: |lesion ∩ field| / |lung ∪ lesion| (0 when there is no lung).

    ``lesion`` and ``lung`` are boolean arrays of one shape. The lesion region is added to the lung
    because consolidated lung is not air and so is missing from an air-based lung mask (a choice,
    documented in the report schema). Spacing only matters across volumes; within one it cancels.
    """
    les = np.asarray(lesion, dtype=bool)
    lng = np.asarray(lung, dtype=bool)
    if les.shape != lng.shape:
        raise InputError(f"infected_share: lesion {les.shape} and lung {lng.shape} differ in shape")
    total = int(np.count_nonzero(les | lng))
    if total == 0:
        return 0.0
    return float(np.count_nonzero(les)) / total
