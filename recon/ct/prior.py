"""Prior images for prior-image reconstruction (PICCS): reading them in attenuation units and knowing
where they sit in the patient.

Units: recon's CT images hold linear attenuation in **1/mm**. A DICOM CT series holds Hounsfield
units (after RescaleSlope/RescaleIntercept) and is converted with the water value:
``mu = mu_water * (1 + HU / 1000)`` (air -1000 HU -> 0, water 0 HU -> mu_water). ``mu_water`` comes
from the caller (e.g. the new scan's :attr:`HelicalScan.water_attenuation`, DICOM-CT-PD tag
7041,1001) or defaults to :data:`recon.io.dicom_ct_pd.DEFAULT_WATER_ATTENUATION` (0.0193/mm, water
at ~70 keV, the effective energy of a 120 kVp beam). NIfTI and ``.npy`` priors are taken in 1/mm
unless ``units="HU"``.

Placement: a :class:`PriorImage` carries ``direction`` (3x3, columns: the LPS unit vectors along
which the x, y, z indices grow) and ``origin`` (LPS mm of voxel ``[0, 0, 0]``), the conventions of
:mod:`recon.io.geometry`, read from the DICOM (ImageOrientationPatient/ImagePositionPatient) or
NIfTI (affine) header; a ``.npy`` prior gets ``voxel_size`` from the caller and the placement of a
recon CT grid (:func:`ct_grid_placement`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ..io.dicom import is_dicom, read_dicom_series
from ..io.dicom_ct_pd import DEFAULT_WATER_ATTENUATION
from ..io.geometry import centred_origin, check_direction, check_voxel_size
from ..io.nifti import read_nifti

__all__ = ["PRIOR_UNITS", "PriorImage", "ct_grid_placement", "hu_to_mu", "mu_to_hu", "read_prior"]

PRIOR_UNITS = ("1/mm", "HU")


def _voxel_size(v) -> np.ndarray:
    """(dz, dy, dx) mm from a scalar, (dy, dx) or (dz, dy, dx)."""
    return check_voxel_size((v,) * 3 if np.ndim(v) == 0 else v)


def ct_grid_placement(shape_zyx, voxel_size, centre_lps=(0.0, 0.0, 0.0)):
    """``(direction, origin)`` of a recon CT image grid in patient LPS coordinates (supine, head first):
    identity direction (x to the patient's left, rows towards posterior, slices towards the head; recon's
    +y, row 0, is anterior) and the grid's geometric centre at ``centre_lps`` (mm), the CT convention of
    :func:`recon.io.geometry.centred_origin` (column ``c`` at ``x = (c - (nx - 1) / 2) dx`` as in
    :mod:`recon.geometry`)."""
    shape = tuple(int(n) for n in shape_zyx)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3:
        raise ValueError(f"ct_grid_placement: expected a (z, y, x) or (y, x) shape, got {shape_zyx!r}")
    try:
        return np.eye(3), centred_origin(shape, _voxel_size(voxel_size), None, centre_lps)
    except ValueError as exc:
        raise ValueError(f"ct_grid_placement: {exc}") from None


def _mu_water(mu_water) -> float:
    w = DEFAULT_WATER_ATTENUATION if mu_water is None else mu_water
    if isinstance(w, bool) or not isinstance(w, (int, float, np.number)) or not (np.isfinite(w) and w > 0):
        raise ValueError(f"mu_water: expected a positive attenuation in 1/mm, got {mu_water!r}")
    return float(w)


def hu_to_mu(hu, mu_water: float | None = None) -> np.ndarray:
    """Hounsfield units to attenuation (1/mm): ``mu_water * (1 + HU / 1000)`` (float32)."""
    return (_mu_water(mu_water) * (1.0 + np.asarray(hu, dtype=np.float64) / 1000.0)).astype(np.float32)


def mu_to_hu(mu, mu_water: float | None = None) -> np.ndarray:
    """Attenuation (1/mm) to Hounsfield units: ``1000 * (mu / mu_water - 1)`` (float32)."""
    return (1000.0 * (np.asarray(mu, dtype=np.float64) / _mu_water(mu_water) - 1.0)).astype(np.float32)


@dataclasses.dataclass
class PriorImage:
    """A prior image in 1/mm: ``image`` ``(z, y, x)`` float32 (one slice: ``nz = 1``), ``voxel_size``
    ``(dz, dy, dx)`` mm, ``direction`` 3x3 and ``origin`` (LPS mm of voxel ``[0, 0, 0]``; module
    docstring), ``source`` (where it came from)."""

    image: np.ndarray
    voxel_size: tuple
    direction: np.ndarray
    origin: np.ndarray
    source: str = ""

    def __post_init__(self):
        img = np.asarray(self.image)
        if img.ndim == 2:
            img = img[None]
        if img.ndim != 3 or min(img.shape) < 1 or img.dtype.kind not in "fiu":
            raise ValueError(f"PriorImage: image must be a real (z, y, x) or (y, x) array, got shape {np.shape(self.image)}")
        if not np.all(np.isfinite(img)):
            raise ValueError("PriorImage: image contains NaN or Inf")
        self.image = np.ascontiguousarray(img, dtype=np.float32)
        self.voxel_size = tuple(float(v) for v in _voxel_size(self.voxel_size))
        self.direction = check_direction(self.direction)
        o = np.asarray(self.origin, dtype=np.float64)
        if o.shape != (3,) or not np.all(np.isfinite(o)):
            raise ValueError(f"PriorImage: origin must be 3 finite LPS coordinates (mm), got {self.origin!r}")
        self.origin = o


def read_prior(path, *, units: str | None = None, mu_water: float | None = None, voxel_size=None) -> PriorImage:
    """Read a prior image: a DICOM CT series (a folder or one file; HU unless ``units="1/mm"``), a
    NIfTI file or a ``.npy`` array (1/mm unless ``units="HU"``), converted to 1/mm with ``mu_water``
    (1/mm; default :data:`~recon.io.dicom_ct_pd.DEFAULT_WATER_ATTENUATION`). ``voxel_size``
    ``(dz, dy, dx)`` (or ``(dy, dx)``) mm is needed for ``.npy`` (it has no header) and ignored
    otherwise. The format is found from the content."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_prior: no such file or folder: {path}")
    if units is not None and units not in PRIOR_UNITS:
        raise ValueError(f"read_prior: units must be one of {PRIOR_UNITS}, got {units!r}")
    if is_dicom(path):
        vol, vs, direction, origin = read_dicom_series(path)
        units = units or "HU"
    else:
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(b"\x93NUMPY"):
            if voxel_size is None:
                raise ValueError("read_prior: a .npy prior needs voxel_size=(dz, dy, dx) in mm")
            try:
                vol = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise ValueError(f"{path}: not a readable .npy file: {exc}") from None
            if vol.ndim == 2:
                vol = vol[None]
            if vol.ndim != 3:
                raise ValueError(f"{path}: a prior must be (z, y, x) or (y, x), got shape {vol.shape}")
            vs = _voxel_size(voxel_size)
            direction, origin = ct_grid_placement(vol.shape, vs)
        else:
            vol, vs, direction, origin = read_nifti(path)
            if vol.ndim != 3:
                raise ValueError(f"{path}: a prior must be a 3D image, got shape {vol.shape}")
        units = units or "1/mm"
    vol = np.asarray(vol, dtype=np.float64)
    if not np.all(np.isfinite(vol)):
        raise ValueError(f"{path}: the prior contains NaN or Inf")
    image = hu_to_mu(vol, mu_water) if units == "HU" else vol.astype(np.float32)
    return PriorImage(image, tuple(vs), direction, origin, path)
