"""The M³Lung-Sys lung crop on synthetic volumes: lungs kept, table left out, fallbacks reported."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_volume, synthetic_chest
from m3lung.errors import IntensityError, M3LungWarning
from m3lung.io import CTVolume, SourceInfo
from m3lung.preprocess import LungCropConfig, body_mask, lung_crop, lung_mask, prepare_slices

SMALL = LungCropConfig(output_size=(64, 64), margin=3)


def test_lungs_in_box_table_out():
    hu = synthetic_chest(n=6, size=96)
    crop = lung_crop(make_volume(hu), SMALL)
    lungs = hu < -500
    for k in range(6):
        r0, c0, r1, c1 = crop.boxes[k]
        inside_body = body_mask(hu[k : k + 1])[0]
        air_in_body = lungs[k] & inside_body
        ys, xs = np.nonzero(air_in_body)
        assert ys.min() >= r0 and ys.max() < r1 and xs.min() >= c0 and xs.max() < c1
        table_rows = np.nonzero((hu[k] > 100).any(axis=1) & (np.arange(96) > 80))[0]
        assert r1 <= table_rows.min(), "the box reaches into the table"
    assert not crop.fallback.any()
    assert crop.crops.shape == (6, 64, 64) and crop.masks.shape == hu.shape


def test_closed_table_slit_is_not_lung():
    hu = synthetic_chest(n=2, size=96)
    m = lung_mask(hu, SMALL)
    assert not m[:, 80:, :].any()  # the closed air slit between table plates is dropped
    no_body_rule = lung_mask(hu, LungCropConfig(body_only=False, opening_kernel=(1, 1)))
    assert no_body_rule[:, 80:, :].any()  # ... which is what the body rule is for


def test_empty_slice_falls_back_with_warning():
    hu = synthetic_chest(n=4, size=64)
    hu[1] = 40.0  # a slice of soft tissue only (no lung)
    with pytest.warns(M3LungWarning, match=r"no lung found on 1 of 4 slice\(s\) \(indices 1\)"):
        crop = lung_crop(make_volume(hu), SMALL)
    assert crop.fallback.tolist() == [False, True, False, False]
    assert crop.boxes[1].tolist() == [0, 0, 64, 64]


def test_no_lung_anywhere_warns():
    with pytest.warns(M3LungWarning, match="no lung found on any slice"):
        crop = lung_crop(np.full((3, 32, 32), 40.0, np.float32), SMALL)
    assert crop.fallback.all()


def test_eight_bit_input_refused():
    v = CTVolume(np.zeros((1, 32, 32)), (1, 1, 1), intensity="uint8", source=SourceInfo(path="x.png", format="image2d"))
    with pytest.raises(IntensityError, match="needs Hounsfield units"):
        lung_crop(v)


def test_result_independent_of_chunks_and_threads():
    hu = synthetic_chest(n=9, size=64, seed=4)
    a = lung_crop(hu, LungCropConfig(output_size=(48, 48), chunk_slices=2, workers=3))
    b = lung_crop(hu, LungCropConfig(output_size=(48, 48), chunk_slices=100, workers=1))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.crops, b.crops)
    np.testing.assert_array_equal(a.masks, b.masks)


def test_crop_resize_values_come_from_the_box():
    hu = synthetic_chest(n=2, size=64)
    crop = lung_crop(hu, LungCropConfig(output_size=(128, 128), margin=2))
    for k in range(2):
        r0, c0, r1, c1 = crop.boxes[k]
        box = hu[k, r0:r1, c0:c1]
        assert crop.crops[k].min() >= box.min() - 1e-3 and crop.crops[k].max() <= box.max() + 1e-3


def test_single_slice_array_and_prepare_slices(chest):
    out = prepare_slices(chest, crop=SMALL)
    assert out.windowed.shape == (chest.n_slices, 3, 64, 64)
    assert out.windowed.min() >= 0.0 and out.windowed.max() <= 1.0
    # the darkest window (centre -500) is never brighter than the -700 one
    assert (out.windowed[:, 0] >= out.windowed[:, 2] - 1e-6).all()
    one = lung_crop(chest.voxels[3], SMALL)
    assert one.crops.shape == (1, 64, 64)


@pytest.mark.parametrize("label", [0, 1, 2, 3])
def test_phantom_lungs_always_inside_the_box(label):
    """Against the phantom's known lung mask: every lung pixel of every lung slice is inside its box."""
    from m3lung.phantom import PhantomConfig, make_study

    s = make_study(label, seed=11, config=PhantomConfig.small(256, slices=(14, 18)))
    crop = lung_crop(s.volume, LungCropConfig(output_size=(64, 64)))
    lung = s.lung_mask > 0
    h, w = lung.shape[1:]
    checked = 0
    for k in range(s.volume.n_slices):
        if lung[k].sum() < 0.005 * h * w:
            continue
        checked += 1
        r0, c0, r1, c1 = crop.boxes[k]
        ys, xs = np.nonzero(lung[k])
        assert not crop.fallback[k]
        assert ys.min() >= r0 and ys.max() < r1 and xs.min() >= c0 and xs.max() < c1, f"slice {k}"
        # and the box is not the whole slice: it hugs the lungs (margin 10 px plus the mediastinum)
        assert (r1 - r0) * (c1 - c0) < 0.6 * h * w
    assert checked >= 8


def test_lung_filled_by_consolidation_stays_in_the_box():
    """A lung made airless (soft-tissue density) is invisible to the air threshold; the mirrored box
    brings it back, and the paper's plain box (``mirror=False``) cuts it off."""
    size = 96
    hu = synthetic_chest(n=3, size=size)
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    right = ((yy - c * 0.85) / (1.3 * 0.14 * size)) ** 2 + ((xx - c + 0.2 * size) / (0.14 * size)) ** 2 <= 1
    hu[0][right] = 30.0  # slice 0: the whole right lung consolidated
    cols = np.nonzero(right.any(axis=0))[0]
    plain = lung_crop(hu, LungCropConfig(output_size=(32, 32), margin=2, mirror=False))
    mirrored = lung_crop(hu, LungCropConfig(output_size=(32, 32), margin=2))
    assert plain.boxes[0, 1] > cols.max(), "the plain box should miss the consolidated lung"
    assert mirrored.boxes[0, 1] <= cols.min() and mirrored.boxes[0, 3] > cols.max()
    # where both lungs are aerated the two boxes (nearly) agree: the body is symmetric
    assert np.abs(mirrored.boxes[1:] - plain.boxes[1:]).max() <= 2
    assert not mirrored.fallback.any()


def test_body_midline():
    from m3lung.preprocess import body_midline

    hu = np.full((2, 64, 64), -1000.0, np.float32)
    hu[0, 10:50, 8:40] = 40.0  # body spanning columns 8..39
    mid = body_midline(hu)
    assert abs(mid[0] - 24.0) <= 1.0  # found on a coarse grid (1 px at 64 wide)
    assert mid[1] == 32.0  # no body: the middle of the slice
