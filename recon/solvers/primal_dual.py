"""Primal-dual splitting: PDHG (Chambolle-Pock, incl. the accelerated variant) and scaled ADMM as step
objects, with the classical function API (``pdhg``, ``admm``).

``K`` may be a :class:`recon.ops.Operator` (e.g. ``Stack([A, D])``, whose output is one array and
whose ``split``/``join`` serve a separable prox, :func:`recon.solvers.prox.separable`) or a callable
with its adjoint ``KH``; dual variables may also be tuples of arrays.
"""

from __future__ import annotations

import math

from ._util import (add, apply_checked, axpy, check_array, check_iters, check_positive, check_same_shape, copy,
                    lincomb, maximum, norm, safe_div, scale, shape_of, sub, zeros_like)
from .cg import power_iteration
from .loop import Alg, run

__all__ = ["PDHG", "ADMM", "pdhg", "admm"]


def operator_pair(K, KH, what: str):
    """``(K, KH)`` callables from an Operator (``KH`` None: its adjoint) or from two callables."""
    if KH is None and hasattr(K, "adjoint") and hasattr(K, "forward"):
        return K.forward, K.adjoint
    if not callable(K) or not callable(KH):
        raise TypeError(f"{what}: K and KH must be callables (or K a recon.ops.Operator and KH None)")
    return K, KH


def _identity_prox(v, t):
    return v


class PDHG(Alg):
    """PDHG / Chambolle-Pock (2011) for ``min_x f(K x) + g(x)`` as a step object.

    Iteration (``xbar_0 = x_0``)::

        y_{k+1}    = prox_f_conj(y_k + sigma * K xbar_k, sigma)       (prox of sigma f*)
        x_{k+1}    = prox_g(x_k - tau * KH y_{k+1}, tau)              (prox of tau g)
        xbar_{k+1} = x_{k+1} + theta (x_{k+1} - x_k)

    ``K xbar`` is kept as ``(1 + theta) K x_{k+1} - theta K x_k`` (one ``K`` and one ``KH`` per step).
    Converges for ``theta = 1`` and ``sigma * tau * ||K||^2 <= 1``; ``sigma``/``tau`` None are set
    from ``||K||^2`` (``norm_iter`` power iterations, see :func:`pdhg`). ``gamma > 0`` (strong
    convexity of ``g``) selects the accelerated variant (Algorithm 2): ``theta_k = 1/sqrt(1 + 2 gamma
    tau_k)``, ``tau_{k+1} = theta_k tau_k``, ``sigma_{k+1} = sigma_k / theta_k``.

    ``sigma``, ``tau`` (and ``theta``) are plain attributes: a learned unrolled network may set them
    (tensors) before each ``step()``. ``residual`` = ``||x_{k+1} - x_k|| / ||x_{k+1}||``;
    ``residuals=True`` also computes Goldstein et al.'s primal and dual residual norms each step
    (``extras()``: ``primal_residual``, ``dual_residual``).
    """

    name = "pdhg"

    def __init__(self, K, KH, prox_f_conj, prox_g, x0, *, sigma=None, tau=None, theta: float = 1.0,
                 gamma: float = 0.0, y0=None, norm_iter: int = 30, residuals: bool = True):
        super().__init__()
        check_array(x0, "pdhg: x0")
        self.shape = shape_of(x0)
        self.K, self.KH = operator_pair(K, KH, "pdhg")
        self.theta = float(theta)
        if not 0.0 <= self.theta <= 1.0:
            raise ValueError(f"pdhg: theta must lie in [0, 1], got {theta}")
        self.gamma = check_positive(gamma, "pdhg: gamma", allow_zero=True)
        self.sigma, self.tau = self._steps(sigma, tau, x0, check_iters(norm_iter, "norm_iter"))
        self.prox_f_conj = prox_f_conj
        self.prox_g = prox_g if prox_g is not None else _identity_prox
        self.residuals = bool(residuals)
        self.x = copy(x0)
        self.Kx = self.K(self.x)
        if y0 is None:
            self.y = zeros_like(self.Kx)
        else:
            check_array(y0, "pdhg: y0")
            check_same_shape(y0, shape_of(self.Kx), "pdhg: y0")
            self.y = copy(y0)
        self.KHy = self._KH(self.y)
        self.Kxbar = self.Kx
        self._res = {}

    def _steps(self, sigma, tau, x0, norm_iter):
        if sigma is None or tau is None:
            if sigma is not None:
                check_positive(sigma, "pdhg: sigma")
            if tau is not None:
                check_positive(tau, "pdhg: tau")
            L2 = power_iteration(lambda v: self.KH(self.K(v)), x0, norm_iter) * 1.02
            if L2 <= 0:
                raise ValueError("pdhg: ||K|| estimated as 0; give sigma and tau")
            if sigma is None and tau is None:
                sigma = tau = 0.99 / math.sqrt(L2)
            elif sigma is None:
                sigma = 0.99 / (L2 * float(tau))
            else:
                tau = 0.99 / (L2 * float(sigma))
        return check_positive(sigma, "pdhg: sigma"), check_positive(tau, "pdhg: tau")

    def _KH(self, y):
        return apply_checked(self.KH, y, self.shape, "pdhg: KH")

    def step(self):
        sigma, tau, theta = self.sigma, self.tau, self.theta
        x, y, Kx, KHy, Kxbar = self.x, self.y, self.Kx, self.KHy, self.Kxbar
        if self.prox_f_conj is None:
            y_new = zeros_like(y)
        else:
            y_new = self.prox_f_conj(axpy(sigma, Kxbar, y), sigma)
        KHy_new = self._KH(y_new)
        x_new = apply_checked(lambda v: self.prox_g(v, tau), axpy(-tau, KHy_new, x), self.shape, "pdhg: prox_g")
        Kx_new = self.K(x_new)
        if self.residuals:  # Goldstein, Li, Yuan, Esser & Baraniuk 2015
            self._res = {"primal_residual": norm(sub(scale(1.0 / tau, sub(x, x_new)), sub(KHy, KHy_new))),
                         "dual_residual": norm(sub(scale(1.0 / sigma, sub(y, y_new)), sub(Kxbar, Kx_new)))}
        self.residual = safe_div(norm(sub(x_new, x)), norm(x_new))
        if self.gamma > 0:
            theta = 1.0 / math.sqrt(1.0 + 2.0 * self.gamma * tau)
            self.theta, self.tau, self.sigma = theta, tau * theta, sigma / theta
        self.Kxbar = lincomb(1.0 + theta, Kx_new, -theta, Kx) if theta else Kx_new
        self.x, self.y, self.Kx, self.KHy = x_new, y_new, Kx_new, KHy_new
        self.iter += 1

    def extras(self):
        return dict(self._res)


