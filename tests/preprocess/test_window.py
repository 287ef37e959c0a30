"""Window-levelling: fixed centres, the paper's three centres, random centres per slice."""

from __future__ import annotations

import numpy as np
import pytest

from m3lung.errors import IntensityError
from m3lung.preprocess import PAPER_CENTRES, multi_window, random_window, window, window_range


def test_window_maps_edges_to_0_and_1():
    hu = np.array([[[-1300.0, -1200.0, -600.0, 0.0, 500.0]]])
    np.testing.assert_allclose(window(hu, -600, 1200)[0, 0], [0, 0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(
        window_range(hu, -1200, 700)[0, 0], [0, 0, 600 / 1900, 1200 / 1900, 1700 / 1900], atol=1e-6
    )
    with pytest.raises(IntensityError):
        window(hu, 0, 0)
    with pytest.raises(IntensityError):
        window_range(hu, 10, 0)


def test_multi_window_equals_single_windows():
    hu = np.random.default_rng(0).uniform(-1100, 300, (4, 8, 8)).astype(np.float32)
    out = multi_window(hu)
    assert out.shape == (4, 3, 8, 8) and out.dtype == np.float32
    for i, c in enumerate(PAPER_CENTRES):
        np.testing.assert_allclose(out[:, i], window(hu, c, 1200), atol=1e-6)


def test_random_window_is_seeded_and_in_range():
    hu = np.random.default_rng(0).uniform(-1100, 300, (50, 4, 4)).astype(np.float32)
    a, ca = random_window(hu, np.random.default_rng(7))
    b, _cb = random_window(hu, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert ca.min() >= -700 and ca.max() <= -500 and ca.std() > 30
    for k in (0, 17):
        np.testing.assert_allclose(a[k], window(hu[k], ca[k], 1200), atol=1e-6)
