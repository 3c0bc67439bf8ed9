"""Ellipse/ellipsoid phantoms: rasterisation and exact (analytic) line integrals for any geometry.

These are the independent references of the CT tests: the line integral of an ellipse of constant
value ``mu`` (1/mm) along a ray is ``mu`` times the ray's chord length through it (mm); a disk of
radius ``r`` at distance ``s`` from the ray projects to ``2 * mu * sqrt(r^2 - s^2)``.

Coordinates are world coordinates in mm, (x, y[, z]) as in :mod:`recon.geometry` (y up, the
image's row 0 at +y); angles in radians, counter-clockwise from +x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..geometry import Geometry, ImageGrid
from ..geometry._checks import check_allocation, number, positive
from ..geometry._checks import count as _count

#: Bytes of scratch memory a phantom routine works in at a time (it loops over blocks).
_BLOCK_BYTES = 64 << 20

__all__ = ["Ellipse", "Ellipsoid", "shepp_logan_ellipses", "shepp_logan_2d", "shepp_logan_3d", "rasterize",
           "analytic_sinogram", "random_ellipses"]


@dataclass(frozen=True)
class Ellipse:
    """A 2D ellipse of constant value (1/mm): semi-axes ``(a, b)`` mm along its own x/y axes,
    ``centre`` ``(x, y)`` mm, rotated by ``angle`` radians counter-clockwise."""

    value: float
    axes: tuple[float, float]
    centre: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0

    def __post_init__(self):
        _check_shape(self, 2)

    @property
    def rotation(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class Ellipsoid:
    """A 3D ellipsoid of constant value (1/mm): semi-axes ``(a, b, c)`` mm along its own x/y/z axes,
    ``centre`` ``(x, y, z)`` mm, rotated by ``angle`` radians about z (counter-clockwise in x-y) or by
    a full 3x3 rotation matrix ``rotation_matrix`` (columns: the ellipsoid's axes in world coordinates)."""

    value: float
    axes: tuple[float, float, float]
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    angle: float = 0.0
    rotation_matrix: tuple | None = field(default=None, compare=False)

    def __post_init__(self):
        _check_shape(self, 3)
        if self.rotation_matrix is not None:
            R = np.asarray(self.rotation_matrix, dtype=np.float64)
            if R.shape != (3, 3) or not np.allclose(R.T @ R, np.eye(3), atol=1e-9):
                raise ValueError("Ellipsoid: rotation_matrix must be a 3x3 orthogonal matrix")

    @property
    def rotation(self) -> np.ndarray:
        if self.rotation_matrix is not None:
            return np.asarray(self.rotation_matrix, dtype=np.float64)
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _check_shape(e, nd):
    name = type(e).__name__
    if np.ndim(e.axes) != 1 or np.ndim(e.centre) != 1 or len(e.axes) != nd or len(e.centre) != nd:
        raise ValueError(f"{name}: axes and centre must have {nd} entries")
    for a in e.axes:
        positive(name, "semi-axes", a)
    for c in e.centre:
        number(name, "centre", c)
    number(name, "value", e.value)
    number(name, "angle", e.angle)


# ---- Shepp-Logan -------------------------------------------------------------------------------------

# (value, a, b, x0, y0, phi_deg) in units of the phantom radius; values of the original phantom
_SL2D = [
    (2.00, 0.6900, 0.9200, 0.00, 0.0000, 0.0),
    (-0.98, 0.6624, 0.8740, 0.00, -0.0184, 0.0),
    (-0.02, 0.1100, 0.3100, 0.22, 0.0000, -18.0),
    (-0.02, 0.1600, 0.4100, -0.22, 0.0000, 18.0),
    (0.01, 0.2100, 0.2500, 0.00, 0.3500, 0.0),
    (0.01, 0.0460, 0.0460, 0.00, 0.1000, 0.0),
    (0.01, 0.0460, 0.0460, 0.00, -0.1000, 0.0),
    (0.01, 0.0460, 0.0230, -0.08, -0.6050, 0.0),
    (0.01, 0.0230, 0.0230, 0.00, -0.6060, 0.0),
    (0.01, 0.0230, 0.0460, 0.06, -0.6050, 0.0),
]
# Toft's "modified" values (better contrast)
_SL2D_MOD_VALUES = [1.0, -0.8, -0.2, -0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
# 3D (Kak & Slaney style): (a, b, c, x0, y0, z0) per ellipse, rotation about z as in 2D
_SL3D_EXTRA = [
    (0.810, 0.0),
    (0.780, 0.0),
    (0.220, 0.0),
    (0.280, 0.0),
    (0.410, -0.15),
    (0.050, 0.25),
    (0.050, 0.25),
    (0.050, 0.0),
    (0.020, 0.0),
    (0.020, 0.0),
]


def shepp_logan_ellipses(radius: float, ndim: int = 2, *, modified: bool = True, scale: float = 1.0):
    """The Shepp-Logan phantom as a list of :class:`Ellipse` (ndim=2) or :class:`Ellipsoid` (ndim=3).

    ``radius`` (mm) is the phantom's unit length (the outer ellipse spans ``0.69 * radius`` by
    ``0.92 * radius``); ``modified`` uses Toft's higher-contrast values; ``scale`` multiplies all
    values (e.g. ``scale=0.02`` gives water-like attenuation in 1/mm with ``modified=True``).
    """
    radius = positive("shepp_logan_ellipses", "radius (mm)", radius)
    scale = number("shepp_logan_ellipses", "scale", scale)
    if ndim not in (2, 3):
        raise ValueError(f"shepp_logan_ellipses: ndim must be 2 or 3, got {ndim}")
    out = []
    for k, (v, a, b, x0, y0, phi) in enumerate(_SL2D):
        v = (_SL2D_MOD_VALUES[k] if modified else v) * scale
        ang = math.radians(phi)
        if ndim == 2:
            out.append(Ellipse(v, (a * radius, b * radius), (x0 * radius, y0 * radius), ang))
        else:
            c, z0 = _SL3D_EXTRA[k]
            out.append(Ellipsoid(v, (a * radius, b * radius, c * radius), (x0 * radius, y0 * radius, z0 * radius), ang))
    return out


def shepp_logan_2d(n: int, voxel_size: float = 1.0, *, modified: bool = True, scale: float = 1.0,
                   supersample: int = 1) -> np.ndarray:
    """Rasterised 2D Shepp-Logan phantom ``(n, n)`` float64 filling the image (radius ``n*voxel_size/2``).

    Equals ``rasterize(shepp_logan_ellipses(n * voxel_size / 2, 2, ...), (n, n), voxel_size, supersample)``.
    """
    n = _posint("shepp_logan_2d", "n", n)
    v = float(voxel_size)
    return rasterize(shepp_logan_ellipses(n * v / 2, 2, modified=modified, scale=scale), (n, n), v, supersample)


def shepp_logan_3d(n: int, voxel_size: float = 1.0, *, modified: bool = True, scale: float = 1.0,
                   supersample: int = 1) -> np.ndarray:
    """Rasterised 3D Shepp-Logan phantom ``(n, n, n)`` float64 (radius ``n*voxel_size/2``)."""
    n = _posint("shepp_logan_3d", "n", n)
    v = float(voxel_size)
    return rasterize(shepp_logan_ellipses(n * v / 2, 3, modified=modified, scale=scale), (n, n, n), v, supersample)


def _posint(fn, what, v) -> int:
    return _count(fn, what, v)


# ---- rasterisation -----------------------------------------------------------------------------------

def rasterize(ellipses: Sequence, image_shape, voxel_size=1.0, supersample: int = 1,
              dtype=np.float64) -> np.ndarray:
    """Sample a sum of ellipses/ellipsoids on the voxel grid of :mod:`recon.geometry`.

    ``image_shape`` ``(ny, nx)`` or ``(nz, ny, nx)``; ``voxel_size`` scalar or per axis (mm);
    each voxel is the mean over ``supersample**ndim`` equally spaced points inside it.
    ``image_shape`` may also be a :class:`~recon.geometry.Geometry` or :class:`~recon.geometry.ImageGrid`
    (then ``voxel_size`` is ignored). Works in blocks of rows, so memory stays near the output's.
    """
    if isinstance(image_shape, Geometry):
        image_shape = image_shape.grid
    grid = image_shape if isinstance(image_shape, ImageGrid) else ImageGrid(image_shape, voxel_size, owner="rasterize")
    shape, vs, nd = grid.shape, grid.voxel_size, grid.ndim
    ss = _posint("rasterize", "supersample", supersample)
    ellipses = _as_list(ellipses, nd)
    # one block: rows x (nx * ss) points per sub-row, a few float64 arrays of that size
    row_bytes = 6.0 * 8 * ss ** (nd - 1) * shape[-1] * ss * (ss if nd == 3 else 1)
    check_allocation("rasterize", 8.0 * grid.size * 2 + row_bytes,
                     f"an image of shape {shape} with supersample={ss}")
    rows = max(1, int(_BLOCK_BYTES // row_bytes))
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    # axis coordinates in (z,) y, x order; y flipped so row 0 is at +y
    axes = []
    for ax, (n, v) in enumerate(zip(shape, vs)):
        c = ((np.arange(n)[:, None] + sub[None, :]) - (n - 1) / 2.0) * v  # (n, ss)
        if ax == nd - 2:
            c = -c
        axes.append(c.ravel())
    out = np.zeros(shape, dtype=np.float64)
    ny, nx = shape[-2:]
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        Y, X = np.meshgrid(axes[-2][r0 * ss:r1 * ss], axes[-1], indexing="ij")
        if nd == 2:
            acc = np.zeros(Y.shape)
            for e in ellipses:
                acc += e.value * _inside(e, (X, Y))
            out[r0:r1] = acc.reshape(r1 - r0, ss, nx, ss).mean(axis=(1, 3))
            continue
        for k in range(shape[0]):
            acc = np.zeros((ss,) + Y.shape)
            for si in range(ss):
                z = axes[0][k * ss + si]
                Z = np.full_like(X, z)
                for e in ellipses:
                    if abs(z - e.centre[2]) > max(e.axes):
                        continue
                    acc[si] += e.value * _inside(e, (X, Y, Z))
            out[k, r0:r1] = acc.reshape(ss, r1 - r0, ss, nx, ss).mean(axis=(0, 2, 4))
    return out.astype(dtype, copy=False)


def _inside(e, pts) -> np.ndarray:
    R = e.rotation
    nd = len(pts)
    d = [pts[i] - e.centre[i] for i in range(nd)]
    s = np.zeros_like(d[0])
    for j in range(nd):  # coordinate along the ellipse's j-th axis: R[:, j] . d
        q = sum(R[i, j] * d[i] for i in range(nd))
        s += (q / e.axes[j]) ** 2
    return s <= 1.0


def _as_list(ellipses, nd):
    if isinstance(ellipses, (Ellipse, Ellipsoid)):
        ellipses = [ellipses]
    ellipses = list(ellipses)
    want = Ellipse if nd == 2 else Ellipsoid
    for e in ellipses:
        if not isinstance(e, want):
            raise ValueError(f"expected {want.__name__} objects for a {nd}D geometry, got {type(e).__name__}")
    return ellipses


# ---- analytic line integrals ------------------------------------------------------------------------

def chord_lengths(e, origin: np.ndarray, direction: np.ndarray, half_line: bool) -> np.ndarray:
    """Length (mm) of each ray ``origin + t * direction`` (unit ``direction``; ``t >= 0`` if
    ``half_line``) inside the ellipse/ellipsoid ``e``; arrays ``(..., ndim)`` in (x, y[, z]) order."""
    R = e.rotation
    c = np.asarray(e.centre, dtype=np.float64)
    a = np.asarray(e.axes, dtype=np.float64)
    q = ((origin - c) @ R) / a  # ellipse frame, unit-sphere scaling
    d = (direction @ R) / a
    A = np.einsum("...i,...i->...", d, d)
    B = np.einsum("...i,...i->...", q, d)
    C = np.einsum("...i,...i->...", q, q) - 1.0
    disc = B * B - A * C
    ok = disc > 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    t1 = (-B - sq) / A
    t2 = (-B + sq) / A
    if half_line:
        t1 = np.maximum(t1, 0.0)
    return np.where(ok, np.maximum(t2 - t1, 0.0), 0.0)


def analytic_sinogram(ellipses: Sequence, geometry: Geometry, subsamples: int = 1, chunk: int = 16) -> np.ndarray:
    """Exact line integrals (unitless: 1/mm x mm) of a sum of ellipses/ellipsoids for ``geometry``.

    Returns float64 of shape ``geometry.sino_shape``. ``subsamples > 1`` averages ``subsamples``
    (2D) or ``subsamples**2`` (3D) equally spaced sub-rays per detector bin (finite bin width).
    Fan and cone rays are half-lines from the source; parallel rays are full lines. Works on at
    most ``chunk`` views at a time (fewer when a view has many rays), so memory stays near the output's.
    """
    if not isinstance(geometry, Geometry):
        raise ValueError(f"analytic_sinogram: expected a recon.geometry Geometry, got {type(geometry).__name__}")
    ellipses = _as_list(ellipses, geometry.ndim)
    S = _posint("analytic_sinogram", "subsamples", subsamples) ** (geometry.ndim - 1)
    chunk = _posint("analytic_sinogram", "chunk", chunk)
    # per view: origin and direction plus the chord-length temporaries, ~ (4 ndim + 10) float64 per sub-ray
    view_bytes = float(np.prod(geometry.det_shape, dtype=np.float64)) * S * (4 * geometry.ndim + 10) * 8
    check_allocation("analytic_sinogram", 8.0 * np.prod(geometry.sino_shape, dtype=np.float64) + view_bytes,
                     f"the line integrals of {geometry.sino_shape} rays x {S} sub-rays")
    chunk = max(1, min(chunk, int(_BLOCK_BYTES // view_bytes)))
    half = geometry.kind != 0
    out = np.zeros(geometry.sino_shape, dtype=np.float64)
    for start in range(0, geometry.n_views, chunk):
        sl = slice(start, min(start + chunk, geometry.n_views))
        origin, direction = geometry.subset(sl).rays(subsamples)
        acc = np.zeros(origin.shape[:-1])
        for e in ellipses:
            acc += e.value * chord_lengths(e, origin, direction, half)
        out[sl] = acc.mean(axis=-1)
    return out


def random_ellipses(rng, count: int, ndim: int, radius: float, value_range=(-1.0, 1.0), min_axis: float = 0.05):
    """``count`` random ellipses (ndim=2) / ellipsoids (ndim=3) inside a disk/ball of ``radius`` mm.

    Semi-axes in ``[min_axis, 0.5] * radius``; each shape lies entirely within ``radius`` of the origin
    (its centre within ``radius - max axis``). For tests.
    """
    if count != 0:
        count = _posint("random_ellipses", "count", count)
    if ndim not in (2, 3):
        raise ValueError(f"random_ellipses: ndim must be 2 or 3, got {ndim!r}")
    radius = positive("random_ellipses", "radius", radius)
    lo, hi = (number("random_ellipses", "value_range", v) for v in value_range)
    if not 0 < number("random_ellipses", "min_axis", min_axis) <= 0.5:
        raise ValueError(f"random_ellipses: min_axis must lie in (0, 0.5] (fraction of radius), got {min_axis!r}")
    rng = np.random.default_rng(rng)
    out = []
    for _ in range(count):
        ax = rng.uniform(min_axis, 0.5, ndim) * radius
        rmax = radius - ax.max()
        while True:
            c = rng.uniform(-rmax, rmax, ndim)
            if np.linalg.norm(c) <= rmax:
                break
        v = float(rng.uniform(lo, hi))
        ang = float(rng.uniform(0, np.pi))
        if ndim == 2:
            out.append(Ellipse(v, tuple(ax), tuple(c), ang))
        else:
            # a random rotation (QR of a Gaussian matrix, det +1)
            Q, Rm = np.linalg.qr(rng.standard_normal((3, 3)))
            Q = Q * np.sign(np.diag(Rm))
            if np.linalg.det(Q) < 0:
                Q[:, 0] = -Q[:, 0]
            out.append(Ellipsoid(v, tuple(ax), tuple(c), 0.0, tuple(map(tuple, Q))))
    return out
