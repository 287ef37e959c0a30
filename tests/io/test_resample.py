"""Resampling to a target spacing uses the true slice positions."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_volume
from m3lung.errors import InputError
from m3lung.io import resample, resample_array


def _ramp(n=9, h=12, w=10, spacing=(2.0, 0.5, 0.8)):
    k, i, j = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    # a linear function of physical position: linear interpolation must reproduce it exactly
    vox = (3.0 * k * spacing[0] - 2.0 * i * spacing[1] + 1.0 * j * spacing[2]).astype(np.float32)
    return make_volume(vox, spacing=spacing)


def test_linear_field_is_exact():
    v = _ramp()
    r = resample(v, (1.0, 1.0, 1.0))
    assert r.spacing == (1.0, 1.0, 1.0)
    assert r.shape == (17, 6, 8)  # extent 16 mm, 5.5 mm, 7.2 mm
    z, y, x = np.meshgrid(np.arange(17.0), np.arange(6.0), np.arange(8.0), indexing="ij")
    np.testing.assert_allclose(r.voxels, 3 * z - 2 * y + x, atol=1e-4)
    np.testing.assert_allclose(r.origin, v.origin)


def test_uneven_positions_are_respected():
    v = _ramp()
    pos = np.array([0, 2, 4, 6, 8, 10, 14, 16, 18], dtype=float)  # a 4 mm gap
    k = np.broadcast_to(pos[:, None, None], v.shape)
    v.voxels = (3.0 * k).astype(np.float32)
    v.slice_positions = pos
    r = resample(v, (1.0, 0.5, 0.8))
    np.testing.assert_allclose(r.voxels[:, 0, 0], 3.0 * np.arange(19), atol=1e-4)


def test_nearest_for_masks_keeps_labels():
    v = _ramp()
    mask = (np.arange(v.voxels.size).reshape(v.shape) % 3).astype(np.uint8)
    out = resample_array(mask, v, (1.0, 1.0, 1.0), order=0)
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1, 2}


def test_single_slice_and_bad_spacing():
    v = _ramp(n=1)
    r = resample(v, (1.0, 0.25, 0.4))
    assert r.n_slices == 1 and r.shape[1:] == (23, 19)
    with pytest.raises(InputError):
        resample(v, (1.0, 0.0, 1.0))
    with pytest.raises(InputError):
        resample_array(v.voxels, v, (1.0, 1.0, 1.0), order=3)
