"""Checks on decoded voxels: slices whose values cannot be CT in Hounsfield units, or do not fit the series.

Two per-slice tests, vectorised over the volume (one pass per block of slices, never a loop over pixels):

* **HU range**: a slice is *out of range* when more than :data:`OUT_OF_RANGE_FRACTION` of its voxels lie
  outside :data:`HU_PLAUSIBLE` = (-2048, 4000) HU. The padding value outside a round field of view
  (e.g. -3024 HU) is not counted: each slice's minimum, when below the range, is taken as padding.
  Small metal (dental fillings, clips) stays far below the fraction.
* **Neighbours**: ``d[k]`` is the mean absolute difference (HU) between slices ``k`` and ``k + 1``; a slice
  is *inconsistent* when its difference from **both** neighbours (the one neighbour for the first and the
  last slice) exceeds :data:`NEIGHBOUR_FACTOR` times the series' median ``d`` and at least
  :data:`NEIGHBOUR_MIN_HU`. A gap in the series makes one large difference, which flags no slice. Needs
  at least :data:`NEIGHBOUR_MIN_SLICES` slices.

* **Copies**: two slices at different positions with identical voxels (noise makes that impossible in
  a real scan: the pixel data of one file was written into another), and slices that hold one value
  only (a zeroed or blank pixel stream), are a warning naming them; they do not count as flagged.

Flagged slices are a warning naming their positions; when more than :data:`MAX_FLAGGED_FRACTION` of the
slices are flagged the volume is refused (:class:`~m3lung.errors.IntensityError`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from m3lung.errors import IntensityError, warn
from m3lung.io.volume import CTVolume

__all__ = [
    "HU_PLAUSIBLE",
    "MAX_FLAGGED_FRACTION",
    "NEIGHBOUR_FACTOR",
    "NEIGHBOUR_MIN_HU",
    "NEIGHBOUR_MIN_SLICES",
    "OUT_OF_RANGE_FRACTION",
    "SliceCheck",
    "check_slices",
    "copied_slices",
    "slice_stats",
]

#: Values (HU, after rescale) a CT voxel can plausibly hold; outside it counts as implausible.
HU_PLAUSIBLE = (-2048.0, 4000.0)
#: A slice is out of range when more than this fraction of its voxels lie outside :data:`HU_PLAUSIBLE`.
OUT_OF_RANGE_FRACTION = 0.01
#: A slice is inconsistent when it differs from both neighbours by more than this many times the median.
NEIGHBOUR_FACTOR = 5.0
#: ... and by at least this mean absolute difference (HU), so near-identical series flag nothing.
NEIGHBOUR_MIN_HU = 60.0
#: The neighbour test needs at least this many slices (a median of fewer differences means nothing).
NEIGHBOUR_MIN_SLICES = 5
#: Refuse the volume when more than this fraction of its slices are flagged.
MAX_FLAGGED_FRACTION = 0.1

_BLOCK_VOXELS = 2**20  # voxels per vectorised block: temporaries stay at a few MiB whatever the volume


@dataclass(frozen=True)
class SliceCheck:
    """Per-slice figures behind :func:`check_slices`.

    Attributes
    ----------
    out_of_range : (N,) float
        Fraction of each slice's voxels outside :data:`HU_PLAUSIBLE` (padding excluded).
    neighbour_diff : (N - 1,) float
        Mean absolute difference (HU) between slices ``k`` and ``k + 1``.
    own_diff : (N,) float
        The smaller difference of each slice from its neighbours (its only one at the ends).
    median_diff : float
        Median of ``neighbour_diff`` (0 for a single slice).
    flagged_range, flagged_neighbour : (N,) bool
    """

    out_of_range: np.ndarray
    neighbour_diff: np.ndarray
    own_diff: np.ndarray
    median_diff: float
    flagged_range: np.ndarray
    flagged_neighbour: np.ndarray

    @property
    def flagged(self) -> np.ndarray:
        """(N,) bool: slices flagged by either test."""
        return self.flagged_range | self.flagged_neighbour


def slice_stats(voxels: np.ndarray) -> SliceCheck:
    """The per-slice range and neighbour figures of ``voxels`` ``(N, H, W)`` in HU (not modified)."""
    v = np.asarray(voxels)
    n = v.shape[0]
    lo, hi = HU_PLAUSIBLE
    out = np.zeros(n, dtype=np.float64)
    diff = np.zeros(max(n - 1, 0), dtype=np.float64)
    per_slice = max(1, v.shape[1] * v.shape[2])
    step = max(1, _BLOCK_VOXELS // per_slice)
    for s in range(0, n, step):
        blk = v[s : s + step]
        bad = blk < lo
        bad |= blk > hi
        smin = blk.min(axis=(1, 2), keepdims=True)  # padding: one value, the slice's lowest
        bad &= (blk != smin) | (smin >= lo)
        out[s : s + step] = np.count_nonzero(bad.reshape(blk.shape[0], -1), axis=1) / per_slice
        e = min(s + step, n - 1)
        if e > s:
            d = np.subtract(v[s + 1 : e + 1], v[s:e], dtype=np.float32)
            np.abs(d, out=d)
            diff[s:e] = d.reshape(e - s, -1).mean(axis=1, dtype=np.float64)
    if n >= 2:
        left = np.concatenate([[np.inf], diff])  # difference from the previous slice
        right = np.concatenate([diff, [np.inf]])  # ... from the next one
        own = np.minimum(left, right)
        med = float(np.median(diff))
    else:
        own = np.zeros(n)
        med = 0.0
    flagged_range = out > OUT_OF_RANGE_FRACTION
    if n >= NEIGHBOUR_MIN_SLICES:
        limit = max(NEIGHBOUR_FACTOR * med, NEIGHBOUR_MIN_HU)
        flagged_neighbour = own > limit
    else:
        flagged_neighbour = np.zeros(n, dtype=bool)
    return SliceCheck(out, diff, own, med, flagged_range, flagged_neighbour)


def copied_slices(voxels: np.ndarray) -> tuple[list[list[int]], list[int]]:
    """Groups of slice indices with identical, non-constant voxels, and the indices of constant slices."""
    v = np.asarray(voxels)
    constant: list[int] = []
    seen: dict[bytes, list[int]] = {}
    for k in range(v.shape[0]):
        sl = np.ascontiguousarray(v[k])
        if sl.size == 0 or sl.min() == sl.max():
            constant.append(k)
            continue
        seen.setdefault(hashlib.blake2b(sl.tobytes(), digest_size=16).digest(), []).append(k)
    groups = [g for g in seen.values() if len(g) > 1]
    return groups, constant


def _where(idx: np.ndarray, volume: CTVolume) -> str:
    pos = volume.slice_positions
    assert pos is not None
    shown = ", ".join(f"#{int(k)} ({pos[k]:.1f} mm)" for k in idx[:8])
    more = f" and {idx.size - 8} more" if idx.size > 8 else ""
    files = volume.source.files
    first = f"; first file {files[int(idx[0])]}" if len(files) == volume.n_slices and idx.size else ""
    return f"{shown}{more}{first}"


def check_slices(volume: CTVolume) -> SliceCheck:
    """Flag slices of an HU ``volume`` whose values cannot be CT or do not fit their neighbours.

    Appends one warning per test to ``volume.warnings`` (an :class:`~m3lung.errors.M3LungWarning`)
    naming the slices (index in the volume and position along the slice axis, mm), and raises
    :class:`~m3lung.errors.IntensityError` when more than :data:`MAX_FLAGGED_FRACTION` of the slices are
    flagged. Volumes that are not HU (8-bit images) are not checked.
    """
    st = slice_stats(volume.voxels)
    if not volume.is_hu:
        return st
    path = volume.source.path
    n = volume.n_slices
    n_flagged = int(st.flagged.sum())
    if n_flagged > MAX_FLAGGED_FRACTION * n:
        raise IntensityError(
            f"{path}: {n_flagged} of {n} slices hold values that cannot be CT in HU or do not fit their "
            f"neighbours (e.g. {_where(np.flatnonzero(st.flagged), volume)}); the pixel data are corrupt or "
            "not Hounsfield units: re-export the series, or check its rescale tags"
        )
    rng = np.flatnonzero(st.flagged_range)
    if rng.size:
        lo, hi = HU_PLAUSIBLE
        warn(
            f"{path}: {rng.size} slice(s) hold many values outside {lo:g}..{hi:g} HU, which a CT cannot: "
            f"{_where(rng, volume)}; those slices are probably corrupt: check them by eye or re-export",
            volume.warnings,
        )
    nb = np.flatnonzero(st.flagged_neighbour & ~st.flagged_range)
    if nb.size:
        warn(
            f"{path}: {nb.size} slice(s) differ from both neighbours far more than the series' slices "
            f"usually do (median {st.median_diff:.0f} HU): {_where(nb, volume)}; those slices are probably "
            "corrupt: check them by eye or re-export",
            volume.warnings,
        )
    _warn_copies(volume)
    return st


def _warn_copies(volume: CTVolume) -> None:
    groups, constant = copied_slices(volume.voxels)
    path = volume.source.path
    if groups:
        shown = "; ".join(_where(np.array(g), volume) for g in groups[:4])
        warn(
            f"{path}: {sum(len(g) for g in groups)} slices at different positions hold identical images, which "
            f"noise makes impossible in a scan: {shown}; one file's pixel data was probably copied into "
            "another: check them by eye or re-export",
            volume.warnings,
        )
    if constant and len(constant) < volume.n_slices:
        warn(
            f"{path}: {len(constant)} slice(s) hold one value only (a blank or zeroed image): "
            f"{_where(np.array(constant), volume)}; check them by eye or re-export",
            volume.warnings,
        )
