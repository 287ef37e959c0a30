"""Preprocessing on whole volumes: lung crop, window-levelling, resampling, intensity normalisations.

Every function works on a whole volume (or batch of slices) at once; none loops over pixels.
"""

from __future__ import annotations

from m3lung.io.resample import resample
from m3lung.preprocess.lungcrop import (
    LungCrop,
    LungCropConfig,
    body_mask,
    body_midline,
    lung_boxes,
    lung_crop,
    lung_mask,
)
from m3lung.preprocess.normalise import (
    LungROI,
    jin_normalise,
    lung_roi_normalise,
    sliding_window_bounds,
    sliding_window_normalise,
)
from m3lung.preprocess.pipeline import PreparedSlices, prepare_slices
from m3lung.preprocess.quality import ChestQuality, QualityConfig, assess_chest
from m3lung.preprocess.resize import crop_resize, resize_volume
from m3lung.preprocess.window import (
    PAPER_CENTRE_RANGE,
    PAPER_CENTRES,
    PAPER_WIDTH,
    multi_window,
    random_window,
    unwindow,
    window,
    window_range,
    window_torch,
)

__all__ = [
    "PAPER_CENTRES",
    "PAPER_CENTRE_RANGE",
    "PAPER_WIDTH",
    "ChestQuality",
    "LungCrop",
    "LungCropConfig",
    "LungROI",
    "PreparedSlices",
    "QualityConfig",
    "assess_chest",
    "body_mask",
    "body_midline",
    "crop_resize",
    "jin_normalise",
    "lung_boxes",
    "lung_crop",
    "lung_mask",
    "lung_roi_normalise",
    "multi_window",
    "prepare_slices",
    "random_window",
    "resample",
    "resize_volume",
    "sliding_window_bounds",
    "sliding_window_normalise",
    "unwindow",
    "window",
    "window_range",
    "window_torch",
]
