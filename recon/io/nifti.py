"""NIfTI-1 output and input through nibabel; geometry as defined in ``recon.io.geometry``."""

from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_file
from .files import check_input_file, first_line
from .geometry import check_voxel_size, from_nifti_affine, nifti_affine
from .limits import check_read_size, nbytes_of


def write_nifti(path, volume, voxel_size_mm, *, direction=None, origin_mm=None, keep_complex: bool = False,
                dtype=np.float32, time_step_s: float | None = None, overwrite: bool = True) -> str:
    """Write ``volume`` ``(z, y, x)``, ``(y, x)`` or ``(t, z, y, x)`` to NIfTI-1 (``.nii`` / ``.nii.gz``).

    ``voxel_size_mm``: (dz, dy, dx) (or (dy, dx) for one slice). Complex input is stored as its
    magnitude unless ``keep_complex`` (then complex64). The affine follows
    ``recon.io.geometry.nifti_affine``; qform and sform are both set (code 1, scanner), units mm
    (and s for ``time_step_s``). Written atomically (``recon.io.atomic``). Returns ``path``.
    """
    import nibabel as nib

    v = np.asarray(volume)
    if v.ndim == 2:
        v = v[None]
    if v.ndim not in (3, 4):
        raise ValueError(f"volume must be (y, x), (z, y, x) or (t, z, y, x), got shape {np.shape(volume)}")
    if not np.all(np.isfinite(v)):
        raise ValueError("volume contains NaN or Inf")
    if np.iscomplexobj(v):
        v = v.astype(np.complex64) if keep_complex else np.abs(v).astype(dtype)
    else:
        v = v.astype(dtype)
    vs = check_voxel_size(voxel_size_mm)
    aff = nifti_affine(v.shape[-3:], vs, direction, origin_mm)
    data = np.transpose(v, (2, 1, 0) if v.ndim == 3 else (3, 2, 1, 0))
    img = nib.Nifti1Image(np.asfortranarray(data), aff)
    hdr = img.header
    hdr.set_xyzt_units("mm", "sec")
    if time_step_s is not None and v.ndim == 4:
        zooms = list(hdr.get_zooms())
        zooms[3] = float(time_step_s)
        hdr.set_zooms(zooms)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    path = os.fspath(path)
    with atomic_file(path, overwrite=overwrite) as tmp:
        nib.save(img, tmp)  # the temporary keeps the name's extension: .nii or .nii.gz
    return path


def read_nifti(path, *, max_bytes: int | None = None):
    """``(volume (..., z, y, x), voxel_size_mm (dz, dy, dx), direction, origin_mm)`` of a NIfTI file.

    Only regular files; a declared image above the read limit (``recon.io.limits``) or a damaged
    file raises ValueError (one line)."""
    import nibabel as nib

    path = check_input_file(path)
    try:
        img = nib.load(path)
        nbytes = nbytes_of(img.shape, max(img.get_data_dtype().itemsize, 8))
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise ValueError(f"{path}: not a readable NIfTI file: {first_line(exc)}") from None
    check_read_size(nbytes, f"{path}: a NIfTI image of {img.shape}", max_bytes=max_bytes)
    try:
        data = np.asarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable NIfTI file: {first_line(exc)}") from None
    if not np.all(np.isfinite(affine)):
        raise ValueError(f"{path}: the NIfTI affine is not finite")
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim not in (3, 4):
        raise ValueError(f"{path}: expected a 3D or 4D NIfTI image, got {data.ndim}D")
    vol = np.transpose(data, (2, 1, 0) if data.ndim == 3 else (3, 2, 1, 0))
    vs, direction, origin = from_nifti_affine(affine)
    return np.ascontiguousarray(vol), vs, direction, origin
