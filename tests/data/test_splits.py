"""Held-out data: slice-block holdout and patient splits of a feature cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m3lung.data.splits import slice_block_holdout, split_scan_ids
from m3lung.errors import M3LungWarning


def test_slice_blocks_rotate_between_parts_with_gaps():
    index = np.tile(np.arange(60), 2)
    patient = np.repeat([0, 1], 60)
    train, val, test = slice_block_holdout(index, patient, block=10, gap=2)
    assert not (set(train) & set(val)) and not (set(val) & set(test)) and not (set(train) & set(test))
    # scan 0: blocks 0..2 train, block 3 (slices 36..45) validates, block 4 (48..57) tests; gaps dropped
    assert index[val][patient[val] == 0].tolist() == list(range(36, 46))
    assert index[test][patient[test] == 0].tolist() == list(range(48, 58))
    assert {10, 11, 22, 23}.isdisjoint(index[np.r_[train, val, test]][patient[np.r_[train, val, test]] == 0])
    # scan 1 is shifted by one block: its block 2 validates
    assert index[val][patient[val] == 1].tolist() == list(range(24, 34))


def _index(n_per_class: int = 10) -> list[dict[str, str]]:
    return [{"patient_id": f"p{c}{i:02d}", "label": str(c)} for c in range(4) for i in range(n_per_class)]


def test_split_scan_ids_by_patient_is_stratified_and_seeded():
    parts = split_scan_ids(_index(), fractions=(0.6, 0.2, 0.2), seed=1)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [24, 8, 8]
    assert sorted(p for ids in parts.values() for p in ids) == sorted(r["patient_id"] for r in _index())
    assert sorted(p[1] for p in parts["test"]) == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert parts == split_scan_ids(_index(), fractions=(0.6, 0.2, 0.2), seed=1)
    assert parts != split_scan_ids(_index(), fractions=(0.6, 0.2, 0.2), seed=2)


def test_split_scan_ids_from_a_split_file_drops_unknown_scans(tmp_path):
    f = tmp_path / "split.json"
    f.write_text(json.dumps({"train": ["p000", "gone"], "val": ["p101"], "test": ["p202"]}))
    with pytest.warns(M3LungWarning, match="1 scan"):
        parts = split_scan_ids(_index(), split_file=f)
    assert parts == {"train": ["p000"], "val": ["p101"], "test": ["p202"]}
