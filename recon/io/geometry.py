"""Where an image volume sits in the patient: the one home of recon's image-to-patient geometry.

A recon volume has axes ``(z, y, x)`` (index ``[k, j, i]``) and voxel size ``(dz, dy, dx)`` in mm.
Patient coordinates are DICOM's LPS (mm): +X towards the patient's left, +Y posterior, +Z superior.

``direction`` is a 3x3 matrix whose **columns** are the LPS unit vectors along which the image
indices i (x, along a row), j (y, down the rows) and k (z, through the slices) increase. The default
(identity) is an axial stack displayed the radiological way: x to the patient's left, y posterior,
z towards the head. ``origin_mm`` is the LPS position of the centre of voxel ``[0, 0, 0]``. The centre
of voxel ``[k, j, i]`` is at::

    p = origin + direction @ (i * dx, j * dy, k * dz)

Which voxel sits at the centre, per modality (the one home of this convention):

* **MRI** (``default_origin``, the writers' default): the voxel at index ``n // 2`` of each axis sits
  at (0, 0, 0), the centre of the centred FFT/NUFFT grid (``recon.conventions.centred_positions``).
* **CT** (``centred_origin``): the grid's geometric centre, index ``(n - 1) / 2`` of each axis, sits at
  the given centre (default (0, 0, 0)): recon's CT geometries put the rotation axis through the
  geometric centre of the image (column ``c`` at ``x = (c - (nx - 1) / 2) dx``, ``recon.geometry``).
  For even sizes the two differ by half a voxel. Every CT writer and reader (``recon.ct``: the
  pipeline's DICOM/NIfTI outputs, ``recon.ct.ct_grid_placement`` for priors and registration) uses
  ``centred_origin``, so a CT image written and read back lands on the same grid.

NIfTI (``write_nifti``): the data array is indexed ``(i, j, k) = (x, y, z)`` (``volume.transpose``
of the last three axes; a leading time axis becomes NIfTI's 4th), and the affine maps ``(i, j, k)``
to RAS+ mm: ``affine = diag(-1, -1, 1, 1) @ [[direction * (dx, dy, dz), origin], [0, 0, 0, 1]]``
(LPS to RAS flips the first two axes). With the default direction the axis codes are ``('L', 'P', 'S')``.

DICOM (``write_dicom_series``): one file per z slice; ImageOrientationPatient is
``direction[:, 0]`` (row direction: x) then ``direction[:, 1]`` (column direction: y),
ImagePositionPatient of slice k is ``origin + direction[:, 2] * k * dz``, PixelSpacing is
``(dy, dx)`` (between rows, between columns), Rows = ny, Columns = nx.

ISMRMRD acquisitions carry ``read_dir``, ``phase_dir``, ``slice_dir`` (LPS unit vectors of the
readout x, phase y and slice z directions) and ``position`` (LPS centre of the slice):
``geometry_from_ismrmrd`` turns them into ``(direction, origin)``.
"""

from __future__ import annotations

import numpy as np

#: LPS -> RAS (NIfTI world coordinates).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def check_voxel_size(voxel_size_mm, ndim: int = 3) -> np.ndarray:
    """Voxel size (dz, dy, dx) in mm as float64; a 2-tuple (dy, dx) gets dz = 1. Must be positive, finite."""
    v = np.atleast_1d(np.asarray(voxel_size_mm, dtype=np.float64))
    if v.shape == (2,):
        v = np.r_[1.0, v]
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"voxel_size_mm must be positive (dz, dy, dx) or (dy, dx) in mm, got {voxel_size_mm!r}")
    return v


def check_direction(direction) -> np.ndarray:
    """A 3x3 orthonormal matrix (columns: LPS directions of x, y, z); None gives the identity."""
    if direction is None:
        return np.eye(3)
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != (3, 3) or not np.all(np.isfinite(d)):
        raise ValueError(f"direction must be a finite 3x3 matrix, got shape {d.shape}")
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        raise ValueError("direction must be orthonormal (columns: unit vectors of x, y, z in LPS)")
    return d


