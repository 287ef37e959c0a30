"""Bring any 3D array with known geometry to the canonical orientation of :class:`CTVolume`."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

#: For canonical array axis a (0 slices, 1 rows, 2 cols), the LPS world axis it follows (z, y, x).
CANONICAL_WORLD_AXIS = (2, 1, 0)


@dataclass(frozen=True)
class Reorientation:
    """How an array was permuted and flipped to reach canonical orientation.

    Canonical axis ``a`` is source axis ``perm[a]``, reversed when ``flip[a]``.
    ``obliquity_deg`` is the largest angle between an array axis and the world axis it was assigned.
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    obliquity_deg: float

    def index_map(self, axis: int, n: int) -> np.ndarray:
        """For canonical axis ``axis`` of length ``n``: the source index of each canonical index."""
        idx = np.arange(n)
        return idx[::-1].copy() if self.flip[axis] else idx


def plan_reorientation(axis_dirs: np.ndarray) -> Reorientation:
    """Choose the permutation and flips that bring array axes closest to canonical.

    ``axis_dirs`` rows are the LPS directions of the source array's axes 0, 1, 2 (any length).
    The assignment maximises the total alignment over all 6 permutations, so 45-degree obliques and
    sagittal/coronal acquisitions are handled without ambiguity.
    """
    d = np.asarray(axis_dirs, dtype=np.float64)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    best: tuple[float, tuple[int, ...]] | None = None
    for perm in itertools.permutations(range(3)):
        # canonical axis a takes source axis perm[a]; it should follow world axis CANONICAL_WORLD_AXIS[a]
        score = sum(abs(d[perm[a], CANONICAL_WORLD_AXIS[a]]) for a in range(3))
        if best is None or score > best[0] + 1e-12:
            best = (score, perm)
    assert best is not None
    perm = best[1]
    flips = []
    worst = 0.0
    for a in range(3):
        comp = d[perm[a], CANONICAL_WORLD_AXIS[a]]
        flips.append(bool(comp < 0))
        worst = max(worst, math.degrees(math.acos(min(1.0, abs(comp)))))
    return Reorientation(perm=(perm[0], perm[1], perm[2]), flip=(flips[0], flips[1], flips[2]), obliquity_deg=worst)


def apply_reorientation(
    array: np.ndarray,
    plan: Reorientation,
    axis_dirs: np.ndarray,
    spacing: tuple[float, float, float],
    origin: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], np.ndarray]:
    """Permute and flip ``array`` as planned; return (array, direction, spacing, origin).

    ``spacing`` is per source axis; ``origin`` is the LPS position of source voxel [0, 0, 0].
    Returns a C-contiguous array, direction rows (unit LPS vectors per canonical axis), spacing per
    canonical axis and the LPS position of the new voxel [0, 0, 0].
    """
    d = np.asarray(axis_dirs, dtype=np.float64)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    out = np.transpose(array, plan.perm)
    new_dirs = d[list(plan.perm)].copy()
    new_spacing = tuple(float(spacing[p]) for p in plan.perm)
    new_origin = np.asarray(origin, dtype=np.float64).copy()
    slicer = []
    for a in range(3):
        if plan.flip[a]:
            n = out.shape[a]
            new_origin = new_origin + (n - 1) * new_spacing[a] * new_dirs[a]
            new_dirs[a] = -new_dirs[a]
            slicer.append(slice(None, None, -1))
        else:
            slicer.append(slice(None))
    out = np.ascontiguousarray(out[tuple(slicer)])
    return out, new_dirs, (new_spacing[0], new_spacing[1], new_spacing[2]), new_origin
