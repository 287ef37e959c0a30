"""On the three real COVID-CT-MD volumes the lung crop keeps both lungs and leaves the table out.

The reference here is computed independently of the crop, slice by slice with scikit-image:
the body is the largest component above -300 HU with its holes filled; an air-density pixel inside
the body is below -500 HU, at least 3 pixels inside the body outline, in a connected air region of
more than 30 pixels. A slice "has lung" when such pixels cover at least 0.5% of the slice. The table is
every component above -300 HU outside the (filled) body whose centre lies below the body's centre.
"Leaves the table out" means: the box ends above the table under the middle half of the box, and
never runs below both the body and the table's top (a rectangle's corner may still graze a pad that
curves up along the patient's flank; no margin-10 rectangle around the lungs can avoid that).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure, morphology

from helpers import COVIDCTMD_CASES
from m3lung.preprocess import lung_crop

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _reference(hu2d: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    dense = hu2d > -300
    lab = measure.label(dense, connectivity=2)
    if lab.max() == 0:
        return np.zeros_like(dense), np.zeros_like(dense), hu2d.shape[0]
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body_id = int(sizes.argmax())
    body = ndi.binary_fill_holes(lab == body_id)
    inner = ndi.binary_erosion(body, morphology.disk(3))
    air = (hu2d < -500) & inner
    air = morphology.remove_small_objects(air, max_size=30, connectivity=2) if air.any() else air
    cy = np.nonzero(body)[0].mean()
    table = np.zeros_like(dense)
    for region in measure.regionprops(lab):
        if region.label != body_id and region.centroid[0] > cy:
            table[lab == region.label] = True
    table &= ~body
    return air, table, int(np.nonzero(body.any(axis=1))[0].max())


@pytest.mark.parametrize("name", sorted(COVIDCTMD_CASES))
def test_box_holds_every_air_pixel_in_body_and_no_table(covidctmd_volumes, name):
    v = covidctmd_volumes[name]
    crop = lung_crop(v)
    n, h, w = v.shape
    lung_slices = 0
    for k in range(n):
        air, table, body_bottom = _reference(v.voxels[k])
        r0, c0, r1, c1 = crop.boxes[k]
        inbox = np.zeros((h, w), bool)
        inbox[r0:r1, c0:c1] = True
        if air.sum() >= 0.005 * h * w:
            lung_slices += 1
            assert not crop.fallback[k], f"slice {k}: lung present but the crop fell back"
            missed = int((air & ~inbox).sum())
            assert missed == 0, f"slice {k}: {missed} air pixels inside the body fall outside the box"
        if not crop.fallback[k] and table.any():
            mid = slice(c0 + (c1 - c0) // 4, c1 - (c1 - c0) // 4)
            under = np.nonzero(table[:, mid].any(axis=1))[0]
            if under.size:
                assert r1 <= under.min(), f"slice {k}: the box reaches into the table under the patient"
            table_top = np.nonzero(table.any(axis=1))[0].min()
            assert r1 <= max(table_top, body_bottom), f"slice {k}: the box runs below the body into the table"
    assert lung_slices > 0.6 * n
