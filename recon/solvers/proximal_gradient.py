"""Proximal gradient methods for ``min_x f(x) + g(x)``: FISTA and POGM as step objects, with the
classical function API (``fista``, ``pogm``: build the step object, call :func:`recon.solvers.run`).
"""

from __future__ import annotations

from ._util import (add, apply_checked, axpy, check_array, check_iters, check_positive, copy, lincomb, norm,
                    rdot, safe_div, scale, shape_of, sqrt, sub, where)
from .loop import Alg, run

__all__ = ["FISTA", "POGM", "fista", "pogm"]


def _prox_or_identity(prox_g):
    if prox_g is None:
        return lambda v, t: v
    return prox_g


class _ProximalGradient(Alg):
    def __init__(self, grad_f, prox_g, x0, step, restart: bool):
        super().__init__()
        check_array(x0, f"{self.name}: x0")
        self.shape = shape_of(x0)
        self.step_size = check_positive(step, f"{self.name}: step")
        self.grad_f = grad_f
        self.prox = _prox_or_identity(prox_g)
        self.restart = bool(restart)
        self.x = copy(x0)
        self.did_restart = False

    def _grad(self, v):
        return apply_checked(self.grad_f, v, self.shape, f"{self.name}: grad_f")

    def _prox(self, v, t):
        return apply_checked(lambda u: self.prox(u, t), v, self.shape, f"{self.name}: prox_g")

    def _finish(self, x_new):
        dx = sub(x_new, self.x)
        self.residual = safe_div(norm(dx), norm(x_new))
        self.x = x_new
        self.iter += 1
        return dx

    def extras(self):
        return {"restart": self.did_restart}


class FISTA(_ProximalGradient):
    """FISTA (Beck & Teboulle 2009) for ``min_x f(x) + g(x)``, ``f`` smooth convex, ``g`` convex.

    Iteration (``t_0 = 1``, ``z_0 = x_0``)::

        x_{k+1} = prox_g(z_k - step * grad_f(z_k), step)
        t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
        z_{k+1} = x_{k+1} + (t_k - 1) / t_{k+1} * (x_{k+1} - x_k)

    ``restart``: adaptive gradient restart (O'Donoghue & Candes 2015), ``t = 1`` when
    ``Re<z_k - x_{k+1}, x_{k+1} - x_k> > 0`` (a select on the device, no host test).
    ``residual`` = ``||x_{k+1} - x_k|| / ||x_{k+1}||``. ``step`` may be a tensor (a learned step).
    """

    name = "fista"

    def __init__(self, grad_f, prox_g, x0, step, *, restart: bool = True):
        super().__init__(grad_f, prox_g, x0, step, restart)
        self.z = self.x
        self.t = 1.0

    def step(self):
        s = self.step_size
        x_new = self._prox(axpy(-s, self._grad(self.z), self.z), s)
        z = self.z
        dx = self._finish(x_new)
        t = self.t
        if self.restart and self.iter > 1:
            self.did_restart = rdot(sub(z, x_new), dx) > 0
            t = where(self.did_restart, 1.0, t)
        t_new = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t))
        self.z = axpy((t - 1.0) / t_new, dx, x_new)
        self.t = t_new


