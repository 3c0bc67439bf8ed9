#!/usr/bin/env python
"""Convert the real MRI raw data of /work/shared/data/mri into the files bundled under recon/data/mri.

Usage (from the repository root)::

    PYTHONPATH=. python tools/convert_shared_mri.py [--src /work/shared/data/mri] [--dst recon/data/mri]

1. ``brain_8coil_poisson_ksp.npy`` (SigPy MRI tutorial, ``data/cartesian_ksp.npy``, BSD-3-Clause):
   8-coil Cartesian brain k-space ``(8, 230, 180)`` complex64, already Poisson-disc undersampled
   (12.4 % of the points are non-zero; zeros mean "not acquired"). Written as a fastMRI-format
   multicoil HDF5 ``brain_8coil_poisson.h5``: ``kspace`` ``(1, 8, 230, 180)`` (one slice; height 230
   is ISMRMRD x, width 180 is y; the image is ``ifft2c`` of it, no readout oversampling, so the
   recon size equals the encoded size), an ``ismrmrd_header`` (nominal 1 mm pixels: the source gives
   no geometry), no ``reconstruction_rss`` (there is no fully sampled reference) and no ``mask``
   dataset (fastMRI's mask is 1D; here the non-zero pattern is the 2D mask).
   Gzip-compressed (level 9, shuffle).

2. ``cardiac_radial_12coil_25spokes.mat`` (gpuNUFFT demo data, MIT; cite Knoll et al., gpuNUFFT,
   ISMRM 2014): ``rawdata`` ``(256, 25, 12)`` (samples, spokes, coils), ``k`` ``(256, 25)`` complex
   ``kx + i ky`` in cycles per sample (``[-0.5, 0.5]``). Written as ISMRMRD ``cardiac_radial_12coil_25spokes.h5``
   with ``recon.io.write_ismrmrd``: one acquisition per spoke, 12 channels, 256 samples, 2D
   trajectory. The matrix is 256 x 256 (as in the gpuNUFFT demo: ``imwidth = nFE``; the readout is
   oversampled, the heart fills the central part), so cycles/FOV = ``k * 256`` with the axis order
   ``(ky, kx) = (imag k, real k)``; stored in ISMRMRD's normalised units (+-0.5, declared in the
   header). Nominal 1 mm pixels. Complex128 source data are stored as complex64.

Both files are checked after writing (read back with recon's readers, compared with the source).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BRAIN_SRC = "brain_8coil_poisson_ksp.npy"
CARDIAC_SRC = "cardiac_radial_12coil_25spokes.mat"
BRAIN_DST = "brain_8coil_poisson.h5"
CARDIAC_DST = "cardiac_radial_12coil_25spokes.h5"
CARDIAC_MATRIX = 256


def convert_brain(src: str, dst: str) -> str:
    import h5py

    from fastmri_data.header import build_ismrmrd_header

    ksp = np.load(src)
    if ksp.shape != (8, 230, 180) or ksp.dtype != np.complex64:
        raise ValueError(f"{src}: expected (8, 230, 180) complex64, got {ksp.shape} {ksp.dtype}")
    nc, h, w = ksp.shape
    xml = build_ismrmrd_header(
        (h, w, 1), (float(h), float(w), 1.0), (h, w, 1), (float(h), float(w), 1.0),
        limits={"kspace_encoding_step_1": (0, w - 1, w // 2), "kspace_encoding_step_2": (0, 0, 0),
                "slice": (0, 0, 0)},
        receiver_channels=nc, patient_id="sigpy-mri-tutorial-brain",
    )
    with h5py.File(dst, "w") as hf:
        hf.create_dataset("kspace", data=ksp[None], compression="gzip", compression_opts=9, shuffle=True,
                          chunks=(1, 1, h, w))
        hf.create_dataset("ismrmrd_header", data=np.bytes_(xml.encode("utf-8")))
        hf.attrs["acquisition"] = "BRAIN_POISSON_DISC"
        hf.attrs["patient_id"] = "sigpy-mri-tutorial-brain"
        hf.attrs["source"] = "mikgroup/sigpy-mri-tutorial data/cartesian_ksp.npy (BSD-3-Clause, (c) 2019 mikgroup)"
        hf.attrs["undersampled"] = "Poisson-disc, 2D; zero entries were not acquired"
    # check
    from fastmri_data import read_fastmri

    vol = read_fastmri(dst)
    if not np.array_equal(vol.kspace[0], ksp):
        raise RuntimeError(f"{dst}: read-back differs from the source")
    return dst


def cardiac_arrays(src: str):
    """(samples (coil, spoke, readout) complex64, coord (spoke, readout, 2) cycles/FOV, N) from the .mat."""
    import scipy.io

    m = scipy.io.loadmat(src)
    raw, k = m["rawdata"], m["k"]
    if raw.shape != (256, 25, 12) or k.shape != (256, 25):
        raise ValueError(f"{src}: expected rawdata (256, 25, 12) and k (256, 25), got {raw.shape}, {k.shape}")
    N = CARDIAC_MATRIX
    samples = np.ascontiguousarray(raw.transpose(2, 1, 0)).astype(np.complex64)
    coord = np.stack([k.imag.T, k.real.T], axis=-1) * N
    coord = np.clip(coord, -N / 2, N / 2).astype(np.float32)  # |k| reaches 0.5 exactly
    return samples, coord, N


def convert_cardiac(src: str, dst: str) -> str:
    from recon.io import read_ismrmrd, write_ismrmrd

    samples, coord, N = cardiac_arrays(src)
    write_ismrmrd(dst, samples=samples, trajectory=coord, image_shape=(N, N), trajectory_type="radial",
                  trajectory_units="normalized", fov_mm=(1.0, float(N), float(N)),
                  patient_id="gpuNUFFT-radial-cardiac")
    d = read_ismrmrd(dst)
    s, t = d.slice_samples(0)
    if not np.array_equal(s, samples) or np.abs(t - coord).max() > 1e-3:
        raise RuntimeError(f"{dst}: read-back differs from the source")
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default="/work/shared/data/mri", help="folder with the shared raw files")
    ap.add_argument("--dst", default=os.path.join(ROOT, "recon", "data", "mri"), help="output folder")
    a = ap.parse_args(argv)
    os.makedirs(a.dst, exist_ok=True)
    for fn, s, d in ((convert_brain, BRAIN_SRC, BRAIN_DST), (convert_cardiac, CARDIAC_SRC, CARDIAC_DST)):
        out = fn(os.path.join(a.src, s), os.path.join(a.dst, d))
        print(f"{out}: {os.path.getsize(out) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
