"""Motion artefacts that mimic lesions (the usual false positives); they are never lesions.

* ``cardiac_pulsation``: a doubled, blurred left heart border with streaks of slightly higher
  density (-750..-600 HU) in the adjacent lung, over a few slices.
* ``respiratory_motion``: a blurred double contour of a diaphragm dome: a streaky band of slightly
  higher density just above the dome, over a few slices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from m3lung.phantom.anatomy import Anatomy, _rot_ellipse
from m3lung.phantom.config import LUNG_LEFT, LUNG_RIGHT


def _slices_near(an: Anatomy, z_centre: float, length_mm: float) -> range:
    sz = an.grid.spacing[0]
    k0 = int(np.clip(np.rint((z_centre - length_mm / 2) / sz), 0, an.grid.shape[0] - 1))
    k1 = int(np.clip(np.rint((z_centre + length_mm / 2) / sz), k0, an.grid.shape[0] - 1))
    return range(k0, k1 + 1)


def _raise(sub: np.ndarray, ok: np.ndarray, alpha: np.ndarray, hu: float) -> None:
    """Blend towards ``hu`` by ``alpha`` where ``ok``, never lowering a density."""
    new = sub + (np.float32(hu) - sub) * alpha
    np.copyto(sub, np.maximum(sub, new), where=ok)


def cardiac_pulsation(
    an: Anatomy, vox: np.ndarray, lung: np.ndarray, rng: np.random.Generator
) -> dict[str, Any] | None:
    """Pulsation artefact at the left heart border (in place); its description, or None if no room."""
    u, g = an.u, an.grid
    z_c = u["hz"] + rng.uniform(-0.5, 0.4) * u["hrz"]
    ks = _slices_near(an, z_c, rng.uniform(4.0, 16.0))
    hu, edge_hu = rng.uniform(-750.0, -600.0), rng.uniform(-450.0, -250.0)
    band, offset = rng.uniform(6.0, 14.0), rng.uniform(3.0, 6.0)
    streaks, phase = int(rng.integers(5, 12)), rng.uniform(0, 2 * np.pi)
    xs, ys = g.xs, g.ys
    touched = 0
    for n, k in enumerate(ks):
        sec = an.heart_section(float(k * g.spacing[0]))
        if sec is None:
            continue
        grow = band + u["heart_fat"] + 3.0
        got = _rot_ellipse(xs, ys, u["hx"], u["hy"], sec[0] + grow, sec[1] + grow, u["hang"])
        if got is None:
            continue
        box, _ = got
        dx = (xs[box[1]] - u["hx"])[None, :]
        dy = (ys[box[0]] - u["hy"])[:, None]
        c, s = np.float32(np.cos(u["hang"])), np.float32(np.sin(u["hang"]))
        rho = np.sqrt(((dx * c - dy * s) / sec[0]) ** 2 + ((dx * s + dy * c) / sec[1]) ** 2)
        d = (rho - 1.0) * np.float32(min(sec)) - np.float32(u["heart_fat"])  # ~ mm outside the lung border
        ang = np.arctan2(dy, dx)
        taper = np.float32(1.0 - 0.5 * abs((n + 0.5) / len(ks) - 0.5))
        streak = 0.7 + 0.3 * np.cos(ang * streaks + phase)
        a = (np.clip(1.0 - d / band, 0.0, 1.0) * streak * taper).astype(np.float32)
        edge = (np.clip(1.0 - np.abs(d - offset) / 1.0, 0.0, 1.0) * 0.9 * taper).astype(np.float32)
        ok = (lung[k][box] == LUNG_LEFT) & (d > 0) & (dx > -0.2 * sec[0])
        _raise(vox[k][box], ok, a, hu)
        _raise(vox[k][box], ok, edge, edge_hu)
        touched += int(ok.any())
    if not touched:
        return None
    return {
        "kind": "cardiac_pulsation",
        "slices": [ks[0], ks[-1]],
        "hu": round(hu, 1),
        "band_mm": round(band, 1),
        "double_edge_offset_mm": round(offset, 1),
        "double_edge_hu": round(edge_hu, 1),
        "where": "left heart border",
    }


def respiratory_motion(
    an: Anatomy, vox: np.ndarray, lung: np.ndarray, rng: np.random.Generator
) -> dict[str, Any] | None:
    """Breathing artefact above one diaphragm dome (in place); its description, or None if no room."""
    u, g = an.u, an.grid
    right = rng.random() < 0.5
    dome = u["z_dome_r"] if right else u["z_dome_l"]
    ks = _slices_near(an, dome - rng.uniform(0.0, 15.0), rng.uniform(6.0, 18.0))
    hu = rng.uniform(-750.0, -600.0)
    band = rng.uniform(5.0, 12.0)
    freq, phase = rng.uniform(0.15, 0.4), rng.uniform(0, 2 * np.pi)
    side = LUNG_RIGHT if right else LUNG_LEFT
    ys, xs = g.ys[:, None], g.xs[None, :]
    streak = (0.55 + 0.45 * np.cos(xs * freq + phase)).astype(np.float32)
    height = an.diaphragm(ys, xs).astype(np.float32)
    touched = 0
    for n, k in enumerate(ks):
        above = np.float32(k * g.spacing[0]) - height
        ok = (lung[k] == side) & (above > 0) & (above < band)
        if not ok.any():
            continue
        taper = 1.0 - 0.5 * abs((n + 0.5) / len(ks) - 0.5)
        a = (np.clip(1.0 - above / band, 0.0, 1.0) * streak * np.float32(taper)).astype(np.float32)
        _raise(vox[k], ok, a, hu)
        touched += 1
    if not touched:
        return None
    return {
        "kind": "respiratory_motion",
        "slices": [ks[0], ks[-1]],
        "hu": round(hu, 1),
        "band_mm": round(band, 1),
        "where": "right diaphragm dome" if right else "left diaphragm dome",
    }


def add_artefact(an: Anatomy, vox: np.ndarray, lung: np.ndarray, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One motion artefact (cardiac pulsation 60 %, respiratory motion 40 %), falling back to the other kind."""
    kinds = [cardiac_pulsation, respiratory_motion]
    if rng.random() >= 0.6:
        kinds.reverse()
    for make in kinds:
        got = make(an, vox, lung, rng)
        if got is not None:
            return [got]
    return []
