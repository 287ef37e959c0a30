"""Class-specific lesions, following the radiology of each pneumonia.

* COVID-19: bilateral, peripheral (subpleural), lower-zone-predominant ground-glass opacities with
  lobulated borders; some with a consolidative part, some with crazy paving.
* H1N1: peribronchovascular consolidation (with a ground-glass fringe) along central bundles near
  the hila, plus clusters of small centrilobular nodules at the tips of small vessels (tree-in-bud).
* CAP: lobar or segmental consolidation confined by the fissures to usually one lobe, with air
  bronchograms and sometimes a ground-glass halo.

Lesions only ever change voxels inside the lung mask, and only make them denser (vessels stay
visible through ground glass); the lesion mask takes the densest code where lesions overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from m3lung.phantom.anatomy import LOBES, Anatomy
from m3lung.phantom.config import (
    LESION_CODES,
    LESION_CONSOLIDATION,
    LESION_CRAZY_PAVING,
    LESION_GGO,
    LESION_NODULE,
    LUNG_LEFT,
    LUNG_RIGHT,
)
from m3lung.phantom.geometry import Box, Segment, Waves, capsule_alpha, grow_tree
from m3lung.phantom.trees import Trees

#: Overlap priority of lesion codes (denser wins): none < GGO < crazy paving < nodule < consolidation.
_RANK = np.array([0, 1, 4, 3, 2], np.uint8)


@dataclass
class LesionCanvas:
    """What lesions are painted on: noise-free HU, lung and lesion masks, and a coarse pleural distance map."""

    an: Anatomy
    trees: Trees
    vox: np.ndarray
    lung: np.ndarray
    lesion: np.ndarray
    _dist: np.ndarray | None = None

    @staticmethod
    def create(an: Anatomy, trees: Trees, vox: np.ndarray, lung: np.ndarray) -> LesionCanvas:
        return LesionCanvas(an, trees, vox, lung, np.zeros(lung.shape, np.uint8))

    @property
    def stride(self) -> tuple[int, int, int]:
        """Subsampling of the coarse grid (cells of 4..8 mm where the spacing allows)."""
        g = self.an.grid
        return (int(np.ceil(4.0 / g.spacing[0])), int(np.ceil(4.0 / g.spacing[1])), int(np.ceil(4.0 / g.spacing[2])))

    @property
    def cell(self) -> tuple[float, float, float]:
        """Size (mm) of one coarse-grid cell along (z, y, x)."""
        g = self.an.grid
        return (g.spacing[0] * self.stride[0], g.spacing[1] * self.stride[1], g.spacing[2] * self.stride[2])

    @property
    def dist(self) -> np.ndarray:
        """Distance (mm) to the lung border on the coarse grid (computed once, on first use)."""
        if self._dist is None:
            st, g = self.stride, self.an.grid
            coarse = self.lung[:: st[0], :: st[1], :: st[2]] > 0
            sampling = tuple(s * k for s, k in zip(g.spacing, st, strict=True))
            self._dist = ndimage.distance_transform_edt(coarse, sampling=sampling).astype(np.float32)
        return self._dist

    def pleura_distance(self, p: np.ndarray) -> float:
        """Distance (mm) from ``p`` to the lung border, from the coarse map; 0 outside the lungs."""
        k, i, j = np.rint(self.an.grid.index(p) / np.array(self.stride)).astype(int)
        n, h, w = self.dist.shape
        return float(self.dist[min(max(k, 0), n - 1), min(max(i, 0), h - 1), min(max(j, 0), w - 1)])

    def describe(
        self, kind: str, code: int, centre: np.ndarray, radii: np.ndarray, hu: float, n: int, **extra: Any
    ) -> dict[str, Any]:
        """The JSON description of one lesion (``centre_lps_mm`` is added once the origin is known)."""
        an = self.an
        c = np.asarray(centre, float)
        side = LUNG_RIGHT if c[2] < an.u["bx"] else LUNG_LEFT
        lobe = int(an.lobe(np.array(c[0]), np.array(c[1]), np.array(c[2])))
        return {
            "kind": kind,
            "code": int(code),
            "code_name": LESION_CODES[code],
            "lung": "right" if side == LUNG_RIGHT else "left",
            "lobe": LOBES[lobe],
            "zone": an.zone(float(c[0])),
            "position": "peripheral" if self.pleura_distance(c) < 20.0 else "central",
            "hu": round(float(hu), 1),
            "centre_voxel": [round(float(v), 2) for v in an.grid.index(c)],
            "radii_mm": [round(float(v), 2) for v in radii],
            "n_voxels": int(n),
            **extra,
        }

    # ------------------------------------------------------------------ painting
    def side(self, p: np.ndarray) -> int:
        """Lung (1 right, 2 left) on the side of the point ``p``."""
        return LUNG_RIGHT if p[2] < self.an.u["bx"] else LUNG_LEFT

    def paint(
        self,
        box: Box,
        alpha: np.ndarray,
        hu: float | np.ndarray,
        code: int,
        side: int,
        within: np.ndarray | None = None,
    ) -> int:
        """Blend ``hu`` in by ``alpha`` inside lung ``side``; mark ``alpha >= 0.5`` there as ``code``.

        Densities only go up, and air in the airways stays (air bronchograms). Returns the number of
        voxels marked.
        """
        sub = self.vox[box]
        ok = self.lung[box] == side
        if within is not None:
            ok &= within
        new = sub + (np.asarray(hu, np.float32) - sub) * alpha
        np.copyto(sub, np.maximum(sub, new), where=ok & (sub > -940.0))
        mark = ok & (alpha >= 0.5)
        les = self.lesion[box]
        upd = mark & (_RANK[code] > _RANK[les])
        les[upd] = code
        return int(np.count_nonzero(mark))

    def blob(
        self,
        centre: np.ndarray,
        radii: np.ndarray,
        waves: Waves,
        amp: float,
        angle: float = 0.0,
        grow: float = 1.0,
        limit: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[Box, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
        """Coverage (0..1) of a lobulated ellipsoid (radii along z, y, x mm, rotated ``angle`` in plane).

        ``grow`` scales the radii (halos); the border is ``1 + amp * waves`` of the ellipsoid and
        soft over about one pixel. Thin lesions in thick slices lose contrast (partial volume).
        ``limit`` (low, high corners, mm) bounds the evaluated box.
        """
        g = self.an.grid
        r = np.asarray(radii, float) * grow
        zpad = 0.5 * max(0.0, g.spacing[0] - 1.0)
        ext = r * (1.0 + 2.5 * amp) + np.array([zpad, g.pixel, g.pixel])
        lo, hi = centre - ext, centre + ext
        if limit is not None:
            lo, hi = np.maximum(lo, limit[0]), np.minimum(hi, limit[1])
        box = g.box(lo, hi)
        if box is None:
            return None
        z, y, x = g.axes(box)
        dz = np.maximum(np.abs(z - np.float32(centre[0])) - np.float32(zpad), 0.0) / np.float32(r[0])
        dy, dx = y - np.float32(centre[1]), x - np.float32(centre[2])
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        rho = np.sqrt(dz**2 + ((dx * c + dy * s) / np.float32(r[2])) ** 2 + ((dy * c - dx * s) / np.float32(r[1])) ** 2)
        m = 1.0 - rho + np.float32(amp) * waves(z, y, x)
        soft = np.float32(max(0.08, g.pixel / float(min(r[1], r[2]))))
        alpha = np.clip(m / soft + 0.5, 0.0, 1.0)
        if 2.0 * r[0] < g.spacing[0]:
            alpha *= np.float32(2.0 * r[0] / g.spacing[0])
        return box, alpha, (z, y, x)


def _reticulation(rng: np.random.Generator, zyx: tuple[np.ndarray, np.ndarray, np.ndarray], pixel: float) -> np.ndarray:
    """Crazy paving: coverage of a fine irregular polygonal grid of thin sheets (interlobular septa)."""
    z, y, x = zyx
    lam, width = rng.uniform(5.0, 9.0), max(0.6, 0.6 * pixel)
    wob = Waves.draw(rng, 4, (10.0, 25.0))(z, y, x) * np.float32(0.12 * lam)
    out: np.ndarray | None = None
    for _ in range(3):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        s = (z * np.float32(d[0]) + y * np.float32(d[1]) + x * np.float32(d[2]) + wob) / np.float32(lam)
        s += np.float32(rng.uniform())
        line = np.clip(1.0 - np.abs(s - np.rint(s)) * np.float32(lam / width), 0.0, 1.0)
        out = line if out is None else np.maximum(out, line)
    assert out is not None
    return out


def _coarse_points(cv: LesionCanvas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lung points of the coarse grid: (P, 3) mm coordinates, lung side and pleural distance."""
    k, i, j = np.nonzero(cv.dist > 0)
    st = cv.stride
    g = cv.an.grid
    pts = g.mm(k * st[0], i * st[1], j * st[2]).T.reshape(-1, 3)
    side = cv.lung[k * st[0], i * st[1], j * st[2]]
    return pts, side, cv.dist[k, i, j]


