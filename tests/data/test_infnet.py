"""The Inf-Net layout read as HU slices and lesion masks."""

from __future__ import annotations

import numpy as np
import pytest

from m3lung.data.infnet import LABELLED, read_infnet
from m3lung.errors import InputError


def _write(root, name: str, grey: np.ndarray, mask: np.ndarray | None) -> None:
    from PIL import Image

    (root / LABELLED / "Imgs").mkdir(parents=True, exist_ok=True)
    (root / LABELLED / "GT").mkdir(parents=True, exist_ok=True)
    Image.fromarray(grey.astype(np.uint8)).save(root / LABELLED / "Imgs" / f"{name}.jpg", quality=100)
    if mask is not None:
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / LABELLED / "GT" / f"{name}.png")


def test_read_infnet_maps_grey_to_hu_and_skips_images_without_masks(tmp_path):
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:6] = True
    _write(tmp_path, "b", np.full((8, 8), 255), mask)
    _write(tmp_path, "a", np.zeros((8, 8)), np.zeros((8, 8), bool))
    _write(tmp_path, "c", np.full((8, 8), 128), None)
    hu, masks = read_infnet(tmp_path, size=16, window=(-600.0, 1500.0))
    assert hu.shape == masks.shape == (2, 16, 16) and hu.dtype == np.float32 and masks.dtype == bool
    np.testing.assert_allclose(hu[0], -1350.0, atol=1e-3)  # grey 0: the window's bottom
    np.testing.assert_allclose(hu[1], 150.0, atol=1e-3)  # grey 255: its top
    assert not masks[0].any() and masks[1].sum() == 4 * 8 and masks[1, 4:8, 4:12].all()


def test_read_infnet_refuses_other_layouts(tmp_path):
    with pytest.raises(InputError, match="not the Inf-Net layout"):
        read_infnet(tmp_path, size=16, window=(-600.0, 1500.0))
    _write(tmp_path, "a", np.zeros((8, 8)), None)
    with pytest.raises(InputError, match="no image with a ground-truth mask"):
        read_infnet(tmp_path, size=16, window=(-600.0, 1500.0))
