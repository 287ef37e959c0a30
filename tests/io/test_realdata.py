"""Every real input under ../shared/data reads with the right slice count, spacing and HU range."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import COVIDCTMD_CASES, need_shared
from m3lung.errors import M3LungWarning
from m3lung.io import read_ct, scan_dicom

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("name", sorted(COVIDCTMD_CASES))
def test_covidctmd_volumes(covidctmd_volumes, name):
    v = covidctmd_volumes[name]
    n = COVIDCTMD_CASES[name][1]
    assert v.shape == (n, 512, 512)
    assert v.spacing[0] == pytest.approx(2.0)
    assert 0.55 < v.spacing[1] == v.spacing[2] < 0.7
    lo, hi = v.hu_range()
    assert lo == -1024 and 1400 < hi < 2200
    assert v.source.transfer_syntax == "1.2.840.10008.1.2.4.70"  # JPEG Lossless, decoded
    assert v.warnings == []
    # slices are ordered feet -> head, evenly
    np.testing.assert_allclose(np.diff(v.slice_positions), 2.0, atol=1e-3)
    # lungs are air-dark, soft tissue near 0 HU: the median of a central chest slice is plausible
    mid = v.voxels[n // 2]
    assert (mid < -600).mean() > 0.2 and ((mid > -100) & (mid < 100)).mean() > 0.1


def test_jpeg2000_series():
    p = need_shared("dicom-variants", "totalsegmentator", "example_ct_dicom")
    v = read_ct(p)
    assert v.shape == (20, 512, 512)
    assert v.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert v.source.transfer_syntax == "1.2.840.10008.1.2.4.90"
    lo, hi = v.hu_range()
    assert lo == -1024 and 1500 < hi < 2500
    assert v.source.series_uid is None  # this series really has an empty SeriesInstanceUID
    # InstanceNumbers 267.. run head to feet: the first canonical slice is the highest InstanceNumber
    assert v.source.instance_numbers[0] == max(v.source.instance_numbers)


def test_lungmask_pair_without_modality():
    p = need_shared("dicom-variants", "lungmask")
    with pytest.warns(M3LungWarning, match="no Modality tag"):
        v = read_ct(p)
    assert v.shape == (2, 512, 512) and v.spacing[0] == pytest.approx(1.0)
    assert v.hu_range()[0] == -2048  # padding outside the field of view, kept as stored
    single = read_ct(p / "0.dcm")
    assert single.n_slices == 1 and any("single slice" in w for w in single.warnings)


def test_totalsegmentator_nifti():
    p = need_shared("dicom-variants", "totalsegmentator", "ct_cropped.nii.gz")
    v = read_ct(p)
    assert v.shape == (112, 102, 122)
    assert v.spacing == pytest.approx((1.5, 1.5, 1.5))
    lo, hi = v.hu_range()
    assert lo < -1000 and hi > 1000


def test_every_dicom_file_of_the_known_folders_reads():
    """Every DICOM file in the folders the data README lists groups into its series; none is broken."""
    sizes = []
    for part in ("covid-ct-md", "dicom-variants"):
        scan = scan_dicom(need_shared(part))
        assert scan.broken == [], scan.broken
        sizes += [s.n_slices for s in scan.series]
    assert sorted(sizes) == [2, 20, 131, 133, 154]


def test_scan_of_the_whole_shared_tree():
    """The whole tree (which may hold more real data than the README lists) scans without raising:
    the known series are among the stacks, and anything unreadable is listed with a reason."""
    scan = scan_dicom(need_shared())
    sizes = [s.n_slices for s in scan.series]
    for n in (2, 20, 131, 133, 154):
        assert n in sizes
        sizes.remove(n)
    for path, reason in scan.broken:
        assert reason and Path(path).exists()
    if scan.broken:
        warnings.warn(
            f"{len(scan.broken)} unreadable DICOM file(s) under ../shared/data: {scan.broken[:5]}", stacklevel=1
        )


def test_infnet_slices_are_8bit():
    p = need_shared("infnet-train", "TrainingSet", "LungInfection-Train", "Doctor-label", "Imgs")
    first = sorted(p.iterdir())[0]
    v = read_ct(first)
    assert v.intensity == "uint8" and v.n_slices == 1 and 150 <= v.shape[1] <= 520
