"""Analytic CT geometries (circular and helical orbits given by angles and distances): each one is a
converter to its vector form (:mod:`recon.geometry.vector`). Conventions: :mod:`recon.geometry`."""

from __future__ import annotations

import math

import numpy as np

from . import _checks as check
from .base import Geometry
from .image import ImageGrid
from .vector import (
    KIND_CONE_FLAT,
    KIND_FAN_ARC,
    KIND_FAN_FLAT,
    KIND_PARALLEL2D,
    ConeVec3D,
    FanVec2D,
    ParallelVec2D,
    _det_shape,
)

__all__ = ["ParallelBeam2D", "FanBeam2D", "ConeBeam3D", "HelicalConeBeam3D"]


class _Analytic(Geometry):
    """Shared parts: angles, the image grid, the coverage flag."""

    _per_view = ("angles",)

    def _init_common(self, owner, angles, image_shape, voxel_size, ndim, check_coverage) -> ImageGrid:
        self.angles = check.angles(owner, "angles", angles)
        if image_shape is None:
            raise ValueError(f"{owner}: image_shape is required, e.g. ({', '.join(['n'] * ndim)})")
        grid = ImageGrid(image_shape, voxel_size, ndim=ndim, owner=owner)
        self.image_shape, self.voxel_size = grid.shape, grid.voxel_size
        self.check_coverage = check.flag(owner, "check_coverage", check_coverage)
        return grid

    def _coverage(self) -> bool:
        return getattr(self, "check_coverage", True)  # pickles made before the flag was stored


# ---- parallel beam -----------------------------------------------------------------------------------

class ParallelBeam2D(_Analytic):
    """2D parallel beam (ASTRA ``parallel``): image ``(ny, nx)`` -> sinogram ``(n_angles, det_count)``.

    Parameters (mm, radians): ``angles`` view angles; ``det_count`` bins; ``det_spacing`` bin width;
    ``image_shape`` ``(ny, nx)`` (an int means square); ``voxel_size`` scalar or ``(vy, vx)``;
    ``det_offset`` shift of the detector centre along ``u``; ``check_coverage``: see :mod:`recon.geometry`.
    """

    ndim = 2
    kind = KIND_PARALLEL2D

    def __init__(self, angles, det_count, det_spacing=1.0, image_shape=None, voxel_size=1.0,
                 det_offset=0.0, *, check_coverage: bool = True):
        name = "ParallelBeam2D"
        self._init_common(name, angles, image_shape, voxel_size, 2, check_coverage)
        self.det_count = check.count(name, "det_count", det_count)
        self.det_spacing = check.positive(name, "det_spacing", det_spacing)
        self.det_offset = check.number(name, "det_offset", det_offset)
        self.sino_shape = (self.angles.size, self.det_count)
        if self.check_coverage:
            R = self.inscribed_radius
            half = 0.5 * self.det_count * self.det_spacing
            check.cover(name, -R, R, self.det_offset - half, self.det_offset + half,
                        "det_count * det_spacing (+ det_offset)",
                        f"use det_count >= {math.ceil((2 * R + 2 * abs(self.det_offset)) / self.det_spacing - 1e-9)}")

    def _params(self):
        return dict(angles=self.angles, det_count=self.det_count, det_spacing=self.det_spacing,
                    image_shape=self.image_shape, voxel_size=self.voxel_size, det_offset=self.det_offset,
                    check_coverage=self._coverage())

    def vectors(self) -> np.ndarray:
        t = self.angles
        c, s = np.cos(t), np.sin(t)
        v = np.empty((t.size, 6))
        v[:, 0], v[:, 1] = s, -c
        v[:, 2], v[:, 3] = self.det_offset * c, self.det_offset * s
        v[:, 4], v[:, 5] = self.det_spacing * c, self.det_spacing * s
        return v

    def as_vector_geometry(self) -> ParallelVec2D:
        return ParallelVec2D(self.vectors(), self.det_count, self.image_shape, self.voxel_size)

    def to_astra(self):
        """``(vol_geom, proj_geom)`` for ASTRA (``astra`` must be importable); same conventions."""
        import astra

        vol = _astra_vol_2d(astra, self)
        if self.det_offset == 0.0:
            proj = astra.create_proj_geom("parallel", self.det_spacing, self.det_count, self.angles)
        else:
            proj = astra.create_proj_geom("parallel_vec", self.det_count, self.vectors())
        return vol, proj


