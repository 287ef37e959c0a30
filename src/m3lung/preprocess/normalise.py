"""Intensity normalisations of the related systems (seeds 000, 002, 003), on whole volumes.

* seed 000 (Jin et al.): resample to 1x1x1 mm, clip HU to [-1200, 700], scale to [0, 1]:
  :func:`jin_normalise`.
* seed 002 (Hu et al.): a fixed-size sliding window W(Q, S) over the HU axis finds, per slice, the
  range of width Q that holds the most pixels; clip to it and scale to [0, 1]:
  :func:`sliding_window_normalise`. The paper gives no values for Q and S (*choice*: Q = 1500 HU,
  S = 10 HU, searched over [-1024, 3071] HU, per slice).
* seed 003 (Wang et al.): cubic (cuboid) bounding box of the lung mask (lung-ROI), non-lung
  suppression (clip at the top-5% intensity of the whole scan; outside the lung mask clip to
  lung mean ± 4 std), z-score over the ROI, resize to 48x240x360: :func:`lung_roi_normalise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from m3lung.errors import InputError, IntensityError
from m3lung.io.resample import resample
from m3lung.io.volume import CTVolume
from m3lung.preprocess.resize import resize_volume
from m3lung.preprocess.window import window_range

#: Seed 000: HU window [-1200, 700] and 1 mm isotropic voxels.
JIN_HU_RANGE = (-1200.0, 700.0)
JIN_SPACING = (1.0, 1.0, 1.0)


def jin_normalise(
    volume: CTVolume,
    *,
    spacing: Sequence[float] = JIN_SPACING,
    hu_range: tuple[float, float] = JIN_HU_RANGE,
) -> tuple[CTVolume, np.ndarray]:
    """Seed 000 preprocessing: resample to ``spacing`` mm, then window ``hu_range`` to [0, 1].

    Returns the resampled HU volume and its normalised voxels (same shape, float32 in [0, 1]).
    """
    volume.require_hu("seed 000's HU window")
    res = resample(volume, spacing)
    return res, window_range(res.voxels, *hu_range)


def sliding_window_bounds(
    hu: np.ndarray,
    *,
    width: float = 1500.0,
    step: float = 10.0,
    search: tuple[float, float] = (-1024.0, 3071.0),
    per_slice: bool = True,
) -> np.ndarray:
    """Lower bound of the W(Q=width, S=step) window holding the most pixels.

    The HU axis over ``search`` is cut into bins of ``step``; a window of ``width`` (a whole number of
    bins) slides bin by bin and the start with the largest pixel count wins (ties: the lowest start).
    Returns (N,) lower bounds for ``per_slice`` (one histogram per slice, all in one ``bincount``) or a
    (1,) array for the whole volume.
    """
    a = np.asarray(hu, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if step <= 0 or width < step:
        raise IntensityError(f"need 0 < step <= width, got step={step}, width={width}")
    lo, hi = search
    n_bins = int(np.ceil((hi - lo) / step))
    q = round(width / step)
    if q > n_bins:
        raise IntensityError(f"window width {width} is wider than the search range {search}")
    groups = a.shape[0] if per_slice else 1
    b = np.clip(((a - lo) / step).astype(np.int64), 0, n_bins - 1).reshape(groups, -1)
    b += (np.arange(groups, dtype=np.int64) * n_bins)[:, None]
    hist = np.bincount(b.ravel(), minlength=groups * n_bins).reshape(groups, n_bins)
    cum = np.concatenate([np.zeros((groups, 1), dtype=np.int64), np.cumsum(hist, axis=1)], axis=1)
    counts = cum[:, q:] - cum[:, : n_bins - q + 1]
    start = counts.argmax(axis=1)
    return lo + start * step


def sliding_window_normalise(
    hu: np.ndarray,
    *,
    width: float = 1500.0,
    step: float = 10.0,
    search: tuple[float, float] = (-1024.0, 3071.0),
    per_slice: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Seed 002's normalisation: clip each slice to its W(Q, S) window and scale to [0, 1].

    ``hu`` is (N, H, W) in HU. Returns the normalised array (float32) and the lower bounds used (N,).
    """
    a = np.asarray(hu, dtype=np.float32)
    lows = sliding_window_bounds(a, width=width, step=step, search=search, per_slice=per_slice)
    shape = (lows.shape[0],) + (1,) * (a.ndim - 1)
    low = lows.reshape(shape).astype(np.float32)
    out = (a - low) * np.float32(1.0 / width)
    np.clip(out, 0.0, 1.0, out=out)
    return out, lows


@dataclass
class LungROI:
    """Seed 003's lung-ROI: the normalised cuboid, where it came from, and the suppression values.

    image : (D, H, W) float32 z-scored ROI resized to ``size`` (48x240x360 in the paper).
    box : (6,) int, half-open ``(z0, y0, x0, z1, y1, x1)`` of the ROI in the input volume.
    top_threshold : the top-5% HU value; lung_mean, lung_std : statistics of the lung voxels.
    """

    image: np.ndarray
    box: np.ndarray
    top_threshold: float
    lung_mean: float
    lung_std: float


def lung_roi_normalise(
    volume: CTVolume,
    lung_mask: np.ndarray,
    *,
    size: tuple[int, int, int] = (48, 240, 360),
    top_percent: float = 5.0,
    n_std: float = 4.0,
) -> LungROI:
    """Seed 003's lung-ROI, non-lung suppression, z-score and resize.

    ``lung_mask`` (N, H, W) bool comes from any lung segmenter (the paper uses a DenseNet121-FPN;
    :func:`m3lung.preprocess.lungcrop.lung_mask` gives a hand-crafted one).
    """
    volume.require_hu("seed 003's non-lung suppression")
    m = np.asarray(lung_mask, dtype=bool)
    if m.shape != volume.shape:
        raise InputError(f"lung mask of shape {m.shape} does not match the volume's {volume.shape}")
    if not m.any():
        raise InputError(f"{volume.source.path}: the lung mask is empty; cannot build the lung-ROI")
    hu = volume.voxels
    top = float(np.percentile(hu, 100.0 - top_percent))
    idx = [np.nonzero(np.any(m, axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
    box = np.array([i[0] for i in idx] + [i[-1] + 1 for i in idx], dtype=np.int64)
    sl = tuple(slice(int(box[a]), int(box[a + 3])) for a in range(3))
    roi = np.minimum(hu[sl], np.float32(top))
    inside = m[sl]
    lung_vals = roi[inside]
    mean = float(lung_vals.mean())
    std = float(lung_vals.std())
    lo, hi = np.float32(mean - n_std * std), np.float32(mean + n_std * std)
    roi = np.where(inside, roi, np.clip(roi, lo, hi))
    z = (roi - roi.mean()) / max(float(roi.std()), 1e-6)
    image = resize_volume(z.astype(np.float32), size, order=1)
    return LungROI(image=image, box=box, top_threshold=top, lung_mean=mean, lung_std=std)
