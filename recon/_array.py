"""Backend-agnostic array helpers: numpy, torch (CPU/CUDA) and cupy, without importing torch or
cupy unless the caller's arrays already come from them."""

from __future__ import annotations

import sys

import numpy as np


def is_torch(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_cupy(x) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def is_array(x) -> bool:
    return isinstance(x, np.ndarray) or is_torch(x) or is_cupy(x)


def backend_name(x) -> str:
    if isinstance(x, np.ndarray):
        return "numpy"
    if is_torch(x):
        return "torch-cuda" if x.is_cuda else "torch"
    if is_cupy(x):
        return "cupy"
    return type(x).__name__


def dtype_name(x) -> str:
    """Dtype of a numpy/torch/cupy array as a numpy dtype name ('complex64', 'float32', ...)."""
    if is_torch(x):
        return str(x.dtype).replace("torch.", "")
    return np.dtype(x.dtype).name


def xp_of(x):
    """The array namespace of ``x`` (numpy, cupy or torch)."""
    if is_torch(x):
        import torch

        return torch
    if is_cupy(x):
        import cupy

        return cupy
    return np


def to_numpy(x) -> np.ndarray:
    """A numpy view (no copy where possible) of a numpy array or CPU torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    if is_torch(x):
        if x.is_cuda:
            raise ValueError("expected a CPU array; got a CUDA tensor (the CUDA path needs recon._cuda)")
        x = x.detach()
        if x.is_conj():
            x = x.resolve_conj()
        if x.is_neg():
            x = x.resolve_neg()
        return x.numpy()
    if is_cupy(x):
        raise ValueError("expected a CPU array; got a cupy array (the CUDA path needs recon._cuda)")
    raise TypeError(f"expected a numpy array or torch tensor, got {type(x).__name__}")


def like(arr: np.ndarray, ref):
    """Wrap a numpy result ``arr`` as the same kind of array as ``ref`` (numpy or torch)."""
    if is_torch(ref):
        import torch

        return torch.from_numpy(arr)
    return arr


_FAST_FINITE = frozenset({"float32", "float64", "complex64", "complex128"})
_FAST_DTYPES = frozenset(np.dtype(n) for n in _FAST_FINITE)  # (comparing dtypes is cheaper than .name)


def all_finite(a) -> bool:
    """True when the array ``a`` (numpy, torch or cupy) holds no NaN/Inf: a threaded C++ pass for
    contiguous float/complex numpy arrays, the array library's own ``isfinite`` otherwise."""
    if isinstance(a, np.ndarray) and a.dtype.name in _FAST_FINITE and a.flags.c_contiguous:
        from . import _core

        return bool(_core.all_finite(a))
    return bool(xp_of(a).isfinite(a).all())


def max_abs(a) -> float:
    """Largest ``|real|`` or ``|imag|`` part of the array ``a`` (numpy, torch or cupy): NaN when ``a``
    holds NaN or Inf, 0.0 when it is empty. One threaded C++ pass for contiguous float/complex numpy
    arrays (the same cost as :func:`all_finite`), the array library's own reductions otherwise."""
    if isinstance(a, np.ndarray) and a.dtype in _FAST_DTYPES and a.flags.c_contiguous:
        from . import _core

        return float(_core.max_abs(a))
    if a.size == 0 if not is_torch(a) else a.numel() == 0:
        return 0.0
    xp = xp_of(a)
    parts = (a.real, a.imag) if dtype_name(a).startswith("complex") else (a,)
    m = max(float(xp.abs(p).max()) for p in parts)
    return m if np.isfinite(m) else float("nan")
