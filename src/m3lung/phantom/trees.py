"""Vessels and airways: branching trees of tapering tubes grown inside the lungs, then rendered.

Each lung gets a bronchovascular tree (a bronchus with its pulmonary artery alongside, from the lobar
bronchi at the hilum outwards) and a pulmonary-vein tree (from the left atrium outwards). The
trachea's main bronchi and the hilar arteries join them to the mediastinum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from m3lung.phantom.anatomy import Anatomy
from m3lung.phantom.config import LUNG_LEFT, LUNG_RIGHT
from m3lung.phantom.geometry import Grid, Segment, capsule_alpha, grow_tree


@dataclass
class Trees:
    """Grown trees. ``bronchovascular`` segments carry a bronchus when ``airway_radius`` says so."""

    bronchovascular: list[Segment] = field(default_factory=list)
    veins: list[Segment] = field(default_factory=list)
    hilar: list[Segment] = field(default_factory=list)  # main bronchi (airways) and hilar arteries
    main_bronchi: list[Segment] = field(default_factory=list)
    hila: dict[int, np.ndarray] = field(default_factory=dict)
    r_min: float = 0.5

    def airway_radius(self, seg: Segment) -> float:
        """Lumen radius (mm) of the bronchus running with a bronchovascular segment; 0 when none is drawn."""
        rb = 0.65 * seg.r0
        return rb if (seg.generation <= 5 and rb >= max(1.0, 1.2 * self.r_min)) else 0.0


def grow_trees(rng: np.random.Generator, an: Anatomy, lung: np.ndarray, max_segments: int) -> Trees:
    """Grow the bronchovascular and venous trees of both lungs inside ``lung`` (the lung mask)."""
    g, u = an.grid, an.u
    r_min = max(0.5, 0.45 * g.pixel)
    out = Trees(r_min=r_min)

    def inside_of(side: int) -> Callable[[np.ndarray], bool]:
        def inside(p: np.ndarray) -> bool:
            ijk = g.inside(p)
            return ijk is not None and int(lung[ijk]) == side

        return inside

    def into(p: np.ndarray, d: np.ndarray, side: int) -> np.ndarray:
        """March from ``p`` along ``d`` (up to 60 mm) to the first point inside the lung ``side``."""
        d = d / np.linalg.norm(d)
        for step in np.arange(0.0, 60.0, 2.0):
            q = p + d * step
            if inside_of(side)(q):
                return np.asarray(q + d * 2.0)
        return p

    hw = u["hw_mid"] + 8.0
    carina = np.array([u["z_carina"], u["y_tr"], u["x_tr"]])
    pa_top = np.array([u["z_carina"] - 8.0, u["y_pt"], u["x_pt"]])
    atrium = np.array([u["z_carina"] - 55.0, u["hy"] + 0.3 * u["hW"], u["hx"] - 10.0])
    for side, sign in ((LUNG_RIGHT, -1.0), (LUNG_LEFT, 1.0)):
        drop = rng.uniform(15.0, 22.0) if side == LUNG_RIGHT else rng.uniform(25.0, 35.0)
        lateral = hw + (rng.uniform(10.0, 16.0) if side == LUNG_RIGHT else rng.uniform(14.0, 22.0))
        hilum = np.array([u["z_carina"] - drop, u["y_tr"] + rng.uniform(2.0, 10.0), u["x_tr"] + sign * lateral])
        hilum = into(hilum, np.array([0.0, 0.0, sign]), side)
        out.hila[side] = hilum
        r_main = rng.uniform(5.5, 7.0)
        out.main_bronchi.append(Segment(carina, hilum, r_main, r_main * 0.9, 0, side, np.array([0.0, 1.0, 0.0])))
        out.hilar.append(
            Segment(pa_top, hilum + np.array([3.0, -4.0, 0.0]), 9.0, 7.5, 0, side, np.array([0.0, 1.0, 0.0]))
        )
        inside = inside_of(side)
        targets = _spread_points(rng, g, lung, side, hilum, 24)
        roots = [(hilum, tgt, rng.uniform(2.8, 3.8)) for tgt in targets]
        out.bronchovascular += grow_tree(
            rng, inside, roots, lung=side, r_min=r_min, max_segments=max_segments, centre=hilum
        )
        vroots: list[tuple[np.ndarray, np.ndarray, float]] = []
        by_z = sorted(targets, key=lambda q: -float(q[0]))
        for dz, dz_dir in ((rng.uniform(-45.0, -30.0), 0.6), (rng.uniform(-75.0, -60.0), -0.5)):
            p = np.array([u["z_carina"] + dz, u["hy"] + rng.uniform(0.0, 15.0), u["bx"] + sign * hw])
            p = into(p, np.array([0.0, 0.3, sign]), side)
            out.hilar.append(Segment(atrium, p, 6.0, 5.5, 0, side, np.array([1.0, 0.0, 0.0])))
            part = by_z[: len(by_z) // 2] if dz_dir > 0 else by_z[len(by_z) // 2 :]
            vroots += [(p, tgt, rng.uniform(2.8, 3.8)) for tgt in part]
        out.veins += grow_tree(rng, inside, vroots, lung=side, r_min=r_min, max_segments=max_segments, centre=atrium)
    return out


def _spread_points(
    rng: np.random.Generator, g: Grid, lung: np.ndarray, side: int, start: np.ndarray, k: int
) -> list[np.ndarray]:
    """``k`` well spread points (mm) of lung ``side`` (farthest-point sampling from ``start``)."""
    sz = max(1, round(8.0 / g.spacing[0]))
    sxy = max(1, round(8.0 / g.pixel))
    kk, ii, jj = np.nonzero(lung[::sz, ::sxy, ::sxy] == side)
    if kk.size == 0:
        return [start + rng.normal(size=3) * 30.0 for _ in range(k)]
    pts = g.mm(kk * sz, ii * sxy, jj * sxy).T
    pts += rng.uniform(-4.0, 4.0, pts.shape)
    chosen: list[np.ndarray] = []
    dist = np.linalg.norm(pts - start, axis=1)
    for _ in range(k):
        i = int(np.argmax(dist))
        chosen.append(pts[i])
        dist = np.minimum(dist, np.linalg.norm(pts - pts[i], axis=1))
    # aim inside the region a target stands for, not at the pleura
    return [start + 0.85 * (c - start) for c in chosen]


def _composite(
    vox: np.ndarray,
    lung: np.ndarray | None,
    got: tuple[tuple[slice, slice, slice], np.ndarray] | None,
    value: float,
    gain: float = 1.0,
) -> None:
    """Blend ``value`` in by the coverage (times ``gain``); denser values win (max), air wins (min);
    only within ``lung`` when given."""
    if got is None:
        return
    box, a = got
    if gain != 1.0:
        a = a * np.float32(gain)
    sub = vox[box]
    target = sub + (np.float32(value) - sub) * a
    if lung is not None:
        target = np.where(lung[box] > 0, target, sub)
    if value < -500:
        np.minimum(sub, target, out=sub)
    else:
        np.maximum(sub, target, out=sub)


def render_trees(an: Anatomy, trees: Trees, vox: np.ndarray, lung: np.ndarray) -> None:
    """Draw vessels (HU of blood, partial volume), bronchial walls and air lumens into ``vox`` in place."""
    g, hu = an.grid, an.hu
    vessel, wall = hu["vessel"], hu["wall"]
    for seg in trees.hilar:
        _composite(vox, None, capsule_alpha(g, seg.p0, seg.p1, seg.r0, seg.r1), vessel)
    for seg in trees.veins:
        _composite(vox, lung, capsule_alpha(g, seg.p0, seg.p1, seg.r0, seg.r1), vessel)
    lumens: list[tuple[np.ndarray, np.ndarray, float, float, bool]] = []
    for seg in trees.bronchovascular:
        rb = trees.airway_radius(seg)
        if rb > 0:
            wt = max(0.5, 0.2 * rb)
            off = seg.side * (rb + wt + 0.9 * seg.r0 + 0.3)
            lumens.append((seg.p0, seg.p1, rb, 0.65 * seg.r1, True))
            _composite(vox, lung, capsule_alpha(g, seg.p0, seg.p1, rb + wt, 0.65 * seg.r1 + wt), wall, 0.6)
        else:
            off = np.zeros(3)
        _composite(vox, lung, capsule_alpha(g, seg.p0 + off, seg.p1 + off, 0.9 * seg.r0, 0.9 * seg.r1), vessel)
    for seg in trees.main_bronchi:
        _composite(vox, None, capsule_alpha(g, seg.p0, seg.p1, seg.r0 + 1.8, seg.r1 + 1.8), wall)
        lumens.append((seg.p0, seg.p1, seg.r0, seg.r1, False))
    for p0, p1, r0, r1, clip in lumens:
        _composite(vox, lung if clip else None, capsule_alpha(g, p0, p1, r0, r1), -1000.0)
