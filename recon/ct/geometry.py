"""CT acquisition geometries: the one home of recon's CT coordinate conventions.

Coordinate system (identical to ASTRA's 2D conventions; picture: docs/ct_geometry.png)
-------------------------------------------------------------------------------------
World coordinates ``(x, y[, z])`` in mm; the rotation axis is the z axis through the geometric
centre of the image (``(0, 0[, 0])``). Angles in radians.

Image ``(ny, nx)`` (2D) or ``(nz, ny, nx)`` (3D), voxel size ``(vy, vx)`` / ``(vz, vy, vx)`` mm:

* column ``c`` is centred at ``x = (c - (nx - 1) / 2) * vx``  (column 0 at -x),
* row ``r`` is centred at ``y = ((ny - 1) / 2 - r) * vy``     (row 0 at +y: an image shown with
  ``imshow`` has +x to the right and +y up),
* slice ``k`` is centred at ``z = (k - (nz - 1) / 2) * vz``    (slice 0 at -z).

Detector bin ``i`` of ``N`` bins (spacing ``s``, offset ``o`` mm) is centred at
``u_i = (i - (N - 1) / 2) * s + o`` along the detector axis ``u``. In ASTRA's "vec" form with
``d`` the detector centre (offset included) and ``u`` the vector from bin ``i`` to bin ``i + 1``,
bin ``i`` sits at ``d + (i + 0.5 - N / 2) * u``.

Parallel beam, view angle ``t``: rays travel along ``ray = (sin t, -cos t)``; the detector axis is
``u = (cos t, sin t)``. At ``t = 0`` rays run along -y and bin ``i`` sits at ``x = u_i``, so with
``det_count = nx``, ``det_spacing = vx`` the projection is the column sums times ``vy``:
``sino[0, i] = vy * image[:, i].sum()``. Views ``t`` and ``t + pi`` are mirror images
(``sino(t + pi)[i] = sino(t)[N - 1 - i]`` when ``o = 0``).

Fan beam, view angle ``t``: source at ``S = source_origin * (sin t, -cos t)``, detector centre at
``D = -origin_det * (sin t, -cos t) + o * (cos t, sin t)``, detector axis ``u = (cos t, sin t)``.
A flat detector is the line through ``D`` along ``u``; an arc detector is the circle arc of radius
``source_det = source_origin + origin_det`` centred at the source, with bins equally spaced in
arc length ``s`` (fan angle ``gamma_i = u_i / source_det``; positive towards ``+u``).

Cone beam (circular orbit in the plane z = 0, flat detector): as the flat fan beam in x, y; the
detector's second axis is ``v = (0, 0, 1)``: detector row ``j`` of ``R`` rows (spacing ``sv``,
row offset ``ov``) is centred at ``z = (j - (R - 1) / 2) * sv + ov``.

Sinogram layouts: 2D ``(angles, bins)``; cone ``(angles, rows, cols)``. ASTRA's 3D layout is
``(rows, angles, cols)``: ``astra_sino = np.transpose(recon_sino, (1, 0, 2))``.

Vectors (what the C++ kernels consume, per view, float64, mm; ASTRA's "vec" geometries):

* ``ParallelBeam2D.vectors()``: ``(n_angles, 6)`` = ``(ray_x, ray_y, d_x, d_y, u_x, u_y)``,
  ASTRA ``parallel_vec``.
* ``FanBeam2D.vectors()``: ``(n_angles, 6)`` = ``(src_x, src_y, d_x, d_y, u_x, u_y)``, ASTRA
  ``fanflat_vec`` (flat). For the arc detector the same numbers mean: the arc through ``d``
  centred at ``src``, tangent ``u`` at ``d``, arc length ``|u|`` per bin.
* ``ConeBeam3D.vectors()``: ``(n_angles, 12)`` = ``(src, d, u, v)`` (x, y, z each), ASTRA
  ``cone_vec``; ``u`` steps one column, ``v`` one row.

Image mapping to ASTRA: 2D images are ASTRA's ``(rows, cols)`` volume with the window centred at
the origin (``create_vol_geom(ny, nx, -nx*vx/2, nx*vx/2, -ny*vy/2, ny*vy/2)``); see
:meth:`ParallelBeam2D.to_astra`. The 3D volume is ``(z, y, x)`` with row 0 at +y as in 2D.

Validity rules (ValueError naming the parameter): non-empty, finite angles; positive
spacings, sizes and distances; the source outside the image's circumscribed circle (so the
half-line from the source covers every voxel a full line would); the detector wide enough to
cover the image's inscribed circle (radius ``min(nx*vx, ny*vy) / 2``) at every view (cone beam:
also the volume's z extent magnified at the rotation axis). ``check_coverage=False`` turns the
coverage rule off (truncated-data experiments).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["Geometry", "ParallelBeam2D", "FanBeam2D", "ConeBeam3D"]

#: Kernel codes understood by recon._core (csrc/ct/projector.h).
KIND_PARALLEL2D = 0
KIND_FAN_FLAT = 1
KIND_FAN_ARC = 2
KIND_CONE_FLAT = 3


# ---- validation helpers ------------------------------------------------------------------------

def _angles(name: str, angles) -> np.ndarray:
    try:
        a = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: angles must be a 1D array of floats (radians): {e}") from None
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise ValueError(f"{name}: angles must be 1D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name}: angles is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: angles contains NaN or Inf")
    return a.copy()


def _positive(name: str, what: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {what} must be a positive number, got {v!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"{name}: {what} must be positive and finite, got {v!r}")
    return f


def _finite(name: str, what: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {what} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name}: {what} must be finite, got {v!r}")
    return f


def _count(name: str, what: str, v) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise ValueError(f"{name}: {what} must be a positive integer, got {v!r}")
    if int(v) < 1:
        raise ValueError(f"{name}: {what} must be a positive integer, got {v!r}")
    return int(v)


def _shape(name: str, shape, nd: int) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,) * nd
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"{name}: image_shape must be a tuple of {nd} positive integers, got {shape!r}") from None
    if len(shape) != nd:
        raise ValueError(f"{name}: image_shape must have {nd} entries, got {shape!r}")
    return tuple(_count(name, "image_shape entry", s) for s in shape)


def _per_axis(name: str, what: str, v, nd: int) -> tuple[float, ...]:
    if np.ndim(v) == 0:
        return (_positive(name, what, v),) * nd
    v = tuple(np.asarray(v, dtype=object).ravel())
    if len(v) != nd:
        raise ValueError(f"{name}: {what} must be a scalar or have {nd} entries, got {v!r}")
    return tuple(_positive(name, what, x) for x in v)


def _cover(name: str, need_lo: float, need_hi: float, have_lo: float, have_hi: float, what: str, fix: str):
    tol = 1e-9 * max(1.0, abs(need_lo), abs(need_hi))
    if have_lo > need_lo + tol or have_hi < need_hi - tol:
        raise ValueError(f"{name}: the detector does not cover the image's inscribed circle: {what} "
                         f"spans [{have_lo:.6g}, {have_hi:.6g}] but [{need_lo:.6g}, {need_hi:.6g}] is needed; "
                         f"{fix} (or pass check_coverage=False)")


# ---- base class ------------------------------------------------------------------------------------

class Geometry:
    """Common interface of all CT geometries.

    Attributes: ``angles`` (float64, radians), ``image_shape`` (``(ny, nx)`` or ``(nz, ny, nx)``),
    ``voxel_size`` (mm per axis, same order as ``image_shape``), ``sino_shape``, ``ndim`` (2 or 3),
    ``kind`` (kernel code). Method ``vectors()``: per-view ASTRA "vec" description in mm.
    """

    ndim: int
    kind: int
    angles: np.ndarray
    image_shape: tuple[int, ...]
    voxel_size: tuple[float, ...]
    sino_shape: tuple[int, ...]

    @property
    def n_angles(self) -> int:
        return int(self.angles.size)

    @property
    def det_shape(self) -> tuple[int, ...]:
        """Detector shape: ``(bins,)`` in 2D, ``(rows, cols)`` for the cone beam."""
        return tuple(self.sino_shape[1:])

    def vectors(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- image grid ---------------------------------------------------------------------------
    def voxel_centres(self) -> list[np.ndarray]:
        """Per-axis voxel-centre coordinates in mm, in ``image_shape`` order ((z,) y, x)."""
        out = []
        for ax, (n, v) in enumerate(zip(self.image_shape, self.voxel_size)):
            c = (np.arange(n) - (n - 1) / 2.0) * v
            if ax == self.ndim - 2:  # y axis: row 0 at +y
                c = -c
            out.append(c)
        return out

    @property
    def inscribed_radius(self) -> float:
        """Radius (mm) of the largest circle (cylinder) in the image's x-y extent."""
        ny, nx = self.image_shape[-2:]
        vy, vx = self.voxel_size[-2:]
        return 0.5 * min(ny * vy, nx * vx)

    @property
    def circumscribed_radius(self) -> float:
        ny, nx = self.image_shape[-2:]
        vy, vx = self.voxel_size[-2:]
        return 0.5 * math.hypot(ny * vy, nx * vx)

    # ---- rays -------------------------------------------------------------------------------------
    def rays(self, subsamples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Ray origins and unit directions (mm) for every detector bin.

        Returns ``(origin, direction)``, each of shape ``(*sino_shape, S, ndim)`` with
        ``S = subsamples`` (2D) or ``subsamples**2`` (cone beam) sub-rays per bin, equally spaced
        over the bin's width (height) at centres ``(k + 0.5) / subsamples - 0.5`` bins. Parallel
        rays are full lines (origin on the detector); fan/cone rays start at the source.
        Coordinates in (x, y[, z]) order.
        """
        raise NotImplementedError

    def _sub_offsets(self, subsamples: int) -> np.ndarray:
        s = _count(type(self).__name__, "subsamples", subsamples)
        return (np.arange(s) + 0.5) / s - 0.5

    def __eq__(self, other):
        return (type(self) is type(other) and self.image_shape == other.image_shape
                and self.voxel_size == other.voxel_size and self.sino_shape == other.sino_shape
                and np.array_equal(self.vectors(), other.vectors()))

    __hash__ = None


# ---- parallel beam -----------------------------------------------------------------------------------

class ParallelBeam2D(Geometry):
    """2D parallel beam (ASTRA ``parallel``): image ``(ny, nx)`` -> sinogram ``(n_angles, det_count)``.

    Parameters (mm, radians): ``angles`` view angles; ``det_count`` bins; ``det_spacing`` bin width;
    ``image_shape`` ``(ny, nx)`` (an int means square); ``voxel_size`` scalar or ``(vy, vx)``;
    ``det_offset`` shift of the detector centre along ``u``; ``check_coverage`` see module doc.
    """

    ndim = 2
    kind = KIND_PARALLEL2D

    def __init__(self, angles, det_count, det_spacing=1.0, image_shape=None, voxel_size=1.0,
                 det_offset=0.0, *, check_coverage: bool = True):
        name = "ParallelBeam2D"
        self.angles = _angles(name, angles)
        self.det_count = _count(name, "det_count", det_count)
        self.det_spacing = _positive(name, "det_spacing", det_spacing)
        if image_shape is None:
            raise ValueError(f"{name}: image_shape is required, e.g. (n, n)")
        self.image_shape = _shape(name, image_shape, 2)
        self.voxel_size = _per_axis(name, "voxel_size", voxel_size, 2)
        self.det_offset = _finite(name, "det_offset", det_offset)
        self.sino_shape = (self.angles.size, self.det_count)
        if check_coverage:
            R = self.inscribed_radius
            half = 0.5 * self.det_count * self.det_spacing
            _cover(name, -R, R, self.det_offset - half, self.det_offset + half,
                   "det_count * det_spacing (+ det_offset)",
                   f"use det_count >= {math.ceil((2 * R + 2 * abs(self.det_offset)) / self.det_spacing - 1e-9)}")

    def vectors(self) -> np.ndarray:
        t = self.angles
        c, s = np.cos(t), np.sin(t)
        v = np.empty((t.size, 6))
        v[:, 0], v[:, 1] = s, -c
        v[:, 2], v[:, 3] = self.det_offset * c, self.det_offset * s
        v[:, 4], v[:, 5] = self.det_spacing * c, self.det_spacing * s
        return v

    def rays(self, subsamples: int = 1):
        vec = self.vectors()
        N = self.det_count
        off = self._sub_offsets(subsamples)
        idx = np.arange(N)[:, None] + off[None, :] + 0.5 - N / 2.0  # (N, S)
        origin = vec[:, None, None, 2:4] + idx[None, :, :, None] * vec[:, None, None, 4:6]
        direction = np.broadcast_to(vec[:, None, None, 0:2], origin.shape).copy()
        return origin, direction

    def to_astra(self):
        """``(vol_geom, proj_geom)`` for ASTRA (``astra`` must be importable); same conventions."""
        import astra

        ny, nx = self.image_shape
        vy, vx = self.voxel_size
        vol = astra.create_vol_geom(ny, nx, -nx * vx / 2, nx * vx / 2, -ny * vy / 2, ny * vy / 2)
        if self.det_offset == 0.0:
            proj = astra.create_proj_geom("parallel", self.det_spacing, self.det_count, self.angles)
        else:
            proj = astra.create_proj_geom("parallel_vec", self.det_count, self.vectors())
        return vol, proj

    def __repr__(self):
        return (f"ParallelBeam2D(n_angles={self.n_angles}, det_count={self.det_count}, det_spacing={self.det_spacing}, "
                f"image_shape={self.image_shape}, voxel_size={self.voxel_size}, det_offset={self.det_offset})")


# ---- fan beam ------------------------------------------------------------------------------------------

class FanBeam2D(Geometry):
    """2D fan beam, flat or arc detector: image ``(ny, nx)`` -> sinogram ``(n_angles, det_count)``.

    Parameters (mm, radians): ``angles``; ``det_count``; ``det_spacing`` bin width (arc: arc length
    at radius ``source_origin + origin_det``); ``source_origin`` source to rotation axis;
    ``origin_det`` rotation axis to detector centre; ``detector`` "flat" or "arc";
    ``image_shape``; ``voxel_size`` scalar or ``(vy, vx)``; ``det_offset`` detector shift along
    ``u`` (arc: along the arc); ``check_coverage`` see module doc.
    """

    ndim = 2

    def __init__(self, angles, det_count, det_spacing, source_origin, origin_det, detector="flat",
                 image_shape=None, voxel_size=1.0, det_offset=0.0, *, check_coverage: bool = True):
        name = "FanBeam2D"
        self.angles = _angles(name, angles)
        self.det_count = _count(name, "det_count", det_count)
        self.det_spacing = _positive(name, "det_spacing", det_spacing)
        self.source_origin = _positive(name, "source_origin", source_origin)
        self.origin_det = _positive(name, "origin_det", origin_det)
        if detector not in ("flat", "arc"):
            raise ValueError(f"{name}: detector must be 'flat' or 'arc', got {detector!r}")
        self.detector = detector
        self.kind = KIND_FAN_FLAT if detector == "flat" else KIND_FAN_ARC
        if image_shape is None:
            raise ValueError(f"{name}: image_shape is required, e.g. (n, n)")
        self.image_shape = _shape(name, image_shape, 2)
        self.voxel_size = _per_axis(name, "voxel_size", voxel_size, 2)
        self.det_offset = _finite(name, "det_offset", det_offset)
        self.sino_shape = (self.angles.size, self.det_count)
        if self.source_origin <= self.circumscribed_radius:
            raise ValueError(f"{name}: source_origin = {self.source_origin} mm puts the source inside the image "
                             f"(circumscribed radius {self.circumscribed_radius:.6g} mm); move it further out")
        SD = self.source_det
        half = 0.5 * self.det_count * self.det_spacing
        if detector == "arc" and half / SD >= math.pi / 2 - 1e-9:
            raise ValueError(f"{name}: the arc detector spans a fan angle of pi or more; reduce det_count*det_spacing")
        if check_coverage:
            g = math.asin(self.inscribed_radius / self.source_origin)
            if detector == "flat":
                need = SD * math.tan(g)
                _cover(name, -need, need, self.det_offset - half, self.det_offset + half,
                       "det_count * det_spacing (+ det_offset) [mm on the flat detector]",
                       f"use det_count >= {math.ceil((2 * need + 2 * abs(self.det_offset)) / self.det_spacing - 1e-9)}")
            else:
                _cover(name, -g, g, (self.det_offset - half) / SD, (self.det_offset + half) / SD,
                       "the fan angle of the arc (radians)",
                       f"use det_count >= {math.ceil((2 * g * SD + 2 * abs(self.det_offset)) / self.det_spacing - 1e-9)}")

    @property
    def source_det(self) -> float:
        """Source to detector-centre distance (mm)."""
        return self.source_origin + self.origin_det

    def vectors(self) -> np.ndarray:
        t = self.angles
        c, s = np.cos(t), np.sin(t)
        v = np.empty((t.size, 6))
        v[:, 0], v[:, 1] = self.source_origin * s, -self.source_origin * c
        if self.detector == "flat":
            v[:, 2] = -self.origin_det * s + self.det_offset * c
            v[:, 3] = self.origin_det * c + self.det_offset * s
            v[:, 4], v[:, 5] = self.det_spacing * c, self.det_spacing * s
        else:
            # arc: the detector centre (offset included) lies on the circle around the source
            g = self.det_offset / self.source_det
            cg, sg = math.cos(g), math.sin(g)
            cx, cy = -s, c  # central ray direction (source -> rotation axis)
            ux, uy = c, s
            dx, dy = cg * cx + sg * ux, cg * cy + sg * uy
            v[:, 2] = v[:, 0] + self.source_det * dx
            v[:, 3] = v[:, 1] + self.source_det * dy
            # tangent at d (perpendicular to d - src, pointing towards increasing fan angle)
            v[:, 4] = self.det_spacing * (-sg * cx + cg * ux)
            v[:, 5] = self.det_spacing * (-sg * cy + cg * uy)
        return v

    def rays(self, subsamples: int = 1):
        vec = self.vectors()
        N = self.det_count
        off = self._sub_offsets(subsamples)
        idx = np.arange(N)[:, None] + off[None, :] + 0.5 - N / 2.0  # (N, S) bins from the centre
        src = vec[:, None, None, 0:2]
        d = vec[:, None, None, 2:4]
        u = vec[:, None, None, 4:6]
        if self.detector == "flat":
            p = d + idx[None, :, :, None] * u
            direction = p - src
        else:
            R = self.source_det
            c0 = (d - src) / R  # unit central direction
            uh = u / self.det_spacing
            g = (idx * self.det_spacing / R)[None, :, :, None]
            direction = np.cos(g) * c0 + np.sin(g) * uh
        direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
        origin = np.broadcast_to(src, direction.shape).copy()
        return origin, direction

    def to_astra(self):
        """``(vol_geom, proj_geom)`` for ASTRA's ``fanflat``/``fanflat_vec`` (flat detector only)."""
        import astra

        if self.detector != "flat":
            raise ValueError("FanBeam2D.to_astra: ASTRA has no 2D arc detector")
        ny, nx = self.image_shape
        vy, vx = self.voxel_size
        vol = astra.create_vol_geom(ny, nx, -nx * vx / 2, nx * vx / 2, -ny * vy / 2, ny * vy / 2)
        if self.det_offset == 0.0:
            proj = astra.create_proj_geom("fanflat", self.det_spacing, self.det_count, self.angles,
                                          self.source_origin, self.origin_det)
        else:
            proj = astra.create_proj_geom("fanflat_vec", self.det_count, self.vectors())
        return vol, proj

    def __repr__(self):
        return (f"FanBeam2D(n_angles={self.n_angles}, det_count={self.det_count}, det_spacing={self.det_spacing}, "
                f"source_origin={self.source_origin}, origin_det={self.origin_det}, detector={self.detector!r}, "
                f"image_shape={self.image_shape}, voxel_size={self.voxel_size}, det_offset={self.det_offset})")


# ---- cone beam -------------------------------------------------------------------------------------------

class ConeBeam3D(Geometry):
    """Circular-orbit cone beam, flat detector: volume ``(nz, ny, nx)`` -> ``(n_angles, rows, cols)``.

    Parameters (mm, radians): ``angles``; ``det_shape`` ``(rows, cols)``; ``det_spacing`` scalar or
    ``(row, col)``; ``source_origin``; ``origin_det``; ``image_shape`` ``(nz, ny, nx)`` (int: cube);
    ``voxel_size`` scalar or ``(vz, vy, vx)``; ``det_offset`` ``(row, col)`` shift of the detector
    centre along ``v`` and ``u``; ``check_coverage`` see module doc.
    """

    ndim = 3
    kind = KIND_CONE_FLAT

    def __init__(self, angles, det_shape, det_spacing, source_origin, origin_det, image_shape=None,
                 voxel_size=1.0, det_offset=(0.0, 0.0), *, check_coverage: bool = True):
        name = "ConeBeam3D"
        self.angles = _angles(name, angles)
        try:
            ds = tuple(det_shape)
        except TypeError:
            raise ValueError(f"{name}: det_shape must be (rows, cols), got {det_shape!r}") from None
        if len(ds) != 2:
            raise ValueError(f"{name}: det_shape must be (rows, cols), got {det_shape!r}")
        self.det_rows = _count(name, "det_shape rows", ds[0])
        self.det_cols = _count(name, "det_shape cols", ds[1])
        self.det_spacing = _per_axis(name, "det_spacing", det_spacing, 2)  # (row, col)
        self.source_origin = _positive(name, "source_origin", source_origin)
        self.origin_det = _positive(name, "origin_det", origin_det)
        if image_shape is None:
            raise ValueError(f"{name}: image_shape is required, e.g. (n, n, n)")
        self.image_shape = _shape(name, image_shape, 3)
        self.voxel_size = _per_axis(name, "voxel_size", voxel_size, 3)
        if np.ndim(det_offset) == 0:
            raise ValueError(f"{name}: det_offset must be (row, col) in mm, got {det_offset!r}")
        do = tuple(np.asarray(det_offset, dtype=object).ravel())
        if len(do) != 2:
            raise ValueError(f"{name}: det_offset must be (row, col) in mm, got {det_offset!r}")
        self.det_offset = (_finite(name, "det_offset", do[0]), _finite(name, "det_offset", do[1]))
        self.sino_shape = (self.angles.size, self.det_rows, self.det_cols)
        if self.source_origin <= self.circumscribed_radius:
            raise ValueError(f"{name}: source_origin = {self.source_origin} mm puts the source inside the volume "
                             f"(circumscribed radius in x-y {self.circumscribed_radius:.6g} mm); move it further out")
        if check_coverage:
            SD = self.source_det
            g = math.asin(self.inscribed_radius / self.source_origin)
            need = SD * math.tan(g)
            sr, sc = self.det_spacing
            orow, ocol = self.det_offset
            half = 0.5 * self.det_cols * sc
            _cover(name, -need, need, ocol - half, ocol + half,
                   "det_shape cols * det_spacing col (+ det_offset col) [mm]",
                   f"use det_shape cols >= {math.ceil((2 * need + 2 * abs(ocol)) / sc - 1e-9)}")
            H = 0.5 * self.image_shape[0] * self.voxel_size[0] * SD / self.source_origin
            half_r = 0.5 * self.det_rows * sr
            _cover(name, -H, H, orow - half_r, orow + half_r,
                   "det_shape rows * det_spacing row (+ det_offset row) [mm; the volume's z extent magnified at "
                   "the rotation axis must fit]",
                   f"use det_shape rows >= {math.ceil((2 * H + 2 * abs(orow)) / sr - 1e-9)}")

    @property
    def source_det(self) -> float:
        return self.source_origin + self.origin_det

    def vectors(self) -> np.ndarray:
        t = self.angles
        c, s = np.cos(t), np.sin(t)
        sr, sc = self.det_spacing
        orow, ocol = self.det_offset
        v = np.zeros((t.size, 12))
        v[:, 0], v[:, 1] = self.source_origin * s, -self.source_origin * c
        v[:, 3] = -self.origin_det * s + ocol * c
        v[:, 4] = self.origin_det * c + ocol * s
        v[:, 5] = orow
        v[:, 6], v[:, 7] = sc * c, sc * s
        v[:, 11] = sr
        return v

    def rays(self, subsamples: int = 1):
        vec = self.vectors()
        R, C = self.det_rows, self.det_cols
        off = self._sub_offsets(subsamples)
        ju = (np.arange(C)[:, None] + off[None, :] + 0.5 - C / 2.0)  # (C, S)
        jv = (np.arange(R)[:, None] + off[None, :] + 0.5 - R / 2.0)  # (R, S)
        S = off.size
        # sub-ray grid (sv, su) flattened to S*S
        jv4 = jv[:, None, :, None]  # (R, 1, S, 1)
        ju4 = ju[None, :, None, :]  # (1, C, 1, S)
        src = vec[:, 0:3][:, None, None, None, None, :]
        d = vec[:, 3:6][:, None, None, None, None, :]
        u = vec[:, 6:9][:, None, None, None, None, :]
        vv = vec[:, 9:12][:, None, None, None, None, :]
        p = d + ju4[None, ..., None] * u + jv4[None, ..., None] * vv  # (A, R, C, S, S, 3)
        direction = p - src
        direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
        direction = direction.reshape(self.sino_shape + (S * S, 3))
        origin = np.broadcast_to(vec[:, None, None, None, 0:3], direction.shape).copy()
        return origin, direction

    def to_astra(self):
        """``(vol_geom, proj_geom)`` for ASTRA's ``cone_vec`` (ASTRA's 3D projectors need CUDA).

        Not verified against ASTRA here (no GPU): ASTRA's 3D volume y orientation may differ from the
        2D one; compare a small asymmetric phantom before relying on it.
        """
        import astra

        nz, ny, nx = self.image_shape
        vz, vy, vx = self.voxel_size
        vol = astra.create_vol_geom(ny, nx, nz, -nx * vx / 2, nx * vx / 2, -ny * vy / 2, ny * vy / 2,
                                    -nz * vz / 2, nz * vz / 2)
        proj = astra.create_proj_geom("cone_vec", self.det_rows, self.det_cols, self.vectors())
        return vol, proj

    def __repr__(self):
        return (f"ConeBeam3D(n_angles={self.n_angles}, det_shape={(self.det_rows, self.det_cols)}, "
                f"det_spacing={self.det_spacing}, source_origin={self.source_origin}, origin_det={self.origin_det}, "
                f"image_shape={self.image_shape}, voxel_size={self.voxel_size}, det_offset={self.det_offset})")
