"""SENSE forward models: coil sensitivities, then (non-)Cartesian Fourier sampling.

``CartesianSense(maps, mask)``: image ``(..., *im_shape)`` -> multicoil k-space ``(..., c, *im_shape)``,
``y_c = mask * F(S_c x)`` with ``F`` the centred orthonormal FFT of :mod:`recon.conventions`.

``NonCartesianSense(maps, coord, weights=...)``: image -> samples ``(..., c, *sample_shape)``,
``y_c = sqrt(w) * NUFFT(S_c x)`` (the square root of ``weights``, as SigPy's ``Sense``: the
normal operator then carries ``w`` once, ``A^H A = sum_c S_c^H N^H W N S_c``, evaluated by the
NUFFT's Toeplitz embedding). Use weights for density-compensated (preconditioned) least squares;
the data term ``||A x - sqrt(w) y||^2`` then needs the data multiplied by ``sqrt(w)`` too.

Maps may carry several sets (soft SENSE): ``maps`` ``(m, c, *im_shape)`` takes images
``(..., m, *im_shape)`` and sums the sets into one k-space.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import _array
from .base import Operator
from .linear import centred_fft
from .nufft import Nufft


def _check_maps(maps, dtype):
    if _array.is_torch(maps):
        maps = _array.to_numpy(maps)
    maps = np.asarray(maps)
    if maps.ndim < 3:
        raise ValueError(f"maps: expected shape (coils, y, x), (coils, z, y, x) or (sets, coils, ...), got {maps.shape}")
    if dtype is None:
        dtype = maps.dtype if maps.dtype in (np.complex64, np.complex128) else np.complex64
    dtype = np.dtype(dtype)
    if dtype not in (np.complex64, np.complex128):
        raise TypeError(f"dtype must be complex64 or complex128, got {dtype}")
    if not np.isfinite(maps).all():
        raise ValueError("maps: contains NaN or Inf")
    return np.ascontiguousarray(maps.astype(dtype, copy=False)), dtype


class _SenseBase(Operator):
    def _setup_maps(self, maps, ndim_im: int):
        self.maps = maps
        self.multi = maps.ndim == ndim_im + 2  # (m, c, *im)
        self.n_sets = maps.shape[0] if self.multi else 1
        self.n_coils = maps.shape[1] if self.multi else maps.shape[0]
        self.im_shape = tuple(maps.shape[-ndim_im:])
        self._cache = {}

    def _arr(self, a, ref, key):
        """``a`` (numpy) as the backend of ``ref`` (cached per torch device)."""
        if _array.is_torch(ref):
            k = (key, ref.device.type, ref.device.index)
            if k not in self._cache:
                import torch

                self._cache[k] = torch.as_tensor(a).to(ref.device)
            return self._cache[k]
        return a

    def _expand(self, x):
        """x (..., [m,] *im) -> coil images (..., c, *im)."""
        S = self._arr(self.maps, x, "maps")
        d = len(self.im_shape)
        if self.multi:
            # (..., m, 1, *im) * (m, c, *im) summed over m
            xe = x.reshape(tuple(x.shape[: x.ndim - d]) + (1,) + self.im_shape)
            return (xe * S).sum(-(d + 2))
        xe = x.reshape(tuple(x.shape[: x.ndim - d]) + (1,) + self.im_shape)
        return xe * S

    def _reduce(self, z):
        """coil images (..., c, *im) -> S^H z (..., [m,] *im)."""
        S = self._arr(self.maps, z, "maps")
        d = len(self.im_shape)
        if self.multi:
            ze = z.reshape(tuple(z.shape[: z.ndim - d - 1]) + (1, self.n_coils) + self.im_shape)
            return (ze * S.conj()).sum(-(d + 1))
        return (z * S.conj()).sum(-(d + 1))

    def _ishape_for(self, im_shape):
        return ((self.n_sets,) if self.multi else ()) + tuple(im_shape)


class CartesianSense(_SenseBase):
    """Cartesian SENSE ``y_c = mask * F(S_c x)``.

    Parameters
    ----------
    maps : ``(c, *im_shape)`` or ``(m, c, *im_shape)`` complex coil sensitivities (2D or 3D).
    mask : sampling mask (or real non-negative weights) broadcastable to ``(c, *im_shape)``
        (e.g. ``(y, x)``, ``(1, x)`` for fastMRI column masks); None means fully sampled.
    dtype : complex64 (default, or the maps' complex dtype) or complex128.
    """

    def __init__(self, maps, mask=None, dtype=None, *, ndim: int | None = None, workers: int | None = None):
        maps, dtype = _check_maps(maps, dtype)
        # (c, y, x) -> 2D; (c, z, y, x) -> 3D (pass ndim=2 for sets (m, c, y, x)); (m, c, z, y, x) -> 3D
        d = int(ndim) if ndim else {3: 2, 4: 3, 5: 3}.get(maps.ndim, 0)
        if d not in (2, 3) or maps.ndim not in (d + 1, d + 2):
            raise ValueError(f"maps of shape {maps.shape} do not match a {d}D image")
        self._setup_maps(maps, d)
        if mask is not None:
            if _array.is_torch(mask):
                mask = _array.to_numpy(mask)
            mask = np.asarray(mask)
            if mask.dtype == bool:
                mask = mask.astype(np.float32)
            if np.iscomplexobj(mask) or not np.isfinite(mask).all() or (mask < 0).any():
                raise ValueError("mask: expected real, finite, non-negative weights (or a boolean mask)")
            try:
                np.broadcast_shapes(mask.shape, (self.n_coils,) + self.im_shape)
            except ValueError:
                raise ValueError(f"mask of shape {mask.shape} does not broadcast to (coils, *im_shape) = "
                                 f"{(self.n_coils,) + self.im_shape}") from None
            mask = mask.astype(np.float32 if dtype == np.complex64 else np.float64)
            self.mask2 = mask * mask
        else:
            self.mask2 = None
        self.mask = mask
        self.workers = workers or -1
        super().__init__(self._ishape_for(self.im_shape), (self.n_coils,) + self.im_shape, dtype)

    def _fft(self, x, inverse):
        return centred_fft(x, len(self.im_shape), inverse, self.workers, self.dtype)

    def _forward(self, x):
        y = self._fft(self._expand(x), inverse=False)
        if self.mask is not None:
            y = y * self._arr(self.mask, y, "mask")
        return y

    def _adjoint(self, y):
        if self.mask is not None:
            y = y * self._arr(self.mask, y, "mask")
        return self._reduce(self._fft(y, inverse=True))

    def _normal(self, x):
        if isinstance(x, np.ndarray):
            return self._normal_numpy(x)
        z = self._fft(self._expand(x), inverse=False)
        if self.mask2 is not None:
            z = z * self._arr(self.mask2, z, "mask2")
        return self._reduce(self._fft(z, inverse=True))

    def _normal_numpy(self, x):
        """``S^H F^H M^2 F S x`` with the centring shifts folded into pre-shifted maps and mask:
        ``F^H D F = fftshift o ifft o D' o fft o ifftshift`` with ``D' = ifftshift(D)`` (any size), so
        only the image is shifted, not the coil arrays."""
        import scipy.fft

        d = len(self.im_shape)
        axes = tuple(range(-d, 0))
        if "shifted" not in self._cache:
            Sp = np.ascontiguousarray(np.fft.ifftshift(self.maps, axes=axes))
            Mp = None
            if self.mask2 is not None:
                m = np.broadcast_to(self.mask2, np.broadcast_shapes(self.mask2.shape, (1,) * d))
                Mp = np.ascontiguousarray(np.fft.ifftshift(m, axes=axes))
            self._cache["shifted"] = (Sp, Mp)
        Sp, Mp = self._cache["shifted"]
        xs = np.fft.ifftshift(x, axes=axes)
        lead = xs.shape[: xs.ndim - d - (1 if self.multi else 0)]
        if self.multi:
            z = (xs.reshape(lead + (self.n_sets, 1) + self.im_shape) * Sp).sum(-(d + 2))
        else:
            z = xs.reshape(lead + (1,) + self.im_shape) * Sp
        z = scipy.fft.fftn(z, axes=axes, norm="ortho", workers=self.workers, overwrite_x=True)
        if Mp is not None:
            z *= Mp
        z = scipy.fft.ifftn(z, axes=axes, norm="ortho", workers=self.workers, overwrite_x=True)
        if self.multi:
            w = (z.reshape(lead + (1, self.n_coils) + self.im_shape) * Sp.conj()).sum(-(d + 1))
        else:
            w = (z * Sp.conj()).sum(-(d + 1))
        return np.fft.fftshift(w, axes=axes).astype(self.dtype, copy=False)


class NonCartesianSense(_SenseBase):
    """Non-Cartesian SENSE ``y_c = sqrt(w) * NUFFT(S_c x)`` on :class:`recon.ops.Nufft`.

    Parameters
    ----------
    maps : ``(c, *im_shape)`` or ``(m, c, *im_shape)``.
    coord : ``(*sample_shape, d)`` trajectory in cycles/FOV (see :mod:`recon.conventions`).
    tol : NUFFT accuracy.
    weights : real non-negative k-space weights broadcastable to ``sample_shape`` (e.g. a density
        compensation), or None. The operator applies their square root (module docstring).
    toeplitz : evaluate the normal operator by Toeplitz embedding (default) or as adjoint(forward).
    """

    def __init__(self, maps, coord, tol: float = 1e-4, weights=None, dtype=None, *, toeplitz: bool = True,
                 nthreads: int | None = None):
        maps, dtype = _check_maps(maps, dtype)
        coord = np.asarray(_array.to_numpy(coord) if _array.is_torch(coord) else coord)
        if coord.ndim < 2:
            raise ValueError(f"coord: expected shape (..., M, d), got {coord.shape}")
        d = coord.shape[-1]
        if d not in (2, 3) or maps.ndim not in (d + 1, d + 2):
            raise ValueError(f"maps of shape {maps.shape} do not match a {d}D trajectory of shape {coord.shape}")
        self._setup_maps(maps, d)
        self.nufft = Nufft(coord.astype(np.float64) if coord.dtype == np.float64 else coord.astype(np.float32),
                           self.im_shape, tol=tol, dtype=dtype, nthreads=nthreads)
        self.sample_shape = self.nufft.sample_shape
        if weights is not None:
            if _array.is_torch(weights):
                weights = _array.to_numpy(weights)
            w = np.asarray(weights)
            if np.iscomplexobj(w) or not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("weights: expected real, finite, non-negative values")
            try:
                w = np.broadcast_to(w, self.sample_shape)
            except ValueError:
                raise ValueError(f"weights of shape {w.shape} do not broadcast to the samples {self.sample_shape}") from None
            rdt = np.float32 if dtype == np.complex64 else np.float64
            self.weights = np.ascontiguousarray(w.astype(rdt))
            self.sqrt_weights = np.sqrt(self.weights)
        else:
            self.weights = self.sqrt_weights = None
        self.use_toeplitz = bool(toeplitz)
        self._toep = None
        super().__init__(self._ishape_for(self.im_shape), (self.n_coils,) + self.sample_shape, dtype)

    def _forward(self, x):
        y = self.nufft._forward(self._expand(x))
        if self.sqrt_weights is not None:
            y = y * self._arr(self.sqrt_weights, y, "sw")
        return y

    def _adjoint(self, y):
        if self.sqrt_weights is not None:
            y = y * self._arr(self.sqrt_weights, y, "sw")
        return self._reduce(self.nufft._adjoint(y))

    def toeplitz_normal(self):
        """The NUFFT's Toeplitz normal ``N^H W N`` (built once)."""
        if self._toep is None:
            self._toep = self.nufft.toeplitz(self.weights)
        return self._toep

    def _normal(self, x):
        if not self.use_toeplitz:
            return self._adjoint(self._forward(x))
        return self._reduce(self.toeplitz_normal()._forward(self._expand(x)))
