"""Random chest anatomy: body, bones, mediastinum, diaphragm, lungs and lobes, drawn slice by slice.

:func:`draw_anatomy` samples one patient's anatomy (sizes in mm, tissue HU); :func:`render_anatomy`
renders it on the study's grid (noise-free HU and the lung mask). Vessels and airways are added by
:mod:`m3lung.phantom.trees`. Coordinates are those of :mod:`m3lung.phantom.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from m3lung.phantom.geometry import Grid, smoothstep

#: Lobe names, index = lobe code used by :meth:`Anatomy.lobe`.
LOBES: tuple[str, ...] = ("none", "RUL", "RML", "RLL", "LUL", "LLL")


@dataclass
class Anatomy:
    """One patient's anatomy. Lengths in mm (phantom coordinates), values in HU."""

    grid: Grid
    u: dict[str, float]  # scalar sizes and levels (see draw_anatomy)
    hu: dict[str, float]  # tissue values
    table_mask: np.ndarray  # (H, W) bool
    table_hu: np.ndarray  # (H, W) float32
    texture: np.ndarray  # (nz, 48, 48) float32, unit-std smooth noise
    theta: np.ndarray  # (H, W) float32 angle around the thorax centre (+pi/2 posterior)
    dia_y: np.ndarray = field(init=False)  # (H,) diaphragm term along y
    dia_x: np.ndarray = field(init=False)  # (W,) diaphragm term along x (side's dome height folded in)

    def __post_init__(self) -> None:
        u, g = self.u, self.grid
        ny = (g.ys - u["cy"]) / u["cb"]
        self.dia_y = (u["kappa"] * ny**2 + u["tau"] * ny).astype(np.float32)
        right = g.xs < u["bx"]
        dome_x = np.where(right, u["bx"] - 0.45 * u["ca"], u["bx"] + 0.45 * u["ca"])
        dome_z = np.where(right, u["z_dome_r"], u["z_dome_l"])
        self.dia_x = (u["kappa"] * ((g.xs - dome_x) / (0.5 * u["ca"])) ** 2 - dome_z).astype(np.float32)

    # ------------------------------------------------------------------ shapes along z
    def body_axes(self, z: float) -> tuple[float, float]:
        """Half width and half depth of the body at height ``z``; shoulders widen the top."""
        u = self.u
        top = float(smoothstep((z - (u["z_apex"] - 60.0)) / 70.0))
        return u["a"] * (1.0 + u["shoulder"] * top), u["b"] * (1.0 - 0.07 * top)

    def cavity_axes(self, z: float) -> tuple[float, float]:
        """Half width and half depth of the thoracic cavity (inside the ribs) at ``z``."""
        u = self.u
        f = float(np.clip((z - u["z_dome_l"]) / (u["z_apex"] - u["z_dome_l"]), 0.0, 1.0))
        top = float(smoothstep((z - (u["z_apex"] - 90.0)) / 100.0))
        return u["ca"] * (1.0 - 0.12 * f - 0.1 * top), u["cb"] * (1.0 - 0.05 * f - 0.08 * top)

    def heart_section(self, z: float) -> tuple[float, float] | None:
        """Semi-axes (long, short) of the heart's cross-section at ``z``, None outside the heart."""
        u = self.u
        t = (z - u["hz"]) / u["hrz"]
        if abs(t) >= 1.0:
            return None
        s = float(np.sqrt(1.0 - t * t))
        return u["hL"] * s, u["hW"] * s

    def diaphragm(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Height (mm) of the diaphragm under ``(y, x)``; the lung lies above it."""
        u = self.u
        right = x < u["bx"]
        dome_x = np.where(right, u["bx"] - 0.45 * u["ca"], u["bx"] + 0.45 * u["ca"])
        dome_z = np.where(right, u["z_dome_r"], u["z_dome_l"])
        ny = (y - u["cy"]) / u["cb"]
        return np.asarray(dome_z - u["kappa"] * (((x - dome_x) / (0.5 * u["ca"])) ** 2 + ny**2) - u["tau"] * ny)

    def _fissure_frac(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Position across the oblique fissure: 0 anterior, 1 posterior; the fissure's axial trace runs
        from the hilum (posteromedial) to the anterolateral chest wall."""
        u = self.u
        lat = np.abs(x - u["bx"]) / u["ca"] - 0.5
        frac = (y - (u["cy"] - u["cb"])) / (2.0 * u["cb"]) + 0.3 * lat - 0.5 * lat * lat  # a curved trace
        return np.asarray(np.clip(frac, 0.0, 1.0))

    def lobe(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Lobe code (index into :data:`LOBES`) of points in the lungs, from oblique and horizontal fissures."""
        u = self.u
        zb, yb, xb = np.broadcast_arrays(z, y, x)
        frac = self._fissure_frac(yb, xb)
        right = xb < u["bx"]
        lo = np.where(right, u["z_dome_r"], u["z_dome_l"]) + 5.0
        hi = np.where(right, u["fiss_r"], u["fiss_l"])
        lower = zb < lo + (hi - lo) * frac
        c = np.uint8
        out = np.where(
            right, np.where(lower, c(3), np.where(zb < u["z_minor"], c(2), c(1))), np.where(lower, c(5), c(4))
        )
        return np.asarray(out, dtype=np.uint8)

    def in_lobe(self, code: int, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Whether points (broadcast axes, mm) lie in lobe ``code`` (:data:`LOBES`); cheap on grid axes."""
        u = self.u
        right = code <= 3
        side = x < u["bx"] if right else x >= u["bx"]
        frac = self._fissure_frac(y, x)
        lo = (u["z_dome_r"] if right else u["z_dome_l"]) + 5.0
        hi = u["fiss_r"] if right else u["fiss_l"]
        lower = z < lo + (hi - lo) * frac
        if code in (3, 5):
            cond = lower
        elif code == 4:
            cond = ~lower
        else:
            cond = ~lower & ((z >= u["z_minor"]) if code == 1 else (z < u["z_minor"]))
        return np.asarray(cond & side)

    def zone(self, z: float) -> str:
        """ "upper", "middle" or "lower" third of the lung height."""
        f = (z - self.u["z_base"]) / (self.u["z_apex"] - self.u["z_base"])
        return "lower" if f < 1 / 3 else ("middle" if f < 2 / 3 else "upper")

    def radial(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Normalised distance from the thorax centre (1 at the inner chest wall)."""
        u = self.u
        return np.asarray(np.sqrt(((x - u["bx"]) / u["ca"]) ** 2 + ((y - u["cy"]) / u["cb"]) ** 2))


def draw_anatomy(rng: np.random.Generator, grid: Grid) -> Anatomy:
    """Sample one patient's anatomy for ``grid`` (sizes follow the field of view, as a scanner is set up)."""
    n, h, w = grid.shape
    fy, fx = h * grid.spacing[1] / 2.0, w * grid.spacing[2] / 2.0
    extent = (n - 1) * grid.spacing[0]
    r = rng.uniform
    u: dict[str, float] = {}
    a = r(0.74, 0.9) * fx
    b = a * r(0.6, 0.74)
    gap = r(5.0, 20.0)
    b = min(b, (2 * fy - gap - 40.0) / 2.0)
    u.update(a=a, b=b, gap=gap, shoulder=r(0.06, 0.14), fat=float(np.clip(r(5, 22) * a / 165, 4, 30)))
    u.update(skin=r(1.2, 2.2), muscle=r(8.0, 14.0), rib=r(7.0, 10.0), bx=r(-0.03, 0.03) * fx)
    u["by"] = float(np.clip(r(-0.05, 0.05) * fy, -fy + b + 8.0, fy - b - gap - 30.0))
    wall = u["fat"] + u["muscle"] + u["rib"]
    u["ca"] = a - u["fat"] - 0.8 * u["muscle"] - u["rib"]
    top, bottom = u["by"] - b + wall, u["by"] + b - wall - 3.0
    u["cy"], u["cb"] = (top + bottom) / 2.0, (bottom - top) / 2.0
    # levels along z
    u["z_apex"] = extent - r(8.0, 20.0)
    u["z_base"] = r(10.0, 25.0)
    hl = u["z_apex"] - u["z_base"]
    u["z_dome_r"] = u["z_base"] + r(0.2, 0.28) * hl
    u["z_dome_l"] = u["z_dome_r"] - r(10.0, 20.0)
    u["z_carina"] = u["z_apex"] - r(0.33, 0.42) * hl
    u["z_shrink"] = u["z_apex"] - r(50.0, 70.0)
    u["z_arch"] = u["z_carina"] + r(12.0, 25.0)
    u["z_minor"] = u["z_carina"] - r(25.0, 40.0)
    u["fiss_r"], u["fiss_l"] = u["z_carina"] - r(0.0, 20.0), u["z_carina"] - r(-10.0, 10.0)
    u["tau"] = r(8.0, 15.0)
    u["kappa"] = (0.5 * (u["z_dome_r"] + u["z_dome_l"]) - u["z_base"] - 0.9 * u["tau"]) / 1.62
    # spine and posterior elements
    u["r_vb"] = r(15.0, 20.0) * np.sqrt(a / 165.0)
    u["y_vb"] = u["by"] + b - u["fat"] - r(40.0, 48.0) - u["r_vb"]
    u["r_canal"] = r(6.5, 8.5)
    u["y_canal"] = u["y_vb"] + u["r_vb"] + 1.5 + u["r_canal"]
    u["vert_period"], u["vert_phase"], u["disc"] = r(22.0, 28.0), r(0.0, 28.0), r(5.0, 7.0)
    u["rib_period"], u["rib_phase"], u["rib_drop"], u["rib_half"] = r(22, 28), r(0, 28), r(60, 90), r(4, 6)
    # trachea, oesophagus, great vessels
    u["r_eso"], u["r_tr"] = r(6.0, 8.5), r(8.0, 11.0)
    u["y_eso"] = u["y_vb"] - u["r_vb"] - u["r_eso"] - 1.0
    u["x_eso"] = u["bx"] + r(0.0, 6.0)
    u["y_tr"] = u["y_eso"] - u["r_eso"] - u["r_tr"] - 2.0
    u["x_tr"] = u["bx"] + r(-3.0, 3.0)
    u["hw_ant"], u["hw_mid"] = r(5.0, 10.0), max(r(16.0, 22.0), u["r_tr"] + 8.0)
    u["r_da"] = r(10.0, 13.0)
    u["x_da"] = u["bx"] + 0.6 * u["r_vb"] + 0.7 * u["r_da"]
    u["y_da"] = u["y_vb"] - 0.5 * u["r_vb"] - 0.3 * u["r_da"]
    u["r_aa"], u["r_pt"], u["r_svc"] = r(13.0, 17.0), r(12.0, 15.0), r(8.0, 11.0)
    u["x_aa"], u["y_aa"] = u["bx"] - r(4.0, 12.0), u["cy"] - u["cb"] * r(0.2, 0.32)
    u["x_pt"], u["y_pt"] = u["bx"] + r(14.0, 24.0), u["cy"] - u["cb"] * r(0.3, 0.42)
    u["x_svc"], u["y_svc"] = u["x_aa"] - u["r_aa"] - u["r_svc"] - 2.0, u["y_aa"] + r(3.0, 10.0)
    # heart: a rotated ellipsoid resting on the left dome, shifted to the patient's left
    u["hL"], u["hW"] = r(55.0, 68.0) * np.sqrt(a / 165.0), r(40.0, 50.0) * np.sqrt(a / 165.0)
    u["hang"] = np.deg2rad(r(25.0, 45.0))
    ext_y = float(np.hypot(u["hL"] * np.sin(u["hang"]), u["hW"] * np.cos(u["hang"])))
    room = (u["y_vb"] - u["r_vb"] - 8.0) - (u["cy"] - u["cb"] + 6.0)
    if 2 * ext_y > room:
        f = room / (2 * ext_y)
        u["hL"], u["hW"], ext_y = u["hL"] * f, u["hW"] * f, ext_y * f
    u["hy"] = u["cy"] - u["cb"] + r(6.0, 12.0) + ext_y
    u["hx"] = u["bx"] + r(12.0, 28.0)
    z_lo, z_hi = u["z_dome_l"] - r(5.0, 20.0), u["z_carina"] - r(0.0, 10.0)
    u["hz"], u["hrz"] = (z_lo + z_hi) / 2.0, (z_hi - z_lo) / 2.0
    u["heart_fat"] = r(3.0, 8.0)
    u["stomach_air"] = float(rng.random() < 0.7)
    hu = {
        "fat": r(-100, -80),
        "skin": r(0, 30),
        "muscle": r(30, 60),
        "blood": r(35, 48),
        "liver": r(50, 65),
        "spleen": r(40, 50),
        "lung": r(-865, -845),
        "lung_grad": r(10, 30),
        "marrow": r(150, 280),
        "cortex": r(600, 900),
        "cartilage": r(80, 150),
        "csf": r(10, 30),
        "fluid": r(5, 25),
        "vessel": r(35, 48),
        "wall": r(10, 40),
        "table": r(150, 400),
        "foam": r(-980, -900),
    }
    hu["medfat"] = hu["fat"] + r(0, 15)
    table_mask, table_hu = _table(rng, grid, u, hu)
    lr = rng.standard_normal((int(extent / 6.0) + 3, 48, 48)).astype(np.float32)
    lr = ndimage.gaussian_filter(lr, 1.0)
    lr /= lr.std() or 1.0
    theta = np.arctan2(((grid.ys - u["cy"]) / u["cb"])[:, None], ((grid.xs - u["bx"]) / u["ca"])[None, :])
    return Anatomy(grid, u, hu, table_mask, table_hu, lr, theta.astype(np.float32))


def _table(
    rng: np.random.Generator, grid: Grid, u: dict[str, float], hu: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Scanner table under the back: two thin curved plates around a foam core and a lower plate."""
    xs, ys = grid.xs, grid.ys
    y0 = u["by"] + u["b"] + u["gap"]
    half = rng.uniform(190.0, 240.0)
    c = (rng.uniform(5.0, 25.0) if rng.random() < 0.7 else 0.0) / 200.0**2
    # keep the gap: the table may not rise into the body at the sides
    body_bottom = u["by"] + u["b"] * np.clip(1.0 - np.abs((xs - u["bx"]) / u["a"]) ** 2.6, 0, 1) ** (1 / 2.6)
    while c > 0 and np.any((y0 - c * xs**2) - body_bottom < 0.5 * u["gap"]):
        c *= 0.5
    h = grid.spacing[1]

    def cover(dy: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """Share of each pixel (rows dy mm below the surface) covered by the layer [lo, hi) mm."""
        return np.asarray(np.clip(np.minimum(dy + h / 2, hi) - np.maximum(dy - h / 2, lo), 0.0, h) / h)

    dy = ys[:, None] - (y0 - c * xs**2)[None, :]
    t1, t2 = rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.0)
    core = rng.uniform(6.0, 12.0)
    inside = (np.abs(xs) < half)[None, :]
    slits = (np.sin(xs / rng.uniform(3.0, 6.0)) > 0.6)[None, :]
    foam = np.where(slits, -1000.0, hu["foam"])
    d3 = ys[:, None] - (y0 + rng.uniform(25.0, 45.0) - 0.5 * c * xs**2)[None, :]
    layers: list[tuple[np.ndarray, np.ndarray | float]] = [
        (cover(dy, 0.0, t1) * inside, hu["table"]),
        (cover(dy, t1, t1 + core) * inside, foam),
        (cover(dy, t1 + core, t1 + core + t2) * inside, hu["table"]),
        (cover(d3, 0.0, rng.uniform(3.0, 6.0)) * (np.abs(xs) < 0.8 * half)[None, :], hu["table"]),
        (cover(dy, 0.0, t1 + core + t2) * (np.abs(np.abs(xs) - half) < 2.0)[None, :], hu["table"]),
    ]
    val = np.full(dy.shape, -1000.0)
    for share, value in layers:
        val += share * (value + 1000.0)
    mask = val > -999.0
    return mask, np.maximum(val, -1000.0).astype(np.float32)


def _ellipse(
    xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, ax: float, ay: float, p_post: float = 2.0
) -> np.ndarray:
    """Separable normalised radius field ``|dx/ax|^2 + |dy/ay|^p`` (p = ``p_post`` behind the centre)."""
    dy = np.abs(ys - np.float32(cy)) / np.float32(ay)
    fy = np.where(ys > cy, dy**p_post, dy * dy) if p_post != 2.0 else dy * dy
    fx = ((xs - np.float32(cx)) / np.float32(ax)) ** 2
    return np.asarray(fy[:, None] + fx[None, :], dtype=np.float32)


def _rot_ellipse(
    xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, ax: float, ay: float, ang: float
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Normalised radius of a rotated ellipse (long axis ``ang`` rad from +x towards anterior), in its box."""
    ext = max(ax, ay) + 2.0
    i = np.nonzero(np.abs(ys - cy) < ext)[0]
    j = np.nonzero(np.abs(xs - cx) < ext)[0]
    if i.size == 0 or j.size == 0:
        return None
    box = (slice(int(i[0]), int(i[-1]) + 1), slice(int(j[0]), int(j[-1]) + 1))
    dx = (xs[box[1]] - cx)[None, :]
    dy = (ys[box[0]] - cy)[:, None]
    c, s = np.float32(np.cos(ang)), np.float32(np.sin(ang))
    return box, ((dx * c - dy * s) / ax) ** 2 + ((dx * s + dy * c) / ay) ** 2
