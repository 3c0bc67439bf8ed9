"""Validation helpers of recon.geometry (and the CT code above it): each raises ValueError naming
the owner (a class or function name) and the field, never a bare numpy/Python error.

Numbers may be Python or numpy scalars (``np.float32(1.5)``, ``np.int64(8)``); integer fields also
accept integral floats (``8.0``), never booleans.
"""

from __future__ import annotations

import math

import numpy as np

#: Largest size accepted along one image axis or detector axis (the kernels' limit, csrc/ct/spec.h).
MAX_AXIS = 1 << 30


def angles(owner: str, what: str, value) -> np.ndarray:
    """A non-empty 1D float64 copy of finite values (radians or mm); a scalar means one view."""
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{owner}: {what} must be a 1D array of numbers: {e}") from None
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise ValueError(f"{owner}: {what} must be 1D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{owner}: {what} is empty")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{owner}: {what} contains NaN or Inf (first at view {int(bad[0])})")
    return a


def number(owner: str, what: str, value) -> float:
    """A finite float."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {what} must be a number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{owner}: {what} must be finite, got {value!r}")
    return f


def positive(owner: str, what: str, value) -> float:
    """A positive, finite float."""
    f = number(owner, what, value)
    if f <= 0:
        raise ValueError(f"{owner}: {what} must be positive, got {value!r}")
    return f


def count(owner: str, what: str, value, maximum: int = MAX_AXIS) -> int:
    """An integer in ``[1, maximum]``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok and isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        value, ok = int(value), True
    if not ok or not 1 <= int(value) <= maximum:
        raise ValueError(f"{owner}: {what} must be an integer in [1, {maximum}], got {value!r}")
    return int(value)


def flag(owner: str, what: str, value) -> bool:
    """A Python or numpy boolean (a string such as "false" is refused, not read as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {what} must be True or False, got {value!r}")
    return bool(value)


def sizes(owner: str, what: str, value, nd: int) -> tuple[int, ...]:
    """``nd`` counts; an integer means the same along every axis."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,) * nd
    entries = () if isinstance(value, str) else tuple(np.asarray(value, dtype=object).ravel())
    if len(entries) != nd:
        raise ValueError(f"{owner}: {what} must have {nd} positive integer entries, got {value!r}")
    return tuple(count(owner, f"{what} entry", v) for v in entries)


def per_axis(owner: str, what: str, value, nd: int) -> tuple[float, ...]:
    """``nd`` positive floats; a scalar means the same along every axis."""
    if np.ndim(value) == 0 and not isinstance(value, str):
        return (positive(owner, what, value),) * nd
    v = tuple(np.asarray(value, dtype=object).ravel())
    if len(v) != nd:
        raise ValueError(f"{owner}: {what} must be a scalar or have {nd} entries, got {value!r}")
    return tuple(positive(owner, what, x) for x in v)


def pair(owner: str, what: str, value) -> tuple[float, float]:
    """Two finite floats (e.g. a ``(row, col)`` offset in mm)."""
    if np.ndim(value) == 0:
        raise ValueError(f"{owner}: {what} must be (row, col) in mm, got {value!r}")
    v = tuple(np.asarray(value, dtype=object).ravel())
    if len(v) != 2:
        raise ValueError(f"{owner}: {what} must be (row, col) in mm, got {value!r}")
    return number(owner, what, v[0]), number(owner, what, v[1])


def cover(owner: str, need_lo: float, need_hi: float, have_lo: float, have_hi: float, what: str, fix: str):
    """Raise unless ``[have_lo, have_hi]`` contains ``[need_lo, need_hi]`` (detector coverage)."""
    tol = 1e-9 * max(1.0, abs(need_lo), abs(need_hi))
    if have_lo > need_lo + tol or have_hi < need_hi - tol:
        raise ValueError(f"{owner}: the detector does not cover the image's inscribed circle: {what} "
                         f"spans [{have_lo:.6g}, {have_hi:.6g}] but [{need_lo:.6g}, {need_hi:.6g}] is needed; "
                         f"{fix} (or pass check_coverage=False)")


# ---- memory (one home: recon._memory) -------------------------------------------------------------

def check_allocation(owner: str, nbytes: float, what: str):
    """Refuse, before allocating, work that needs more than :func:`recon._memory.memory_limit`
    allows (a clear ValueError instead of a MemoryError deep inside, or the machine swapping)."""
    from .._memory import check_memory

    check_memory(nbytes, lambda: f"{owner}: {what}")
