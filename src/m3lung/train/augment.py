"""Augmentation of training slices: the paper's random window centre and flips, optional geometry.

* :func:`draw_augmentation` — every training slice's random draws for one epoch, from the seed and the
  epoch only (so a resumed or repeated run draws the same);
* :func:`augment_slices` — a batch of HU slices windowed, flipped and (optionally) moved as drawn;
* :func:`random_affine` — rotation, zoom and shift of a batch in one bilinear resampling;
* :func:`draw_window` — which of a cached scan's window centres one training sample reads.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from m3lung.preprocess import window_torch


def is_geometric(*, rotate: float, scale: tuple[float, float], shift: float) -> bool:
    """Whether these settings move slices at all (rotation in degrees, zoom range, shift fraction)."""
    return rotate > 0 or scale != (1.0, 1.0) or shift > 0


def draw_augmentation(
    n: int,
    *,
    seed: int,
    epoch: int,
    centre_range: tuple[float, float],
    flip: bool = True,
    rotate: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    shift: float = 0.0,
) -> dict[str, np.ndarray]:
    """Random draws of ``n`` training slices for ``epoch``: arrays of length ``n`` keyed by what they set.

    "centres" (float32 HU, uniform in ``centre_range``) and "flips" (bool, each slice with probability
    1/2 when ``flip``); when :func:`is_geometric`, also "angle" (float32 radians, uniform within
    ±``rotate`` degrees), "zoom" (float32, log-uniform in ``scale``) and "shift" ((n, 2) float32 x, y
    fractions of the side within ±``shift``), from a second random stream, so that switching geometry
    on leaves the centres and flips as they were.
    """
    rng = np.random.default_rng([seed, epoch, 104729])
    lo, hi = centre_range
    draws = {
        "centres": rng.uniform(lo, hi, size=n).astype(np.float32),
        "flips": rng.random(n) < 0.5 if flip else np.zeros(n, bool),
    }
    if is_geometric(rotate=rotate, scale=scale, shift=shift):
        geo = np.random.default_rng([seed, epoch, 7919])
        draws["angle"] = np.deg2rad(geo.uniform(-rotate, rotate, n)).astype(np.float32)
        draws["zoom"] = np.exp(geo.uniform(np.log(scale[0]), np.log(scale[1]), n)).astype(np.float32)
        draws["shift"] = geo.uniform(-shift, shift, (n, 2)).astype(np.float32)
    return draws


def augment_slices(
    hu: np.ndarray, draws: Mapping[str, np.ndarray], *, width: float, device: torch.device
) -> torch.Tensor:
    """(B, 1, S, S) network input in [0, 1] on ``device`` from HU slices ``hu`` (B, S, S) and their draws.

    ``draws`` holds one entry per slice of :func:`draw_augmentation`'s arrays: each slice is windowed at
    its centre with ``width``, mirrored left-right where flipped, then moved by :func:`random_affine`
    when the draws hold a geometry.
    """
    x = window_torch(torch.from_numpy(hu.astype(np.float32)), torch.from_numpy(draws["centres"]).view(-1, 1, 1), width)
    f = torch.from_numpy(draws["flips"])
    x[f] = x[f].flip(-1)
    x = x.unsqueeze(1).to(device)
    if "angle" in draws:
        x = random_affine(
            x,
            torch.from_numpy(draws["angle"]).to(device),
            torch.from_numpy(draws["zoom"]).to(device),
            torch.from_numpy(draws["shift"]).to(device),
        )
    return x


def random_affine(x: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate (radians), zoom (>1 enlarges) and move (fractions of the side, (B, 2) as x, y) a batch
    ``x`` (B, C, H, W) of windowed slices, one bilinear resampling for the whole batch; zeros (air)
    fill what comes in from outside."""
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # the sampling grid maps output to input coordinates in [-1, 1]: the inverse of the wanted motion
    theta = torch.stack(
        [
            torch.stack([cos, -sin, -2.0 * shift[:, 0]], dim=1),
            torch.stack([sin, cos, -2.0 * shift[:, 1]], dim=1),
        ],
        dim=1,
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def draw_window(n_windows: int, *, seed: int, epoch: int, row: int) -> int:
    """The window centre (an index below ``n_windows``) training sample ``row`` reads in ``epoch``,
    drawn from the seed, the epoch and the row only."""
    rng = np.random.default_rng([seed, epoch, row, 7919])
    return int(rng.integers(n_windows))
