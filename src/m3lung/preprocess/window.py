"""Window-levelling: map HU to [0, 1] through a window, with fixed or random centres (M³Lung-Sys §II-A)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from m3lung.errors import IntensityError

if TYPE_CHECKING:
    import torch

#: M³Lung-Sys: window width 1200 HU; centres -700, -600, -500 at inference; uniform in [-700, -500] in training.
PAPER_WIDTH = 1200.0
PAPER_CENTRES = (-700.0, -600.0, -500.0)
PAPER_CENTRE_RANGE = (-700.0, -500.0)


def window(hu: np.ndarray, center: float | np.ndarray, width: float = PAPER_WIDTH) -> np.ndarray:
    """Clip ``hu`` to ``[center - width/2, center + width/2]`` and scale to [0, 1] (float32).

    ``center`` may be an array broadcastable against ``hu`` (e.g. one centre per slice, shape (N, 1, 1)).
    """
    if width <= 0:
        raise IntensityError(f"window width must be positive, got {width}")
    a = np.asarray(hu, dtype=np.float32)
    c = np.asarray(center, dtype=np.float32)
    out = a * np.float32(1.0 / width)
    out -= (c - np.float32(width / 2.0)) * np.float32(1.0 / width)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def window_range(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip ``hu`` to ``[low, high]`` and scale to [0, 1] (seed 000: ``[-1200, 700]``)."""
    if high <= low:
        raise IntensityError(f"window high ({high}) must exceed low ({low})")
    return window(hu, (low + high) / 2.0, high - low)


def multi_window(hu: np.ndarray, centres: Sequence[float] = PAPER_CENTRES, width: float = PAPER_WIDTH) -> np.ndarray:
    """All fixed-centre windows of ``hu`` (N, H, W): returns (N, len(centres), H, W) float32."""
    a = np.asarray(hu, dtype=np.float32)
    out = np.empty((a.shape[0], len(centres), *a.shape[1:]), dtype=np.float32)
    for i, c in enumerate(centres):  # a handful of centres; each pass is vectorised over the volume
        np.multiply(a, np.float32(1.0 / width), out=out[:, i])
        out[:, i] -= np.float32((c - width / 2.0) / width)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def random_window(
    hu: np.ndarray,
    rng: np.random.Generator,
    centre_range: tuple[float, float] = PAPER_CENTRE_RANGE,
    width: float = PAPER_WIDTH,
) -> tuple[np.ndarray, np.ndarray]:
    """Window every slice of ``hu`` (N, H, W) with its own centre drawn uniformly from ``centre_range``.

    Returns the windowed slices (N, H, W) float32 and the centres (N,). This is the paper's training
    augmentation; draw from a seeded ``rng`` for reproducibility.
    """
    a = np.asarray(hu, dtype=np.float32)
    centres = np.asarray(rng.uniform(centre_range[0], centre_range[1], size=a.shape[0]), dtype=np.float64)
    shape = (a.shape[0],) + (1,) * (a.ndim - 1)
    return window(a, centres.reshape(shape), width), centres


def window_torch(hu: torch.Tensor, centre: float | torch.Tensor, width: float = PAPER_WIDTH) -> torch.Tensor:
    """:func:`window` for a torch tensor on any device: ``((hu - (centre - width/2)) / width)`` clipped to [0, 1].

    ``centre`` may be a tensor broadcastable against ``hu``. This is the one torch windowing of the
    project (inference and training augmentation); the numpy :func:`window` agrees to float32 rounding.
    """
    if width <= 0:
        raise IntensityError(f"window width must be positive, got {width}")
    return ((hu - (centre - width / 2)) / width).clamp_(0, 1)


def unwindow(grey: np.ndarray, centre: float, width: float, levels: float = 255.0) -> np.ndarray:
    """HU from grey values ``0..levels`` exported through the window (``centre``, ``width``): the inverse of
    :func:`window` for 8-bit slices (e.g. Inf-Net's JPGs), float32."""
    return np.asarray(grey, dtype=np.float32) * np.float32(width / levels) + np.float32(centre - width / 2.0)
