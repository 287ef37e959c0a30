"""Lesion maps back on the scan's grid, and the infected share."""

from __future__ import annotations

import numpy as np
import pytest

from m3lung.errors import InputError
from m3lung.explain import infected_share, uncrop_maps
from m3lung.preprocess.resize import crop_resize


def test_uncrop_inverts_crop_resize():
    yy, xx = np.mgrid[:60, :80]
    img = np.broadcast_to(np.sin(yy / 7) + np.cos(xx / 9), (3, 60, 80)).astype(np.float32)
    boxes = np.array([[10, 20, 50, 70], [0, 0, 60, 80], [5, 5, 25, 45]])
    back = uncrop_maps(crop_resize(img, boxes, (32, 32), antialias=False), boxes, (60, 80), chunk=2)
    for k, (r0, c0, r1, c1) in enumerate(boxes):
        inside = np.zeros((60, 80), bool)
        inside[r0:r1, c0:c1] = True
        assert np.abs(back[k][inside] - img[k][inside]).mean() < 0.02
        assert not back[k][~inside].any()  # nothing outside the box


def test_uncrop_of_a_constant_map_fills_exactly_the_box():
    boxes = np.array([[3, 4, 9, 17]])
    out = uncrop_maps(np.ones((1, 8, 8)), boxes, (20, 20))
    assert out.sum() == 6 * 13 and out[0, 3:9, 4:17].min() == 1
    with pytest.raises(InputError):
        uncrop_maps(np.ones((2, 8, 8)), boxes, (20, 20))


def test_infected_share():
    lung = np.zeros((2, 10, 10), bool)
    lung[:, :5] = True  # 100 voxels
    lesion = np.zeros_like(lung)
    lesion[:, 4:6] = True  # 20 voxels, half outside the air lung (consolidation)
    assert infected_share(lesion, lung) == pytest.approx(40 / 120)
    assert infected_share(np.zeros_like(lung), np.zeros_like(lung)) == 0.0
