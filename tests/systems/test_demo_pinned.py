"""The demo's answer is pinned: the system-shape redesign (issue 16) must not change M³Lung-Sys's behaviour.

``data/demo_report_pinned.json`` and ``data/demo_lesion_map_pinned.npz`` hold what ``m3lung demo`` (seed 0,
the shipped demo weights) wrote before the redesign: every probability and label of the patient
decision, every slice's probabilities, the infected share and the lesion map. Probabilities are
compared to 1e-6 (they are written with 4 decimals, so that is equality of what ``report.json``
says). The lesion map is compared as written (uint8, 1/255 steps): equal, except that a value lying
within float32 noise of a rounding edge may land one step over on another kind of CPU, so at most one
step on at most 0.1 % of the voxels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from m3lung.cli import main

PINNED = Path(__file__).parent / "data"


def _close(got, want, where: str = "") -> None:
    """Nested dicts / lists / numbers / strings equal, numbers to 1e-6."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(want) <= set(got), f"{where}: keys {sorted(want)} vs {sorted(got)}"
        for k, v in want.items():
            _close(got[k], v, f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, bool) or want is None or isinstance(want, str):
        assert got == want, f"{where}: {got!r} != {want!r}"
    else:
        assert abs(float(got) - float(want)) <= 1e-6, f"{where}: {got} != {want}"


@pytest.mark.slow
def test_demo_report_is_the_pinned_one(tmp_path, capsys):
    import nibabel as nib

    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    capsys.readouterr()
    folder = tmp_path / "demo" / "screen" / "demo-0000"
    report = json.loads((folder / "report.json").read_text())
    want = json.loads((PINNED / "demo_report_pinned.json").read_text())
    for key in ("patient", "slices", "study", "weights"):
        _close(report[key], want[key], key)
    _close(report["infected_share"], want["infected_share"], "infected_share")

    img = nib.load(folder / "lesion_map.nii.gz")
    got = np.asarray(img.dataobj.get_unscaled())
    with np.load(PINNED / "demo_lesion_map_pinned.npz") as z:
        pinned, affine = z["lesion_map"], z["affine"]
    assert got.dtype == np.uint8 and got.shape == pinned.shape
    np.testing.assert_allclose(img.affine, affine, atol=1e-6)
    assert abs(float(img.dataobj.slope) - 1 / 255) < 1e-9
    diff = np.abs(got.astype(np.int16) - pinned.astype(np.int16))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-3 * diff.size
