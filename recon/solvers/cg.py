"""Conjugate gradient and power iteration as step objects, with the classical function API.

:class:`CG` solves ``(N + damping I) x = rhs`` for a Hermitian positive semi-definite callable ``N``;
:class:`PowerIteration` estimates the largest eigenvalue of ``N``. ``cg``, ``power_iteration`` and
``cg_x_update`` (an ADMM x-update) are thin wrappers over them and :func:`recon.solvers.run`.
"""

from __future__ import annotations

import numpy as np

from .. import _array
from ._util import (all_true, apply_checked, axpy, check_array, check_iters, check_positive, check_same_shape,
                    copy, norm, rdot, safe_div, scale, shape_of, sqrt, sub, where, zeros_like)
from .loop import Alg, run

__all__ = ["CG", "PowerIteration", "cg", "power_iteration", "cg_x_update"]


def _check_damping(damping, rhs, batch_ndim: int):
    """A non-negative number, or (per item) an array/tensor of shape ``rhs.shape[:batch_ndim]``."""
    if _array.is_array(damping) and getattr(damping, "ndim", 0) > 0:
        if tuple(damping.shape) != tuple(rhs.shape[:batch_ndim]):
            raise ValueError(f"cg: per-item damping needs shape {tuple(rhs.shape[:batch_ndim])} (the first "
                             f"batch_ndim={batch_ndim} axes of rhs), got {tuple(damping.shape)}")
        return damping
    if _array.is_torch(damping):
        return damping
    return check_positive(damping, "cg: damping", allow_zero=True)


class CG(Alg):
    """Conjugate gradient for ``(normal + damping I) x = rhs`` (Hestenes & Stiefel), as a step object.

    Parameters
    ----------
    normal : callable
        ``x -> N x``, ``N`` Hermitian positive semi-definite (e.g. ``A.normal``).
    rhs : array
        Right-hand side (numpy array or torch tensor, real or complex).
    x0 : array, optional
        Start (zeros when omitted).
    damping : float or array
        ``lambda >= 0`` added to the diagonal; with ``batch_ndim`` also one value per item
        (array/tensor of shape ``rhs.shape[:batch_ndim]``).
    batch_ndim : int
        0 (default): the whole array is one vector (one step length, one stopping test). ``k > 0``:
        the first ``k`` axes index independent systems, solved in lockstep with per-item step
        lengths ``alpha``/``beta``; an item whose residual reaches ``tol`` is frozen.
    tol : float
        Per-item freezing threshold (batched solves only; the run loop's ``tol`` stops the loop).

    ``residual`` is ``||rhs - (N + damping I) x_k|| / ||rhs||`` (recursively updated), per item when
    batched. All scalars stay on the device; with autograd-enabled tensors the iterations are
    differentiable by unrolling (for implicit differentiation use :func:`recon.solvers.cg_solve`).
    """

    name = "cg"

    def __init__(self, normal, rhs, x0=None, *, damping=0.0, batch_ndim: int = 0, tol: float = 0.0):
        super().__init__()
        check_array(rhs, "cg: rhs")
        self.shape = shape_of(rhs)
        self.normal = normal
        self.batch_ndim = check_iters(batch_ndim, "batch_ndim")
        if self.batch_ndim and (isinstance(rhs, (tuple, list)) or self.batch_ndim >= rhs.ndim):
            raise ValueError(f"cg: batch_ndim={batch_ndim} needs an array rhs with more axes, got shape {self.shape}")
        self.damping = _check_damping(damping, rhs, self.batch_ndim)
        self.tol = check_positive(tol, "cg: tol", allow_zero=True)
        self.bnorm = norm(rhs, self.batch_ndim)
        if x0 is None:
            self.x = zeros_like(rhs)
            self.r = rhs
        else:
            check_array(x0, "cg: x0")
            check_same_shape(x0, self.shape, "cg: x0")
            self.x = copy(x0)
            self.r = sub(rhs, self.apply(self.x))
        self.p = self.r
        self.rr = rdot(self.r, self.r, self.batch_ndim)
        self.residual = safe_div(sqrt(self.rr), self.bnorm)
        self._pAp = None

    def apply(self, v):
        """``(N + damping I) v``."""
        out = apply_checked(self.normal, v, self.shape, "cg: normal")
        if isinstance(self.damping, float) and self.damping == 0.0:
            return out
        return axpy(self.damping, v, out)

    def step(self):
        bn = self.batch_ndim
        Ap = self.apply(self.p)
        pAp = rdot(self.p, Ap, bn)
        ok = pAp > 0
        active = ok & (self.residual > self.tol) if bn and self.tol > 0 else ok
        alpha = where(active, self.rr / where(ok, pAp, 1.0), 0.0)
        self.x = axpy(alpha, self.p, self.x)
        self.r = axpy(-alpha, Ap, self.r)
        rr_new = rdot(self.r, self.r, bn)
        self.residual = safe_div(sqrt(rr_new), self.bnorm)
        beta = where(active & (self.rr > 0), rr_new / where(self.rr > 0, self.rr, 1.0), 0.0)
        self.p = axpy(beta, self.p, self.r)
        self.rr = rr_new
        self._pAp = pAp
        self.iter += 1

    def stop_reason(self):
        if all_true(self.bnorm == 0):
            self.x = zeros_like(self.x)
            return "zero_rhs"
        if not self.batch_ndim and self._pAp is not None and all_true(self._pAp <= 0):
            return "breakdown (p^H N p <= 0: normal is not positive definite here)"
        return None


