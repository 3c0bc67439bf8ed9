"""Vector-space helpers of the solvers: inner products, norms, linear combinations, checks.

Every helper works on numpy arrays and torch tensors, and on tuples/lists of them (the dual variables
of PDHG/ADMM given as tuples). Inner products and norms return *device scalars*
(:func:`recon._array.scalar`: a Python float for numpy, a 0-d float64 tensor on the data's device for
torch), so nothing here waits for the device; ``batch_ndim=k`` reduces over all but the first ``k``
axes instead (one value per batch item: an array/tensor of shape ``x.shape[:k]``).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _array


def _is_seq(a) -> bool:
    return isinstance(a, (tuple, list))


def tmap(f, *args):
    """Apply ``f`` leaf-wise over arrays or (nested) tuples/lists of arrays."""
    if _is_seq(args[0]):
        return type(args[0])(tmap(f, *parts) for parts in zip(*args))
    return f(*args)


def first_leaf(a):
    while _is_seq(a):
        a = a[0]
    return a


# ---- reductions (device scalars) ------------------------------------------------------------------

def rdot(a, b, batch_ndim: int = 0):
    """``Re<a, b> = Re sum(conj(a) * b)`` as a device scalar (tuples: summed over parts); with
    ``batch_ndim = k`` one value per item of the first ``k`` axes."""
    if _is_seq(a):
        out = None
        for x, y in zip(a, b):
            v = rdot(x, y, batch_ndim)
            out = v if out is None else out + v
        return out
    if _array.is_torch(a):
        import torch

        prod = a.real * b.real + a.imag * b.imag if a.is_complex() else a * b
        if batch_ndim:
            return prod.sum(dim=tuple(range(batch_ndim, prod.ndim))).to(torch.float64)
        return prod.sum().to(torch.float64)
    if batch_ndim:
        prod = (np.conj(a) * b).real if (np.iscomplexobj(a) or np.iscomplexobj(b)) else a * b
        return prod.sum(axis=tuple(range(batch_ndim, prod.ndim))).astype(np.float64)
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        return float(np.vdot(np.ravel(a), np.ravel(b)).real)
    return float(np.dot(np.ravel(a), np.ravel(b)))


def norm(a, batch_ndim: int = 0):
    """Euclidean norm over all elements (tuples: over all parts) as a device scalar."""
    return sqrt(rdot(a, a, batch_ndim))


def sqrt(s):
    """``sqrt(max(s, 0))`` of a device scalar (or per-item vector)."""
    if isinstance(s, np.ndarray):
        return np.sqrt(np.maximum(s, 0.0))
    return _array.scalar_sqrt(s)


def where(cond, a, b):
    """``a if cond else b`` for device scalars / per-item vectors."""
    if isinstance(cond, np.ndarray) or isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.where(cond, a, b)
    return _array.scalar_where(cond, a, b)


def maximum(a, b):
    if _array.is_torch(a) or _array.is_torch(b):
        import torch

        ref = a if _array.is_torch(a) else b
        return torch.maximum(_array.scalar(ref, a), _array.scalar(ref, b))
    return np.maximum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else max(a, b)


def safe_div(num, den):
    """``num / den`` where ``den > 0``, ``num`` elsewhere (relative measures of a zero reference)."""
    pos = den > 0
    return where(pos, num / where(pos, den, 1.0), num)


def all_true(c):
    """One host bool from a device bool (scalar or per-item): a synchronisation point."""
    if _array.is_torch(c):
        return bool(c.all())
    return bool(np.all(c))


def is_finite_scalar(s) -> bool:
    """Host check that a device scalar (or per-item vector) is finite: a synchronisation point."""
    if _array.is_torch(s):
        return bool(s.isfinite().all())
    return bool(np.all(np.isfinite(s)))


# ---- linear combinations (leaf-wise) ----------------------------------------------------------------

def bscale(x, c):
    """``x * c`` with ``c`` a device scalar, or a per-item vector over ``x``'s leading axes (cast to
    ``x``'s real precision so float32/complex64 data keep their dtype)."""
    if isinstance(c, np.ndarray) or (_array.is_torch(c) and c.ndim > 0):
        c = _array.as_real_dtype_of(c, x)
        return x * c.reshape(tuple(c.shape) + (1,) * (x.ndim - c.ndim))
    return x * c


def axpy(a, x, y):
    """``a * x + y`` (leaf-wise)."""
    return tmap(lambda u, v: bscale(u, a) + v, x, y)


def lincomb(a, x, b, y):
    """``a * x + b * y`` (leaf-wise)."""
    return tmap(lambda u, v: bscale(u, a) + bscale(v, b), x, y)


def sub(x, y):
    return tmap(lambda u, v: u - v, x, y)


def add(x, y):
    return tmap(lambda u, v: u + v, x, y)


def scale(a, x):
    return tmap(lambda u: bscale(u, a), x)


def copy(a):
    return tmap(_array.copy, a)


def zeros_like(a):
    return tmap(lambda x: _array.zeros(x, tuple(x.shape)), a)


def all_finite(a) -> bool:
    if _is_seq(a):
        return all(all_finite(x) for x in a)
    return _array.all_finite(a)


def shape_of(a):
    return tmap(lambda x: tuple(x.shape), a) if _is_seq(a) else tuple(a.shape)


# ---- checks ---------------------------------------------------------------------------------------

def scan_for_nan(x) -> bool:
    """Whether :func:`check_array` scans ``x`` for NaN/Inf: numpy arrays and CPU tensors (free), not
    tensors on a GPU (the scan would wait for the device)."""
    return not _array.is_torch(x) or x.device.type == "cpu"


def check_array(x, name: str):
    """Raise TypeError unless ``x`` is a numpy array / torch tensor (or a tuple/list of them),
    ValueError if it holds NaN or Inf (not scanned on a GPU: that would wait for the device)."""
    if _is_seq(x):
        for i, part in enumerate(x):
            check_array(part, f"{name}[{i}]")
        return
    if not _array.is_array(x):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if not scan_for_nan(x):
        return
    if not all_finite(x.detach() if _array.is_torch(x) else x):
        raise ValueError(f"{name}: contains NaN or Inf")


def check_same_shape(got, expected_shape, what: str):
    s = shape_of(got)
    if s != expected_shape:
        raise ValueError(f"{what}: expected shape {expected_shape}, got {s}")


def check_positive(value, name: str, allow_zero: bool = False):
    """A positive (or non-negative) finite number; a torch tensor (e.g. a learnable step) passes
    through unchecked so as not to wait for the device."""
    if _array.is_torch(value):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} finite "
                         f"number, got {value!r}")
    return v


def check_iters(n, name: str = "max_iter") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{name}: expected >= 0, got {n}")
    return int(n)


def apply_checked(f, x, shape, what):
    """``f(x)``, checked to be an array (or tuple) of ``shape``."""
    out = f(x)
    if not _array.is_array(out) and not isinstance(out, (tuple, list)):
        raise TypeError(f"{what} returned {type(out).__name__}, expected an array")
    check_same_shape(out, shape, f"{what} output")
    return out
