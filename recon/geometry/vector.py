"""Vector geometries: per-view source / ray, detector centre and detector axes (ASTRA's "vec"
geometries), the one form the projector consumes and every other geometry converts to.

* :class:`ParallelVec2D` rows ``(ray_x, ray_y, d_x, d_y, u_x, u_y)`` (ASTRA ``parallel_vec``);
* :class:`FanVec2D` rows ``(src_x, src_y, d_x, d_y, u_x, u_y)`` (ASTRA ``fanflat_vec``; ``detector="arc"``:
  the arc through ``d`` centred at ``src``, tangent ``u`` at ``d``, arc length ``|u|`` per bin);
* :class:`ConeVec3D` rows ``(src, d, u, v)`` (x, y, z each; ASTRA ``cone_vec``): ``u`` steps one
  column, ``v`` one row.

Bin ``i`` of ``N`` sits at ``d + (i + 0.5 - N/2) u`` (row ``j`` of ``R`` adds ``(j + 0.5 - R/2) v``).
Lengths in mm. Conventions: :mod:`recon.geometry`.
"""

from __future__ import annotations

import math

import numpy as np

from . import _checks as check
from .base import Geometry
from .image import ImageGrid

__all__ = ["ParallelVec2D", "FanVec2D", "ConeVec3D", "KIND_PARALLEL2D", "KIND_FAN_FLAT", "KIND_FAN_ARC",
           "KIND_CONE_FLAT"]

#: Kernel codes understood by recon._core / recon._cuda (csrc/kernels/joseph.h).
KIND_PARALLEL2D = 0
KIND_FAN_FLAT = 1
KIND_FAN_ARC = 2
KIND_CONE_FLAT = 3

#: Relative size under which two directions count as parallel (a degenerate detector).
_PARALLEL_TOL = 1e-9


