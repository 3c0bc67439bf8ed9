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

from .. import _array
from ..ops.backend import param_like
from ..ops.linear import cast_param
from .coils import all_finite

# Backends: numpy arrays or torch tensors (any device). The covariance and whitening matrix are
# computed in the backend of the noise (or ``cov``) given, the whitened data in that of the k-space.


def noise_covariance(noise, coil_axis: int = 0):
    """Sample covariance ``Psi = N N^H / (n - 1)`` of noise samples (coils along ``coil_axis``, every
    other axis counts as samples). The noise is taken as zero-mean. Returns complex128 (c, c), numpy
    or torch like ``noise`` (on its device)."""
    t = _array.is_torch(noise)
    n = _array.moveaxis(noise if t else np.asarray(noise), coil_axis, 0)
    if not _array.is_complex(n):
        raise TypeError(f"noise: expected complex samples, got {_array.dtype_name(n)}")
    c = n.shape[0]
    n = cast_param(n.reshape(c, -1), np.complex128)
    if n.shape[1] < 2:
        raise ValueError("noise: need at least 2 samples per coil")
    if not all_finite(n):
        raise ValueError("noise: contains NaN or Inf")
    return (n @ (n.mH if t else n.conj().T)) / (n.shape[1] - 1)


def whitening_matrix(cov, scale: float = 1.0):
    """``W = L^{-1}`` with ``L`` the lower Cholesky factor of ``cov * scale`` (see module docstring),
    complex128, numpy or torch like ``cov``.
    Raises ValueError when the covariance is not Hermitian positive definite (a dead coil)."""
    t = _array.is_torch(cov)
    if t:
        import torch
    cov = cast_param(cov, np.complex128)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov: expected a square (c, c) matrix, got {tuple(cov.shape)}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    covH = cov.mH if t else cov.conj().T
    atol = 1e-12 * float(abs(cov).max())
    if not (torch.allclose if t else np.allclose)(cov, covH, rtol=1e-6, atol=atol):
        raise ValueError("cov: not Hermitian")
    not_pd = ValueError("cov: not positive definite (a coil without noise, or fewer noise samples than coils?)")
    if t:
        L, info = torch.linalg.cholesky_ex(0.5 * (cov + covH) * scale)
        if int(info) != 0:
            raise not_pd
        return torch.linalg.solve_triangular(L, torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device),
                                             upper=False)
    try:
        L = np.linalg.cholesky(0.5 * (cov + covH) * scale)
    except np.linalg.LinAlgError:
        raise not_pd from None
    import scipy.linalg

    return scipy.linalg.solve_triangular(L, np.eye(cov.shape[0]), lower=True)


def prewhiten(kspace, noise=None, *, cov=None, scale: float = 1.0, coil_axis: int = 0):
    """Whiten ``kspace`` along ``coil_axis`` with ``W = chol(Psi)^{-1}``, ``Psi`` from the noise
    samples ``noise`` (same coil axis) or given as ``cov``. Returns ``(whitened, W)``: the whitened
    array is like ``kspace`` (numpy or torch, its device) and keeps its dtype (complex64 stays
    complex64; computed in complex128); zeros (unacquired points) stay zero. ``W`` is like the noise
    (or ``cov``) given."""
    if (noise is None) == (cov is None):
        raise ValueError("give exactly one of noise and cov")
    if cov is None:
        cov = noise_covariance(noise, coil_axis)
    W = whitening_matrix(cov, scale)
    t = _array.is_torch(kspace)
    k = kspace if t else np.asarray(kspace)
    if k.shape[coil_axis] != W.shape[0]:
        raise ValueError(f"kspace has {k.shape[coil_axis]} coils along axis {coil_axis}, the noise {W.shape[0]}")
    if t:
        import torch

        out = torch.tensordot(param_like(W, k), _array.moveaxis(k, coil_axis, 0).to(torch.complex128), dims=([1], [0]))
        return _array.moveaxis(out, 0, coil_axis).to(torch.promote_types(k.dtype, torch.complex64)), W
    out = np.moveaxis(np.tensordot(param_like(W, k), np.moveaxis(k, coil_axis, 0), axes=(1, 0)), 0, coil_axis)
    return out.astype(np.result_type(k.dtype, np.complex64), copy=False), W
