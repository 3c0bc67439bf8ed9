"""One loop for every iterative algorithm: step objects (:class:`Alg`) and :func:`run`.

An algorithm is a *step object* (SigPy's ``Alg``): its state is set up in ``__init__``, ``step()``
does one iteration, ``x`` is the current iterate and ``residual`` its convergence measure, a device
scalar. :func:`run` owns everything around the steps for MRI and CT alike: the iteration budget, the
tolerance test, callbacks, the progress bar and the :class:`History`.

No host synchronisation per iteration: scalars stay on the device (see :mod:`recon.solvers._util`),
the history keeps them as they are and converts them once at the end; ``run`` reads a value on the
host only at a *check point*: every ``check_every`` iterations when a tolerance (or ``check_every``)
is given, and once at the end (the finiteness test). A learned network can call ``step()`` itself
(with autograd: steps never write in place into tensors that autograd needs).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

from .. import _array
from ._util import all_true, check_iters, check_positive, is_finite_scalar

__all__ = ["Alg", "History", "run", "progress_bar"]


@dataclass
class History:
    """What a solver did, one entry per completed iteration.

    Attributes
    ----------
    residual : list of float
        The algorithm's convergence measure per iteration (see each step object: relative residual
        norm for CG, relative change of the iterate for FISTA/POGM/PDHG, primal residual for ADMM);
        a list per iteration for per-item (batched) measures.
    objective : list of float
        ``objective(x_k)`` per iteration when the caller supplied ``objective``; else empty.
    time : list of float
        Wall-clock seconds since the solver started, at the end of each iteration (host time: on a
        GPU, the time the iteration was queued).
    extra : dict of str -> list
        Algorithm-specific per-iteration records (e.g. ``'restart'`` for FISTA/POGM,
        ``'dual_residual'`` for PDHG/ADMM) and wrapper-specific entries.
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

    def record(self, t0: float, residual=None, objective=None, **extra):
        """Append one iteration's values (device scalars are kept as they are until :meth:`finalize`)."""
        if residual is not None:
            self.residual.append(residual)
        if objective is not None:
            self.objective.append(objective)
        for k, v in extra.items():
            self.extra.setdefault(k, []).append(v)
        self.time.append(time.perf_counter() - t0)

    def finalize(self):
        """Convert the recorded device scalars to Python numbers, with one device transfer."""
        lists = [self.residual, self.objective] + list(self.extra.values())
        flat = _array.to_host([v for lst in lists for v in lst])
        i = 0
        for lst in lists:
            lst[:] = flat[i: i + len(lst)]
            i += len(lst)
        self.residual[:] = [_as_float(v) for v in self.residual]
        self.objective[:] = [_as_float(v) for v in self.objective]
        return self


def _as_float(v):
    return [float(u) for u in v] if isinstance(v, list) else float(v)


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


class Alg:
    """Base of the step objects. Subclasses set up their state in ``__init__`` and implement
    :meth:`step`; they keep the current iterate in ``self.x`` and, after each step, its convergence
    measure in ``self.residual`` (a device scalar, or one per batch item)."""

    name = "alg"
    #: the convergence measure after the last step (None before the first, unless set up)
    residual = None

    def __init__(self):
        self.iter = 0  # completed steps

    def step(self):
        """One iteration."""
        raise NotImplementedError

    def converged(self, tol: float):
        """Device bool: has the algorithm converged to ``tol``? (Evaluated only at check points.)"""
        return self.residual <= tol

    def stop_reason(self) -> str | None:
        """A reason to stop other than the tolerance (host check, at check points), e.g. CG breakdown."""
        return None

    def extras(self) -> dict:
        """Per-iteration records for ``History.extra`` (device scalars)."""
        return {}

    def result(self):
        """The answer (the current iterate by default)."""
        return self.x


