"""DICOM-CT-PD: helical CT projection data, one DICOM file per projection view (the format of the
AAPM/Mayo low-dose CT challenge and TCIA's LDCT-and-Projection-data; Chen et al., Med Phys 2015).

:func:`read_dicom_ct_pd` reads a folder (or a list) of such files into a :class:`HelicalScan`;
:func:`write_dicom_ct_pd` writes one (e.g. a simulated scan). Every tag, unit and convention is
listed in docs/ct_raw.md; the short version:

Scanner frame (mm, radians): the z axis is the rotation axis; the detector's focal centre of view
``k`` sits at ``F = (rho0 cos phi0, rho0 sin phi0, z0)`` (tags 7031,1003 / 7031,1001 / 7031,1002);
the focal spot (the real source) at ``S = ((rho0 + drho) cos(phi0 + dphi), (rho0 + drho)
sin(phi0 + dphi), z0 + dz)`` (flying focal spot shifts 7033,100D / 7033,100B / 7033,100C). The
detector belongs to ``F``: a cylinder (``CYLINDRICAL``) of radius ``d0`` (7031,1031) about the line
through ``F`` parallel to z, or a plane (``FLAT``) at distance ``d0``. Detector column ``c`` (0-based)
lies at fan angle ``gamma_c = (c - c0) * du / d0`` (flat: at ``(c - c0) * du`` mm) towards
``w = (-sin phi0, cos phi0)`` (increasing ``phi``), row ``r`` at height ``(r - r0) * dv`` above
``z0``; ``(c0, r0)`` is the central element (7031,1033, stored 1-based as in the published format,
kept 0-based here), ``du``/``dv`` the element spacings at the detector (7029,1002 / 7029,1006).
In recon's geometry conventions (:mod:`recon.geometry`) the view angle is ``t = phi0 + pi/2`` (recon
puts the source at ``SO (sin t, -cos t)``) and column ``c`` is bin ``c`` of an arc detector.

Pixel data: one view per file, uint16 (or int16) with RescaleSlope/RescaleIntercept giving the line
integrals (unitless), stored transposed as in the published data: DICOM Rows = detector columns
(channels), DICOM Columns = detector rows; ``projections[k, r, c] = pixel[c, r] * slope + intercept``.

Private tags are read by their numbers whatever their private creator, typed (explicit VR) or as raw
little-endian bytes (implicit VR files, where a reader without the private dictionary sees VR UN).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import warnings

import numpy as np

from ..geometry import ConeVec3D
from ..geometry._checks import check_allocation
from .atomic import atomic_folder
from .dicom import CT_IMAGE_STORAGE, ds_string, new_dataset, uint16_rescale
from .files import check_input_file, check_outputs
from .limits import check_read_size, nbytes_of

__all__ = [
    "DEFAULT_WATER_ATTENUATION",
    "DETECTOR_SHAPES",
    "FFS_MODES",
    "TAGS",
    "CylindricalDetector",
    "DicomCtPdWarning",
    "HelicalScan",
    "read_dicom_ct_pd",
    "write_dicom_ct_pd",
]

#: mu of water (1/mm) used when a file has no WaterAttenuationCoefficient: water at ~70 keV, the
#: effective energy of a 120 kVp beam (NIST XCOM mu/rho ~ 0.193 cm^2/g).
DEFAULT_WATER_ATTENUATION = 0.0193
#: Detector shapes recon reconstructs (SPHERICAL, the other value of the format, is refused).
DETECTOR_SHAPES = ("CYLINDRICAL", "FLAT")
#: Flying focal spot modes of the format.
FFS_MODES = ("FFSNONE", "FFSZ", "FFSXY", "FFSXYZ")
#: Private creator recon writes (readers ignore the creator and use the tag numbers).
PRIVATE_CREATOR = "DICOM-CT-PD"

#: name -> (tag, VR, kind) with kind: "f" float32 values, "u" uint16 values, "s" text, "d" decimal string
TAGS = {
    "NumberofDetectorRows": (0x70291010, "US", "u"),
    "NumberofDetectorColumns": (0x70291011, "US", "u"),
    "DetectorElementTransverseSpacing": (0x70291002, "FL", "f"),
    "DetectorElementAxialSpacing": (0x70291006, "FL", "f"),
    "DetectorShape": (0x7029100B, "CS", "s"),
    "DetectorFocalCenterAngularPosition": (0x70311001, "FL", "f"),
    "DetectorFocalCenterAxialPosition": (0x70311002, "FL", "f"),
    "DetectorFocalCenterRadialDistance": (0x70311003, "FL", "f"),
    "ConstantRadialDistance": (0x70311031, "FL", "f"),
    "DetectorCentralElement": (0x70311033, "FL", "f"),
    "SourceAngularPositionShift": (0x7033100B, "FL", "f"),
    "SourceAxialPositionShift": (0x7033100C, "FL", "f"),
    "SourceRadialDistanceShift": (0x7033100D, "FL", "f"),
    "FlyingFocalSpotMode": (0x7033100E, "CS", "s"),
    "NumberofSourceAngularSteps": (0x70331013, "US", "u"),
    "PhotonStatistics": (0x70331065, "FL", "f"),
    "TypeofProjectionData": (0x70371009, "CS", "s"),
    "WaterAttenuationCoefficient": (0x70411001, "DS", "d"),
}

#: Limits against hostile files (checked before anything is allocated).
MAX_DET_ROWS = 4096
MAX_DET_COLS = 16384
MAX_FILE_BYTES = 256 << 20


class DicomCtPdWarning(UserWarning):
    """A DICOM-CT-PD file lacks an optional tag (a default is used) or holds an odd value."""


# ---- the scan ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CylindricalDetector:
    """The detector of a DICOM-CT-PD scan (mm): ``rows`` x ``cols`` elements, ``col_spacing`` (du,
    along the arc at radius ``radius``, or along the plane for ``FLAT``), ``row_spacing`` (dv, along z),
    ``radius`` d0 (focal centre to the central element), ``central_element`` ``(col, row)`` 0-based
    fractional indices, ``shape`` ``"CYLINDRICAL"`` or ``"FLAT"``."""

    rows: int
    cols: int
    col_spacing: float
    row_spacing: float
    radius: float
    central_element: tuple[float, float]
    shape: str = "CYLINDRICAL"

    def __post_init__(self):
        for name, lim in (("rows", MAX_DET_ROWS), ("cols", MAX_DET_COLS)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= lim:
                raise ValueError(f"CylindricalDetector: {name} must be an integer in [1, {lim}], got {v!r}")
        for name in ("col_spacing", "row_spacing", "radius"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.number)) and math.isfinite(v) and v > 0):
                raise ValueError(f"CylindricalDetector: {name} must be a positive number (mm), got {v!r}")
        ce = tuple(float(c) for c in np.asarray(self.central_element, dtype=np.float64).ravel())
        if len(ce) != 2 or not all(math.isfinite(c) for c in ce):
            raise ValueError(f"CylindricalDetector: central_element must be (col, row), got {self.central_element!r}")
        object.__setattr__(self, "central_element", ce)
        if self.shape not in DETECTOR_SHAPES:
            raise ValueError(f"CylindricalDetector: shape must be one of {DETECTOR_SHAPES}, got {self.shape!r}")
        if self.shape == "CYLINDRICAL" and np.ptp(self.fan_angles()) / 2 >= math.pi / 2:
            raise ValueError("CylindricalDetector: the detector spans a fan angle of pi or more")

    def fan_angles(self) -> np.ndarray:
        """Fan angle (radians) of each column seen from the focal centre (positive towards +w)."""
        off = (np.arange(self.cols) - self.central_element[0]) * self.col_spacing
        return off / self.radius if self.shape == "CYLINDRICAL" else np.arctan2(off, self.radius)

    def row_heights(self) -> np.ndarray:
        """Height (mm) of each row above the focal centre's z, at the detector."""
        return (np.arange(self.rows) - self.central_element[1]) * self.row_spacing

    def in_plane(self):
        """``(a, b)`` per column: the column sits at ``F + a e + b w`` in x-y (``e`` the unit vector
        from the focal centre towards the rotation axis, ``w`` the tangent of increasing phi), mm."""
        if self.shape == "CYLINDRICAL":
            g = self.fan_angles()
            return self.radius * np.cos(g), self.radius * np.sin(g)
        off = (np.arange(self.cols) - self.central_element[0]) * self.col_spacing
        return np.full(self.cols, self.radius), off

    def column_at(self, a, b) -> np.ndarray:
        """Fractional column hit by the in-plane direction ``a e + b w`` from the focal centre (the
        inverse of :meth:`in_plane` up to scale; NaN behind the focal centre)."""
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.shape == "CYLINDRICAL":
                off = np.arctan2(b, a) * self.radius
            else:
                off = np.where(a > 0, b / a * self.radius, np.nan)
        return self.central_element[0] + off / self.col_spacing


