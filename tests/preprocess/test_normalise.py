"""Seed 000, 002 and 003 normalisations."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_volume, synthetic_chest
from m3lung.errors import InputError, IntensityError
from m3lung.io import CTVolume, SourceInfo
from m3lung.preprocess import (
    jin_normalise,
    lung_mask,
    lung_roi_normalise,
    sliding_window_bounds,
    sliding_window_normalise,
)


def test_jin_resamples_to_1mm_and_windows():
    v = make_volume(synthetic_chest(n=5, size=40), spacing=(2.5, 0.8, 0.8))
    res, norm = jin_normalise(v)
    assert res.spacing == (1.0, 1.0, 1.0) and res.shape == (11, 32, 32)
    assert norm.shape == res.shape and norm.min() >= 0 and norm.max() <= 1
    # air (-1000 HU) maps to (−1000 + 1200) / 1900
    assert np.median(norm[:, 0, 0]) == pytest.approx(200 / 1900, abs=0.01)


def test_sliding_window_finds_the_crowded_range():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.normal(-850, 30, 7000), rng.normal(40, 20, 3000), rng.normal(900, 50, 200)])
    b = np.concatenate([rng.normal(200, 30, 9000), rng.normal(2500, 50, 1200)])
    hu = np.stack([a[:10000].reshape(100, 100), b[:10000].reshape(100, 100)]).astype(np.float32)
    lows = sliding_window_bounds(hu, width=1000, step=10)
    # brute force: no other start on the 10-HU grid holds more pixels of the slice (bins are [lo, lo + 1000))
    for k in range(2):
        flat = hu[k].ravel()
        starts = -1024 + 10 * np.arange(int((3071 + 1024) / 10) - 100 + 1)
        counts = [np.sum((flat >= s) & (flat < s + 1000)) for s in starts]
        inside = np.sum((flat >= lows[k]) & (flat < lows[k] + 1000))
        assert inside == max(counts)
    assert lows[0] < -800 < 40 < lows[0] + 1000  # lungs and soft tissue together
    assert lows[1] <= 100 and lows[1] + 1000 >= 300  # the soft tissue, not the bone
    out, used = sliding_window_normalise(hu, width=1000, step=10)
    np.testing.assert_array_equal(used, lows)
    assert out.min() == 0 and out.max() == 1
    whole = sliding_window_bounds(hu, width=1000, step=10, per_slice=False)
    assert whole.shape == (1,)
    with pytest.raises(IntensityError):
        sliding_window_bounds(hu, width=5, step=10)


def test_lung_roi_suppression_and_zscore():
    hu = synthetic_chest(n=12, size=64)
    hu[:, 40:44, 30:34] = 1500.0  # "bone" inside the ROI: clipped at the top 5% value, then suppressed
    v = make_volume(hu)
    m = lung_mask(hu)
    roi = lung_roi_normalise(v, m, size=(8, 24, 36))
    assert roi.image.shape == (8, 24, 36)
    assert abs(float(roi.image.mean())) < 0.05 and abs(float(roi.image.std()) - 1) < 0.1
    assert -900 < roi.lung_mean < -800 and roi.top_threshold < 1500
    z0, y0, x0, z1, y1, x1 = roi.box
    assert (z0, z1) == (0, 12) and 0 < y0 < y1 < 64 and 0 < x0 < x1 < 64
    with pytest.raises(InputError, match="empty"):
        lung_roi_normalise(v, np.zeros_like(m))
    with pytest.raises(InputError, match="does not match"):
        lung_roi_normalise(v, m[:3])


def test_eight_bit_refused():
    v = CTVolume(np.zeros((2, 8, 8)), (1, 1, 1), intensity="uint8", source=SourceInfo(path="x.png", format="image2d"))
    with pytest.raises(IntensityError):
        jin_normalise(v)
