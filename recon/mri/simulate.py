"""Synthetic multicoil MRI data for tests, benchmarks and demos (no real data needed).

``textured_phantom``: the Shepp-Logan-like head of :func:`fastmri_data.phantom` made less
piecewise-constant (a smooth random texture of +-15 % multiplies the intensities, Gaussian-filtered
noise of correlation length ~2 pixels) and complex (a smooth random phase, as real MR images have),
so that neither TV nor wavelets get an unfairly easy image.

``simulate_noncartesian``: coil images ``S_c x`` sampled on a trajectory by recon's NUFFT (at 1e-6
accuracy) plus complex Gaussian noise. Write fastMRI-format Cartesian files with
:func:`fastmri_data.write_fastmri_multicoil` and ISMRMRD files with :func:`recon.io.write_ismrmrd`.
"""

from __future__ import annotations

import numpy as np


def textured_phantom(num_slices: int = 1, ny: int = 128, nx: int = 128, *, seed: int = 0,
                     texture: float = 0.15, phase: float = 0.5) -> np.ndarray:
    """Complex64 ``(num_slices, ny, nx)`` phantom: fastMRI-data's head phantom times
    ``1 + texture * t`` (``t`` smooth unit-variance noise) times ``exp(i phase * pi * p)`` (``p`` a
    very smooth field of unit-order amplitude)."""
    from scipy.ndimage import gaussian_filter

    from fastmri_data import phantom

    rng = np.random.default_rng(seed)
    img = phantom(num_slices, ny, nx).astype(np.float64)
    out = np.empty(img.shape, dtype=np.complex64)
    for s in range(num_slices):
        t = gaussian_filter(rng.standard_normal((ny, nx)), 2.0)
        t /= t.std()
        p = gaussian_filter(rng.standard_normal((ny, nx)), max(ny, nx) / 8)
        p /= np.abs(p).max()
        out[s] = img[s] * (1 + texture * t) * np.exp(1j * phase * np.pi * p)
    return out


def simulate_noncartesian(image, maps, coord, noise_std: float = 0.0, *, seed: int = 0) -> np.ndarray:
    """Multicoil samples ``(c, *coord.shape[:-1])`` complex64 of ``image`` (``im_shape``) with coil
    ``maps`` (c, *im_shape) on ``coord`` (cycles/FOV), plus complex Gaussian noise of standard
    deviation ``noise_std`` per real/imaginary part."""
    from ..ops.nufft import Nufft

    image = np.asarray(image)
    maps = np.asarray(maps)
    op = Nufft(np.asarray(coord, dtype=np.float64), image.shape, tol=1e-6, dtype="complex128")
    y = op((maps * image).astype(np.complex128))
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        y = y + noise_std * (rng.standard_normal(y.shape) + 1j * rng.standard_normal(y.shape))
    return y.astype(np.complex64)
