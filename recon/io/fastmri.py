"""fastMRI-compatible reconstruction output (the layout fastMRI's evaluate.py and leaderboard read)."""

from __future__ import annotations

import os

import numpy as np


def write_fastmri_reconstruction(path, volume, *, attrs: dict | None = None, compression: str | None = "gzip") -> str:
    """Write ``volume`` (slices, H, W) as dataset ``reconstruction`` (float32 magnitude).

    Complex input is stored as its magnitude (fastMRI targets are magnitudes). ``attrs`` become
    HDF5 attributes. Raises ValueError on a wrong shape or non-finite values. Returns ``path``.
    """
    import h5py

    v = np.asarray(volume)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3:
        raise ValueError(f"volume must be (slices, H, W) or (H, W), got shape {np.shape(volume)}")
    if not np.all(np.isfinite(v)):
        raise ValueError("volume contains NaN or Inf")
    v = np.abs(v).astype(np.float32) if np.iscomplexobj(v) else v.astype(np.float32)
    path = os.fspath(path)
    with h5py.File(path, "w") as hf:
        hf.create_dataset("reconstruction", data=v, compression=compression)
        for k, val in (attrs or {}).items():
            hf.attrs[k] = val
    return path


def read_fastmri_reconstruction(path) -> np.ndarray:
    """The ``reconstruction`` dataset of a file written by ``write_fastmri_reconstruction``."""
    from fastmri_data.io import FastMRIFormatError, _open_h5

    with _open_h5(path) as hf:
        if "reconstruction" not in hf:
            raise FastMRIFormatError(f"{os.fspath(path)}: no 'reconstruction' dataset; has {sorted(hf.keys())}")
        return np.asarray(hf["reconstruction"][()])