class POGM(_ProximalGradient):
    """POGM, the proximal optimized gradient method (Taylor, Hendrickx & Glineur 2017; adaptive
    gradient restart of Kim & Fessler, J Optim Theory Appl 2018) for ``min f(x) + g(x)``.

    With ``alpha = step`` (``<= 1/L``), ``t_0 = 1``, ``w_0 = z_0 = x_0``, ``gamma_0 = alpha``::

        t_k     = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2      (1 + 8 t_{k-1}^2 at iteration k = n_iter)
        beta_k  = (t_{k-1} - 1) / t_k,   c_k = t_{k-1} / t_k
        w_k     = x_{k-1} - alpha * grad_f(x_{k-1})
        z_k     = w_k + beta_k (w_k - w_{k-1}) + c_k (w_k - x_{k-1})
                  + beta_k * alpha / gamma_{k-1} * (z_{k-1} - x_{k-1})
        gamma_k = alpha * (1 + beta_k + c_k)
        x_k     = prox_g(z_k, gamma_k)

    The prox step ``gamma_k`` approaches ``3 alpha`` (a device scalar once a restart happened):
    ``prox_g`` must accept any positive step. Restart (``restart=True``): with
    ``G_k = grad_f(x_{k-1}) - (x_k - z_k) / gamma_k`` and ``y_k = x_{k-1} - alpha G_k``, ``t_k = 1``
    when ``Re<G_k, y_k - y_{k-1}> >= 0``. ``n_iter``: the planned number of iterations (the last one
    uses the factor 8); None never uses it. ``residual`` = relative change of ``x``.
    """

    name = "pogm"

    def __init__(self, grad_f, prox_g, x0, step, *, restart: bool = True, n_iter: int | None = None):
        super().__init__(grad_f, prox_g, x0, step, restart)
        self.n_iter = None if n_iter is None else check_iters(n_iter, "pogm: n_iter")
        self.w_old = self.z_old = self.y_old = self.x
        self.t_old = 1.0
        self.gamma_old = self.step_size

    def step(self):
        alpha, x, t_old = self.step_size, self.x, self.t_old
        g = self._grad(x)
        w = axpy(-alpha, g, x)
        fac = 8.0 if self.iter + 1 == self.n_iter else 4.0
        t = 0.5 * (1.0 + sqrt(1.0 + fac * t_old * t_old))
        beta = (t_old - 1.0) / t
        c = t_old / t
        z = add(lincomb(1.0 + beta + c, w, -beta, self.w_old), scale(-c, x))
        z = axpy(beta * alpha / self.gamma_old, sub(self.z_old, x), z)   # beta = 0: adds exactly 0
        gamma = alpha * (1.0 + beta + c)
        x_new = self._prox(z, gamma)
        G = axpy(-1.0 / gamma, sub(x_new, z), g)   # composite gradient mapping
        y = axpy(-alpha, G, x)
        if self.restart and self.iter > 0:
            self.did_restart = rdot(G, sub(y, self.y_old)) >= 0
            t = where(self.did_restart, 1.0, t)
        self._finish(x_new)
        self.w_old, self.z_old, self.y_old, self.t_old, self.gamma_old = w, z, y, t, gamma


def _run_first_order(alg, max_iter, tol, objective, callback, progress):
    return run(alg, max_iter, tol=tol, objective=objective, callback=callback, progress=progress)


def fista(grad_f, prox_g, x0, step, *, max_iter: int = 50, tol: float = 1e-5, restart: bool = True,
          objective=None, callback=None, progress=None):
    """FISTA for ``min_x f(x) + g(x)`` (:class:`FISTA` run by :func:`recon.solvers.run`).

    Parameters
    ----------
    grad_f : callable
        ``x -> grad f(x)``, Lipschitz with constant ``L``.
    prox_g : callable or None
        ``(v, t) -> argmin_z g(z) + ||z - v||^2 / (2 t)``. None means ``g = 0``.
    x0 : array
        Starting point (numpy array or torch tensor; real or complex; batched allowed).
    step : float
        Step size, ``0 < step <= 1 / L`` (e.g. ``1 / power_iteration(A.normal, x0)`` for
        ``f = ||Ax - y||^2 / 2``).
    max_iter : int
    tol : float
        Stop when ``||x_{k+1} - x_k|| <= tol * ||x_{k+1}||`` (0 disables: no host synchronisation).
    restart : bool
        Adaptive gradient restart (see :class:`FISTA`).
    objective : callable, optional
        ``x -> f(x) + g(x)``, recorded each iteration (costs one evaluation).
    callback, progress : see :func:`recon.solvers.cg`.

    Returns
    -------
    x : array
    history : History
        ``residual`` = relative change ``||x_{k+1} - x_k|| / ||x_{k+1}||``; ``objective`` when given;
        ``extra['restart']`` booleans.
    """
    max_iter = check_iters(max_iter)
    return _run_first_order(FISTA(grad_f, prox_g, x0, step, restart=restart), max_iter, tol, objective,
                            callback, progress)


def pogm(grad_f, prox_g, x0, step, *, max_iter: int = 50, tol: float = 1e-5, restart: bool = True,
         objective=None, callback=None, progress=None):
    """POGM for ``min f(x) + g(x)`` (:class:`POGM` run by :func:`recon.solvers.run`). Same arguments
    and return as :func:`fista`. The last-iteration factor 8 is used only when the solver reaches
    ``max_iter`` (not when ``tol`` stops it earlier). The returned iterate is ``x_k`` (the prox output).
    """
    max_iter = check_iters(max_iter)
    return _run_first_order(POGM(grad_f, prox_g, x0, step, restart=restart, n_iter=max_iter), max_iter, tol,
                            objective, callback, progress)