def _astra_vol_2d(astra, g):
    ny, nx = g.image_shape
    vy, vx = g.voxel_size
    return astra.create_vol_geom(ny, nx, -nx * vx / 2, nx * vx / 2, -ny * vy / 2, ny * vy / 2)


# ---- fan and cone beams: a source on a circle of radius source_origin ---------------------------------------

class _SourceOrbit(_Analytic):
    """Shared parts of the geometries with a source: distances, the source check, flat-detector coverage."""

    @property
    def source_det(self) -> float:
        """Source to detector-centre distance (mm)."""
        return self.source_origin + self.origin_det

    def _check_source_outside(self, name: str):
        if self.source_origin <= self.circumscribed_radius:
            raise ValueError(f"{name}: source_origin = {self.source_origin} mm puts the source inside the image "
                             f"(circumscribed radius in x-y {self.circumscribed_radius:.6g} mm); move it further out")

    def _check_flat_cover(self, name: str, bins: int, spacing: float, offset: float, what: str):
        """The flat detector's ``bins`` x ``spacing`` (shifted by ``offset``) covers the fan of the
        image's inscribed circle; ``what`` names the count (e.g. "det_count")."""
        need = self.source_det * math.tan(math.asin(self.inscribed_radius / self.source_origin))
        half = 0.5 * bins * spacing
        check.cover(name, -need, need, offset - half, offset + half,
                    f"{what} * det_spacing (+ det_offset) [mm on the flat detector]",
                    f"use {what} >= {math.ceil((2 * need + 2 * abs(offset)) / spacing - 1e-9)}")


class FanBeam2D(_SourceOrbit):
    """2D fan beam, flat or arc detector: image ``(ny, nx)`` -> sinogram ``(n_angles, det_count)``.

    Parameters (mm, radians): ``angles``; ``det_count``; ``det_spacing`` bin width (arc: arc length
    at radius ``source_origin + origin_det``); ``source_origin`` source to rotation axis;
    ``origin_det`` rotation axis to detector centre; ``detector`` "flat" or "arc";
    ``image_shape``; ``voxel_size`` scalar or ``(vy, vx)``; ``det_offset`` detector shift along
    ``u`` (arc: along the arc); ``check_coverage``: see :mod:`recon.geometry`.
    """

    ndim = 2

    def __init__(self, angles, det_count, det_spacing, source_origin, origin_det, detector="flat",
                 image_shape=None, voxel_size=1.0, det_offset=0.0, *, check_coverage: bool = True):
        name = "FanBeam2D"
        self._init_common(name, angles, image_shape, voxel_size, 2, check_coverage)
        self.det_count = check.count(name, "det_count", det_count)
        self.det_spacing = check.positive(name, "det_spacing", det_spacing)
        self.source_origin = check.positive(name, "source_origin", source_origin)
        self.origin_det = check.positive(name, "origin_det", origin_det)
        if detector not in ("flat", "arc"):
            raise ValueError(f"{name}: detector must be 'flat' or 'arc', got {detector!r}")
        self.detector = str(detector)
        self.kind = KIND_FAN_FLAT if detector == "flat" else KIND_FAN_ARC
        self.det_offset = check.number(name, "det_offset", det_offset)
        self.sino_shape = (self.angles.size, self.det_count)
        self._check_source_outside(name)
        SD = self.source_det
        half = 0.5 * self.det_count * self.det_spacing
        if detector == "arc" and half / SD >= math.pi / 2 - 1e-9:
            raise ValueError(f"{name}: the arc detector spans a fan angle of pi or more; reduce det_count*det_spacing")
        if self.check_coverage:
            if detector == "flat":
                self._check_flat_cover(name, self.det_count, self.det_spacing, self.det_offset, "det_count")
            else:
                g = math.asin(self.inscribed_radius / self.source_origin)
                check.cover(name, -g, g, (self.det_offset - half) / SD, (self.det_offset + half) / SD,
                            "the fan angle of the arc (radians)",
                            f"use det_count >= {math.ceil((2 * g * SD + 2 * abs(self.det_offset)) / self.det_spacing - 1e-9)}")

    def _params(self):
        return dict(angles=self.angles, det_count=self.det_count, det_spacing=self.det_spacing,
                    source_origin=self.source_origin, origin_det=self.origin_det, detector=self.detector,
                    image_shape=self.image_shape, voxel_size=self.voxel_size, det_offset=self.det_offset,
                    check_coverage=self._coverage())

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

    def as_vector_geometry(self) -> FanVec2D:
        return FanVec2D(self.vectors(), self.det_count, self.detector, self.image_shape, self.voxel_size)

    def to_astra(self):
        """``(vol_geom, proj_geom)`` for ASTRA's ``fanflat``/``fanflat_vec`` (flat detector only)."""
        import astra

        if self.detector != "flat":
            raise ValueError("FanBeam2D.to_astra: ASTRA has no 2D arc detector")
        vol = _astra_vol_2d(astra, self)
        if self.det_offset == 0.0:
            proj = astra.create_proj_geom("fanflat", self.det_spacing, self.det_count, self.angles,
                                          self.source_origin, self.origin_det)
        else:
            proj = astra.create_proj_geom("fanflat_vec", self.det_count, self.vectors())
        return vol, proj


