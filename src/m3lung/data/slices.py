"""Slice datasets built from CT volumes: cases, a preprocessed slice cache, the paper's annotation rules.

The flow: a list of :class:`Case` (one scan each: its class, its CT, optionally per-slice lesion
labels and a lesion mask) → :func:`build_slice_cache` runs the M³Lung-Sys lung crop once per scan and
stores the HU crops at the network's input size (float16) with their labels → :class:`SliceTable`
holds every slice of every case in memory with its metadata → :func:`training_rows` applies the
paper's annotation rules (§II-B): a slice *with* lesion gets its scan's class, slices of diseased scans
*without* lesion are dropped, every slice of a healthy scan is Healthy. Inference and the lesion-head
evaluation use all slices.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from m3lung.errors import InputError, M3LungWarning
from m3lung.io import CTVolume, read_ct, read_mask
from m3lung.io.atomic import atomic_file
from m3lung.preprocess import LungCropConfig, lung_crop
from m3lung.preprocess.resize import crop_resize

CLASS_INDEX = {"healthy": 0, "normal": 0, "covid-19": 1, "covid": 1, "h1n1": 2, "influenza": 2, "cap": 3}


@dataclass(frozen=True)
class Case:
    """One scan for training or evaluation.

    label : the scan's class (0 Healthy, 1 COVID-19, 2 H1N1, 3 CAP).
    ct : anything :func:`m3lung.io.read_ct` reads.
    slice_labels : per-slice lesion labels (1 = lesion visible) in canonical order, or None when
        they come from ``covidctmd_index`` (mapped once the scan is read) or are unknown.
    lesion_mask : a label map on the scan's grid (synthetic data), used to evaluate lesion maps.
    """

    patient_id: str
    label: int
    ct: str
    slice_labels: tuple[int, ...] | None = None
    lesion_mask: str | None = None
    covidctmd_index: int | None = None
    covidctmd_labels: str | None = None
    source: str = "unknown"


def synthetic_cases(cohort_dir: str | os.PathLike[str]) -> list[Case]:
    """The cases of a cohort written by ``m3lung phantom`` (its ``cohort.csv`` and ``truth.json`` files)."""
    root = Path(cohort_dir)
    manifest = root / "cohort.csv"
    if not manifest.exists():
        raise InputError(f"{root}: no cohort.csv; make a synthetic cohort with `m3lung phantom --out {root}`")
    cases = []
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh):
            pid = row["patient_id"]
            truth = json.loads((root / pid / "truth.json").read_text())
            cases.append(
                Case(
                    patient_id=pid,
                    label=int(row["label"]),
                    ct=str(root / row["path"]),
                    slice_labels=tuple(int(v) for v in truth["slice_labels"]),
                    lesion_mask=str(root / pid / "lesion_mask.nii.gz"),
                    source="synthetic",
                )
            )
    return cases


def covidctmd_cases(root: str | os.PathLike[str]) -> list[Case]:
    """The COVID-CT-MD scans under ``root`` listed in its ``labels.csv`` (sample layout of ../shared/data)."""
    r = Path(root)
    table = r / "labels.csv"
    if not table.exists():
        raise InputError(f"{r}: no labels.csv (expected the COVID-CT-MD sample layout)")
    cases = []
    with table.open(newline="") as fh:
        for row in csv.DictReader(fh):
            diag = row["diagnosis"].strip().lower()
            if diag not in CLASS_INDEX:
                raise InputError(f"{table}: unknown diagnosis {row['diagnosis']!r}")
            idx = row.get("index_csv_label_index", "").strip()
            cases.append(
                Case(
                    patient_id=Path(row["patient_dir"]).name,
                    label=CLASS_INDEX[diag],
                    ct=str(r / row["patient_dir"]),
                    covidctmd_index=int(idx) if idx else None,
                    covidctmd_labels=str(r / "Slice-level-labels-updated-1.npy"),
                    source="covid-ct-md",
                )
            )
    return cases


def split_by_patient(
    cases: Sequence[Case], fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), *, seed: int = 0
) -> tuple[list[Case], list[Case], list[Case]]:
    """Split cases into train / validation / test by patient, stratified by class, deterministically."""
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise InputError(f"split fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: tuple[list[Case], list[Case], list[Case]] = ([], [], [])
    for label in sorted({c.label for c in cases}):
        group = sorted((c for c in cases if c.label == label), key=lambda c: c.patient_id)
        order = rng.permutation(len(group))
        n_val = round(fractions[1] * len(group))
        n_test = round(fractions[2] * len(group))
        n_train = len(group) - n_val - n_test
        for pos, i in enumerate(order):
            part = 0 if pos < n_train else (1 if pos < n_train + n_val else 2)
            parts[part].append(group[i])
    return parts


@dataclass
class SliceTable:
    """Every slice of a set of cases, preprocessed, in memory.

    hu : (S, size, size) float16 lung crops in HU. lesion : (S,) int8 slice lesion label (-1 unknown).
    patient : (S,) int index into ``cases``; label : (S,) the scan's class; index : (S,) canonical slice
    index within its scan. masks : (S, size, size) bool lesion masks in crop coordinates, or None.
    """

    cases: list[Case]
    hu: np.ndarray
    lesion: np.ndarray
    patient: np.ndarray
    label: np.ndarray
    index: np.ndarray
    masks: np.ndarray | None
    size: int
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.hu.shape[0])


def _cache_key(case: Case, size: int, crop: LungCropConfig) -> str:
    p = Path(case.ct)
    stamp = f"{p.resolve()}|{p.stat().st_mtime_ns if p.exists() else 0}|{size}|{asdict(crop)}|{case.lesion_mask}"
    return hashlib.sha256(stamp.encode()).hexdigest()[:16]


def _slice_labels_for(case: Case, vol: CTVolume) -> np.ndarray | None:
    from m3lung.data.covidctmd import slice_labels as ctmd_labels

    n = vol.n_slices
    if case.slice_labels is not None:
        if len(case.slice_labels) != n:
            raise InputError(f"{case.patient_id}: {len(case.slice_labels)} slice labels for {n} slices")
        return np.asarray(case.slice_labels, dtype=np.int8)
    if case.source == "covid-ct-md":
        return ctmd_labels(vol, case.covidctmd_labels, case.covidctmd_index).astype(np.int8)
    return None


def build_case_cache(case: Case, size: int, cache_dir: str | os.PathLike[str], crop: LungCropConfig) -> Path:
    """Preprocess one case into ``cache_dir`` (once; later calls reuse the file). Returns its path."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{case.patient_id}-{_cache_key(case, size, crop)}.npz"
    if target.exists():
        return target
    cfg = LungCropConfig(**{**asdict(crop), "output_size": (size, size)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M3LungWarning)  # slices without lung are expected at the ends
        vol = read_ct(case.ct)
        c = lung_crop(vol, cfg)
    labels = _slice_labels_for(case, vol)
    arrays: dict[str, np.ndarray] = {
        "hu": c.crops.astype(np.float16),
        "lesion": labels if labels is not None else np.full(vol.n_slices, -1, np.int8),
        "boxes": c.boxes,
        "fallback": c.fallback,
    }
    if case.lesion_mask is not None:
        m = read_mask(case.lesion_mask, like=vol)
        arrays["masks"] = crop_resize((m > 0).astype(np.float32), c.boxes, (size, size), antialias=False) >= 0.5
    with atomic_file(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return target


def build_slice_table(
    cases: Sequence[Case],
    *,
    size: int,
    cache_dir: str | os.PathLike[str],
    crop: LungCropConfig = LungCropConfig(),
    progress: bool = False,
) -> SliceTable:
    """Preprocess (or reuse the cache of) every case and gather all their slices."""
    from tqdm import tqdm

    parts = []
    for case in tqdm(list(cases), desc="preparing slices", disable=None if progress else True, unit="scan"):
        with np.load(build_case_cache(case, size, cache_dir, crop)) as z:
            parts.append({k: z[k] for k in z.files})
    if not parts:
        raise InputError("no cases to build a slice table from")
    n = [p["hu"].shape[0] for p in parts]
    has_masks = all("masks" in p for p in parts)
    return SliceTable(
        cases=list(cases),
        hu=np.concatenate([p["hu"] for p in parts]),
        lesion=np.concatenate([p["lesion"] for p in parts]).astype(np.int8),
        patient=np.repeat(np.arange(len(parts)), n),
        label=np.repeat(np.array([c.label for c in cases]), n),
        index=np.concatenate([np.arange(k) for k in n]),
        masks=np.concatenate([p["masks"] for p in parts]) if has_masks else None,
        size=size,
    )


def training_rows(table: SliceTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's annotation rules: rows used for training, their class and lesion targets.

    Healthy scans: every slice, class 0, lesion 0. Diseased scans: slices with lesion, the scan's
    class, lesion 1; their slices without lesion are dropped. Slices of unknown lesion status
    (``lesion == -1``) in diseased scans are dropped too.
    """
    healthy = table.label == 0
    lesion = table.lesion == 1
    keep = healthy | (~healthy & lesion)
    rows = np.nonzero(keep)[0]
    cls = np.where(healthy[rows], 0, table.label[rows])
    return rows, cls.astype(np.int64), (cls != 0).astype(np.int64)
