"""M³Lung-Sys slice preparation: lung crop, then every window centre, for a whole volume."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from m3lung.io.volume import CTVolume
from m3lung.preprocess.lungcrop import LungCrop, LungCropConfig, lung_crop, map_chunks
from m3lung.preprocess.window import PAPER_CENTRES, PAPER_WIDTH, multi_window


@dataclass
class PreparedSlices:
    """Network-ready slices of one volume.

    windowed : (N, K, rows, cols) float32 in [0, 1], one image per slice and window centre.
    centres : the K window centres (HU); width : the window width (HU).
    crop : the :class:`LungCrop` (HU crops, boxes, masks, fallback flags).
    """

    windowed: np.ndarray
    centres: tuple[float, ...]
    width: float
    crop: LungCrop


def prepare_slices(
    volume: CTVolume,
    *,
    crop: LungCropConfig = LungCropConfig(),
    centres: Sequence[float] = PAPER_CENTRES,
    width: float = PAPER_WIDTH,
) -> PreparedSlices:
    """Lung-crop every slice and window it at every centre (paper: -700, -600, -500; width 1200)."""
    c = lung_crop(volume, crop)
    n = c.crops.shape[0]
    out = np.empty((n, len(centres), *c.crops.shape[1:]), dtype=np.float32)

    def run(part: slice) -> None:
        out[part] = multi_window(c.crops[part], centres, width)

    map_chunks(run, n, crop.chunk_slices, crop.workers)
    return PreparedSlices(windowed=out, centres=tuple(float(x) for x in centres), width=float(width), crop=c)