def add_covid(cv: LesionCanvas, rng: np.random.Generator, count: tuple[int, int]) -> list[dict[str, Any]]:
    """COVID-19: several peripheral, posterior and lower-zone ground-glass opacities in both lungs."""
    an, u = cv.an, cv.an.u
    pts, side, dist = _coarse_points(cv)
    zf = (pts[:, 0] - u["z_base"]) / (u["z_apex"] - u["z_base"])
    post = np.clip((pts[:, 1] - u["cy"]) / u["cb"], 0.0, 1.0)
    periph = (dist > 1.0) & (dist < 10.0) & (an.radial(pts[:, 1], pts[:, 2]) > 0.55)
    weight = np.where(periph, np.exp(-2.5 * zf) * (1.0 + 0.8 * post), 0.0)
    n = int(rng.integers(count[0], count[1] + 1))
    first = int(rng.choice([LUNG_RIGHT, LUNG_LEFT]))
    bilateral = rng.random() < 0.92
    out = []
    for i in range(n):
        s = first if i == 0 else (3 - first if (i == 1 and bilateral) else int(rng.choice([LUNG_RIGHT, LUNG_LEFT])))
        w = np.where(side == s, weight, 0.0)
        if w.sum() <= 0:
            continue
        c = pts[rng.choice(len(pts), p=w / w.sum())] + rng.uniform(-0.5, 0.5, 3) * np.array(cv.cell)
        r = rng.uniform(10.0, 26.0) if rng.random() < 0.8 else rng.uniform(5.0, 9.0)
        # flattened against the pleura: long along the chest wall, shorter towards the hilum
        radii = r * np.array([rng.uniform(0.8, 1.4), rng.uniform(0.5, 0.8), rng.uniform(0.9, 1.2)])
        angle = float(np.arctan2(c[1] - u["cy"], c[2] - u["bx"])) + np.pi / 2
        waves = Waves.draw(rng, 6, (0.6 * r, 1.6 * r))
        got = cv.blob(c, radii, waves, 0.25, angle)
        if got is None:
            continue
        box, alpha, zyx = got
        target = rng.uniform(-700.0, -350.0)
        hetero = target + 40.0 * Waves.draw(rng, 4, (6.0, 15.0))(*zyx)
        paving = rng.random() < 0.3
        code = LESION_CRAZY_PAVING if paving else LESION_GGO
        nvox = cv.paint(box, alpha, hetero, code, s)
        extra: dict[str, Any] = {"crazy_paving": bool(paving), "consolidation": False}
        if paving:
            cv.paint(box, alpha * _reticulation(rng, zyx, an.grid.pixel), target + rng.uniform(150.0, 250.0), code, s)
        if rng.random() < 0.4:
            cr = radii * rng.uniform(0.35, 0.6)
            got_c = cv.blob(c + rng.normal(size=3) * 0.2 * r, cr, Waves.draw(rng, 5, (0.5 * r, r)), 0.2, angle)
            if got_c is not None:
                ch = rng.uniform(-100.0, 40.0)
                nc = cv.paint(got_c[0], got_c[1], ch, LESION_CONSOLIDATION, s)
                extra.update(consolidation=True, consolidation_hu=round(ch, 1), consolidation_voxels=nc)
        if nvox:
            out.append(cv.describe("ground_glass_opacity", code, c, radii, target, nvox, **extra))
    return out


