"""Fast binary morphology and per-slice labelling for whole volumes (no Python loop over slices)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi


def _shift_and(m: np.ndarray, s: int, axis: int) -> np.ndarray:
    """``m[i] & m[i + s]`` along ``axis``; positions past the end see False (erosion border = 0)."""
    out = np.zeros_like(m)
    src = [slice(None)] * m.ndim
    dst = [slice(None)] * m.ndim
    src[axis] = slice(s, None)
    dst[axis] = slice(None, m.shape[axis] - s)
    np.logical_and(m[tuple(dst)], m[tuple(src)], out=out[tuple(dst)])
    return out


def _shift_or(m: np.ndarray, s: int, axis: int) -> np.ndarray:
    """``m[i] | m[i - s]`` along ``axis``."""
    out = m.copy()
    src = [slice(None)] * m.ndim
    dst = [slice(None)] * m.ndim
    src[axis] = slice(None, m.shape[axis] - s)
    dst[axis] = slice(s, None)
    np.logical_or(out[tuple(dst)], m[tuple(src)], out=out[tuple(dst)])
    return out


def _doubling(m: np.ndarray, length: int, axis: int, shift: Callable[[np.ndarray, int, int], np.ndarray]) -> np.ndarray:
    """Combine ``m`` with itself shifted 1, 2, 4, ... steps until ``length`` positions are covered."""
    out = m
    covered = 1
    while covered * 2 <= length:
        out = shift(out, covered, axis)
        covered *= 2
    if covered < length:
        out = shift(out, length - covered, axis)
    return out


def _run_starts(m: np.ndarray, length: int, axis: int) -> np.ndarray:
    """True at ``i`` when ``m[i : i + length]`` is all True along ``axis`` (log2 passes)."""
    return _doubling(m, length, axis, _shift_and)


def _run_cover(starts: np.ndarray, length: int, axis: int) -> np.ndarray:
    """True at every position covered by a run of ``length`` that starts where ``starts`` is True."""
    return _doubling(starts, length, axis, _shift_or)


def line_opening(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Binary opening of ``mask`` with a line of ``length`` pixels along ``axis``.

    Keeps exactly the pixels that lie in a run of at least ``length`` consecutive True pixels along
    ``axis``. Equivalent to ``scipy.ndimage.binary_opening`` with that line as structuring element
    (the result does not depend on the element's origin), but with O(log length) array passes.
    """
    if length <= 1:
        return mask.copy()
    return _run_cover(_run_starts(mask, length, axis), length, axis)


def rect_opening(mask: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
    """Opening of every slice of a ``(N, H, W)`` mask with a ``rows x cols`` rectangle of ones.

    A rectangle is separable: erode along rows then cols, dilate along rows then cols.
    """
    kr, kc = kernel
    e = mask
    if kr > 1:
        e = _run_starts(e, kr, 1)
    if kc > 1:
        e = _run_starts(e, kc, 2)
    if kr > 1:
        e = _run_cover(e, kr, 1)
    if kc > 1:
        e = _run_cover(e, kc, 2)
    return e if e is not mask else mask.copy()


_IN_PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_8[1] = True
_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1, 1, :] = _IN_PLANE_4[1, :, 1] = True


def label_slices(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label connected components within each slice of a ``(N, H, W)`` mask (8- or 4-connected).

    One call labels the whole volume; components never cross slices. Labels are numbered in raster
    order, so all labels of slice ``k`` are larger than those of slice ``k - 1``.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    structure = _IN_PLANE_8 if connectivity == 8 else _IN_PLANE_4
    labels, n = ndi.label(mask, structure=structure)
    return labels, int(n)


def slice_of_labels(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Slice index of each label ``1..n_labels`` (index 0 of the result is unused, -1)."""
    per_slice_max = np.maximum.accumulate(labels.reshape(labels.shape[0], -1).max(axis=1))
    out = np.searchsorted(per_slice_max, np.arange(n_labels + 1), side="left")
    out[0] = -1
    return out


def border_labels(labels: np.ndarray) -> np.ndarray:
    """Labels that touch the edge of their slice (first/last row or column)."""
    edges = np.concatenate(
        [labels[:, 0, :].ravel(), labels[:, -1, :].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]
    )
    return np.unique(edges[edges > 0])


def bounding_boxes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice bounding boxes of a ``(N, H, W)`` mask.

    Returns ``boxes`` (N, 4) int64 as half-open ``(row0, col0, row1, col1)`` and ``empty`` (N,) bool;
    empty slices get the full slice.
    """
    _n, h, w = mask.shape
    rows: np.ndarray = np.any(mask, axis=2)
    cols: np.ndarray = np.any(mask, axis=1)
    empty: np.ndarray = ~np.any(rows, axis=1)
    r0 = rows.argmax(axis=1)
    r1 = h - rows[:, ::-1].argmax(axis=1)
    c0 = cols.argmax(axis=1)
    c1 = w - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([r0, c0, r1, c1], axis=1).astype(np.int64)
    boxes[empty] = (0, 0, h, w)
    return boxes, empty


def largest_component_slices(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """Keep only the largest connected component of every slice of a ``(N, H, W)`` mask."""
    labels, n = label_slices(mask, connectivity)
    if n == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    slices = slice_of_labels(labels, n)[1:]
    order = np.lexsort((sizes, slices))  # by slice, then size ascending
    last_of_slice = np.append(slices[order][1:] != slices[order][:-1], True)
    keep = np.zeros(n + 1, dtype=bool)
    keep[order[last_of_slice] + 1] = True
    return keep[labels]


def fill_holes_slices(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of every slice of a ``(N, H, W)`` mask (background is 4-connected)."""
    labels, n = label_slices(~mask, connectivity=4)
    if n == 0:
        return mask.copy()
    holes = np.ones(n + 1, dtype=bool)
    holes[0] = False
    holes[border_labels(labels)] = False
    return mask | holes[labels]