# ---- cone beam: circular and helical orbits ----------------------------------------------------------------

class _ConeOrbit(_SourceOrbit):
    """Shared parts of the cone-beam orbits: detector, distances, the in-plane vectors, coverage."""

    ndim = 3
    kind = KIND_CONE_FLAT

    def _init_cone(self, name, angles, det_shape, det_spacing, source_origin, origin_det, image_shape,
                   voxel_size, det_offset, check_coverage):
        self._init_common(name, angles, image_shape, voxel_size, 3, check_coverage)
        self.det_rows, self.det_cols = _det_shape(name, det_shape)
        self.det_spacing = check.per_axis(name, "det_spacing", det_spacing, 2)  # (row, col)
        self.source_origin = check.positive(name, "source_origin", source_origin)
        self.origin_det = check.positive(name, "origin_det", origin_det)
        self.det_offset = check.pair(name, "det_offset", det_offset)
        self.sino_shape = (self.angles.size, self.det_rows, self.det_cols)
        self._check_source_outside(name)
        if self.check_coverage:
            self._check_flat_cover(name, self.det_cols, self.det_spacing[1], self.det_offset[1], "det_shape cols")

    def _cone_params(self):
        return dict(angles=self.angles, det_shape=(self.det_rows, self.det_cols), det_spacing=self.det_spacing,
                    source_origin=self.source_origin, origin_det=self.origin_det, image_shape=self.image_shape,
                    voxel_size=self.voxel_size, det_offset=self.det_offset)

    def _orbit_vectors(self, z) -> np.ndarray:
        """Vectors of the circular orbit with source and detector centre lifted to ``z`` (mm)."""
        t = self.angles
        c, s = np.cos(t), np.sin(t)
        sr, sc = self.det_spacing
        orow, ocol = self.det_offset
        v = np.zeros((t.size, 12))
        v[:, 0], v[:, 1], v[:, 2] = self.source_origin * s, -self.source_origin * c, z
        v[:, 3] = -self.origin_det * s + ocol * c
        v[:, 4] = self.origin_det * c + ocol * s
        v[:, 5] = orow + z
        v[:, 6], v[:, 7] = sc * c, sc * s
        v[:, 11] = sr
        return v

    def as_vector_geometry(self) -> ConeVec3D:
        return ConeVec3D(self.vectors(), (self.det_rows, self.det_cols), self.image_shape, self.voxel_size)


