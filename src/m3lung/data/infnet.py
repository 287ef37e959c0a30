"""The Inf-Net layout (Fan et al., 2020): 8-bit CT slices with expert lesion masks, read as HU slices.

``TrainingSet/LungInfection-Train/Doctor-label/Imgs/*`` holds the slices (already cropped to the lungs)
and ``.../GT/*`` the masks of the same stem; an image without a mask is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from m3lung.errors import InputError
from m3lung.preprocess import unwindow

LABELLED = Path("TrainingSet") / "LungInfection-Train" / "Doctor-label"


def read_infnet(
    folder: str | os.PathLike[str], *, size: int, window: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """HU slices (N, size, size) float32 and lesion masks (N, size, size) bool of an Inf-Net folder.

    Every image with a ground-truth mask, in file-name order, is resized to ``size`` (bilinear; masks
    nearest, grey > 127) and its grey values are mapped to HU through ``window`` = (centre, width), the
    window it is taken to have been exported with (:func:`m3lung.preprocess.unwindow`). A folder that is
    not the layout, or holds no image with a mask, is an :class:`InputError`.
    """
    from PIL import Image

    root = Path(folder)
    img_dir = root / LABELLED / "Imgs"
    gt_dir = root / LABELLED / "GT"
    if not img_dir.exists():
        raise InputError(f"{root}: not the Inf-Net layout (no {img_dir.relative_to(root)})")
    centre, width = window
    hus, masks = [], []
    for img in sorted(img_dir.iterdir()):
        gt = next(gt_dir.glob(img.stem + ".*"), None)
        if gt is None:
            continue
        g = np.asarray(Image.open(img).convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
        m = np.asarray(Image.open(gt).convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127
        hus.append(unwindow(g, centre, width))
        masks.append(m)
    if not hus:
        raise InputError(f"{root}: no image with a ground-truth mask")
    return np.stack(hus), np.stack(masks)
