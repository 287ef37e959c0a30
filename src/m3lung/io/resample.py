"""Resample a :class:`CTVolume` to a target voxel spacing, using the exact slice positions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from m3lung.errors import InputError
from m3lung.io.volume import CTVolume


def _axis_weights(src: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target positions every ``step`` mm over ``src``'s extent; left index and weight of each."""
    extent = float(src[-1] - src[0])
    m = int(np.floor(extent / step + 1e-6)) + 1
    t = src[0] + np.arange(m) * step
    i0 = np.clip(np.searchsorted(src, t, side="right") - 1, 0, len(src) - 2)
    w = (t - src[i0]) / (src[i0 + 1] - src[i0])
    return t, i0, np.clip(w, 0.0, 1.0)


def _resample_axis(data: np.ndarray, src: np.ndarray, step: float, axis: int, order: int) -> np.ndarray:
    if data.shape[axis] < 2:
        return data
    _, i0, w = _axis_weights(src, step)
    shape = [1, 1, 1]
    shape[axis] = len(i0)
    if order == 0:
        idx = np.where(w < 0.5, i0, i0 + 1)
        return np.take(data, idx, axis=axis)
    wf = w.astype(np.float32).reshape(shape)
    lo = np.take(data, i0, axis=axis).astype(np.float32, copy=False)
    hi = np.take(data, i0 + 1, axis=axis).astype(np.float32, copy=False)
    lo *= 1.0 - wf
    hi *= wf
    lo += hi
    return lo


def resample_array(array: np.ndarray, volume: CTVolume, spacing: Sequence[float], *, order: int = 1) -> np.ndarray:
    """Resample ``array`` (on ``volume``'s grid, e.g. a mask) exactly as :func:`resample` would."""
    if order not in (0, 1):
        raise InputError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    if len(spacing) != 3 or any(float(s) <= 0 for s in spacing):
        raise InputError(f"target spacing must be three positive numbers (z, y, x) in mm, got {spacing}")
    _n, h, w = volume.shape
    pos = np.asarray(volume.slice_positions, dtype=np.float64)
    out = np.asarray(array)
    out = _resample_axis(out, pos, float(spacing[0]), 0, order)
    out = _resample_axis(out, np.arange(h) * volume.spacing[1], float(spacing[1]), 1, order)
    out = _resample_axis(out, np.arange(w) * volume.spacing[2], float(spacing[2]), 2, order)
    return out


def resample(volume: CTVolume, spacing: Sequence[float] = (1.0, 1.0, 1.0), *, order: int = 1) -> CTVolume:
    """Resample to ``spacing`` (z, y, x) mm with separable linear (``order=1``) or nearest (0) interpolation.

    The grid starts at the first voxel centre and covers the volume's extent; slices are interpolated
    at their true positions (``slice_positions``), so uneven spacing is corrected, not ignored.
    No anti-aliasing filter is applied when downsampling (as in seed 000's resampling to 1 mm).
    A one-slice volume keeps its single slice.
    """
    vox = resample_array(volume.voxels, volume, spacing, order=order)
    new_spacing = (
        float(spacing[0]) if volume.n_slices > 1 else volume.spacing[0],
        float(spacing[1]),
        float(spacing[2]),
    )
    out = volume.with_voxels(
        np.ascontiguousarray(vox, dtype=np.float32),
        spacing=new_spacing,
        slice_positions=np.arange(vox.shape[0]) * new_spacing[0],
        source_index=None if vox.shape[0] != volume.n_slices else volume.source_index,
    )
    if vox.shape[0] != volume.n_slices:
        # resampled slices no longer correspond to source slices one to one: index by nearest source slice
        pos = np.asarray(volume.slice_positions)
        near = np.abs(pos[None, :] - out.slice_positions[:, None]).argmin(axis=1)  # type: ignore[index]
        out.source_index = np.asarray(volume.source_index)[near]
    return out