def pdhg(K, KH, prox_f_conj, prox_g, x0, *, sigma=None, tau=None, theta: float = 1.0,
         max_iter: int = 100, tol: float = 1e-5, y0=None, gamma: float = 0.0, objective=None,
         callback=None, progress=None, norm_iter: int = 30):
    """PDHG / Chambolle-Pock (2011) for ``min_x f(K x) + g(x)`` (:class:`PDHG` run by :func:`run`).

    Parameters
    ----------
    K, KH : callable, or K a :class:`recon.ops.Operator` and KH None
        ``x -> K x`` and its adjoint ``y -> K^H y``. With ``K = Stack([A, D])`` the dual variable is
        one array and ``prox_f_conj = separable([...], K)`` acts block by block; a tuple-valued
        ``K`` (e.g. ``K(x) = (A x, D x)``) works too, ``prox_f_conj`` then takes and returns tuples.
    prox_f_conj : callable or None
        ``(v, s) -> prox_{s f*}(v)``; by Moreau, ``prox_{s f*}(v) = v - s prox_{f/s}(v/s)``.
        ``None`` means ``f = 0`` (so ``y = 0``).
    prox_g : callable or None
        ``(v, t) -> prox_{t g}(v)``; None means ``g = 0``.
    x0 : array
    sigma, tau : float or None
        Dual and primal steps. Leave both None to use ``sigma = tau = 0.99 / ||K||`` with
        ``||K||^2`` estimated by ``norm_iter`` power iterations on ``KH(K(.))`` (times 1.02); give one
        and the other is set to ``0.99 / (||K||^2 * given)``.
    theta : float in [0, 1]
        Extrapolation parameter (ignored when ``gamma > 0``).
    gamma : float >= 0
        Strong-convexity modulus of ``g``; > 0 selects the accelerated variant (see :class:`PDHG`).
    tol : float
        Stop when ``||x_{k+1} - x_k|| <= tol * ||x_{k+1}||`` (0 disables: no host synchronisation).
    y0 : array or tuple, optional
        Starting dual variable (zeros of ``K(x0)``'s shape otherwise).
    objective : callable, optional
        Primal objective ``x -> f(Kx) + g(x)`` recorded per iteration.

    Returns
    -------
    x : array
    history : History
        ``residual`` = relative change of x; ``extra['primal_residual']`` and
        ``extra['dual_residual']``; ``extra['sigma']``, ``extra['tau']`` the initial steps;
        ``extra['y']`` the final dual variable (one entry).
    """
    alg = PDHG(K, KH, prox_f_conj, prox_g, x0, sigma=sigma, tau=tau, theta=theta, gamma=gamma, y0=y0,
               norm_iter=norm_iter)
    sigma0, tau0 = alg.sigma, alg.tau
    x, hist = run(alg, max_iter, tol=tol, objective=objective, callback=callback, progress=progress)
    hist.extra["sigma"], hist.extra["tau"] = [sigma0], [tau0]
    hist.extra["y"] = [alg.y]
    return x, hist