class ConeBeam3D(_ConeOrbit):
    """Circular-orbit cone beam, flat detector: volume ``(nz, ny, nx)`` -> ``(n_angles, rows, cols)``.

    Parameters (mm, radians): ``angles``; ``det_shape`` ``(rows, cols)``; ``det_spacing`` scalar or
    ``(row, col)``; ``source_origin``; ``origin_det``; ``image_shape`` ``(nz, ny, nx)`` (int: cube);
    ``voxel_size`` scalar or ``(vz, vy, vx)``; ``det_offset`` ``(row, col)`` shift of the detector
    centre along ``v`` and ``u``; ``check_coverage``: see :mod:`recon.geometry` (here also the
    volume's z extent magnified at the rotation axis must fit the rows).
    """

    def __init__(self, angles, det_shape, det_spacing, source_origin, origin_det, image_shape=None,
                 voxel_size=1.0, det_offset=(0.0, 0.0), *, check_coverage: bool = True):
        name = "ConeBeam3D"
        self._init_cone(name, angles, det_shape, det_spacing, source_origin, origin_det, image_shape, voxel_size,
                        det_offset, check_coverage)
        if self.check_coverage:
            sr, orow = self.det_spacing[0], self.det_offset[0]
            H = 0.5 * self.image_shape[0] * self.voxel_size[0] * self.source_det / self.source_origin
            half_r = 0.5 * self.det_rows * sr
            check.cover(name, -H, H, orow - half_r, orow + half_r,
                        "det_shape rows * det_spacing row (+ det_offset row) [mm; the volume's z extent magnified at "
                        "the rotation axis must fit]",
                        f"use det_shape rows >= {math.ceil((2 * H + 2 * abs(orow)) / sr - 1e-9)}")

    def _params(self):
        return dict(self._cone_params(), check_coverage=self._coverage())

    def vectors(self) -> np.ndarray:
        return self._orbit_vectors(0.0)

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


class HelicalConeBeam3D(_ConeOrbit):
    """Helical cone beam, flat detector: the circular orbit of :class:`ConeBeam3D` with the source
    and the detector centre moving along z, ``z_k`` mm at view ``k``.

    Parameters as :class:`ConeBeam3D`, plus exactly one of (keywords):

    * ``pitch``: mm of z travel per turn (``2 pi`` of angle); ``z_k = pitch (angles_k - a_mid) / (2 pi)``
      with ``a_mid`` the middle of the angle range, so the helix is centred on the volume;
    * ``table_positions``: ``z_k`` per view (mm, the source's and detector centre's z in the image
      frame; a table moving the patient by ``+t`` puts them at ``-t``).

    ``check_coverage`` checks the columns only (a helical detector covers a part of the volume's z
    extent at a time). Converts to :class:`ConeVec3D`; FDK does not apply (use the iterative methods).
    """

    _per_view = ("angles", "table_positions")

    def __init__(self, angles, det_shape, det_spacing, source_origin, origin_det, image_shape=None,
                 voxel_size=1.0, det_offset=(0.0, 0.0), *, pitch=None, table_positions=None,
                 check_coverage: bool = True):
        name = "HelicalConeBeam3D"
        self._init_cone(name, angles, det_shape, det_spacing, source_origin, origin_det, image_shape, voxel_size,
                        det_offset, check_coverage)
        if (pitch is None) == (table_positions is None):
            raise ValueError(f"{name}: give exactly one of pitch (mm per turn) and table_positions (mm per view)")
        if pitch is not None:
            self.pitch = check.number(name, "pitch", pitch)
            mid = 0.5 * (self.angles.min() + self.angles.max())
            self.table_positions = self.pitch * (self.angles - mid) / (2 * math.pi)
        else:
            self.pitch = None
            self.table_positions = check.angles(name, "table_positions", table_positions)
            if self.table_positions.size != self.angles.size:
                raise ValueError(f"{name}: table_positions has {self.table_positions.size} entries but there are "
                                 f"{self.angles.size} angles")

    def _params(self):
        return dict(self._cone_params(), table_positions=self.table_positions, check_coverage=self._coverage())

    def _repr_extra(self) -> str:
        z = self.table_positions
        pitch = f", pitch={self.pitch!r}" if self.pitch is not None else ""
        return f"{pitch}, z in [{z.min():.6g}, {z.max():.6g}] mm"

    def vectors(self) -> np.ndarray:
        return self._orbit_vectors(self.table_positions)