def _vectors(owner: str, vectors, width: int) -> np.ndarray:
    """``(n_views, width)`` float64 copy of finite values; a single row means one view."""
    try:
        v = np.array(vectors, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{owner}: vectors must be an (n_views, {width}) array of numbers: {e}") from None
    if v.ndim == 1 and v.size == width:
        v = v.reshape(1, width)
    if v.ndim != 2 or v.shape[1] != width or v.shape[0] == 0:
        raise ValueError(f"{owner}: vectors must have shape (n_views, {width}) with n_views >= 1, got {v.shape}")
    bad = np.argwhere(~np.isfinite(v))
    if bad.size:
        raise ValueError(f"{owner}: vectors[{bad[0, 0]}, {bad[0, 1]}] (view {bad[0, 0]}) is NaN or Inf")
    return v


def _first(mask: np.ndarray):
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def _check_nonzero(owner: str, vec: np.ndarray, what: str, cols: slice):
    n = np.linalg.norm(vec[:, cols], axis=1)
    k = _first(~(n > 0))
    if k is not None:
        raise ValueError(f"{owner}: vectors[{k}]: {what} (columns {cols.start}-{cols.stop - 1}) is zero at view {k}")
    return n


def _check_not_parallel(owner: str, a: np.ndarray, b: np.ndarray, what: str):
    if a.shape[1] == 2:
        cross = np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])
    else:
        cross = np.linalg.norm(np.cross(a, b), axis=1)
    k = _first(~(cross > _PARALLEL_TOL * np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
    if k is not None:
        raise ValueError(f"{owner}: vectors[{k}]: {what} at view {k} (a degenerate detector)")


def _check_sources_outside(owner: str, src: np.ndarray, grid: ImageGrid):
    k = _first(grid.encloses(src))
    if k is not None:
        where = ("circumscribed circle" if grid.ndim == 2 else
                 f"circumscribed cylinder and its bounding sphere (radius {grid.bounding_radius:.6g} mm)")
        raise ValueError(f"{owner}: vectors[{k}]: the source at view {k} lies inside the image's {where} "
                         f"(cylinder radius {grid.circumscribed_radius:.6g} mm, source at "
                         f"{float(np.hypot(src[k, 0], src[k, 1])):.6g} mm from the axis); move it further out")


def _sub_offsets(owner: str, subsamples) -> np.ndarray:
    s = check.count(owner, "subsamples", subsamples, maximum=1024)
    return (np.arange(s) + 0.5) / s - 0.5


class _VectorGeometry(Geometry):
    """Shared constructor parts of the vector geometries."""

    _per_view = ("vectors",)

    def _init_common(self, owner, vectors, width, det_shape, image_shape, voxel_size, ndim):
        self._vec = _vectors(owner, vectors, width)
        self._vec.setflags(write=False)
        grid = ImageGrid(image_shape, voxel_size, ndim=ndim, owner=owner)
        self.image_shape, self.voxel_size = grid.shape, grid.voxel_size
        self.sino_shape = (self._vec.shape[0],) + tuple(det_shape)
        return grid

    def vectors(self) -> np.ndarray:
        """The per-view vectors (read-only float64 array, mm)."""
        return self._vec

    def as_vector_geometry(self) -> Geometry:
        return self


class ParallelVec2D(_VectorGeometry):
    """2D parallel beam from per-view vectors ``(n_views, 6)`` = ``(ray, d, u)`` (ASTRA ``parallel_vec``).

    ``ray``: ray direction (any length); ``d``: detector centre (mm); ``u``: step from one bin to
    the next (mm). ``det_count`` bins; ``image_shape`` ``(ny, nx)``; ``voxel_size`` mm.
    Rejected (ValueError naming the view): NaN/Inf, a zero ``ray`` or ``u``, ``u`` parallel to ``ray``.
    """

    ndim = 2
    kind = KIND_PARALLEL2D

    def __init__(self, vectors, det_count, image_shape, voxel_size=1.0):
        owner = "ParallelVec2D"
        det_count = check.count(owner, "det_count", det_count)
        self._init_common(owner, vectors, 6, (det_count,), image_shape, voxel_size, 2)
        v = self._vec
        _check_nonzero(owner, v, "the ray direction", slice(0, 2))
        _check_nonzero(owner, v, "the detector axis u", slice(4, 6))
        _check_not_parallel(owner, v[:, 0:2], v[:, 4:6], "the detector axis u is parallel to the rays")

    @property
    def det_count(self) -> int:
        return self.sino_shape[1]

    def _params(self):
        return dict(vectors=self._vec, det_count=self.det_count, image_shape=self.image_shape,
                    voxel_size=self.voxel_size)

    def rays(self, subsamples: int = 1):
        vec, N = self._vec, self.det_count
        off = _sub_offsets("ParallelVec2D", subsamples)
        idx = np.arange(N)[:, None] + off[None, :] + 0.5 - N / 2.0  # (N, S)
        origin = vec[:, None, None, 2:4] + idx[None, :, :, None] * vec[:, None, None, 4:6]
        ray = vec[:, 0:2] / np.linalg.norm(vec[:, 0:2], axis=1, keepdims=True)
        direction = np.broadcast_to(ray[:, None, None, :], origin.shape).copy()
        return origin, direction


class FanVec2D(_VectorGeometry):
    """2D fan beam from per-view vectors ``(n_views, 6)`` = ``(src, d, u)`` (ASTRA ``fanflat_vec``).

    ``detector="flat"``: bins on the line through ``d`` along ``u``. ``detector="arc"``: bins on the
    circle arc through ``d`` centred at ``src``, tangent ``u`` at ``d``, ``|u|`` mm of arc per bin
    (equiangular). ``det_count`` bins; ``image_shape`` ``(ny, nx)``; ``voxel_size`` mm.
    Rejected (ValueError naming the view): NaN/Inf, a zero ``u``, the source on the detector line
    (flat) or at the detector centre (arc), an arc spanning a fan angle of pi or more, a source
    inside the image's circumscribed circle (rays are half-lines from the source).
    """

    ndim = 2

    def __init__(self, vectors, det_count, detector="flat", image_shape=None, voxel_size=1.0):
        owner = "FanVec2D"
        det_count = check.count(owner, "det_count", det_count)
        if detector not in ("flat", "arc"):
            raise ValueError(f"{owner}: detector must be 'flat' or 'arc', got {detector!r}")
        self.detector = str(detector)
        self.kind = KIND_FAN_FLAT if detector == "flat" else KIND_FAN_ARC
        if image_shape is None:
            raise ValueError(f"{owner}: image_shape is required, e.g. (n, n)")
        grid = self._init_common(owner, vectors, 6, (det_count,), image_shape, voxel_size, 2)
        v = self._vec
        ul = _check_nonzero(owner, v, "the detector axis u", slice(4, 6))
        central = v[:, 2:4] - v[:, 0:2]
        if self.detector == "flat":
            _check_not_parallel(owner, central, v[:, 4:6], "the source lies on the detector line")
        else:
            R = np.linalg.norm(central, axis=1)
            k = _first(~(R > 0))
            if k is not None:
                raise ValueError(f"{owner}: vectors[{k}]: the arc detector's centre coincides with the source "
                                 f"at view {k}")
            k = _first(0.5 * det_count * ul / R >= math.pi / 2 - 1e-9)
            if k is not None:
                raise ValueError(f"{owner}: vectors[{k}]: the arc detector spans a fan angle of pi or more at "
                                 f"view {k}; reduce det_count * |u|")
        _check_sources_outside(owner, v[:, 0:2], grid)

    @property
    def det_count(self) -> int:
        return self.sino_shape[1]

    def _params(self):
        return dict(vectors=self._vec, det_count=self.det_count, detector=self.detector,
                    image_shape=self.image_shape, voxel_size=self.voxel_size)

    def rays(self, subsamples: int = 1):
        vec, N = self._vec, self.det_count
        off = _sub_offsets("FanVec2D", subsamples)
        idx = np.arange(N)[:, None] + off[None, :] + 0.5 - N / 2.0  # (N, S) bins from the centre
        src, d, u = (vec[:, None, None, k:k + 2] for k in (0, 2, 4))
        if self.detector == "flat":
            direction = d + idx[None, :, :, None] * u - src
        else:
            R = np.linalg.norm(d - src, axis=-1, keepdims=True)
            ul = np.linalg.norm(u, axis=-1, keepdims=True)
            g = idx[None, :, :, None] * ul / R  # fan angle of each sub-ray
            direction = np.cos(g) * (d - src) / R + np.sin(g) * u / ul
        direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
        origin = np.broadcast_to(src, direction.shape).copy()
        return origin, direction


class ConeVec3D(_VectorGeometry):
    """Cone beam with a flat detector from per-view vectors ``(n_views, 12)`` = ``(src, d, u, v)``
    (ASTRA ``cone_vec``): volume ``(nz, ny, nx)`` -> sinogram ``(n_views, rows, cols)``.

    ``u`` steps one detector column, ``v`` one row (mm); ``det_shape`` ``(rows, cols)``.
    Any trajectory (circular, helical, measured per view). Rejected (ValueError naming the view):
    NaN/Inf, zero or parallel ``u`` and ``v``, the source in the detector plane, a source inside
    both the volume's circumscribed cylinder and its bounding sphere (rays are half-lines from the
    source; outside either convex set a half-line meets the volume where the full line does).
    """

    ndim = 3
    kind = KIND_CONE_FLAT

    def __init__(self, vectors, det_shape, image_shape, voxel_size=1.0):
        owner = "ConeVec3D"
        rows, cols = _det_shape(owner, det_shape)
        grid = self._init_common(owner, vectors, 12, (rows, cols), image_shape, voxel_size, 3)
        v = self._vec
        _check_nonzero(owner, v, "the detector axis u", slice(6, 9))
        _check_nonzero(owner, v, "the detector axis v", slice(9, 12))
        _check_not_parallel(owner, v[:, 6:9], v[:, 9:12], "the detector axes u and v are parallel")
        normal = np.cross(v[:, 6:9], v[:, 9:12])
        dist = np.abs(np.einsum("ij,ij->i", v[:, 3:6] - v[:, 0:3], normal))
        k = _first(~(dist > _PARALLEL_TOL * np.linalg.norm(normal, axis=1) * np.linalg.norm(v[:, 3:6] - v[:, 0:3],
                                                                                           axis=1)))
        if k is not None:
            raise ValueError(f"{owner}: vectors[{k}]: the source lies in the detector plane at view {k}")
        _check_sources_outside(owner, v[:, 0:3], grid)

    @property
    def det_rows(self) -> int:
        return self.sino_shape[1]

    @property
    def det_cols(self) -> int:
        return self.sino_shape[2]

    def _params(self):
        return dict(vectors=self._vec, det_shape=(self.det_rows, self.det_cols), image_shape=self.image_shape,
                    voxel_size=self.voxel_size)

    def rays(self, subsamples: int = 1):
        vec = self._vec
        R, C = self.det_rows, self.det_cols
        off = _sub_offsets("ConeVec3D", subsamples)
        S = off.size
        ju = np.arange(C)[:, None] + off[None, :] + 0.5 - C / 2.0  # (C, S)
        jv = np.arange(R)[:, None] + off[None, :] + 0.5 - R / 2.0  # (R, S)
        jv5 = jv[None, :, None, :, None, None]  # (1, R, 1, S, 1, 1): sub-ray grid (sv, su)
        ju5 = ju[None, None, :, None, :, None]  # (1, 1, C, 1, S, 1)
        src, d, u, v = (vec[:, None, None, None, None, k:k + 3] for k in (0, 3, 6, 9))
        direction = d + ju5 * u + jv5 * v - src  # (A, R, C, S, S, 3)
        direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
        direction = direction.reshape(self.sino_shape + (S * S, 3))
        origin = np.broadcast_to(vec[:, None, None, None, 0:3], direction.shape).copy()
        return origin, direction


def _det_shape(owner: str, det_shape) -> tuple[int, int]:
    if isinstance(det_shape, str) or np.ndim(det_shape) != 1 or len(det_shape) != 2:
        raise ValueError(f"{owner}: det_shape must be (rows, cols), got {det_shape!r}")
    return check.count(owner, "det_shape rows", det_shape[0]), check.count(owner, "det_shape cols", det_shape[1])