# ---- ADMM -----------------------------------------------------------------------------------------

class ADMM(Alg):
    """Scaled-form ADMM (Boyd et al. 2011) for ``min_x f(x) + g(K x)`` with the split ``z = K x``::

        x_{k+1} = x_update(z_k - u_k, rho, x_k)      = argmin_x f(x) + rho/2 ||K x - (z_k - u_k)||^2
        z_{k+1} = prox_g(K x_{k+1} + u_k, 1 / rho)
        u_{k+1} = u_k + K x_{k+1} - z_{k+1}

    ``residual`` = primal residual ``||K x - z||``; ``extras()['dual_residual'] = rho ||K^H (z_{k+1} -
    z_k)||`` (``rho ||z_{k+1} - z_k||`` without ``KH``). ``converged(tol)``: both Boyd residuals small
    (``||K x - z|| <= tol max(||K x||, ||z||)`` and dual ``<= tol rho ||K^H u||``), evaluated only at
    check points (it costs one ``KH``).
    """

    name = "admm"

    def __init__(self, x_update, prox_g, x0, *, rho: float = 1.0, K=None, KH=None, z0=None, u0=None):
        super().__init__()
        check_array(x0, "admm: x0")
        self.shape = shape_of(x0)
        self.rho = check_positive(rho, "admm: rho")
        if prox_g is None:
            raise ValueError("admm: prox_g is required")
        if K is not None and KH is None and hasattr(K, "adjoint"):
            K, KH = K.forward, K.adjoint
        self.K = K if K is not None else (lambda v: v)
        self.KH = KH if KH is not None else (None if K is not None else (lambda v: v))
        self.x_update, self.prox_g = x_update, prox_g
        self.x = copy(x0)
        self.Kx = self.K(self.x)
        kshape = shape_of(self.Kx)
        for v, nm in ((z0, "z0"), (u0, "u0")):
            if v is not None:
                check_array(v, f"admm: {nm}")
                check_same_shape(v, kshape, f"admm: {nm}")
        self.z = copy(self.Kx) if z0 is None else copy(z0)
        self.u = zeros_like(self.Kx) if u0 is None else copy(u0)
        self.dual_residual = None

    def _norm_KH(self, v):
        return norm(self.KH(v)) if self.KH is not None else norm(v)

    def step(self):
        rho, x_prev = self.rho, self.x
        self.x = apply_checked(lambda v: self.x_update(v, rho, x_prev), sub(self.z, self.u), self.shape,
                               "admm: x_update")
        Kx = self.K(self.x)
        z_new = self.prox_g(add(Kx, self.u), 1.0 / rho)
        self.u = add(self.u, sub(Kx, z_new))
        self.residual = norm(sub(Kx, z_new))
        self.dual_residual = rho * self._norm_KH(sub(z_new, self.z))
        self.Kx, self.z = Kx, z_new
        self.iter += 1

    def converged(self, tol):
        eps_p = tol * maximum(norm(self.Kx), norm(self.z))
        eps_d = tol * self.rho * self._norm_KH(self.u)
        return (self.residual <= eps_p) & (self.dual_residual <= eps_d)

    def extras(self):
        return {"dual_residual": self.dual_residual}


def admm(x_update, prox_g, x0, *, rho: float = 1.0, K=None, KH=None, max_iter: int = 50,
         tol: float = 1e-4, z0=None, u0=None, objective=None, callback=None, progress=None):
    """Scaled-form ADMM for ``min_x f(x) + g(K x)`` (:class:`ADMM` run by :func:`run`).

    Parameters
    ----------
    x_update : callable
        ``(v, rho, x_prev) -> x`` solving (exactly or approximately, warm-started at ``x_prev``)
        ``argmin_x f(x) + rho/2 ||K x - v||^2``. For ``f = ||A x - y||^2 / 2`` use :func:`cg_x_update`.
    prox_g : callable
        ``(v, t) -> prox_{t g}(v)``.
    x0 : array
    rho : float > 0
        Penalty parameter.
    K, KH : callable, optional (or K an Operator)
        The splitting operator and its adjoint (identity when omitted). ``KH`` is only used for the
        dual residual; without it the dual residual is ``rho ||z_{k+1} - z_k||``.
    tol : float
        Stop when both Boyd residuals are small (see :class:`ADMM`; 0 disables).
    z0, u0 : optional
        Starting split and scaled dual variables (``K x0`` and zeros by default).

    Returns
    -------
    x : array
    history : History
        ``residual`` = primal residual ``||K x - z||``; ``extra['dual_residual']``; ``objective`` when
        given.
    """
    alg = ADMM(x_update, prox_g, x0, rho=rho, K=K, KH=KH, z0=z0, u0=u0)
    return run(alg, max_iter, tol=tol, objective=objective, callback=callback, progress=progress)
