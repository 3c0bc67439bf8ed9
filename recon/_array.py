"""Backend-agnostic array helpers: numpy, torch (CPU/CUDA) and cupy, without importing torch or
cupy unless the caller's arrays already come from them."""

from __future__ import annotations

import math
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


# ---- element-wise and reduction shims (numpy and torch; one home for the solvers and operators) -----

def is_complex(x) -> bool:
    return x.is_complex() if is_torch(x) else np.iscomplexobj(x)


def real_dtype(x):
    """The real dtype of ``x``'s precision (float32 for complex64, ...), in ``x``'s library."""
    if is_torch(x):
        return x.real.dtype if x.is_complex() else x.dtype
    dt = np.dtype(x.dtype)
    return np.finfo(dt).dtype if dt.kind in "fc" else np.dtype(np.float64)


def as_real_dtype_of(a, x):
    """Cast the real array ``a`` to the real precision of ``x`` (no float64 promotion of float32 data)."""
    if is_torch(a):
        return a.to(real_dtype(x))
    return np.asarray(a).astype(real_dtype(x), copy=False)


def zeros(ref, shape, real: bool = False):
    """Zeros of ``shape`` like ``ref`` (same library, device and dtype; its real dtype if ``real``)."""
    if is_torch(ref):
        return ref.new_zeros(tuple(shape), dtype=real_dtype(ref) if real else ref.dtype)
    return np.zeros(tuple(shape), dtype=real_dtype(ref) if real else ref.dtype)


def empty(ref, shape, real: bool = False):
    if is_torch(ref):
        return ref.new_empty(tuple(shape), dtype=real_dtype(ref) if real else ref.dtype)
    return np.empty(tuple(shape), dtype=real_dtype(ref) if real else ref.dtype)


def copy(x):
    """A copy (torch: ``clone``, which keeps the autograd graph)."""
    return x.clone() if is_torch(x) else x.copy()


def copy_into(dst, src):
    if is_torch(dst):
        dst.copy_(src)
    else:
        np.copyto(dst, src)


def subtract_into(a, b, out):
    """``out[...] = a - b`` without a temporary."""
    if is_torch(out):
        import torch

        torch.sub(a, b, out=out)
    else:
        np.subtract(a, b, out=out)


def multiply_into(a, s, out):
    """``out[...] = a * s`` without a temporary."""
    if is_torch(out):
        import torch

        torch.mul(a, s, out=out)
    else:
        np.multiply(a, s, out=out)


# in-place variants, for inner loops that work in preallocated buffers (no autograd)

def abs2_accumulate(p, acc, scratch):
    """``acc += |p|^2`` in place (``acc``, ``scratch``: real buffers shaped like ``p``)."""
    if is_torch(p):
        if p.is_complex():
            acc.addcmul_(p.real, p.real)
            acc.addcmul_(p.imag, p.imag)
        else:
            acc.addcmul_(p, p)
        return acc
    if np.iscomplexobj(p):
        np.multiply(p.real, p.real, out=scratch)
        acc += scratch
        np.multiply(p.imag, p.imag, out=scratch)
    else:
        np.multiply(p, p, out=scratch)
    acc += scratch
    return acc


def abs_into(p, out):
    """``out[...] = |p|``."""
    if is_torch(p):
        import torch

        torch.abs(p, out=out)
    else:
        np.abs(p, out=out)
    return out


def sqrt_(m):
    """``m <- sqrt(m)`` in place."""
    if is_torch(m):
        m.sqrt_()
    else:
        np.sqrt(m, out=m)
    return m


def clamp_(x, lower=None, upper=None):
    """``x <- clip(x, lower, upper)`` in place (real data; either bound may be None)."""
    if is_torch(x):
        x.clamp_(min=lower, max=upper)
    else:
        np.clip(x, lower, upper, out=x)
    return x


def abs2(x):
    """``|x|^2`` element-wise (real)."""
    return x.real * x.real + x.imag * x.imag if is_complex(x) else x * x


