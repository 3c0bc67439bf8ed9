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


def is_complex(x) -> bool:
    """True for a complex numpy/torch/cupy array."""
    if is_torch(x):
        return x.is_complex()
    return np.dtype(x.dtype).kind == "c"


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


def all_finite(a) -> bool:
    """True when the array ``a`` (numpy, torch or cupy) holds no NaN/Inf: a threaded C++ pass for
    contiguous float/complex numpy arrays, the array library's own ``isfinite`` otherwise."""
    if isinstance(a, np.ndarray) and a.dtype.name in _FAST_FINITE and a.flags.c_contiguous:
        from . import _core

        return bool(_core.all_finite(a))
    return bool(xp_of(a).isfinite(a).all())
