"""Backend-agnostic helpers shared by the solvers: inner products, norms, checks, progress, history.

Every helper works on numpy arrays and torch tensors (and on tuples/lists of them, for the dual
variables of PDHG/ADMM). Scalars that leave the helpers are Python floats.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .. import _array


# ---- history ------------------------------------------------------------------------------------

@dataclass
class History:
    """What a solver did, one entry per completed iteration.

    Attributes
    ----------
    residual : list of float
        The solver's convergence measure per iteration (see each solver's docstring: relative
        residual norm for CG, relative change of the iterate for FISTA/POGM/PDHG, primal residual
        for ADMM).
    objective : list of float
        ``objective(x_k)`` per iteration when the caller supplied ``objective``; else empty.
    time : list of float
        Wall-clock seconds since the solver started, at the end of each iteration.
    extra : dict of str -> list
        Solver-specific per-iteration records (e.g. ``'restart'`` for FISTA/POGM, ``'dual_residual'``
        for PDHG/ADMM).
    converged : bool
        True when the tolerance test stopped the solver (False: it ran to ``max_iter``).
    stop_reason : str
        ``'tol'``, ``'max_iter'``, ``'zero_rhs'`` ... in words.
    """

    residual: list = field(default_factory=list)
    objective: list = field(default_factory=list)
    time: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    converged: bool = False
    stop_reason: str = ""

    @property
    def n_iter(self) -> int:
        """Number of completed iterations."""
        return len(self.time)

    def __len__(self) -> int:
        return self.n_iter

    def record(self, t0: float, residual: float | None = None, objective: float | None = None, **extra):
        if residual is not None:
            self.residual.append(float(residual))
        if objective is not None:
            self.objective.append(float(objective))
        for k, v in extra.items():
            self.extra.setdefault(k, []).append(v)
        self.time.append(time.perf_counter() - t0)


# ---- progress -----------------------------------------------------------------------------------

class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass


def progress_bar(progress, total: int, desc: str):
    """A tqdm bar when ``progress`` is True, or when it is None and stderr is a terminal."""
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


# ---- arrays (and tuples of arrays) --------------------------------------------------------------

def _is_seq(a) -> bool:
    return isinstance(a, (tuple, list))


def tmap(f, *args):
    """Apply ``f`` leaf-wise over arrays or (nested) tuples/lists of arrays."""
    if _is_seq(args[0]):
        return type(args[0])(tmap(f, *parts) for parts in zip(*args))
    return f(*args)


def rdot(a, b) -> float:
    """Re<a, b> = Re(sum(conj(a) * b)) as a Python float (tuples: summed over parts)."""
    if _is_seq(a):
        return float(sum(rdot(x, y) for x, y in zip(a, b)))
    if _array.is_torch(a):
        if a.is_complex():
            return float((a.real * b.real + a.imag * b.imag).sum().item())
        return float((a * b).sum().item())
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        return float(np.vdot(np.ravel(a), np.ravel(b)).real)
    return float(np.dot(np.ravel(a), np.ravel(b)))


def norm(a) -> float:
    """Euclidean norm over all elements (tuples: over all parts)."""
    return math.sqrt(max(rdot(a, a), 0.0))


def copy(a):
    return tmap(lambda x: x.clone() if _array.is_torch(x) else x.copy(), a)


def zeros_like(a):
    return tmap(lambda x: x.new_zeros(x.shape) if _array.is_torch(x) else np.zeros_like(x), a)


def all_finite(a) -> bool:
    if _is_seq(a):
        return all(all_finite(x) for x in a)
    return _array.all_finite(a)


def shape_of(a):
    return tmap(lambda x: tuple(x.shape), a) if _is_seq(a) else tuple(a.shape)


def axpy(a, x, y):
    """``a * x + y`` (leaf-wise)."""
    return tmap(lambda u, v: u * a + v, x, y)


def lincomb(a, x, b, y):
    """``a * x + b * y`` (leaf-wise)."""
    return tmap(lambda u, v: u * a + v * b, x, y)


def sub(x, y):
    return tmap(lambda u, v: u - v, x, y)


def add(x, y):
    return tmap(lambda u, v: u + v, x, y)


def scale(a, x):
    return tmap(lambda u: u * a, x)


# ---- checks -------------------------------------------------------------------------------------

def check_array(x, name: str):
    """Raise TypeError unless ``x`` is a numpy array / torch tensor (or a tuple/list of them),
    ValueError if it holds NaN or Inf."""
    if _is_seq(x):
        for i, part in enumerate(x):
            check_array(part, f"{name}[{i}]")
        return
    if not _array.is_array(x):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if not all_finite(x):
        raise ValueError(f"{name}: contains NaN or Inf")


def check_same_shape(got, expected_shape, what: str):
    s = shape_of(got)
    if s != expected_shape:
        raise ValueError(f"{what}: expected shape {expected_shape}, got {s}")


def check_positive(value, name: str, allow_zero: bool = False) -> float:
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
