"""Small operators: identity, diagonal multiplication, dense matrices and the centred Cartesian FFT."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import _array
from .base import Operator


class Identity(Operator):
    def __init__(self, shape: Sequence[int], dtype="complex64"):
        super().__init__(shape, shape, dtype)

    def _forward(self, x):
        return x

    _adjoint = _forward


class Multiply(Operator):
    """Element-wise product with a fixed array ``w`` (broadcast over the input): ``y = w * x``.

    ``ishape`` is the input core shape; ``w`` must broadcast against it to ``oshape``.
    """

    def __init__(self, ishape: Sequence[int], w, dtype=None):
        w = np.asarray(w) if not _array.is_torch(w) else w
        dtype = np.dtype(dtype or (_array.dtype_name(w) if np.dtype(_array.dtype_name(w)).kind == "c" else "complex64"))
        oshape = tuple(np.broadcast_shapes(tuple(ishape), tuple(w.shape)))
        super().__init__(ishape, oshape, dtype)
        self.w = w.astype(dtype) if isinstance(w, np.ndarray) else w
        self._w_cache = {}

    def _w_like(self, x):
        if _array.is_torch(x):
            key = (x.device.type, x.device.index)
            if key not in self._w_cache:
                import torch

                self._w_cache[key] = torch.as_tensor(np.asarray(self.w)).to(x.device)
            return self._w_cache[key]
        return self.w

    def _forward(self, x):
        lead = tuple(x.shape[: x.ndim - len(self.ishape)])
        x = x.reshape(lead + _pad(self.ishape, len(self.oshape)))
        return self._w_like(x) * x

    def _adjoint(self, y):
        lead = tuple(y.shape[: y.ndim - len(self.oshape)])
        out = self._w_like(y).conj() * y
        padded = _pad(self.ishape, len(self.oshape))
        axes = tuple(len(lead) + i for i, (a, b) in enumerate(zip(padded, self.oshape)) if a == 1 and b != 1)
        if axes:
            out = out.sum(dim=axes, keepdim=True) if _array.is_torch(out) else out.sum(axis=axes, keepdims=True)
        return out.reshape(lead + self.ishape)


def _pad(shape, n):
    return (1,) * (n - len(shape)) + tuple(shape)


class Matrix(Operator):
    """Dense matrix ``A`` (m x n) acting on the flattened core shape: a reference for tests."""

    def __init__(self, A, ishape=None, oshape=None):
        A = np.asarray(A)
        super().__init__(ishape or (A.shape[1],), oshape or (A.shape[0],), A.dtype)
        if int(np.prod(self.ishape)) != A.shape[1] or int(np.prod(self.oshape)) != A.shape[0]:
            raise ValueError("matrix size does not match ishape/oshape")
        self.A = A

    def _apply(self, M, x, out_shape):
        lead = tuple(x.shape[: x.ndim - (len(self.ishape) if M is self.A else len(self.oshape))])
        if _array.is_torch(x):
            import torch

            Mt = torch.as_tensor(M).to(x.device)
            return (x.reshape(lead + (-1,)) @ Mt.T).reshape(lead + out_shape)
        return (x.reshape(lead + (-1,)) @ M.T).reshape(lead + out_shape)

    def _forward(self, x):
        return self._apply(self.A, x, self.oshape)

    def _adjoint(self, y):
        lead = tuple(y.shape[: y.ndim - len(self.oshape)])
        AH = self.A.conj().T
        if _array.is_torch(y):
            import torch

            return (y.reshape(lead + (-1,)) @ torch.as_tensor(AH).to(y.device).T).reshape(lead + self.ishape)
        return (y.reshape(lead + (-1,)) @ AH.T).reshape(lead + self.ishape)


def centred_fft(x, ndim: int, inverse: bool = False, workers: int = -1, dtype=None):
    """Centred orthonormal (i)FFT over the last ``ndim`` axes of a numpy array or torch tensor:
    ``fftshift(fftn(ifftshift(x), norm='ortho'))`` (fastMRI's convention, recon.conventions)."""
    axes = tuple(range(x.ndim - ndim, x.ndim))
    if _array.is_torch(x):
        import torch

        f = torch.fft.ifftn if inverse else torch.fft.fftn
        return torch.fft.fftshift(f(torch.fft.ifftshift(x, dim=axes), dim=axes, norm="ortho"), dim=axes)
    import scipy.fft

    f = scipy.fft.ifftn if inverse else scipy.fft.fftn
    out = np.fft.fftshift(f(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho", workers=workers), axes=axes)
    return out.astype(dtype or x.dtype, copy=False)


class FFT(Operator):
    """Centred orthonormal FFT over the last ``len(shape)`` axes (fastMRI convention):
    ``fftshift(fftn(ifftshift(x), norm='ortho'))``. Unitary: the adjoint is the inverse."""

    def __init__(self, shape: Sequence[int], dtype="complex64", workers: int | None = None):
        super().__init__(shape, shape, dtype)
        self.workers = workers or -1

    def _transform(self, x, inverse: bool):
        return centred_fft(x, len(self.ishape), inverse, self.workers, self.dtype)

    def _forward(self, x):
        return self._transform(x, inverse=False)

    def _adjoint(self, y):
        return self._transform(y, inverse=True)

    def _normal(self, x):
        return x
