"""Test helpers: the real data folder beside the project, and small synthetic chest volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from m3lung.data.slices import SliceTable
from m3lung.io import CTVolume, SourceInfo

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M3LUNG_SHARED_DATA", ROOT.parent / "shared" / "data"))
COVIDCTMD = SHARED_DATA / "covid-ct-md"
COVIDCTMD_CASES = {
    "P002": ("Sample data/COVID-19 subjects/P002", 133, 1, 68),
    "cap002": ("Sample data/Cap subjects/cap002", 131, 56, 15),
    "normal001": ("Sample data/Normal subjects/normal001", 154, None, 0),
}


def need_shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} (the project's ../shared/data is absent)")
    return p


def synthetic_chest(n: int = 10, size: int = 96, *, table: bool = True, seed: int = 0) -> np.ndarray:
    """A small HU volume (n, size, size): air, an elliptical body, two lungs, a scanner table below.

    Integer-valued float32, canonical orientation (row 0 anterior). Lungs shrink towards the top.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    vol = np.full((n, size, size), -1000.0, dtype=np.float32)
    for k in range(n):
        body = ((yy - c * 0.9) / (0.36 * size)) ** 2 + ((xx - c) / (0.45 * size)) ** 2 <= 1
        vol[k][body] = 40.0
        r = 0.14 * size * (1.0 - 0.4 * k / max(n - 1, 1))
        for sx in (-1, 1):
            lung = ((yy - c * 0.85) / (1.3 * r)) ** 2 + ((xx - c - sx * 0.2 * size) / r) ** 2 <= 1
            vol[k][lung] = -850.0
        if table:
            top = int(c * 0.9 + 0.36 * size) + 3
            vol[k, top : top + 2, 2:-2] = 200.0
            vol[k, top + 4 : top + 6, 2:-2] = 200.0
            vol[k, top + 2 : top + 4, 2:4] = 200.0  # closed air slit between the two plates
            vol[k, top + 2 : top + 4, -4:-2] = 200.0
    vol += np.round(rng.normal(0, 5, vol.shape)).astype(np.float32)
    return vol


def make_volume(voxels: np.ndarray, spacing=(2.0, 0.7, 0.7), **kw) -> CTVolume:
    kw.setdefault(
        "source",
        SourceInfo(
            path="<test>",
            format="array",
            patient_id="PAT-1",
            series_uid="1.2.3",
            metadata={"PatientName": "Doe^J", "Manufacturer": "X"},
        ),
    )
    return CTVolume(voxels=voxels, spacing=spacing, origin=(-30.0, -40.0, 100.0), **kw)


def slice_table(n: int = 12, size: int = 16) -> SliceTable:
    """A small slice table of two scans (n / 2 slices each): scan 0 Healthy and lesion-free, scan 1
    COVID-19 with a lesion on every slice; random HU, no masks."""
    rng = np.random.default_rng(0)
    return SliceTable(
        cases=[],
        hu=rng.uniform(-1000, 100, (n, size, size)).astype(np.float16),
        lesion=np.r_[np.zeros(n // 2), np.ones(n - n // 2)].astype(np.int8),
        patient=np.repeat([0, 1], n // 2),
        label=np.repeat([0, 1], n // 2),
        index=np.tile(np.arange(n // 2), 2),
        masks=None,
        size=size,
    )
