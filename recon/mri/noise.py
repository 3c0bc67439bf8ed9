"""Noise prewhitening from noise scans (receiver noise decorrelation).

Model: the receiver noise of ``c`` coils is zero-mean complex Gaussian with covariance
``Psi = E[n n^H]`` (c x c, Hermitian positive definite), the same for every k-space sample. With the
Cholesky factor ``Psi = L L^H``, the whitening matrix ``W = L^{-1}`` makes ``W n`` white:
``E[(W n)(W n)^H] = W Psi W^H = I``. Applying ``W`` along the coil axis of the k-space (and
estimating coil maps afterwards, from the whitened data) turns a correlated-noise least-squares
problem into an ordinary one, so SENSE/CS reconstructions weight coils by their true SNR.

Units: ``Psi`` is in (k-space units)^2 of the noise scan. When the noise scan was taken with a
different dwell time than the imaging readouts, its variance differs by the bandwidth ratio; pass
``scale = noise_dwell / data_dwell`` so that the whitened data have unit noise variance
(the ISMRMRD / Gadgetron convention).
"""

from __future__ import annotations

import numpy as np


def noise_covariance(noise, coil_axis: int = 0) -> np.ndarray:
    """Sample covariance ``Psi = N N^H / (n - 1)`` of noise samples (coils along ``coil_axis``, every
    other axis counts as samples). The noise is taken as zero-mean. Returns complex128 (c, c)."""
    n = np.moveaxis(np.asarray(noise), coil_axis, 0)
    if not np.iscomplexobj(n):
        raise TypeError(f"noise: expected complex samples, got {n.dtype}")
    c = n.shape[0]
    n = n.reshape(c, -1).astype(np.complex128)
    if n.shape[1] < 2:
        raise ValueError("noise: need at least 2 samples per coil")
    if not np.isfinite(n).all():
        raise ValueError("noise: contains NaN or Inf")
    return (n @ n.conj().T) / (n.shape[1] - 1)


def whitening_matrix(cov, scale: float = 1.0) -> np.ndarray:
    """``W = L^{-1}`` with ``L`` the lower Cholesky factor of ``cov * scale`` (see module docstring).
    Raises ValueError when the covariance is not Hermitian positive definite (a dead coil)."""
    cov = np.asarray(cov, dtype=np.complex128)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov: expected a square (c, c) matrix, got {cov.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if not np.allclose(cov, cov.conj().T, rtol=1e-6, atol=1e-12 * np.abs(cov).max()):
        raise ValueError("cov: not Hermitian")
    try:
        L = np.linalg.cholesky(0.5 * (cov + cov.conj().T) * scale)
    except np.linalg.LinAlgError:
        raise ValueError("cov: not positive definite (a coil without noise, or fewer noise samples than "
                         "coils?)") from None
    import scipy.linalg

    return scipy.linalg.solve_triangular(L, np.eye(cov.shape[0]), lower=True)


def prewhiten(kspace, noise=None, *, cov=None, scale: float = 1.0, coil_axis: int = 0):
    """Whiten ``kspace`` along ``coil_axis`` with ``W = chol(Psi)^{-1}``, ``Psi`` from the noise
    samples ``noise`` (same coil axis) or given as ``cov``. Returns ``(whitened, W)``: the whitened
    array keeps ``kspace``'s dtype (complex64 stays complex64); zeros (unacquired points) stay zero."""
    if (noise is None) == (cov is None):
        raise ValueError("give exactly one of noise and cov")
    if cov is None:
        cov = noise_covariance(noise, coil_axis)
    W = whitening_matrix(cov, scale)
    k = np.asarray(kspace)
    if k.shape[coil_axis] != W.shape[0]:
        raise ValueError(f"kspace has {k.shape[coil_axis]} coils along axis {coil_axis}, the noise {W.shape[0]}")
    out = np.moveaxis(np.tensordot(W, np.moveaxis(k, coil_axis, 0), axes=(1, 0)), 0, coil_axis)
    return out.astype(np.result_type(k.dtype, np.complex64), copy=False), W
