"""Small operators: identity, diagonal multiplication, dense matrices and the centred Cartesian FFT."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import _array
from .backend import param_like
from .base import Operator


class Identity(Operator):
    torch_native = True

    def __init__(self, shape: Sequence[int], dtype="complex64"):
        super().__init__(shape, shape, dtype)

    def _forward(self, x):
        return x

    _adjoint = _forward


def weight_dtype(w_dtype, op_dtype) -> np.dtype:
    """The dtype a multiplier is stored in: complex weights take the operator's dtype; real weights
    stay real in the operator's precision (a real x complex product costs half a complex one)."""
    op_dtype = np.dtype(op_dtype)
    if np.dtype(w_dtype).kind == "c":
        if op_dtype.kind != "c":
            raise TypeError(f"complex weights need a complex operator, got dtype {op_dtype.name}")
        return op_dtype
    return np.dtype(np.float32) if op_dtype in (np.complex64, np.float32) else np.dtype(np.float64)


def cast_param(w, dtype):
    """``w`` (numpy array or torch tensor) in ``dtype``; a torch tensor keeps its gradient."""
    if _array.is_torch(w):
        import torch

        tdt = getattr(torch, np.dtype(dtype).name)
        return w if w.dtype == tdt else w.to(tdt)
    return np.asarray(w).astype(dtype, copy=False)


class Multiply(Operator):
    """Element-wise product with a fixed array ``w`` (broadcast over the input): ``y = w * x``.

    ``ishape`` is the input core shape; ``w`` must broadcast against it to ``oshape``. ``w`` may be a
    numpy array or a torch tensor (a tensor that requires grad receives gradients); real weights stay
    real.
    """

    torch_native = True

    def __init__(self, ishape: Sequence[int], w, dtype=None):
        if not _array.is_torch(w):
            w = np.asarray(w)
        wdt = np.dtype(_array.dtype_name(w))
        dtype = np.dtype(dtype or (wdt if wdt.kind == "c" else "complex64"))
        oshape = tuple(np.broadcast_shapes(tuple(ishape), tuple(w.shape)))
        super().__init__(ishape, oshape, dtype)
        self.w = cast_param(w, weight_dtype(wdt, dtype))
        self._w_cache = {}

    def _w_like(self, x):
        return param_like(self.w, x, self._w_cache)

    def _forward(self, x):
        lead = tuple(x.shape[: x.ndim - len(self.ishape)])
        x = x.reshape(lead + _pad(self.ishape, len(self.oshape)))
        return self._w_like(x) * x

    def _adjoint(self, y):
        lead = tuple(y.shape[: y.ndim - len(self.oshape)])
        w = self._w_like(y)
        out = (w.conj() if _array.is_complex(w) else w) * y
        padded = _pad(self.ishape, len(self.oshape))
        axes = tuple(len(lead) + i for i, (a, b) in enumerate(zip(padded, self.oshape)) if a == 1 and b != 1)
        if axes:
            out = out.sum(dim=axes, keepdim=True) if _array.is_torch(out) else out.sum(axis=axes, keepdims=True)
        return out.reshape(lead + self.ishape)

    def _normal(self, x):
        w = self._w_like(x)
        if _array.is_torch(w):
            w2 = w.real ** 2 + w.imag ** 2 if w.is_complex() else w * w
        else:
            w2 = (w.real ** 2 + w.imag ** 2) if np.iscomplexobj(w) else w * w
        lead = tuple(x.shape[: x.ndim - len(self.ishape)])
        padded = _pad(self.ishape, len(self.oshape))
        out = w2 * x.reshape(lead + padded)
        axes = tuple(len(lead) + i for i, (a, b) in enumerate(zip(padded, self.oshape)) if a == 1 and b != 1)
        if axes:
            out = out.sum(dim=axes, keepdim=True) if _array.is_torch(out) else out.sum(axis=axes, keepdims=True)
        return out.reshape(lead + self.ishape)


def _pad(shape, n):
    return (1,) * (n - len(shape)) + tuple(shape)


class Matrix(Operator):
    """Dense matrix ``A`` (m x n) acting on the flattened core shape: a reference for tests."""

    torch_native = True

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

    torch_native = True

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
