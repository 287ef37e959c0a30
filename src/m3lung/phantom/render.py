"""Render an :class:`~m3lung.phantom.anatomy.Anatomy` slice by slice (noise-free HU and lung mask).

Each slice is built from separable ellipse fields (an outer sum of a row and a column vector) and
small bounding-box primitives, restricted to the body's bounding box; no loop touches single pixels.
"""

from __future__ import annotations

import numpy as np

from m3lung.phantom.anatomy import Anatomy, _ellipse, _rot_ellipse
from m3lung.phantom.config import LUNG_LEFT, LUNG_RIGHT


def _interp_nodes(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Left node index and weight of the right node, linear interpolation from ``m`` nodes to ``n`` samples."""
    pos = np.linspace(0.0, m - 1.0, n)
    i0 = np.minimum(np.floor(pos).astype(int), m - 2)
    return i0, (pos - i0).astype(np.float32)


def _upsample(lr: np.ndarray, iy: tuple[np.ndarray, np.ndarray], ix: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Bilinear upsampling of a coarse 2D field by gathers (no BLAS: its threads are erratic here)."""
    (i0, fy), (j0, fx) = iy, ix
    rows = lr[i0] * (1.0 - fy)[:, None] + lr[i0 + 1] * fy[:, None]
    out = rows[:, j0] * (1.0 - fx)[None, :]
    out += rows[:, j0 + 1] * fx[None, :]
    return np.asarray(out, dtype=np.float32)


class _Slice:
    """Drawing helpers on one cropped slice (values ``s``, mediastinum mask ``med``)."""

    def __init__(self, s: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
        self.s, self.xs, self.ys = s, xs, ys
        self.med = np.zeros(s.shape, bool)

    def disc(self, cx: float, cy: float, r: float, val: float | None, margin: float = 0.0) -> None:
        """Fill a disc with ``val`` (None: only mark) and mark it, widened by ``margin``, as mediastinum."""
        self.ellipse(cx, cy, r, r, 0.0, val, margin)

    def ellipse(
        self, cx: float, cy: float, ax: float, ay: float, ang: float, val: float | None, margin: float = 0.0
    ) -> None:
        got = _rot_ellipse(self.xs, self.ys, cx, cy, ax + margin, ay + margin, ang)
        if got is None:
            return
        box, rho = got
        if margin:
            self.med[box] |= rho < 1.0
            got = _rot_ellipse(self.xs, self.ys, cx, cy, ax, ay, ang)
            assert got is not None
            box, rho = got
        if val is not None:
            self.s[box][rho < 1.0] = val

    def bone(self, cx: float, cy: float, ax: float, ay: float, ang: float, marrow: float, cortex: float) -> None:
        """An oval bone: marrow inside a cortical rim about 1.5 mm thick."""
        got = _rot_ellipse(self.xs, self.ys, cx, cy, ax, ay, ang)
        if got is None:
            return
        box, rho = got
        rim = (1.0 - 1.5 / min(ax, ay)) ** 2
        sub = self.s[box]
        sub[rho < 1.0] = cortex
        sub[rho < rim] = marrow

    def capsule(self, p: tuple[float, float], q: tuple[float, float], r: float, val: float, margin: float) -> None:
        """A 2D band of radius ``r`` from ``p`` to ``q`` ((x, y) mm), marked as mediastinum with ``margin``."""
        xs, ys = self.xs, self.ys
        lo_x, hi_x = min(p[0], q[0]) - r - margin, max(p[0], q[0]) + r + margin
        lo_y, hi_y = min(p[1], q[1]) - r - margin, max(p[1], q[1]) + r + margin
        j = np.nonzero((xs >= lo_x) & (xs <= hi_x))[0]
        i = np.nonzero((ys >= lo_y) & (ys <= hi_y))[0]
        if i.size == 0 or j.size == 0:
            return
        box = (slice(int(i[0]), int(i[-1]) + 1), slice(int(j[0]), int(j[-1]) + 1))
        vx, vy = q[0] - p[0], q[1] - p[1]
        dx = (xs[box[1]] - p[0])[None, :]
        dy = (ys[box[0]] - p[1])[:, None]
        t = np.clip((dx * vx + dy * vy) / (vx * vx + vy * vy + 1e-6), 0.0, 1.0)
        d = np.hypot(dx - t * vx, dy - t * vy)
        self.med[box] |= d < r + margin
        self.s[box][d < r] = val


def render_anatomy(an: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free HU volume ``(N, H, W)`` float32 and lung mask (0 / 1 right / 2 left) uint8."""
    g, u, hu = an.grid, an.u, an.hu
    n, h, w = g.shape
    xs_all, ys_all = g.xs, g.ys
    vox = np.empty(g.shape, np.float32)
    lung = np.zeros(g.shape, np.uint8)
    ry = _interp_nodes(h, an.texture.shape[1])
    rx = _interp_nodes(w, an.texture.shape[2])
    tex_step = (g.spacing[0] * (n - 1)) / (an.texture.shape[0] - 2)
    dep = (np.clip((ys_all - (u["cy"] - u["cb"])) / (2 * u["cb"]), 0, 1) * hu["lung_grad"]).astype(np.float32)
    b_top = u["b"] * 1.0
    r0 = int(max(0, np.floor((u["by"] - b_top) / g.spacing[1] + (h - 1) / 2 - 2)))
    r1 = int(min(h, np.ceil((u["by"] + b_top) / g.spacing[1] + (h - 1) / 2 + 3)))
    for k in range(n):
        z = float(k * g.spacing[0])
        vox[k] = -1000.0
        np.copyto(vox[k], an.table_hu, where=an.table_mask)
        a_z, b_z = an.body_axes(z)
        c0 = int(max(0, np.floor((u["bx"] - a_z) / g.spacing[2] + (w - 1) / 2 - 2)))
        c1 = int(min(w, np.ceil((u["bx"] + a_z) / g.spacing[2] + (w - 1) / 2 + 3)))
        ys, xs = ys_all[r0:r1], xs_all[c0:c1]
        sl = _Slice(vox[k, r0:r1, c0:c1], xs, ys)
        iy = (ry[0][r0:r1], ry[1][r0:r1])
        ix = (rx[0][c0:c1], rx[1][c0:c1])
        _body(an, sl, z, a_z, b_z, an.theta[r0:r1, c0:c1], lung[k, r0:r1, c0:c1], dep[r0:r1], iy, ix, tex_step)
    return vox, lung


def _body(
    an: Anatomy,
    sl: _Slice,
    z: float,
    a_z: float,
    b_z: float,
    theta: np.ndarray,
    lung_k: np.ndarray,
    dep: np.ndarray,
    iy: tuple[np.ndarray, np.ndarray],
    ix: tuple[np.ndarray, np.ndarray],
    tex_step: float,
) -> None:
    u, hu = an.u, an.hu
    s, xs, ys = sl.s, sl.xs, sl.ys
    bx, by, cy = u["bx"], u["by"], u["cy"]
    rb = _ellipse(xs, ys, bx, by, a_z, b_z, 2.6)
    s[rb < 1.0] = hu["skin"]
    t = u["skin"]
    s[_ellipse(xs, ys, bx, by, a_z - t, b_z - t, 2.6) < 1.0] = hu["fat"]
    t += u["fat"]
    rm = _ellipse(xs, ys, bx, by, a_z - t, b_z - t, 2.6)
    s[rm < 1.0] = hu["muscle"]
    ca, cb = an.cavity_axes(z)
    rc = _ellipse(xs, ys, bx, cy, ca, cb, 2.3)
    cav = rc < 1.0
    cav &= _ellipse(xs, ys, bx, cy + cb, u["r_vb"] + 24.0, cy + cb - u["y_vb"] + 2.0) >= 1.0
    s[cav] = hu["medfat"]
    _ribs(an, sl, z, rc, rm, theta, ca)
    # mediastinum: a central band, then the organs drawn into it
    hw_mid = u["hw_mid"] + 8.0 * np.exp(-(((z - u["z_carina"] + 15.0) / 35.0) ** 2))
    front = cy - cb
    cy_ctrl = [front - 1.0, u["y_tr"] - u["r_tr"] - 10.0, u["y_tr"], u["y_vb"] - u["r_vb"], u["y_vb"]]
    cw_ctrl = [u["hw_ant"], u["hw_ant"] + 4.0, hw_mid, 0.85 * hw_mid, u["r_vb"] + 4.0]
    if cy_ctrl[1] <= cy_ctrl[0]:
        del cy_ctrl[1], cw_ctrl[1]
    hw = np.interp(ys, cy_ctrl, cw_ctrl).astype(np.float32)
    sl.med |= np.abs(xs - bx)[None, :] < hw[:, None]
    i0 = int(np.searchsorted(an.grid.ys, ys[0]))
    j0 = int(np.searchsorted(an.grid.xs, xs[0]))
    dia = an.dia_y[i0 : i0 + len(ys), None] + an.dia_x[None, j0 : j0 + len(xs)]
    below = dia <= -z
    if z < max(u["z_dome_r"], u["z_dome_l"]) + 1.0:
        _abdomen(an, sl, cav & below)
    _mediastinum(an, sl, z)
    # lungs
    lreg = cav & ~sl.med & ~below
    if z > u["z_shrink"]:
        q = min(1.0, (z - u["z_shrink"]) / (u["z_apex"] - u["z_shrink"]))
        gq = 1.6 * np.sqrt(max(0.0, 1.0 - q**1.5))
        if gq <= 0:
            lreg[:] = False
        else:
            ca0 = an.cavity_axes(u["z_shrink"])[0]
            right = (xs < bx)[None, :]
            ell_r = _ellipse(xs, ys, bx - 0.5 * ca0, cy + 0.15 * cb, 0.55 * ca0 * gq, 0.8 * cb * gq) < 1.0
            ell_l = _ellipse(xs, ys, bx + 0.5 * ca0, cy + 0.15 * cb, 0.55 * ca0 * gq, 0.8 * cb * gq) < 1.0
            lreg &= np.where(right, ell_r, ell_l)
    if lreg.any():
        zi = z / tex_step
        i = min(int(zi), an.texture.shape[0] - 2)
        f = np.float32(zi - i)
        lr = an.texture[i] * (1 - f) + an.texture[i + 1] * f
        val = _upsample(lr, iy, ix)
        val *= np.float32(8.0)
        val += dep[:, None] + np.float32(hu["lung"])
        np.copyto(s, val, where=lreg)
        lung_k[lreg] = LUNG_LEFT
        lung_k[lreg & (xs < bx)[None, :]] = LUNG_RIGHT
    _spine(an, sl, z)


def _ribs(an: Anatomy, sl: _Slice, z: float, rc: np.ndarray, rm: np.ndarray, theta: np.ndarray, ca: float) -> None:
    """Ribs: bands descending from back to front, cut obliquely by the slice, cartilage at the front."""
    u, hu = an.u, an.hu
    if not (u["z_base"] - 40.0 < z < u["z_apex"] + 8.0):
        return
    outer = ((ca + u["rib"]) / ca) ** 2
    ii, jj = np.nonzero((rc >= 1.0) & (rc < outer) & (rm < 1.0))
    if ii.size == 0:
        return
    th = theta[ii, jj]
    zz = (z + u["rib_drop"] * (1.0 - np.sin(th)) / 2.0 - u["rib_phase"]) / u["rib_period"]
    f = np.abs(zz - np.rint(zz)) * u["rib_period"]
    front = np.abs(th + np.pi / 2)
    q = (np.sqrt(rc[ii, jj]) - 1.0) / (np.sqrt(outer) - 1.0)
    e = np.hypot(f / u["rib_half"], 2.0 * q - 1.0)  # oval cross-section of the rib
    keep = (e < 1.0) & (front > 0.2) & (np.abs(sl.xs[jj] - u["bx"]) > u["r_vb"] + 3.0)
    val = np.where(e > 0.65, hu["cortex"], hu["marrow"])
    val = np.where(front < 0.6, hu["cartilage"], val)
    sl.s[ii[keep], jj[keep]] = val[keep]


def _abdomen(an: Anatomy, sl: _Slice, ab: np.ndarray) -> None:
    """Organs under the diaphragm: liver (right, left lobe across the midline), stomach, spleen."""
    u, hu = an.u, an.hu
    if not ab.any():
        return
    s, xs, ys = sl.s, sl.xs, sl.ys
    bx, cy, ca, cb = u["bx"], u["cy"], u["ca"], u["cb"]
    s[ab] = hu["fat"] + 50.0
    liver = ab & (_ellipse(xs, ys, bx - 0.35 * ca, cy + 0.05 * cb, 0.95 * ca, 1.15 * cb) < 1.0)
    s[liver] = hu["liver"]
    st = ab & ~liver & (_ellipse(xs, ys, bx + 0.45 * ca, cy - 0.2 * cb, 0.32 * ca, 0.36 * cb) < 1.0)
    s[st] = hu["fluid"]
    if u["stomach_air"]:
        s[st & (ys < cy - 0.3 * cb)[:, None]] = -1000.0
    s[ab & ~liver & (_ellipse(xs, ys, bx + 0.68 * ca, cy + 0.45 * cb, 0.24 * ca, 0.34 * cb) < 1.0)] = hu["spleen"]


def _mediastinum(an: Anatomy, sl: _Slice, z: float) -> None:
    """Heart, aorta, pulmonary trunk, superior vena cava, oesophagus and trachea."""
    u, hu = an.u, an.hu
    blood = hu["blood"]
    sec = an.heart_section(z)
    if sec is not None:
        sl.ellipse(u["hx"], u["hy"], sec[0], sec[1], u["hang"], blood, margin=u["heart_fat"])
    if z <= u["z_arch"]:
        sl.disc(u["x_da"], u["y_da"], u["r_da"], blood, margin=2.0)
    if u["hz"] <= z <= u["z_arch"]:
        sl.disc(u["x_aa"], u["y_aa"], u["r_aa"], blood, margin=3.0)
    t = (z - u["z_arch"]) / u["r_aa"]
    if abs(t) < 1.0:
        r = u["r_aa"] * float(np.sqrt(1.0 - t * t))
        mid = (u["x_tr"] + u["r_tr"] + 3.0 + r, u["y_tr"] - 0.3 * u["r_tr"])
        sl.capsule((u["x_aa"], u["y_aa"]), mid, r, blood, margin=3.0)
        sl.capsule(mid, (u["x_da"], u["y_da"]), r, blood, margin=3.0)
    if z > u["z_arch"] + 0.5 * u["r_aa"]:
        for dx, dy, rr in ((-0.6, -1.6, 6.0), (0.4, -1.5, 4.5), (1.3, -0.6, 5.0)):
            sl.disc(u["x_tr"] + dx * u["r_tr"] * 1.6, u["y_tr"] + dy * u["r_tr"], rr, blood, margin=2.0)
    if u["hz"] + 0.2 * u["hrz"] <= z <= u["z_carina"] - 5.0:
        sl.disc(u["x_pt"], u["y_pt"], u["r_pt"], blood, margin=3.0)
    if z >= u["hz"] + 0.4 * u["hrz"]:
        sl.disc(u["x_svc"], u["y_svc"], u["r_svc"], blood, margin=2.0)
    if z >= u["z_dome_l"] - 20.0:
        sl.disc(u["x_eso"], u["y_eso"], u["r_eso"], hu["muscle"], margin=2.0)
    if z >= u["z_carina"]:
        sl.disc(u["x_tr"], u["y_tr"], u["r_tr"] + 2.0, hu["wall"], margin=3.0)
        sl.disc(u["x_tr"], u["y_tr"], u["r_tr"], -1000.0)


def _spine(an: Anatomy, sl: _Slice, z: float) -> None:
    """Vertebral body (discs between levels), spinal canal, posterior elements, sternum, scapulae, clavicles."""
    u, hu = an.u, an.hu
    bx, rv, marrow, cortex = u["bx"], u["r_vb"], hu["marrow"], hu["cortex"]
    level = ((z - u["vert_phase"]) / u["vert_period"]) % 1.0
    if level < u["disc"] / u["vert_period"]:
        sl.ellipse(bx, u["y_vb"], 1.05 * rv, 0.92 * rv, 0.0, 80.0)
    else:
        sl.bone(bx, u["y_vb"], 1.05 * rv, 0.92 * rv, 0.0, marrow, cortex)
    rcn, ycn = u["r_canal"], u["y_canal"]
    for side in (-1.0, 1.0):
        sl.bone(bx + side * (rcn + 12.0), ycn - 2.0, 11.0, 4.0, side * 0.25, marrow, cortex)
    sl.bone(bx, ycn + rcn + 14.0, 13.0, 3.5, np.pi / 2, marrow, cortex)
    sl.disc(bx, ycn, rcn + 4.0, 0.85 * cortex)
    sl.disc(bx, ycn, rcn, hu["csf"])
    ca, cb = an.cavity_axes(z)
    front = u["cy"] - cb
    if u["z_dome_r"] - 25.0 < z < u["z_apex"] - 15.0:
        sl.bone(bx, front - 0.5 * u["rib"], 15.0, 6.0, 0.0, marrow, cortex)
    if u["z_carina"] - 40.0 < z < u["z_apex"] + 10.0:
        for side in (-1.0, 1.0):
            th = np.pi / 2 - side * 0.95
            sc = 1.0 + (u["rib"] + 7.0) / ca
            px, py = bx + sc * ca * np.cos(th), u["cy"] + sc * cb * np.sin(th)
            tang = np.arctan2(-(cb * np.cos(th)), -ca * np.sin(th))
            sl.bone(px, py, 32.0, 3.0, float(tang), 0.8 * cortex, cortex)
    if z > u["z_apex"] - 20.0:
        for side in (-1.0, 1.0):
            sl.bone(bx + side * 0.35 * ca, front - u["rib"] - 4.0, 35.0, 6.0, side * 0.17, marrow, cortex)
