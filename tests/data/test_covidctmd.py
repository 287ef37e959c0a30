"""The COVID-CT-MD slice-label mapping is pinned: slot i = i-th slice in InstanceNumber order."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import COVIDCTMD, COVIDCTMD_CASES, make_volume, need_shared, synthetic_chest
from m3lung.data.covidctmd import LOBE_LABEL_FILE, SLICE_LABEL_FILE, lobe_labels, slice_labels
from m3lung.errors import InputError


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(COVIDCTMD_CASES))
def test_slice_label_mapping(covidctmd_volumes, name):
    need_shared("covid-ct-md", SLICE_LABEL_FILE)
    v = covidctmd_volumes[name]
    _, n, index, n_infected = COVIDCTMD_CASES[name]
    labels = slice_labels(v, COVIDCTMD / SLICE_LABEL_FILE, index)
    assert labels.shape == (n,) and int(labels.sum()) == n_infected
    # IM0001 (InstanceNumber 1) is the most superior slice: the last in canonical (feet -> head) order
    assert v.source.instance_numbers[-1] == 1 and v.source_index[-1] == 0
    assert _name(v.source.files[-1]) in ("IM0001.dcm", "99C628-ASAD_1.dcm")
    if index is not None:
        raw = np.load(COVIDCTMD / SLICE_LABEL_FILE)[index]
        np.testing.assert_array_equal(labels, raw[:n][::-1])  # canonical = reversed InstanceNumber order


def _name(p: str) -> str:
    from pathlib import Path

    return Path(p).name


@pytest.mark.realdata
def test_cap002_consolidation_slices_are_basal(covidctmd_volumes):
    """cap002's labelled consolidations are in the lung bases (the data README checked this by eye)."""
    v = covidctmd_volumes["cap002"]
    labels = slice_labels(v, COVIDCTMD / SLICE_LABEL_FILE, 56)
    infected = np.nonzero(labels)[0]
    assert infected.tolist() == [24, 25, 26, 27, 28, 42, 43, 44, 82, 86, 87, 88, 89, 90, 91]
    assert (infected < v.n_slices / 2).sum() >= 8  # the basal cluster sits in the inferior half


@pytest.mark.realdata
def test_lobe_labels(covidctmd_volumes):
    need_shared("covid-ct-md", LOBE_LABEL_FILE)
    v = covidctmd_volumes["P002"]
    lobes = lobe_labels(v, COVIDCTMD / LOBE_LABEL_FILE, 1)
    assert lobes.shape == (133, 5)
    assert (lobes.any(axis=1) <= slice_labels(v, COVIDCTMD / SLICE_LABEL_FILE, 1)).all()


def test_mapping_needs_dicom_order():
    v = make_volume(synthetic_chest(n=4, size=16))
    with pytest.raises(InputError, match="InstanceNumber order"):
        slice_labels(v, np.zeros((2, 200)), 1)
    assert slice_labels(v, None, None).tolist() == [0, 0, 0, 0]
