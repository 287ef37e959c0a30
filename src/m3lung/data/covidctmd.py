"""The COVID-CT-MD layout (Afshar et al., Sci Data 8:121, 2021): per-slice and per-lobe infection labels.

The label files hold one row per labelled case (its "Label Index" in ``Index.csv``) and 200 slots:
slot ``i`` is the ``i``-th slice in **InstanceNumber order** (IM0001 first), which for this data set is
head to feet (descending SliceLocation). :func:`slice_labels` maps the slots onto the canonical slice
order of a :class:`~m3lung.io.CTVolume` (feet to head) through ``CTVolume.source_index``, which for
DICOM input is exactly the InstanceNumber rank. Normal cases have no row: every slice is uninfected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from m3lung.errors import InputError
from m3lung.io.volume import CTVolume

#: Lobe order of ``Lobe-level-labels-updated-1.npy``.
LOBES = ("LLL", "LUL", "RLL", "RML", "RUL")
SLICE_LABEL_FILE = "Slice-level-labels-updated-1.npy"
LOBE_LABEL_FILE = "Lobe-level-labels-updated-1.npy"


def _load(labels: np.ndarray | str | os.PathLike[str]) -> np.ndarray:
    if isinstance(labels, (str, os.PathLike)):
        p = Path(labels)
        if not p.exists():
            raise InputError(f"{p}: COVID-CT-MD label file not found")
        return np.load(p, allow_pickle=False)
    return np.asarray(labels)


def _source_ranks(volume: CTVolume) -> np.ndarray:
    if volume.source.format != "dicom" or not volume.source.instance_numbers:
        raise InputError(
            f"{volume.source.path}: COVID-CT-MD labels follow the DICOM InstanceNumber order; read the case's "
            "DICOM folder (not a converted file) so that the order is known"
        )
    if any(i is None for i in volume.source.instance_numbers):
        raise InputError(f"{volume.source.path}: some slices lack an InstanceNumber; the label order is unknown")
    return np.asarray(volume.source_index)


def slice_labels(
    volume: CTVolume, labels: np.ndarray | str | os.PathLike[str] | None, label_index: int | None
) -> np.ndarray:
    """Per-slice infection labels (N,) uint8 in the volume's canonical order (1 = infection visible).

    ``labels`` is ``Slice-level-labels-updated-1.npy`` (or its array); ``label_index`` the case's
    "Label Index" in ``Index.csv``. ``label_index=None`` (a normal case) gives all zeros.
    """
    n = volume.n_slices
    if label_index is None:
        return np.zeros(n, dtype=np.uint8)
    arr = _load(labels) if labels is not None else None
    if arr is None or arr.ndim != 2:
        raise InputError("slice labels must be a (cases, slots) array")
    if not 0 <= label_index < arr.shape[0]:
        raise InputError(f"label index {label_index} outside the label file's {arr.shape[0]} cases")
    ranks = _source_ranks(volume)
    if n > arr.shape[1]:
        raise InputError(f"{volume.source.path}: {n} slices but the label file has only {arr.shape[1]} slots")
    row = arr[label_index]
    if np.any(row[n:] != 0):
        raise InputError(
            f"{volume.source.path}: the label row has infected slots beyond the volume's {n} slices; "
            "is this the right case / label index?"
        )
    return row[ranks].astype(np.uint8)


def lobe_labels(volume: CTVolume, labels: np.ndarray | str | os.PathLike[str], label_index: int | None) -> np.ndarray:
    """Per-slice, per-lobe labels (N, 5) uint8 in canonical order; lobes as in :data:`LOBES`."""
    n = volume.n_slices
    if label_index is None:
        return np.zeros((n, len(LOBES)), dtype=np.uint8)
    arr = _load(labels)
    if arr.ndim != 3 or arr.shape[2] != len(LOBES):
        raise InputError(f"lobe labels must be (cases, slots, {len(LOBES)}), got {arr.shape}")
    return arr[label_index][_source_ranks(volume)].astype(np.uint8)
