"""Held-out data: slice tables split by patient or by blocks of slices, and patient splits of a cache.

* :func:`slice_block_holdout` — blocks of consecutive slices of every scan rotating between train,
  validation and test (for a handful of real scans);
* :func:`split_slice_tables` — the slice tables and rows of each part, by patient
  (:func:`m3lung.data.slices.split_by_patient`) or by slice blocks, with a description for ``split.json``;
* :func:`split_scan_ids` — patient ids of each part of a feature cache: a saved ``split.json`` or by patient.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.data.slices import Case, SliceTable, build_slice_table, split_by_patient
from m3lung.errors import M3LungWarning
from m3lung.preprocess import LungCropConfig

PARTS = ("train", "val", "test")


def slice_block_holdout(
    index: np.ndarray, patient: np.ndarray, *, block: int, gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of train / val / test: blocks of ``block`` consecutive slices rotate between the parts.

    ``index`` (S,) is each row's slice index in its scan, ``patient`` (S,) its scan's number. Of every
    five blocks three train, one validates and one tests, shifted by one block per scan; ``gap`` slices
    after every block are dropped, so that neighbours never straddle two parts.
    """
    period = block + gap
    block_no = index // period
    in_gap = index % period >= block
    part = (block_no + patient) % 5  # 3 of 5 blocks train, 1 val, 1 test; shifted per scan
    train = np.nonzero(~in_gap & (part < 3))[0]
    val = np.nonzero(~in_gap & (part == 3))[0]
    test = np.nonzero(~in_gap & (part == 4))[0]
    return train, val, test


@dataclass
class SliceSplits:
    """The slice tables and rows of each part ("train", "val", "test"), and the split as ``split.json``
    writes it (patient ids per part, or per part the slice indices of every scan)."""

    tables: dict[str, SliceTable]
    rows: dict[str, np.ndarray]
    description: dict[str, Any]


def split_slice_tables(
    cases: Sequence[Case],
    *,
    holdout: str,
    size: int,
    cache_dir: str | os.PathLike[str],
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    block: int = 10,
    gap: int = 2,
    crop: LungCropConfig = LungCropConfig(),
    progress: bool = True,
) -> SliceSplits:
    """Preprocess ``cases`` into slice tables (lung crops of ``size`` pixels, cached) and hold out data.

    ``holdout`` "patients": scans split by patient with ``fractions`` and ``seed`` (a part without scans
    gets no table); "slice_blocks": one table of every scan, rows split by :func:`slice_block_holdout`.
    """
    if holdout == "patients":
        tr, va, te = split_by_patient(cases, fractions, seed=seed)
        tables = {
            name: build_slice_table(cs, size=size, cache_dir=cache_dir, crop=crop, progress=progress)
            for name, cs in (("train", tr), ("val", va), ("test", te))
            if cs
        }
        rows = {name: np.arange(len(t)) for name, t in tables.items()}
        desc: dict[str, Any] = {
            name: [c.patient_id for c in cs] for name, cs in (("train", tr), ("val", va), ("test", te))
        }
        return SliceSplits(tables, rows, desc)
    table = build_slice_table(cases, size=size, cache_dir=cache_dir, crop=crop, progress=progress)
    tr_rows, va_rows, te_rows = slice_block_holdout(table.index, table.patient, block=block, gap=gap)
    tables = {"train": table, "val": table, "test": table}
    rows = {"train": tr_rows, "val": va_rows, "test": te_rows}
    desc = {
        name: {c.patient_id: table.index[r][table.patient[r] == i].tolist() for i, c in enumerate(cases)}
        for name, r in rows.items()
    }
    return SliceSplits(tables, rows, desc)


def split_scan_ids(
    index: Sequence[Mapping[str, str]],
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    split_file: str | os.PathLike[str] | None = None,
) -> dict[str, list[str]]:
    """Patient ids of "train", "val" and "test" among the scans of ``index`` (rows with ``patient_id``
    and ``label``, e.g. :meth:`m3lung.data.features.FeatureCache.index`).

    With ``split_file`` (a run's ``split.json``) its parts, less the scans ``index`` lacks (a
    :class:`M3LungWarning` counts them); otherwise by patient, stratified by class, as
    :func:`m3lung.data.slices.split_by_patient` with ``fractions`` and ``seed``.
    """
    if split_file is not None:
        saved = json.loads(Path(split_file).read_text())
        known = {r["patient_id"] for r in index}
        parts = {name: [p for p in saved.get(name, []) if p in known] for name in PARTS}
        missing = sorted(set().union(*map(set, (saved.get(n, []) for n in PARTS))) - known)
        if missing:
            warnings.warn(
                f"{len(missing)} scan(s) of {split_file} are not in the cache (e.g. {missing[0]})",
                M3LungWarning,
                stacklevel=2,
            )
        return parts
    cases = [Case(patient_id=r["patient_id"], label=int(r["label"]), ct="") for r in index]
    tr, va, te = split_by_patient(cases, fractions, seed=seed)
    return {"train": [c.patient_id for c in tr], "val": [c.patient_id for c in va], "test": [c.patient_id for c in te]}