def cg(normal, rhs, x0=None, *, max_iter: int = 30, tol: float = 1e-6, damping=0.0, callback=None,
       progress=None, batch_ndim: int = 0, check_every: int | None = None):
    """Conjugate gradient for ``(normal + damping * I) x = rhs`` (:class:`CG` run by :func:`run`).

    Parameters
    ----------
    normal : callable
        ``x -> N x`` with ``N`` Hermitian positive semi-definite (e.g. ``A.normal`` for least
        squares ``min ||A x - y||^2``, whose normal equations are ``A^H A x = A^H y``).
    rhs : array
        Right-hand side (numpy array or torch tensor, real or complex, any shape).
    x0 : array, optional
        Starting point (zeros when omitted); same shape as ``rhs``.
    max_iter : int
        Maximum number of CG iterations (each costs one ``normal`` call).
    tol : float
        Stop when ``||rhs - (N + damping I) x_k|| <= tol * ||rhs||`` (recursively updated residual;
        every item's, when batched). 0 runs ``max_iter`` iterations without waiting for the device.
    damping : float or array
        Tikhonov term ``lambda >= 0`` (solves ``min ||Ax-y||^2 + lambda ||x||^2``); per item when batched.
    callback : callable, optional
        ``callback(k, x_k)`` after each iteration ``k = 1, 2, ...``.
    progress : bool or None
        tqdm bar; None shows it only when stderr is a terminal.
    batch_ndim : int
        Number of leading axes that index independent systems (see :class:`CG`); 0: one vector.
    check_every : int, optional
        Test ``tol`` every this many iterations (see :func:`run`).

    Returns
    -------
    x : array, same kind/shape/dtype as ``rhs``
    history : History
        ``residual[k-1] = ||r_k|| / ||rhs||`` after iteration ``k`` (a list per item when batched).
    """
    alg = CG(normal, rhs, x0, damping=damping, batch_ndim=batch_ndim, tol=tol)
    return run(alg, max_iter, tol=tol, check_every=check_every, callback=callback, progress=progress)


# ---- power iteration ------------------------------------------------------------------------------

class PowerIteration(Alg):
    """Power iteration for the largest eigenvalue of a Hermitian PSD callable ``normal``, from the
    non-zero start ``v0``. After each step ``lam`` is the Rayleigh quotient ``Re<v, N v>`` of the
    (unit) previous vector and ``residual`` its relative change."""

    name = "power_iteration"

    def __init__(self, normal, v0):
        super().__init__()
        self.normal = normal
        self.shape = shape_of(v0)
        self.x = scale(1.0 / norm(v0), v0)
        self.lam = _array.scalar(v0, 0.0)

    def step(self):
        w = apply_checked(self.normal, self.x, self.shape, "power_iteration: normal")
        lam = rdot(self.x, w)
        wn = norm(w)
        self.x = scale(where(wn > 0, 1.0 / where(wn > 0, wn, 1.0), 0.0), w)
        self.residual = safe_div(abs(lam - self.lam), abs(lam))
        self.lam = lam
        self.iter += 1

    def result(self):
        return self.lam