def _host(v) -> float:
    """A device scalar (or the largest of per-item values; NaN if any is NaN) on the host."""
    vals = _array.to_host([v])[0]
    if not isinstance(vals, list):
        return float(vals)
    return math.nan if any(math.isnan(u) for u in vals) else max(vals)


def run(alg: Alg, max_iter: int, *, tol: float = 0.0, check_every: int | None = None, callback=None,
        progress=None, history: bool = True, objective=None):
    """Run the step object ``alg`` for at most ``max_iter`` iterations.

    Parameters
    ----------
    alg : Alg
        A step object (e.g. :class:`~recon.solvers.CG`, :class:`~recon.solvers.FISTA`).
    max_iter : int
        Iteration budget (each iteration is one ``alg.step()``).
    tol : float
        Stop when ``alg.converged(tol)`` (the algorithm's relative measure; 0 disables the test).
    check_every : int, optional
        Test convergence (and finiteness) every this many iterations: each test waits for the device
        once. Default: every iteration when ``tol > 0``, never (only at the end) when ``tol == 0``.
    callback : callable, optional
        ``callback(k, x_k)`` after each iteration ``k = 1, 2, ...``.
    progress : bool or None
        tqdm bar (None: only when stderr is a terminal); the residual shows at check points.
    history : bool
        Record the per-iteration values (kept on the device, converted once at the end).
    objective : callable, optional
        ``x -> value`` recorded after each iteration (a float or a device scalar).

    Returns
    -------
    x : the answer (``alg.result()``)
    history : History
        ``converged`` and ``stop_reason`` say why it ended. Raises FloatingPointError when the
        convergence measure became non-finite (step too large, or a callable returned NaN/Inf).
    """
    max_iter = check_iters(max_iter)
    tol = check_positive(tol, f"{alg.name}: tol", allow_zero=True)
    if check_every is not None:
        check_every = check_iters(check_every, "check_every")
        if check_every < 1:
            raise ValueError(f"{alg.name}: check_every must be >= 1, got {check_every}")
    every = check_every if check_every is not None else (1 if tol > 0 else 0)
    hist = History()
    t0 = time.perf_counter()

    def stop_at_check(k) -> bool:
        reason = alg.stop_reason()
        if reason is not None:
            hist.stop_reason = reason
            hist.converged = reason == "zero_rhs"
            return True
        if alg.residual is None:
            return False
        value = _host(alg.residual)
        if not math.isfinite(value):
            raise FloatingPointError(f"{alg.name}: the convergence measure became non-finite at iteration "
                                     f"{k} (step size too large, or a callable returned NaN/Inf)")
        bar.set_postfix(res=f"{value:.2e}", refresh=False)
        if tol > 0 and all_true(alg.converged(tol)):
            hist.converged, hist.stop_reason = True, "tol"
            return True
        return False

    bar = progress_bar(progress, max_iter, alg.name)
    try:
        stopped = every > 0 and tol > 0 and stop_at_check(0)
        k = 0
        while not stopped and k < max_iter:
            alg.step()
            k += 1
            if history:
                hist.record(t0, residual=alg.residual,
                            objective=None if objective is None else objective(alg.x), **alg.extras())
            bar.update()
            if callback is not None:
                callback(k, alg.x)
            if every and k % every == 0:
                stopped = stop_at_check(k)
        if not stopped:
            hist.stop_reason = alg.stop_reason() or "max_iter"
    finally:
        bar.close()
    if history:
        hist.finalize()
        bad = next((i for i, r in enumerate(hist.residual)
                    if not all(math.isfinite(v) for v in (r if isinstance(r, list) else [r]))), None)
    else:
        bad = None if alg.residual is None or is_finite_scalar(alg.residual) else k - 1
    if bad is not None:
        raise FloatingPointError(f"{alg.name}: the convergence measure became non-finite at iteration {bad + 1} "
                                 f"(step size too large, or a callable returned NaN/Inf)")
    return alg.result(), hist
