"""The feature cache: each scan's slice-network outputs, written once, read by patient-level training.

Layout of a cache folder (written by ``m3lung features``)::

    cache.json        what made it: the slice network's weights hash and file, window centres, data
    index.csv         one row per scan: patient_id, label, n_slices, file
    <patient_id>.npz  features (W, N, F) float16 — W window centres, N slices in canonical order;
                      p_multi (W, N, 4) and p_lesion (W, N, 2) float32 (p_lesion absent for the vanilla
                      network); slice_lesion (N,) int8 known slice lesion labels (-1 unknown)

Every file is written atomically, and a scan already in the index is not computed again, so an
interrupted run resumes where it stopped. One cache holds the outputs of one slice network only.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.errors import InputError
from m3lung.io.atomic import atomic_file, require_output_folder, write_text_atomic

INDEX_FIELDS = ("patient_id", "label", "n_slices", "file")


@dataclass
class ScanFeatures:
    """One scan's cached outputs (shapes in the module docstring)."""

    patient_id: str
    label: int
    features: np.ndarray
    p_multi: np.ndarray
    p_lesion: np.ndarray | None
    slice_lesion: np.ndarray

    @property
    def n_slices(self) -> int:
        return int(self.features.shape[1])


def mean_windows(scan: ScanFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Features (N, F) float32, p_multi (N, 4) and p_lesion (N, 2) (or None) averaged over the cached
    window centres of ``scan``."""
    f = scan.features.astype(np.float32).mean(0)
    pm = scan.p_multi.mean(0)
    pl = scan.p_lesion.mean(0) if scan.p_lesion is not None else None
    return f, pm, pl


class FeatureCache:
    """Read and extend a feature cache folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- metadata
    @property
    def meta_path(self) -> Path:
        return self.root / "cache.json"

    def meta(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            raise InputError(f"{self.root}: not a feature cache (no cache.json); make one with `m3lung features`")
        return dict(json.loads(self.meta_path.read_text()))

    def bind(self, meta: dict[str, Any]) -> None:
        """Start the cache for a slice network, or check that an existing cache was made by the same one."""
        if self.meta_path.exists():
            old = self.meta()
            for key in ("slice_weights_hash", "centres"):
                if old.get(key) != meta.get(key):
                    raise InputError(
                        f"{self.root}: this cache holds features of {key} {old.get(key)!r}, not {meta.get(key)!r}; "
                        "use another folder"
                    )
            return
        require_output_folder(self.root, what="the feature cache folder")
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.meta_path, json.dumps(meta, indent=1))

    # -- index
    def index(self) -> list[dict[str, str]]:
        path = self.root / "index.csv"
        if not path.exists():
            return []
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def done(self) -> set[str]:
        return {row["patient_id"] for row in self.index() if (self.root / row["file"]).exists()}

    def add(self, scan: ScanFeatures) -> Path:
        """Write one scan's arrays, then its index row (both atomically)."""
        if scan.features.ndim != 3 or scan.p_multi.shape[:2] != scan.features.shape[:2]:
            raise InputError(f"{scan.patient_id}: features (W, N, F) and p_multi (W, N, K) expected")
        name = f"{scan.patient_id}.npz"
        arrays: dict[str, np.ndarray] = {
            "features": scan.features.astype(np.float16),
            "p_multi": scan.p_multi.astype(np.float32),
            "slice_lesion": scan.slice_lesion.astype(np.int8),
        }
        if scan.p_lesion is not None:
            arrays["p_lesion"] = scan.p_lesion.astype(np.float32)
        with atomic_file(self.root / name) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        rows = [r for r in self.index() if r["patient_id"] != scan.patient_id]
        rows.append(
            {"patient_id": scan.patient_id, "label": str(scan.label), "n_slices": str(scan.n_slices), "file": name}
        )
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=INDEX_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.root / "index.csv", buf.getvalue())
        return self.root / name

    def load(self, patient_id: str) -> ScanFeatures:
        rows = {r["patient_id"]: r for r in self.index()}
        if patient_id not in rows:
            raise InputError(f"{self.root}: no scan {patient_id!r} in index.csv")
        row = rows[patient_id]
        with np.load(self.root / row["file"]) as z:
            return ScanFeatures(
                patient_id=patient_id,
                label=int(row["label"]),
                features=z["features"],
                p_multi=z["p_multi"],
                p_lesion=z["p_lesion"] if "p_lesion" in z.files else None,
                slice_lesion=z["slice_lesion"],
            )

    def __iter__(self) -> Iterator[ScanFeatures]:
        for row in self.index():
            yield self.load(row["patient_id"])