def _tube(cv: LesionCanvas, seg: Segment, radius: float, waves: Waves, amp: float) -> tuple[Box, np.ndarray] | None:
    """Coverage of a lobulated sleeve of ``radius`` mm around a segment (a little longer than it)."""
    d = seg.direction * 0.3 * seg.length
    got = capsule_alpha(cv.an.grid, seg.p0 - d, seg.p1 + d, radius * 1.5, radius * 1.5)
    if got is None:
        return None
    box, _ = got
    z, y, x = cv.an.grid.axes(box)
    p0, p1 = (seg.p0 - d).astype(np.float32), (seg.p1 + d).astype(np.float32)
    v = p1 - p0
    t = np.clip(((z - p0[0]) * v[0] + (y - p0[1]) * v[1] + (x - p0[2]) * v[2]) / np.float32(v @ v), 0.0, 1.0)
    dist = np.sqrt((z - p0[0] - t * v[0]) ** 2 + (y - p0[1] - t * v[1]) ** 2 + (x - p0[2] - t * v[2]) ** 2)
    m = 1.0 - dist / np.float32(radius) + np.float32(amp) * waves(z, y, x)
    soft = np.float32(max(0.08, cv.an.grid.pixel / radius))
    return box, np.clip(m / soft + 0.5, 0.0, 1.0)


