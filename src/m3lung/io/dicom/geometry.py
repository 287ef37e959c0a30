"""Geometry: slice order along the normal, duplicate slices, spacing checks, the memory estimate."""

from __future__ import annotations

import numpy as np

from m3lung.errors import DicomError, warn
from m3lung.io.dicom.scan import LARGE_SERIES_SLICES, _SliceRef
from m3lung.io.guards import check_read_size


# --------------------------------------------------------------------------------------------- geometry
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _check_memory(n: int, rows: int, cols: int, path: str, sink: list[str]) -> None:
    """Refuse, from the headers alone, a series that would need too much memory (see :mod:`m3lung.io.guards`)."""
    bytes_per_voxel = 4 * 2  # float32 voxels plus the stored pixels while converting
    if n > LARGE_SERIES_SLICES:
        warn(
            f"{path}: {n} slices is unusually many for a chest CT; reading needs about "
            f"{n * rows * cols * bytes_per_voxel / 2**30:.1f} GiB",
            sink,
        )
    check_read_size((n, rows, cols), bytes_per_voxel, path, error=DicomError)


def _order_and_dedupe(
    refs: list[_SliceRef], normal: np.ndarray
) -> tuple[list[_SliceRef], np.ndarray, list[list[_SliceRef]]]:
    """Sort by position along ``normal``; merge same-position slices. Returns refs, positions, groups."""
    pos = np.array([float(np.dot(r.ipp, normal)) for r in refs])  # type: ignore[arg-type]
    order = np.argsort(pos, kind="stable")
    refs = [refs[i] for i in order]
    pos = pos[order]
    groups: list[list[_SliceRef]] = [[refs[0]]]
    for r, p, prev in zip(refs[1:], pos[1:], pos[:-1], strict=True):
        if abs(p - prev) < 1e-3:
            groups[-1].append(r)
        else:
            groups.append([r])
    kept = [g[0] for g in groups]
    kept_pos = np.array([float(np.dot(r.ipp, normal)) for r in kept])  # type: ignore[arg-type]
    return kept, kept_pos, groups


def _resolve_duplicates(
    groups: list[list[_SliceRef]], pixels: dict[str, np.ndarray], positions: np.ndarray, path: str, sink: list[str]
) -> None:
    dup_positions = []
    for g, z in zip(groups, positions, strict=True):
        if len(g) < 2:
            continue
        first = _pixels_of(g[0], pixels)
        for other in g[1:]:
            same_uid = other.sop_uid is not None and other.sop_uid == g[0].sop_uid
            if not same_uid and not np.array_equal(first, _pixels_of(other, pixels)):
                raise DicomError(
                    f"{path}: two different images at the same position ({z:.2f} mm along the slice normal): "
                    f"{g[0].path} and {other.path}. The folder probably mixes two reconstructions of one "
                    "series (e.g. lung and soft-tissue kernels); keep one of them, or pass series_uid."
                )
        dup_positions.append(round(float(z), 2))
    if dup_positions:
        shown = ", ".join(f"{z:g}" for z in dup_positions[:10])
        warn(
            f"{path}: {len(dup_positions)} slice position(s) appear more than once with identical images "
            f"(duplicates dropped) at {shown} mm",
            sink,
        )


def _pixels_of(ref: _SliceRef, pixels: dict[str, np.ndarray]) -> np.ndarray:
    arr = pixels[ref.path]
    if ref.frame is not None and arr.ndim == 3:
        return arr[ref.frame]
    return arr


def _spacing_checks(positions: np.ndarray, path: str, sink: list[str]) -> float:
    """Median slice spacing; warns about uneven spacing and gaps with their positions."""
    diffs = np.diff(positions)
    med = float(np.median(diffs))
    tol = max(0.01, 0.01 * med)
    gaps = np.nonzero(diffs > 1.5 * med)[0]
    if gaps.size:
        shown = ", ".join(
            f"{positions[i]:.2f}→{positions[i + 1]:.2f} mm (~{round(diffs[i] / med) - 1} missing)" for i in gaps[:10]
        )
        warn(f"{path}: {gaps.size} gap(s) in the slice positions (spacing {med:g} mm): {shown}", sink)
    uneven = np.nonzero(np.abs(diffs - med) > tol)[0]
    uneven = np.setdiff1d(uneven, gaps)
    if uneven.size:
        shown = ", ".join(f"{positions[i]:.2f}→{positions[i + 1]:.2f} ({diffs[i]:.3f} mm)" for i in uneven[:10])
        warn(
            f"{path}: slice spacing is uneven at {uneven.size} place(s) (median {med:g} mm): {shown}; the exact "
            "positions are kept in CTVolume.slice_positions and used when resampling",
            sink,
        )
    return med
