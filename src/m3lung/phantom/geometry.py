"""Geometric primitives of the phantom, evaluated only inside their bounding boxes.

Phantom coordinates are millimetres ``(z, y, x)`` on the canonical grid: ``z = k * spacing_z`` (0 at
the most inferior slice, increasing to the head), ``y`` increasing to posterior and ``x`` to the
patient's left, both 0 at the image centre.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

Box = tuple[slice, slice, slice]


def smoothstep(t: np.ndarray | float) -> np.ndarray:
    """Cubic ramp: 0 below 0, 1 above 1, ``3t^2 - 2t^3`` between (same shape as ``t``)."""
    c = np.clip(t, 0.0, 1.0)
    return np.asarray(c * c * (3.0 - 2.0 * c))


@dataclass(frozen=True)
class Grid:
    """The voxel grid of one study.

    Attributes
    ----------
    shape : (N, H, W)
    spacing : (z, y, x) mm
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @cached_property
    def zs(self) -> np.ndarray:
        """(N,) float32 slice positions, mm."""
        return (np.arange(self.shape[0]) * self.spacing[0]).astype(np.float32)

    @cached_property
    def ys(self) -> np.ndarray:
        """(H,) float32 row positions, mm (0 at the image centre, + posterior)."""
        return ((np.arange(self.shape[1]) - (self.shape[1] - 1) / 2.0) * self.spacing[1]).astype(np.float32)

    @cached_property
    def xs(self) -> np.ndarray:
        """(W,) float32 column positions, mm (0 at the image centre, + patient left)."""
        return ((np.arange(self.shape[2]) - (self.shape[2] - 1) / 2.0) * self.spacing[2]).astype(np.float32)

    @property
    def pixel(self) -> float:
        """In-plane pixel size, mm."""
        return float(min(self.spacing[1], self.spacing[2]))

    def index(self, p: np.ndarray) -> np.ndarray:
        """Fractional voxel index ``(k, i, j)`` of the point ``p = (z, y, x)`` mm."""
        _, h, w = self.shape
        sz, sy, sx = self.spacing
        return np.array([p[0] / sz, p[1] / sy + (h - 1) / 2.0, p[2] / sx + (w - 1) / 2.0])

    def mm(self, k: float | np.ndarray, i: float | np.ndarray, j: float | np.ndarray) -> np.ndarray:
        """Point ``(z, y, x)`` mm of the fractional voxel index ``(k, i, j)`` (arrays give ``(3, P)``)."""
        _, h, w = self.shape
        sz, sy, sx = self.spacing
        return np.array([k * sz, (i - (h - 1) / 2.0) * sy, (j - (w - 1) / 2.0) * sx])

    def box(self, lo: np.ndarray, hi: np.ndarray) -> Box | None:
        """Index box of the voxels whose centres may lie within ``[lo, hi]`` mm; None when empty."""
        a = np.floor(self.index(np.asarray(lo, dtype=float))).astype(int)
        b = np.ceil(self.index(np.asarray(hi, dtype=float))).astype(int) + 1
        a = np.maximum(a, 0)
        b = np.minimum(b, self.shape)
        if np.any(b <= a):
            return None
        return (slice(a[0], b[0]), slice(a[1], b[1]), slice(a[2], b[2]))

    def axes(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable mm coordinates of ``box``: z (n,1,1), y (1,h,1), x (1,1,w), float32."""
        return (
            self.zs[box[0]][:, None, None],
            self.ys[box[1]][None, :, None],
            self.xs[box[2]][None, None, :],
        )

    def inside(self, p: np.ndarray) -> tuple[int, int, int] | None:
        """Nearest voxel index of ``p`` (mm), or None outside the grid."""
        k, i, j = np.rint(self.index(p)).astype(int)
        n, h, w = self.shape
        if 0 <= k < n and 0 <= i < h and 0 <= j < w:
            return int(k), int(i), int(j)
        return None


@dataclass(frozen=True)
class Waves:
    """A smooth random field of about unit standard deviation: a sum of separable cosine products.

    Each term ``cos(kz z + a) cos(ky y + b) cos(kx x + c)`` is a superposition of plane waves of one
    wavelength; on broadcast axes it costs one multiply per voxel. Used for lobulated lesion
    borders and for heterogeneity.
    """

    k: np.ndarray  # (n, 3) angular wave numbers along (z, y, x), rad/mm
    phase: np.ndarray  # (n, 3)

    @staticmethod
    def draw(rng: np.random.Generator, n: int = 6, wavelength: tuple[float, float] = (8.0, 20.0)) -> Waves:
        """Random directions, wavelengths (mm, uniform in ``wavelength``) and phases."""
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        lam = rng.uniform(*wavelength, size=n)
        return Waves(k=d * (2.0 * np.pi / lam)[:, None], phase=rng.uniform(0, 2 * np.pi, size=(n, 3)))

    def __call__(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Field at broadcastable coordinates (mm, e.g. :meth:`Grid.axes`); float32 of the broadcast shape."""
        out: np.ndarray | None = None
        for (kz, ky, kx), (pz, py, px) in zip(self.k, self.phase, strict=True):
            zy = np.cos(kz * z + pz).astype(np.float32) * np.cos(ky * y + py).astype(np.float32)
            term = zy * np.cos(kx * x + px).astype(np.float32)
            out = term if out is None else np.add(out, term, out=out)
        assert out is not None
        out *= np.float32(np.sqrt(8.0 / len(self.phase)))
        return out


def capsule_alpha(
    grid: Grid, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, *, extra: float = 0.0
) -> tuple[Box, np.ndarray] | None:
    """Partial-volume coverage (0..1) of a tapered tube from ``p0`` to ``p1`` (mm, radii ``r0``, ``r1``).

    Returns the index box and a float32 array of its shape, or None when the tube misses the grid.
    The edge is softened over one pixel; with thick slices a tube is seen within half a slice of
    the slice centre, with its contrast reduced by the share of the slab it fills (partial volume).
    ``extra`` (mm) widens the box, e.g. for a halo computed from the same distance.
    """
    sz = grid.spacing[0]
    zpad = 0.5 * max(0.0, sz - 1.0)
    rmax = max(r0, r1) + extra + grid.pixel
    pad = np.array([rmax + zpad, rmax, rmax])
    box = grid.box(np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad)
    if box is None:
        return None
    z, y, x = grid.axes(box)
    v = (p1 - p0).astype(np.float32)
    vv = float(v @ v) or 1e-6
    dz0, dy0, dx0 = z - np.float32(p0[0]), y - np.float32(p0[1]), x - np.float32(p0[2])
    t = np.clip((dz0 * v[0] + dy0 * v[1] + dx0 * v[2]) / np.float32(vv), 0.0, 1.0)
    dz = np.abs(dz0 - t * v[0])
    if zpad > 0:
        dz = np.maximum(dz - np.float32(zpad), 0.0)
    d = np.sqrt(dz * dz + (dy0 - t * v[1]) ** 2 + (dx0 - t * v[2]) ** 2)
    r = np.float32(r0) + t * np.float32(r1 - r0)
    alpha = np.clip((r - d) / np.float32(grid.pixel) + 0.5, 0.0, 1.0)
    if zpad > 0:
        uz = abs(v[0]) / np.sqrt(vv)
        alpha *= np.float32(uz + (1.0 - uz) * min(1.0, 2.0 * max(r0, r1) / sz))
    return box, alpha.astype(np.float32, copy=False)


@dataclass
class Segment:
    """One straight tube of a branching tree (vessel or airway), mm."""

    p0: np.ndarray
    p1: np.ndarray
    r0: float
    r1: float
    generation: int
    lung: int
    side: np.ndarray  # unit vector perpendicular to the tube (where a companion tube runs)

    @property
    def direction(self) -> np.ndarray:
        v = self.p1 - self.p0
        return np.asarray(v / (np.linalg.norm(v) or 1.0))

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.p1 - self.p0))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (``np.cross`` is slow on tiny arrays)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _perpendicular(d: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Unit vector perpendicular to the unit ``d``, as close to ``hint`` as possible."""
    s = hint - (hint @ d) * d
    n = float(np.sqrt(s @ s))
    if n < 1e-6:
        s = _cross(d, np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
        n = float(np.sqrt(s @ s))
    return np.asarray(s / n)


def _rotate(d: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``d`` about the unit ``axis``."""
    c, s = np.cos(angle), np.sin(angle)
    return np.asarray(d * c + _cross(axis, d) * s + axis * (axis @ d) * (1 - c))


def grow_tree(
    rng: np.random.Generator,
    inside: Callable[[np.ndarray], bool],
    roots: list[tuple[np.ndarray, np.ndarray, float]],
    *,
    lung: int,
    r_min: float,
    max_segments: int,
    centre: np.ndarray,
) -> list[Segment]:
    """Grow a branching tree of tapering tubes breadth-first from ``roots`` (start, target, radius) mm.

    Each branch runs ``3..6`` radii plus 3..8 mm long (at most 30 mm), leaning towards its target region while
    far from it and away from ``centre`` (the hilum) once there, then splits in two (Murray's law,
    one larger and one smaller child, 10..45 degrees apart, targets scattered around the parent's).
    A branch whose end or middle leaves ``inside`` is turned and shortened up to three times, then
    dropped. Growth stops below ``r_min`` mm or at ``max_segments``.
    """
    segs: list[Segment] = []
    queue: deque[tuple[np.ndarray, np.ndarray, float, int, np.ndarray, np.ndarray]] = deque()
    for p, target, r in roots:
        d = target - p
        d = d / (np.linalg.norm(d) or 1.0)
        queue.append((np.asarray(p, float), d, r, 1, _perpendicular(d, rng.normal(size=3)), np.asarray(target)))
    while queue and len(segs) < max_segments:
        p, d, r, gen, side, target = queue.popleft()
        length = float(np.clip(r * rng.uniform(3.0, 6.0) + rng.uniform(3.0, 8.0), 3.0, 30.0))
        for attempt in range(4):
            if attempt:
                d = _rotate(d, _perpendicular(d, rng.normal(size=3)), rng.uniform(0.3, 0.9))
                length *= 0.75
            end = p + d * length
            if inside(end) and inside(p + d * length * 0.5):
                break
        else:
            continue
        r_end = r * rng.uniform(0.88, 0.97)
        segs.append(Segment(p, end, r, r_end, gen, lung, side))
        if r_end < r_min:
            continue
        to_target = target - end
        dist = float(np.linalg.norm(to_target))
        lean = to_target / dist if dist > 15.0 else (end - centre) / (np.linalg.norm(end - centre) or 1.0)
        axis = _perpendicular(d, rng.normal(size=3))
        big = r_end * rng.uniform(0.78, 0.9)
        small = max((r_end**3 - big**3), 0.0) ** (1.0 / 3.0)
        for rad, ang in ((big, rng.uniform(0.15, 0.4)), (small, -rng.uniform(0.35, 0.8))):
            if rad < r_min * 0.8:
                continue
            nd = _rotate(d, axis, ang) + 0.35 * lean
            nd /= np.linalg.norm(nd)
            child_target = target + rng.normal(size=3) * 0.4 * dist
            queue.append((end, nd, rad, gen + 1, _perpendicular(nd, side), child_target))
    return segs