def add_h1n1(cv: LesionCanvas, rng: np.random.Generator) -> list[dict[str, Any]]:
    """H1N1: peribronchovascular consolidation near the hila and clusters of centrilobular nodules."""
    u, trees = cv.an.u, cv.trees
    out: list[dict[str, Any]] = []
    zmid = (u["z_base"] + u["z_apex"]) / 2.0
    half = 0.35 * (u["z_apex"] - u["z_base"])
    central = [s for s in trees.bronchovascular if s.generation <= 3 and abs(s.p1[0] - zmid) < half]
    if not central:
        central = [s for s in trees.bronchovascular if s.generation <= 4]
    for i in rng.choice(len(central), size=min(len(central), int(rng.integers(2, 5))), replace=False):
        seg = central[int(i)]
        radius = seg.r0 + rng.uniform(4.0, 9.0)
        waves = Waves.draw(rng, 6, (8.0, 20.0))
        halo = _tube(cv, seg, radius * 1.5, waves, 0.3)
        if halo is not None:
            cv.paint(halo[0], halo[1], rng.uniform(-600.0, -400.0), LESION_GGO, seg.lung)
        core = _tube(cv, seg, radius, waves, 0.3)
        if core is None:
            continue
        hu = rng.uniform(-100.0, 30.0)
        n = cv.paint(core[0], core[1], hu, LESION_CONSOLIDATION, seg.lung)
        if n:
            mid, radii = (seg.p0 + seg.p1) / 2.0, np.array([radius, radius, radius])
            kind = "peribronchovascular_consolidation"
            out.append(cv.describe(kind, LESION_CONSOLIDATION, mid, radii, hu, n, length_mm=round(seg.length * 1.6, 1)))
    small = [s for s in trees.bronchovascular + trees.veins if s.r1 < 1.6 and s.generation >= 3]
    if not small:
        return out
    for cluster in range(int(rng.integers(1, 4))):
        seed_seg = small[int(rng.integers(len(small)))]
        centre = seed_seg.p1
        near = [s for s in small if s.lung == seed_seg.lung and np.linalg.norm(s.p1 - centre) < 22.0]
        picks = rng.choice(len(near), size=min(len(near), int(rng.integers(4, 16))), replace=False)
        nodules = []
        for j in picks:
            s = near[int(j)]
            c = s.p1 + rng.normal(size=3) * 1.2
            rad = rng.uniform(1.5, 4.0)
            got = cv.blob(c, np.array([rad, rad, rad]), Waves.draw(rng, 3, (4.0, 8.0)), 0.1)
            if got is None:
                continue
            hu = rng.uniform(-400.0, 0.0)
            n = cv.paint(got[0], got[1], hu, LESION_NODULE, s.lung)
            if n:
                radii = np.array([rad, rad, rad])
                nodules.append(cv.describe("centrilobular_nodule", LESION_NODULE, c, radii, hu, n, cluster=cluster))
        out += nodules
    return out