def default_origin(shape_zyx, voxel_size_mm, direction=None) -> np.ndarray:
    """LPS position of voxel [0,0,0] so that voxel (nz//2, ny//2, nx//2) sits at the origin."""
    nz, ny, nx = (int(n) for n in shape_zyx)
    dz, dy, dx = check_voxel_size(voxel_size_mm)
    return -check_direction(direction) @ np.array([nx // 2 * dx, ny // 2 * dy, nz // 2 * dz])


def centred_origin(shape_zyx, voxel_size_mm, direction=None, centre_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """LPS position of voxel [0,0,0] so that the grid's geometric centre (index ``(n - 1) / 2`` of each
    axis) sits at ``centre_mm``: the CT convention (module docstring)."""
    nz, ny, nx = (int(n) for n in shape_zyx)
    dz, dy, dx = check_voxel_size(voxel_size_mm)
    c = np.asarray(centre_mm, dtype=np.float64)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ValueError(f"centre_mm must be 3 finite LPS coordinates (mm), got {centre_mm!r}")
    return c - check_direction(direction) @ np.array([(nx - 1) * dx, (ny - 1) * dy, (nz - 1) * dz]) / 2.0


def voxel_to_lps(shape_zyx, voxel_size_mm, direction=None, origin_mm=None) -> np.ndarray:
    """4x4 matrix mapping homogeneous (i, j, k, 1) = (x, y, z index, 1) to LPS mm."""
    v = check_voxel_size(voxel_size_mm)
    d = check_direction(direction)
    o = default_origin(shape_zyx, v, d) if origin_mm is None else np.asarray(origin_mm, dtype=np.float64)
    if o.shape != (3,) or not np.all(np.isfinite(o)):
        raise ValueError(f"origin_mm must be 3 finite LPS coordinates, got {origin_mm!r}")
    m = np.eye(4)
    m[:3, :3] = d * v[::-1][None, :]  # columns scaled by (dx, dy, dz)
    m[:3, 3] = o
    return m


def nifti_affine(shape_zyx, voxel_size_mm, direction=None, origin_mm=None) -> np.ndarray:
    """The NIfTI (RAS+) affine of a recon volume (see module docstring)."""
    flip = np.eye(4)
    flip[:3, :3] = LPS_TO_RAS
    return flip @ voxel_to_lps(shape_zyx, voxel_size_mm, direction, origin_mm)


def from_nifti_affine(affine):
    """Inverse of ``nifti_affine``: ``(voxel_size_mm (dz, dy, dx), direction, origin_mm)`` in LPS."""
    a = np.asarray(affine, dtype=np.float64)
    lps = LPS_TO_RAS @ a[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing == 0):
        raise ValueError("NIfTI affine has a zero-length axis")
    return spacing[::-1].copy(), lps / spacing[None, :], LPS_TO_RAS @ a[:3, 3]


def geometry_from_ismrmrd(slice_geometry: dict, shape_zyx, voxel_size_mm):
    """``(direction, origin_mm)`` of a volume from ``IsmrmrdData.slice_geometry`` (slice -> dict).

    Uses slice 0's ``read_dir``/``phase_dir``/``slice_dir``/``position`` (LPS, the centre of the
    slice; voxel ``n // 2`` of x and y sits there). For 3D-encoded data (one "slice") the position
    is the volume centre, so the z origin is also moved back by ``nz // 2`` voxels. Zero direction
    vectors (files that leave them unset) fall back to the identity.
    """
    g = slice_geometry[min(slice_geometry)]
    cols = [np.asarray(g[k], dtype=np.float64) for k in ("read_dir", "phase_dir", "slice_dir")]
    if any(np.linalg.norm(c) == 0 for c in cols):
        d = np.eye(3)
    else:
        d = check_direction(np.stack([c / np.linalg.norm(c) for c in cols], axis=1))
    nz, ny, nx = (int(n) for n in shape_zyx)
    dz, dy, dx = check_voxel_size(voxel_size_mm)
    back_z = nz // 2 * dz if len(slice_geometry) == 1 else 0.0
    origin = np.asarray(g["position"], dtype=np.float64) - d @ np.array([nx // 2 * dx, ny // 2 * dy, back_z])
    return d, origin