def sum_axes(x, axis=None, keepdims: bool = False):
    """Sum over ``axis`` (None: all) in numpy or torch."""
    if is_torch(x):
        if axis is None:
            return x.sum()
        return x.sum(dim=axis, keepdim=keepdims)
    return x.sum(axis=axis, keepdims=keepdims)


def clamp_min(x, v):
    """``max(x, v)`` element-wise (``v`` a number or an array)."""
    if is_torch(x):
        return x.clamp(min=v) if not is_torch(v) else x.maximum(v)
    return np.maximum(x, v)


def clamp_max(x, v):
    if is_torch(x):
        return x.clamp(max=v) if not is_torch(v) else x.minimum(v)
    return np.minimum(x, v)


def where(cond, a, b):
    """Element-wise ``a if cond else b`` (arrays of one library; numbers broadcast)."""
    if is_torch(cond):
        import torch

        return torch.where(cond, a, b)
    return np.where(cond, a, b)


def moveaxis(x, src: int, dst: int):
    return x.movedim(src, dst) if is_torch(x) else np.moveaxis(x, src, dst)


def concatenate(parts, axis: int):
    if is_torch(parts[0]):
        import torch

        return torch.cat(list(parts), dim=axis)
    return np.concatenate(parts, axis=axis)


def stack(parts, axis: int):
    if is_torch(parts[0]):
        import torch

        return torch.stack(list(parts), dim=axis)
    return np.stack(parts, axis=axis)


def pad_end(x, widths):
    """Zero-pad the trailing ``len(widths)`` axes of ``x`` at their end by ``widths``."""
    if not any(widths):
        return x
    lead = x.ndim - len(widths)
    out = zeros(x, tuple(x.shape[:lead]) + tuple(s + w for s, w in zip(x.shape[lead:], widths)))
    out[(Ellipsis,) + tuple(slice(0, s) for s in x.shape[lead:])] = x
    return out


# ---- device scalars -------------------------------------------------------------------------------
# The solvers keep step lengths, momentum and convergence measures on the device: a torch scalar is a
# 0-d float64 tensor on the data's device (made by a fill kernel: no host transfer), a numpy one a
# Python float (no device, nothing to synchronise). Both mix with arrays as weak scalars, so
# float32/complex64 data keep their dtype.

def scalar(ref, value):
    """``value`` as a device scalar for arrays like ``ref`` (see above)."""
    if is_torch(ref):
        import torch

        if is_torch(value):
            return value.to(dtype=torch.float64)
        return torch.full((), float(value), dtype=torch.float64, device=ref.device)
    return float(value)


def scalar_where(cond, a, b):
    """``a if cond else b`` for device scalars (a select on the device for torch)."""
    if is_torch(cond) or is_torch(a) or is_torch(b):
        import torch

        ref = next(v for v in (a, b, cond) if is_torch(v))
        a = a if is_torch(a) else scalar(ref, a)
        b = b if is_torch(b) else scalar(ref, b)
        return torch.where(cond, a, b)
    return a if cond else b


def scalar_sqrt(s):
    if is_torch(s):
        return s.clamp(min=0).sqrt()
    return math.sqrt(max(s, 0.0))


def to_host(values) -> list:
    """Device scalars/vectors (torch tensors, numpy scalars or arrays, Python numbers) to Python
    numbers (lists for vectors, bools for boolean data), with one device-to-host transfer in all."""
    tensors = [v for v in values if is_torch(v)]
    host = iter(())
    if tensors:
        import torch

        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
        host = iter(flat.cpu().tolist())
    out = []
    for v in values:
        if is_torch(v):
            vals = [next(host) for _ in range(v.numel())]
            if v.dtype == torch.bool:
                vals = [bool(h) for h in vals]
            out.append(vals[0] if v.ndim == 0 else vals)
        elif isinstance(v, (np.ndarray, np.generic)):
            out.append(v.tolist())
        else:
            out.append(v)
    return out


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