def _random_like(ref, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    v = rng.standard_normal(shape)
    if dt.kind == "c":
        v = v + 1j * rng.standard_normal(shape)
    v = v.astype(dt)
    if ref is not None and _array.is_torch(ref):
        import torch

        return torch.from_numpy(v).to(ref.device)
    return v


def power_iteration(normal, x0_or_shape_like, n_iter: int = 20, *, dtype=None, seed: int = 0,
                    tol: float = 0.0, return_vector: bool = False):
    """Largest eigenvalue of a Hermitian PSD callable ``normal`` (e.g. ``||A||^2`` from ``A.normal``).

    Parameters
    ----------
    normal : callable
        ``x -> N x``, Hermitian positive semi-definite.
    x0_or_shape_like : array or tuple of int
        An array: its shape, dtype and backend (numpy / torch) define the vector space; if it is
        non-zero it is the starting vector, otherwise a seeded random vector like it is used.
        A shape tuple: a seeded random numpy vector of that shape and ``dtype`` (default float64;
        pass e.g. ``dtype='complex64'`` to match an operator's dtype).
    n_iter : int
        Number of applications of ``normal``.
    tol : float
        Stop early when the estimate changes by less than ``tol`` (relative). 0: run all ``n_iter``.
    return_vector : bool
        Also return the final unit-norm vector.

    Returns
    -------
    float
        Rayleigh quotient ``Re<v, N v> / <v, v>`` at the last iterate: a lower bound that converges to
        ``lambda_max`` (from below). For step sizes (``1 / L``) a safety factor such as 1.01 is
        sensible when ``n_iter`` is small.
    """
    n_iter = check_iters(n_iter, "n_iter")
    if n_iter < 1:
        raise ValueError("power_iteration: n_iter must be >= 1")
    if _array.is_array(x0_or_shape_like):
        ref = x0_or_shape_like
        check_array(ref, "power_iteration: x0")
        shape = tuple(ref.shape)
        v = copy(ref) if float(norm(ref)) > 0 else _random_like(ref, shape, _array.dtype_name(ref), seed)
    else:
        try:
            shape = tuple(int(s) for s in x0_or_shape_like)
        except TypeError:
            raise TypeError("power_iteration: expected an array or a shape tuple, got "
                            f"{type(x0_or_shape_like).__name__}") from None
        v = _random_like(None, shape, dtype or "float64", seed)
    alg = PowerIteration(normal, v)
    lam, _ = run(alg, n_iter, tol=tol, history=False)
    lam = float(lam)
    return (lam, alg.x) if return_vector else lam


def cg_x_update(normal_f, rhs_f, KHK=None, KH=None, *, cg_iter: int = 5, cg_tol: float = 1e-6):
    """An ADMM ``x_update`` for ``f(x) = ||A x - y||^2 / 2``: solves
    ``(A^H A + rho K^H K) x = A^H y + rho K^H v`` by :func:`cg`, warm-started at the previous x.

    ``normal_f`` is ``x -> A^H A x``; ``rhs_f`` the array ``A^H y``; ``KHK`` ``x -> K^H K x`` and
    ``KH`` ``v -> K^H v`` (both identity when omitted, i.e. ``K = I``). ``cg_tol=0`` runs ``cg_iter``
    iterations without waiting for the device.
    """
    KHK = KHK or (lambda v: v)
    KH = KH or (lambda v: v)

    def update(v, rho, x_prev):
        normal = lambda w: axpy(rho, KHK(w), normal_f(w))  # noqa: E731
        rhs = axpy(rho, KH(v), rhs_f)
        if cg_tol == 0:  # a fixed number of steps: nothing waits for the device
            alg = CG(normal, rhs, x_prev)
            for _ in range(cg_iter):
                alg.step()
            return alg.x
        x, _ = cg(normal, rhs, x_prev, max_iter=cg_iter, tol=cg_tol, progress=False)
        return x

    return update