def add_cap(cv: LesionCanvas, rng: np.random.Generator) -> list[dict[str, Any]]:
    """CAP: lobar or segmental consolidation in (usually) one lobe, air bronchograms, sometimes a halo."""
    an = cv.an
    pts, _, _ = _coarse_points(cv)
    lobes = an.lobe(pts[:, 0], pts[:, 1], pts[:, 2])
    order = [3, 5, 1, 4, 2]  # RLL, LLL, RUL, LUL, RML
    prob = np.array([0.3, 0.25, 0.18, 0.15, 0.12])
    first = int(rng.choice(order, p=prob))
    todo = [(first, rng.random() < 0.45)]
    if rng.random() < 0.15:  # a second, segmental focus, usually in the same lung
        same = [o for o in order if o != first and (o <= 3) == (first <= 3)]
        other = [o for o in order if (o <= 3) != (first <= 3)]
        todo.append((int(rng.choice(same if rng.random() < 0.7 else other)), False))
    out: list[dict[str, Any]] = []
    for lobe, lobar in todo:
        members = pts[lobes == lobe]
        if len(members) == 0:
            continue
        c = 0.5 * (members[rng.integers(len(members))] + members.mean(axis=0))
        r = rng.uniform(90.0, 140.0) if lobar else rng.uniform(28.0, 55.0)
        radii = r * np.array([rng.uniform(0.8, 1.2), rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1)])
        waves = Waves.draw(rng, 6, (15.0, 40.0))
        limit = (members.min(axis=0) - 10.0, members.max(axis=0) + 10.0)
        got = cv.blob(c, radii, waves, 0.15 if lobar else 0.22, limit=limit)
        if got is None:
            continue
        box, alpha, zyx = got
        s = 1 if lobe <= 3 else 2
        halo = rng.random() < 0.35
        if halo:
            gh = cv.blob(c, radii, waves, 0.22, grow=1.0 + 12.0 / float(np.min(radii)), limit=limit)
            if gh is not None:
                cv.paint(gh[0], gh[1], rng.uniform(-650.0, -450.0), LESION_GGO, s, within=an.in_lobe(lobe, *gh[2]))
        hu = rng.uniform(-50.0, 50.0)
        hetero = hu + 15.0 * Waves.draw(rng, 4, (8.0, 20.0))(*zyx)
        n = cv.paint(box, alpha, hetero, LESION_CONSOLIDATION, s, within=an.in_lobe(lobe, *zyx))
        if not n:
            continue
        bronchograms = _air_bronchograms(cv, rng, c, radii) if rng.random() < 0.75 else 0
        out.append(
            cv.describe(
                "lobar_consolidation" if lobar else "segmental_consolidation",
                LESION_CONSOLIDATION,
                c,
                radii,
                hu,
                n,
                target_lobe=LOBES[lobe],
                air_bronchogram_segments=bronchograms,
                halo=bool(halo),
            )
        )
    return out


def _air_bronchograms(cv: LesionCanvas, rng: np.random.Generator, centre: np.ndarray, radii: np.ndarray) -> int:
    """Branching air-filled bronchi inside the consolidation just painted (from its hilar side outwards)."""
    an = cv.an
    side = LUNG_RIGHT if centre[2] < an.u["bx"] else LUNG_LEFT
    hilum = cv.trees.hila.get(side, centre)

    def inside(p: np.ndarray) -> bool:
        ijk = an.grid.inside(p)
        return ijk is not None and int(cv.lesion[ijk]) == LESION_CONSOLIDATION

    # enter the consolidation on its hilar side: the first consolidated point from the hilum on
    steps = max(2, int(np.linalg.norm(centre - hilum) / 2.0))
    path = [hilum + (centre - hilum) * f for f in np.linspace(0.0, 1.0, steps)]
    entry = next((p for p in path if inside(p)), None)
    if entry is None:
        return 0
    start = entry + (centre - hilum) / (np.linalg.norm(centre - hilum) or 1.0) * 2.0

    roots = [(start, centre + rng.normal(size=3) * 0.5 * radii, rng.uniform(1.8, 2.8)) for _ in range(4)]
    segs = grow_tree(rng, inside, roots, lung=side, r_min=max(0.6, 0.4 * an.grid.pixel), max_segments=150, centre=start)
    air = rng.uniform(-950.0, -880.0)
    for s in segs:
        got = capsule_alpha(an.grid, s.p0, s.p1, s.r0, s.r1)
        if got is None:
            continue
        box, a = got
        sub = cv.vox[box]
        ok = cv.lesion[box] == LESION_CONSOLIDATION
        np.copyto(sub, np.minimum(sub, sub + (np.float32(air) - sub) * a), where=ok)
    return len(segs)