def _per_view(name: str, value, n: int, default: float | None = None) -> np.ndarray:
    if value is None:
        if default is None:
            raise ValueError(f"HelicalScan: {name} is required")
        value = default
    a = np.array(value, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"HelicalScan: {name} must have one value per view ({n}), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"HelicalScan: {name} contains NaN or Inf")
    a.setflags(write=False)
    return a


@dataclasses.dataclass(eq=False)
class HelicalScan:
    """A helical (or axial) CT scan on a cylindrical or flat detector, as DICOM-CT-PD describes it.

    ``projections`` ``(views, rows, cols)`` float32 line integrals (unitless); per view: ``angles``
    phi0 (radians), ``z`` z0 (mm), ``radius`` rho0 (mm) of the detector's focal centre, and the
    flying focal spot shifts ``ffs_angle`` dphi (radians), ``ffs_z`` dz (mm), ``ffs_radius`` drho (mm)
    of the real source from it; ``detector`` (:class:`CylindricalDetector`); ``ffs_mode``;
    ``views_per_rotation`` (None: estimated from the angles); ``water_attenuation`` mu of water
    (1/mm; for HU); ``photon_statistics`` ``(views, n)`` or None (DICOM-CT-PD's PhotonStatistics:
    incident photons per detector column when ``n == cols``); ``info`` other header values.
    Conventions: the module docstring and docs/ct_raw.md.
    """

    projections: np.ndarray
    angles: np.ndarray
    z: np.ndarray
    radius: np.ndarray
    detector: CylindricalDetector
    ffs_angle: np.ndarray | None = None
    ffs_z: np.ndarray | None = None
    ffs_radius: np.ndarray | None = None
    ffs_mode: str = "FFSNONE"
    views_per_rotation: int | None = None
    water_attenuation: float = DEFAULT_WATER_ATTENUATION
    photon_statistics: np.ndarray | None = None
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.detector, CylindricalDetector):
            raise TypeError(f"HelicalScan: detector must be a CylindricalDetector, got {type(self.detector).__name__}")
        p = np.asarray(self.projections)
        if p.dtype.kind not in "fiu":
            raise TypeError(f"HelicalScan: projections must be real numbers, got dtype {p.dtype}")
        d = self.detector
        if p.ndim != 3 or p.shape[1:] != (d.rows, d.cols) or p.shape[0] < 1:
            raise ValueError(f"HelicalScan: projections must have shape (views, {d.rows}, {d.cols}), got {p.shape}")
        self.projections = np.ascontiguousarray(p, dtype=np.float32)
        n = p.shape[0]
        self.angles = _per_view("angles", self.angles, n)
        self.z = _per_view("z", self.z, n)
        self.radius = _per_view("radius", self.radius, n)
        self.ffs_angle = _per_view("ffs_angle", self.ffs_angle, n, 0.0)
        self.ffs_z = _per_view("ffs_z", self.ffs_z, n, 0.0)
        self.ffs_radius = _per_view("ffs_radius", self.ffs_radius, n, 0.0)
        if np.any(self.radius <= 0):
            raise ValueError("HelicalScan: radius (DetectorFocalCenterRadialDistance) must be positive")
        if np.any(self.radius + self.ffs_radius <= 0):
            raise ValueError("HelicalScan: the focal spot radius rho0 + drho must be positive")
        if self.ffs_mode not in FFS_MODES:
            raise ValueError(f"HelicalScan: ffs_mode must be one of {FFS_MODES}, got {self.ffs_mode!r}")
        if self.views_per_rotation is not None:
            v = self.views_per_rotation
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"HelicalScan: views_per_rotation must be a positive integer, got {v!r}")
            self.views_per_rotation = int(v)
        w = self.water_attenuation
        if isinstance(w, bool) or not isinstance(w, (int, float, np.number)) or not (math.isfinite(w) and w > 0):
            raise ValueError(f"HelicalScan: water_attenuation must be a positive number (1/mm), got {w!r}")
        self.water_attenuation = float(w)
        if self.photon_statistics is not None:
            ps = np.asarray(self.photon_statistics, dtype=np.float64)
            if ps.ndim == 1:
                ps = np.broadcast_to(ps, (n, ps.size))
            if ps.ndim != 2 or ps.shape[0] != n or not np.all(np.isfinite(ps)):
                raise ValueError(f"HelicalScan: photon_statistics must be finite, shape (views, n), got {ps.shape}")
            self.photon_statistics = np.array(ps, dtype=np.float32)

    # ---- shapes and trajectory ---------------------------------------------------------------------
    @property
    def n_views(self) -> int:
        return int(self.projections.shape[0])

    def unwrapped_angles(self) -> np.ndarray:
        """phi0 per view without 2 pi jumps (radians)."""
        return np.unwrap(self.angles)

    def rotations(self) -> float:
        """Number of turns the focal centre covers (|angular range| / 2 pi)."""
        a = self.unwrapped_angles()
        return float(abs(a[-1] - a[0]) / (2 * math.pi))

    @property
    def pitch(self) -> float:
        """Table feed per turn (mm, signed like dz/dphi * 2 pi) from a straight-line fit of z0
        against the unwrapped angles; 0 for an axial scan."""
        a = self.unwrapped_angles()
        if np.ptp(a) == 0:
            return 0.0
        slope = np.polyfit(a - a.mean(), self.z, 1)[0]
        return float(slope * 2 * math.pi)

    def estimated_views_per_rotation(self) -> int:
        """``views_per_rotation`` if set, else from the mean angular step."""
        if self.views_per_rotation is not None:
            return self.views_per_rotation
        a = self.unwrapped_angles()
        if self.n_views < 2 or np.ptp(a) == 0:
            raise ValueError("HelicalScan: cannot estimate views per rotation from fewer than 2 distinct angles")
        return round(2 * math.pi / (np.ptp(a) / (self.n_views - 1)))

    def focal_centres(self) -> np.ndarray:
        """``(views, 3)`` positions F of the detector's focal centre (mm, scanner frame)."""
        c, s = np.cos(self.angles), np.sin(self.angles)
        return np.stack([self.radius * c, self.radius * s, self.z], axis=1)

    def source_positions(self) -> np.ndarray:
        """``(views, 3)`` positions S of the focal spot, flying focal spot shifts included (mm)."""
        r = self.radius + self.ffs_radius
        a = self.angles + self.ffs_angle
        return np.stack([r * np.cos(a), r * np.sin(a), self.z + self.ffs_z], axis=1)

    def element_positions(self, views=slice(None)) -> np.ndarray:
        """``(n, rows, cols, 3)`` centres of the detector elements (mm) for the selected views."""
        F = self.focal_centres()[views]
        phi = self.angles[views]
        e = np.stack([-np.cos(phi), -np.sin(phi)], axis=1)  # towards the rotation axis
        w = np.stack([-np.sin(phi), np.cos(phi)], axis=1)
        a, b = self.detector.in_plane()
        xy = F[:, None, :2] + a[None, :, None] * e[:, None, :] + b[None, :, None] * w[:, None, :]  # (n, cols, 2)
        h = self.detector.row_heights()
        out = np.empty((F.shape[0], self.detector.rows, self.detector.cols, 3))
        out[..., :2] = xy[:, None, :, :]
        out[..., 2] = F[:, None, None, 2] + h[None, :, None]
        return out

    def rays(self, views=slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Origins (the focal spot) and unit directions, each ``(n, rows, cols, 3)``, of the rays of
        the selected views (mm, scanner frame): the ray of element (r, c) runs from S to its centre."""
        n = np.arange(self.n_views)[views].size
        check_allocation("HelicalScan.rays", 2 * 8.0 * 3 * n * self.detector.rows * self.detector.cols,
                         f"the rays of {n} views")
        P = self.element_positions(views)
        S = self.source_positions()[views][:, None, None, :]
        d = P - S
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        return np.broadcast_to(S, d.shape).copy(), d

    def subset(self, views) -> HelicalScan:
        """The same scan restricted to some views (index array, slice or boolean mask)."""
        idx = np.arange(self.n_views)[views]
        if idx.size == 0:
            raise ValueError("HelicalScan.subset: views selects no view")
        ps = None if self.photon_statistics is None else self.photon_statistics[idx]
        return dataclasses.replace(self, projections=self.projections[idx], angles=self.angles[idx], z=self.z[idx],
                                   radius=self.radius[idx], ffs_angle=self.ffs_angle[idx], ffs_z=self.ffs_z[idx],
                                   ffs_radius=self.ffs_radius[idx], photon_statistics=ps, info=dict(self.info))

    # ---- the vector form: a virtual flat detector ----------------------------------------------------
    def _flat_layout(self):
        """The virtual flat detector of :meth:`to_geometry`: per view the plane tangent to the
        cylinder at the central element; returns (column positions b (mm, along w), row heights (mm))."""
        d = self.detector
        a, b = d.in_plane()
        t = b / a * d.radius  # where each cylinder column's direction meets the plane at distance d0
        cols_b = np.linspace(t[0], t[-1], d.cols)
        gmax = float(np.max(np.abs(d.fan_angles())))
        rows_h = d.row_heights() / math.cos(gmax) if d.shape == "CYLINDRICAL" else d.row_heights()
        return cols_b, rows_h

    def to_geometry(self, image_shape, voxel_size=1.0, z_centre: float | None = None) -> ConeVec3D:
        """The scan as a :class:`recon.geometry.ConeVec3D` on a virtual flat detector (same rows and
        columns; per view the plane tangent to the cylinder at the central element, columns evenly
        spanning the cylinder's fan, rows stretched to keep the cylinder's corners), source positions
        with the flying focal spot. The volume ``image_shape`` ``(nz, ny, nx)`` of ``voxel_size`` mm is
        centred at scanner z ``z_centre`` (default: the middle of the focal centre's z range).
        :meth:`flat_projections` gives the data on that detector."""
        z0 = self._z_centre(z_centre)
        cols_b, rows_h = self._flat_layout()
        d = self.detector
        F = self.focal_centres()
        phi = self.angles
        e = np.stack([-np.cos(phi), -np.sin(phi), np.zeros_like(phi)], axis=1)
        w = np.stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)], axis=1)
        du = (cols_b[-1] - cols_b[0]) / max(d.cols - 1, 1) if d.cols > 1 else d.col_spacing
        dv = (rows_h[-1] - rows_h[0]) / max(d.rows - 1, 1) if d.rows > 1 else d.row_spacing
        centre_b = 0.5 * (cols_b[0] + cols_b[-1])
        centre_h = 0.5 * (rows_h[0] + rows_h[-1])
        vec = np.empty((self.n_views, 12))
        S = self.source_positions()
        vec[:, 0:3] = S - [0.0, 0.0, z0]
        vec[:, 3:6] = F + d.radius * e + centre_b * w - [0.0, 0.0, z0]
        vec[:, 5] += centre_h
        vec[:, 6:9] = du * w
        vec[:, 9:12] = [0.0, 0.0, dv]
        return ConeVec3D(vec, (d.rows, d.cols), image_shape, voxel_size)

    def flat_projections(self) -> np.ndarray:
        """The projections resampled (bilinearly) onto :meth:`to_geometry`'s flat detector,
        ``(views, rows, cols)`` float32; rays that miss the real detector get 0."""
        from scipy.ndimage import map_coordinates

        d = self.detector
        cols_b, rows_h = self._flat_layout()
        out = np.zeros_like(self.projections)
        # the flat pixel (b, h) at distance d0 along e from F; its ray from S meets the cylinder at (col, row)
        shift_a = self.ffs_radius * np.cos(self.ffs_angle) + self.radius * (np.cos(self.ffs_angle) - 1.0)
        shift_b = (self.radius + self.ffs_radius) * np.sin(self.ffs_angle)
        # S relative to F in (e, w, z): e points from F to the axis, so S - F = -shift_a e + shift_b w
        for k in range(self.n_views):
            sa, sb, sz = -shift_a[k], shift_b[k], self.ffs_z[k]
            da = d.radius - sa
            db = cols_b - sb  # (cols,)
            if d.shape == "CYLINDRICAL":
                lam = _cylinder_hit(sa, sb, da, db, d)
            else:  # the flat pixel lies on the real detector
                lam = np.ones(d.cols)
            col = d.column_at(sa + lam * da, sb + lam * db)
            hz = sz + lam[None, :] * (rows_h[:, None] - sz)
            row = hz / d.row_spacing + d.central_element[1]
            colg = np.broadcast_to(col[None, :], row.shape)
            out[k] = map_coordinates(self.projections[k], [row, colg], order=1, mode="constant", cval=0.0)
        return out

    def _z_centre(self, z_centre):
        if z_centre is None:
            return 0.5 * float(self.z.min() + self.z.max())
        z = float(z_centre)
        if not math.isfinite(z):
            raise ValueError(f"z_centre must be a finite number (mm), got {z_centre!r}")
        return z


def _cylinder_hit(sa, sb, da, db, d: CylindricalDetector) -> np.ndarray:
    """Parameter ``lam`` where the in-plane ray ``(sa, sb) + lam (da, db)`` (frame of the focal centre,
    axes e, w) meets the detector cylinder ``a^2 + b^2 = d0^2`` on its far side."""
    A = da * da + db * db
    B = sa * da + sb * db
    C = sa * sa + sb * sb - d.radius ** 2
    return (-B + np.sqrt(np.maximum(B * B - A * C, 0.0))) / A


# ---- writing ---------------------------------------------------------------------------------------

def write_dicom_ct_pd(folder, scan: HelicalScan, *, prefix: str = "proj", explicit_vr: bool = False,
                      overwrite: bool = False, patient_id: str = "recon-sim",
                      manufacturer: str = "recon (simulated)") -> list[str]:
    """Write ``scan`` as DICOM-CT-PD: one file per view ``{prefix}_{k+1:06d}.dcm`` in ``folder``.

    Pixel data uint16 with a per-view RescaleSlope/RescaleIntercept (``intercept = min(0, vmin)``,
    ``slope = (vmax - intercept) / 65535``: line integrals come back within ``slope / 2``); the private
    tags of :data:`TAGS` with their VRs (Implicit VR Little Endian by default, like the published
    data, where readers see the private values as raw little-endian bytes; ``explicit_vr=True`` for
    Explicit VR Little Endian). The series is written atomically (:mod:`recon.io.atomic`: a temporary
    folder renamed into place); an existing ``folder`` is filled when empty, replaced with
    ``overwrite=True`` when it holds nothing but ``.dcm`` files, refused otherwise. Returns the paths in
    view order.
    """
    from pydicom.uid import generate_uid

    if not isinstance(scan, HelicalScan):
        raise TypeError(f"write_dicom_ct_pd: scan must be a HelicalScan, got {type(scan).__name__}")
    if not np.all(np.isfinite(scan.projections)):
        raise ValueError("write_dicom_ct_pd: the projections contain NaN or Inf")
    folder = os.fspath(folder)
    if not (os.path.isdir(folder) and not os.listdir(folder)):  # an empty folder is simply filled
        check_outputs(folders=[folder], overwrite=overwrite, hint="pass overwrite=True to replace the series")
    n = scan.n_views
    names = [f"{prefix}_{k + 1:06d}.dcm" for k in range(n)]
    uids = (generate_uid(), generate_uid(), generate_uid())  # study, series, frame of reference
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    vpr = scan.estimated_views_per_rotation() if n > 1 else 1
    kind = "AXIAL" if scan.pitch == 0.0 else "HELICAL"
    with atomic_folder(folder, replaceable=lambda name: name.endswith(".dcm")) as tmp_folder:
        for k in range(n):
            _write_view(os.path.join(tmp_folder, names[k]), scan, k, explicit_vr, uids, date, time, vpr, kind,
                        patient_id, manufacturer)
    return [os.path.join(folder, name) for name in names]


def _write_view(path, scan: HelicalScan, k: int, explicit_vr: bool, uids, date, time, vpr, kind, patient_id,
                manufacturer):
    """One DICOM-CT-PD file: view ``k`` of ``scan`` (the published layout; module docstring)."""
    study, series, frame = uids
    d = scan.detector
    stored, slope, intercept = uint16_rescale(scan.projections[k])
    ds = new_dataset(CT_IMAGE_STORAGE, explicit_vr=explicit_vr)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "PROJECTION"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.Modality = "CT"
    ds.Manufacturer = manufacturer
    ds.PatientName, ds.PatientID = "Simulated^Phantom", patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
    if "kvp" in scan.info:
        ds.KVP = ds_string(float(scan.info["kvp"]))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = d.cols, d.rows  # transposed, as the published data
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope = ds_string(intercept), ds_string(slope)
    ds.RescaleType = "US"
    values = {
        "NumberofDetectorRows": d.rows, "NumberofDetectorColumns": d.cols,
        "DetectorElementTransverseSpacing": d.col_spacing, "DetectorElementAxialSpacing": d.row_spacing,
        "DetectorShape": d.shape,
        "DetectorFocalCenterAngularPosition": float(scan.angles[k]),
        "DetectorFocalCenterAxialPosition": float(scan.z[k]),
        "DetectorFocalCenterRadialDistance": float(scan.radius[k]),
        "ConstantRadialDistance": d.radius,
        "DetectorCentralElement": [d.central_element[0] + 1.0, d.central_element[1] + 1.0],  # 1-based
        "SourceAngularPositionShift": float(scan.ffs_angle[k]),
        "SourceAxialPositionShift": float(scan.ffs_z[k]),
        "SourceRadialDistanceShift": float(scan.ffs_radius[k]),
        "FlyingFocalSpotMode": scan.ffs_mode, "NumberofSourceAngularSteps": vpr,
        "TypeofProjectionData": kind, "WaterAttenuationCoefficient": ds_string(scan.water_attenuation),
    }
    if scan.photon_statistics is not None:
        values["PhotonStatistics"] = [float(x) for x in scan.photon_statistics[k]]
    for name, value in values.items():
        tag, vr, _ = TAGS[name]
        block = ds.private_block(tag >> 16, PRIVATE_CREATOR, create=True)
        block.add_new(tag & 0xFF, vr, value)
    ds.PixelData = np.ascontiguousarray(stored.T, dtype="<u2").tobytes()  # pixel (channel, row)
    ds.save_as(path, enforce_file_format=True)


# ---- reading ---------------------------------------------------------------------------------------

def _decode(elem, kind: str, where: str, name: str):
    """The values of a private element as a float64 array (kinds f, u, d) or a str (kind s)."""
    v = elem.value
    tag = f"{name} ({TAGS[name][0] >> 16:04X},{TAGS[name][0] & 0xFFFF:04X})"
    if isinstance(v, (bytes, bytearray)):
        raw = bytes(v)
        if kind == "s":
            return raw.decode("ascii", errors="replace").strip(" \x00")
        if kind == "d":
            try:
                return np.array([float(x) for x in raw.decode("ascii").strip(" \x00").split("\\")])
            except (UnicodeDecodeError, ValueError):
                raise ValueError(f"{where}: {tag} is not a decimal string: {raw[:32]!r}") from None
        size = 4 if kind == "f" else 2
        if len(raw) == 0 or len(raw) % size:
            if kind == "u" and len(raw) == 4:
                return np.frombuffer(raw, "<u4").astype(np.float64)
            raise ValueError(f"{where}: {tag} holds {len(raw)} bytes, not a whole number of "
                             f"{'float32' if kind == 'f' else 'uint16'} values")
        return np.frombuffer(raw, "<f4" if kind == "f" else "<u2").astype(np.float64)
    if kind == "s":
        return (str(v[0]) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else str(v)).strip()
    try:
        vals = v if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]
        return np.array([float(x) for x in vals], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {tag} is not numeric: {v!r}") from None


class _Header:
    """Tag access for one file with clear errors and warn-once defaults."""

    def __init__(self, ds, where: str, warned: set):
        self.ds, self.where, self.warned = ds, where, warned

    def get(self, name: str, count: int | None = 1, required: bool = True, default=None, note: str = ""):
        tag, _, kind = TAGS[name]
        elem = self.ds.get(tag)
        label = f"{name} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if elem is None or elem.value is None or (hasattr(elem.value, "__len__") and len(elem.value) == 0):
            if required:
                raise ValueError(f"{self.where}: required tag {label} is missing")
            if name not in self.warned:
                self.warned.add(name)
                warnings.warn(f"DICOM-CT-PD: tag {label} is missing; using {note or default!r}",
                              DicomCtPdWarning, stacklevel=4)
            return default
        val = _decode(elem, kind, self.where, name)
        if kind == "s":
            return val.upper()
        if count is not None and val.size != count:
            raise ValueError(f"{self.where}: {label} must hold {count} value(s), got {val.size}")
        if not np.all(np.isfinite(val)):
            raise ValueError(f"{self.where}: {label} is NaN or Inf")
        return float(val[0]) if count == 1 else val


def _files(folder_or_files) -> list[str]:
    if isinstance(folder_or_files, (str, os.PathLike)):
        p = os.fspath(folder_or_files)
        if os.path.isdir(p):
            names = sorted(f for f in os.listdir(p) if not f.startswith("."))
            files = [os.path.join(p, f) for f in names if os.path.isfile(os.path.join(p, f))]
        elif os.path.isfile(p):
            files = [p]
        else:
            raise FileNotFoundError(f"read_dicom_ct_pd: no such file or folder: {p}")
    else:
        files = [os.fspath(f) for f in folder_or_files]
    if not files:
        raise ValueError(f"read_dicom_ct_pd: no files in {folder_or_files}")
    return files


def _pixels(ds, where: str, rows: int, cols: int) -> np.ndarray:
    """The stored values of one view as (det rows, det cols) after rescale, float64."""
    if ds.get("PixelData") is None:
        raise ValueError(f"{where}: no pixel data")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and ts.is_compressed:
        raise ValueError(f"{where}: compressed pixel data ({ts.name}) is not supported; decompress the files first")
    R, C = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if (R, C) != (cols, rows):
        raise ValueError(f"{where}: Rows x Columns = {R} x {C}, but the detector has {cols} columns x {rows} rows "
                         "(DICOM-CT-PD stores Rows = detector columns, Columns = detector rows)")
    bits = int(ds.get("BitsAllocated", 16) or 16)
    if bits != 16:
        raise ValueError(f"{where}: BitsAllocated = {bits}; DICOM-CT-PD pixel data are 16-bit")
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    raw = ds.PixelData
    need = R * C * 2
    if len(raw) < need:
        raise ValueError(f"{where}: truncated pixel data: {len(raw)} bytes, {need} needed for {R} x {C} 16-bit values")
    stored = np.frombuffer(raw, "<i2" if signed else "<u2", count=R * C).reshape(R, C)
    try:
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: RescaleSlope/RescaleIntercept are not numbers") from None
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        raise ValueError(f"{where}: bad RescaleSlope {slope!r} / RescaleIntercept {intercept!r}")
    return stored.T.astype(np.float64) * slope + intercept


def _same(where: str, name: str, value, first, rel: float = 1e-6):
    a, b = np.asarray(value, dtype=np.float64), np.asarray(first, dtype=np.float64)
    if a.shape != b.shape or not np.allclose(a, b, rtol=rel, atol=0.0):
        raise ValueError(f"{where}: {name} = {value!r} differs from the first file's {first!r}; one scan per series")


def read_dicom_ct_pd(folder_or_files) -> HelicalScan:
    """Read a DICOM-CT-PD projection series (a folder, one file, or a list of files) into a
    :class:`HelicalScan` (projections as line integrals, float32).

    Views are ordered by InstanceNumber when every file has a distinct one, else by file name.
    Required tags (ValueError naming the tag and file when missing or bad): the detector's rows,
    columns, element spacings, focal-centre angle/z/radius, ConstantRadialDistance and
    DetectorCentralElement. Optional tags get defaults and one :class:`DicomCtPdWarning` naming the
    tag: DetectorShape (CYLINDRICAL), the flying focal spot shifts (0) and mode (FFSNONE),
    NumberofSourceAngularSteps (from the angles), WaterAttenuationCoefficient
    (:data:`DEFAULT_WATER_ATTENUATION`), PhotonStatistics (none). Unknown detector shapes and flying
    focal spot modes, compressed or truncated pixel data, sizes over the limits (:data:`MAX_DET_ROWS`,
    :data:`MAX_DET_COLS`, :data:`MAX_FILE_BYTES` per file) and detector parameters that change from file
    to file are clear errors; nothing is allocated before the sizes are checked.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = _files(folder_or_files)
    headers = []
    warned: set = set()
    for f in files:
        size = os.path.getsize(check_input_file(f))
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{f}: {size} bytes is more than a DICOM-CT-PD view file may hold ({MAX_FILE_BYTES})")
        try:
            ds = pydicom.dcmread(f, force=False)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, OverflowError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{f}: not a readable DICOM file: {msg}") from None
        headers.append((f, ds))
    inst = [h[1].get("InstanceNumber") for h in headers]
    if all(i is not None for i in inst) and len({int(i) for i in inst}) == len(inst):
        headers.sort(key=lambda h: int(h[1].InstanceNumber))

    f0, ds0 = headers[0]
    h0 = _Header(ds0, f0, warned)
    rows = int(h0.get("NumberofDetectorRows"))
    cols = int(h0.get("NumberofDetectorColumns"))
    if not (1 <= rows <= MAX_DET_ROWS and 1 <= cols <= MAX_DET_COLS):
        raise ValueError(f"{f0}: detector of {rows} rows x {cols} columns is outside the limits "
                         f"[1, {MAX_DET_ROWS}] x [1, {MAX_DET_COLS}]")
    check_read_size(nbytes_of((len(headers), rows, cols), 4), f"{f0}: {len(headers)} views of {rows} x {cols} "
                    "elements")
    shape = h0.get("DetectorShape", required=False, default="CYLINDRICAL")
    if shape not in DETECTOR_SHAPES:
        raise ValueError(f"{f0}: DetectorShape (7029,100B) = {shape!r} is not supported (recon reads "
                         f"{', '.join(DETECTOR_SHAPES)})")
    ffs_mode = h0.get("FlyingFocalSpotMode", required=False, default="FFSNONE")
    if ffs_mode not in FFS_MODES:
        raise ValueError(f"{f0}: FlyingFocalSpotMode (7033,100E) = {ffs_mode!r} is unknown (one of "
                         f"{', '.join(FFS_MODES)})")
    ce = h0.get("DetectorCentralElement", count=2) - 1.0  # 1-based in the file
    det = CylindricalDetector(rows, cols, h0.get("DetectorElementTransverseSpacing"),
                              h0.get("DetectorElementAxialSpacing"), h0.get("ConstantRadialDistance"),
                              (float(ce[0]), float(ce[1])), shape)
    vpr = h0.get("NumberofSourceAngularSteps", required=False, default=None, note="an estimate from the angles")
    water = h0.get("WaterAttenuationCoefficient", required=False, default=DEFAULT_WATER_ATTENUATION)

    n = len(headers)
    proj = np.empty((n, rows, cols), dtype=np.float32)
    per = {k: np.empty(n) for k in ("angles", "z", "radius", "dphi", "dz", "drho")}
    stats = []
    for k, (f, ds) in enumerate(headers):
        h = _Header(ds, f, warned)
        if k:
            for name, first in (("NumberofDetectorRows", rows), ("NumberofDetectorColumns", cols),
                                ("DetectorElementTransverseSpacing", det.col_spacing),
                                ("DetectorElementAxialSpacing", det.row_spacing),
                                ("ConstantRadialDistance", det.radius)):
                _same(f, name, h.get(name), first)
            _same(f, "DetectorCentralElement", h.get("DetectorCentralElement", count=2) - 1.0, ce)
            for name, first, dflt in (("DetectorShape", shape, "CYLINDRICAL"), ("FlyingFocalSpotMode", ffs_mode,
                                                                                 "FFSNONE")):
                val = h.get(name, required=False, default=dflt)
                if val != first:
                    raise ValueError(f"{f}: {name} = {val!r} differs from the first file's {first!r}")
        per["angles"][k] = h.get("DetectorFocalCenterAngularPosition")
        per["z"][k] = h.get("DetectorFocalCenterAxialPosition")
        per["radius"][k] = h.get("DetectorFocalCenterRadialDistance")
        per["dphi"][k] = h.get("SourceAngularPositionShift", required=False, default=0.0)
        per["dz"][k] = h.get("SourceAxialPositionShift", required=False, default=0.0)
        per["drho"][k] = h.get("SourceRadialDistanceShift", required=False, default=0.0)
        ps = h.get("PhotonStatistics", count=None, required=False, default=None, note="no photon statistics") \
            if k == 0 or stats else None
        if ps is not None:
            stats.append(ps)
        proj[k] = _pixels(ds, f, rows, cols)
    photon = None
    if stats and len(stats) == n and len({s.size for s in stats}) == 1:
        photon = np.stack(stats)
    elif stats:
        warnings.warn("DICOM-CT-PD: PhotonStatistics (7033,1065) is missing in some files or changes length; "
                      "ignored", DicomCtPdWarning, stacklevel=2)
    info = {"manufacturer": str(ds0.get("Manufacturer", "") or ""), "files": [h[0] for h in headers]}
    if ds0.get("KVP") not in (None, ""):
        info["kvp"] = float(ds0.KVP)
    kind = h0.get("TypeofProjectionData", required=False, default=None, note="unknown (from z)")
    if kind is not None:
        info["projection_type"] = kind
    return HelicalScan(proj, per["angles"], per["z"], per["radius"], det, per["dphi"], per["dz"], per["drho"],
                       ffs_mode, int(vpr) if vpr else None, float(np.ravel(water)[0]), photon, info)
