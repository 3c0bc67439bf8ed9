"""Generic iterative solvers over callables: CG, power iteration, FISTA, POGM, PDHG, ADMM.

All solvers follow SigPy's rule: they take callables (``normal(x)``, ``grad_f(x)``,
``prox_g(v, t)``, ``K(x)``, ...) rather than operator objects, and return ``(x, history)`` where
``history`` is a :class:`recon.solvers.History`. They work on numpy arrays and torch tensors
(a tensor in gives a tensor out; no autograd through the solvers: call them under
``torch.no_grad()`` or on detached tensors), on real (float32/float64) and complex
(complex64/complex128) data, and on batched arrays: the whole array is ONE vector (inner products
and norms run over every element, batch axes included), so a batch of independent problems is
solved as one block-diagonal problem with shared step sizes and a shared stopping test.

Conventions
-----------
- ``prox_g(v, t)`` returns ``argmin_z g(z) + ||z - v||^2 / (2 t)`` (the prox of ``t * g``).
- Inner products are real parts of Hermitian ones: ``Re <a, b> = Re sum(conj(a) * b)``; this is
  the inner product of C^n seen as R^2n, so complex problems are minimised over R^2n.
- Tolerances are relative; ``tol=0`` runs exactly ``max_iter`` iterations.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .. import _array
from ._util import (History, add, axpy, check_array, check_iters, check_positive, check_same_shape,
                    copy, lincomb, norm, progress_bar, rdot, scale, shape_of, sub, zeros_like)

__all__ = ["cg", "power_iteration", "fista", "pogm", "pdhg", "admm", "cg_x_update"]


def _apply_checked(f, x, shape, what):
    out = f(x)
    if not _array.is_array(out) and not isinstance(out, (tuple, list)):
        raise TypeError(f"{what} returned {type(out).__name__}, expected an array")
    check_same_shape(out, shape, f"{what} output")
    return out


def _nonfinite(value: float, what: str, k: int):
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} became non-finite at iteration {k} (step size too large, or "
                                 f"a callable returned NaN/Inf)")


# ---- conjugate gradient -------------------------------------------------------------------------

def cg(normal, rhs, x0=None, *, max_iter: int = 30, tol: float = 1e-6, damping: float = 0.0,
       callback=None, progress=None):
    """Conjugate gradient for ``(normal + damping * I) x = rhs``.

    Parameters
    ----------
    normal : callable
        ``x -> N x`` with ``N`` Hermitian positive semi-definite (e.g. ``A.normal`` for least
        squares ``min ||A x - y||^2``, whose normal equations are ``A^H A x = A^H y``).
    rhs : array
        Right-hand side (numpy array or torch tensor, real or complex, any shape; leading batch
        axes are part of the one vector: see the module docstring).
    x0 : array, optional
        Starting point (zeros when omitted); same shape as ``rhs``.
    max_iter : int
        Maximum number of CG iterations (each costs one ``normal`` call).
    tol : float
        Stop when ``||rhs - (N + damping I) x_k|| <= tol * ||rhs||`` (recursively updated residual).
    damping : float
        Tikhonov term ``lambda >= 0`` added to the diagonal (solves ``min ||Ax-y||^2 + lambda ||x||^2``).
    callback : callable, optional
        ``callback(k, x_k)`` after each iteration ``k = 1, 2, ...``.
    progress : bool or None
        tqdm bar; None shows it only when stderr is a terminal.

    Returns
    -------
    x : array, same kind/shape/dtype as ``rhs``
    history : History
        ``residual[k-1] = ||r_k|| / ||rhs||`` after iteration ``k``; ``time``.
    """
    check_array(rhs, "cg: rhs")
    shape = tuple(rhs.shape)
    max_iter = check_iters(max_iter)
    tol = check_positive(tol, "cg: tol", allow_zero=True)
    damping = check_positive(damping, "cg: damping", allow_zero=True)
    hist = History()
    t0 = time.perf_counter()

    def op(v):
        out = _apply_checked(normal, v, shape, "cg: normal")
        return axpy(damping, v, out) if damping else out

    bnorm = norm(rhs)
    if x0 is None:
        x = zeros_like(rhs)
        r = copy(rhs)
    else:
        check_array(x0, "cg: x0")
        check_same_shape(x0, shape, "cg: x0")
        x = copy(x0)
        r = sub(rhs, op(x))
    if bnorm == 0.0:
        hist.converged, hist.stop_reason = True, "zero_rhs"
        return zeros_like(rhs), hist

    p = copy(r)
    rr = rdot(r, r)
    if math.sqrt(rr) <= tol * bnorm:
        hist.converged, hist.stop_reason = True, "tol"
        return x, hist
    bar = progress_bar(progress, max_iter, "cg")
    try:
        for k in range(1, max_iter + 1):
            Ap = op(p)
            pAp = rdot(p, Ap)
            _nonfinite(pAp, "cg: <p, N p>", k)
            if pAp <= 0:
                hist.stop_reason = "breakdown (p^H N p <= 0: normal is not positive definite here)"
                break
            alpha = rr / pAp
            x = axpy(alpha, p, x)
            r = axpy(-alpha, Ap, r)
            rr_new = rdot(r, r)
            rel = math.sqrt(max(rr_new, 0.0)) / bnorm
            hist.record(t0, residual=rel)
            bar.update()
            bar.set_postfix(res=f"{rel:.2e}", refresh=False)
            if callback is not None:
                callback(k, x)
            if rel <= tol:
                hist.converged, hist.stop_reason = True, "tol"
                break
            p = axpy(rr_new / rr, p, r)
            rr = rr_new
        else:
            hist.stop_reason = "max_iter"
    finally:
        bar.close()
    return x, hist


# ---- power iteration ----------------------------------------------------------------------------

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
        v = copy(ref) if norm(ref) > 0 else _random_like(ref, shape, _array.dtype_name(ref), seed)
    else:
        try:
            shape = tuple(int(s) for s in x0_or_shape_like)
        except TypeError:
            raise TypeError("power_iteration: expected an array or a shape tuple, got "
                            f"{type(x0_or_shape_like).__name__}") from None
        v = _random_like(None, shape, dtype or "float64", seed)
    v = scale(1.0 / norm(v), v)
    lam = 0.0
    for k in range(n_iter):
        w = _apply_checked(normal, v, shape, "power_iteration: normal")
        lam_new = rdot(v, w)
        _nonfinite(lam_new, "power_iteration: <v, N v>", k + 1)
        wn = norm(w)
        if wn == 0.0:
            lam = 0.0
            break
        v = scale(1.0 / wn, w)
        done = tol > 0 and abs(lam_new - lam) <= tol * abs(lam_new)
        lam = lam_new
        if done:
            break
    return (float(lam), v) if return_vector else float(lam)


# ---- FISTA and POGM -----------------------------------------------------------------------------

def _prox_or_identity(prox_g):
    if prox_g is None:
        return lambda v, t: v
    return prox_g


def _first_order_setup(name, x0, step, max_iter, tol):
    check_array(x0, f"{name}: x0")
    step = check_positive(step, f"{name}: step")
    max_iter = check_iters(max_iter)
    tol = check_positive(tol, f"{name}: tol", allow_zero=True)
    return tuple(x0.shape), step, max_iter, tol


def fista(grad_f, prox_g, x0, step, *, max_iter: int = 50, tol: float = 1e-5, restart: bool = True,
          objective=None, callback=None, progress=None):
    """FISTA (Beck & Teboulle 2009) for ``min_x f(x) + g(x)``, ``f`` smooth convex, ``g`` convex.

    Iteration (``t_0 = 1``, ``z_0 = x_0``)::

        x_{k+1} = prox_g(z_k - step * grad_f(z_k), step)
        t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
        z_{k+1} = x_{k+1} + (t_k - 1) / t_{k+1} * (x_{k+1} - x_k)

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
        Stop when ``||x_{k+1} - x_k|| <= tol * ||x_{k+1}||`` (0 disables).
    restart : bool
        Adaptive gradient restart (O'Donoghue & Candes 2015): momentum is reset (``t = 1``) when
        ``Re<z_k - x_{k+1}, x_{k+1} - x_k> > 0``. Keeps the decrease close to monotone.
    objective : callable, optional
        ``x -> f(x) + g(x)`` as a float, recorded each iteration (costs one evaluation).
    callback, progress : see :func:`cg`.

    Returns
    -------
    x : array
    history : History
        ``residual`` = relative change ``||x_{k+1} - x_k|| / ||x_{k+1}||``; ``objective`` when given;
        ``extra['restart']`` booleans.
    """
    shape, step, max_iter, tol = _first_order_setup("fista", x0, step, max_iter, tol)
    prox = _prox_or_identity(prox_g)
    hist = History()
    t0 = time.perf_counter()
    x = copy(x0)
    z = x
    t = 1.0
    bar = progress_bar(progress, max_iter, "fista")
    try:
        for k in range(1, max_iter + 1):
            g = _apply_checked(grad_f, z, shape, "fista: grad_f")
            x_new = _apply_checked(lambda v: prox(v, step), axpy(-step, g, z), shape, "fista: prox_g")
            dx = sub(x_new, x)
            dxn, xn = norm(dx), norm(x_new)
            _nonfinite(dxn, "fista: ||x_{k+1} - x_k||", k)
            did_restart = bool(restart and k > 1 and rdot(sub(z, x_new), dx) > 0)
            if did_restart:
                t = 1.0
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            z = axpy((t - 1.0) / t_new, dx, x_new)
            x, t = x_new, t_new
            rel = dxn / xn if xn > 0 else dxn
            hist.record(t0, residual=rel, objective=None if objective is None else objective(x),
                        restart=did_restart)
            bar.update()
            bar.set_postfix(rel=f"{rel:.2e}", refresh=False)
            if callback is not None:
                callback(k, x)
            if rel <= tol:
                hist.converged, hist.stop_reason = True, "tol"
                break
        else:
            hist.stop_reason = "max_iter"
    finally:
        bar.close()
    return x, hist


def pogm(grad_f, prox_g, x0, step, *, max_iter: int = 50, tol: float = 1e-5, restart: bool = True,
         objective=None, callback=None, progress=None):
    """POGM, the proximal optimized gradient method (Taylor, Hendrickx & Glineur 2017; with the
    adaptive gradient restart of Kim & Fessler, J Optim Theory Appl 2018) for ``min f(x) + g(x)``.

    Same arguments and return as :func:`fista`. With ``alpha = step`` (``<= 1/L``), ``t_0 = 1``,
    ``w_0 = z_0 = x_0``, ``gamma_0 = alpha``, iteration ``k = 1 .. N``::

        t_k     = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2      (1 + 8 t_{k-1}^2 at the last iteration k = N)
        beta_k  = (t_{k-1} - 1) / t_k,   c_k = t_{k-1} / t_k
        w_k     = x_{k-1} - alpha * grad_f(x_{k-1})
        z_k     = w_k + beta_k (w_k - w_{k-1}) + c_k (w_k - x_{k-1})
                  + beta_k * alpha / gamma_{k-1} * (z_{k-1} - x_{k-1})
        gamma_k = alpha * (1 + beta_k + c_k)
        x_k     = prox_g(z_k, gamma_k)

    Note the prox step ``gamma_k`` is larger than ``alpha`` (it approaches ``3 alpha``): ``prox_g``
    must accept any positive step. Restart (``restart=True``): with the composite gradient mapping
    ``G_k = grad_f(x_{k-1}) - (x_k - z_k) / gamma_k`` and ``y_k = x_{k-1} - alpha G_k``, momentum is
    reset (``t_k = 1``) when ``Re<-G_k, y_k - y_{k-1}> <= 0``. The last-iteration factor 8 is used
    only when the solver reaches ``max_iter`` (not when ``tol`` stops it earlier).
    The returned iterate is ``x_k`` (the prox output).
    """
    shape, alpha, max_iter, tol = _first_order_setup("pogm", x0, step, max_iter, tol)
    prox = _prox_or_identity(prox_g)
    hist = History()
    t0 = time.perf_counter()
    x = copy(x0)
    w_old = x
    z_old = x
    y_old = x
    t_old = 1.0
    gamma_old = alpha
    bar = progress_bar(progress, max_iter, "pogm")
    try:
        for k in range(1, max_iter + 1):
            g = _apply_checked(grad_f, x, shape, "pogm: grad_f")
            w = axpy(-alpha, g, x)
            fac = 8.0 if k == max_iter else 4.0
            t = 0.5 * (1.0 + math.sqrt(1.0 + fac * t_old * t_old))
            beta = (t_old - 1.0) / t
            c = t_old / t
            z = add(lincomb(1.0 + beta + c, w, -beta, w_old), scale(-c, x))
            if beta != 0.0:
                z = axpy(beta * alpha / gamma_old, sub(z_old, x), z)
            gamma = alpha * (1.0 + beta + c)
            x_new = _apply_checked(lambda v: prox(v, gamma), z, shape, "pogm: prox_g")
            # composite gradient mapping and restart test
            G = axpy(-1.0 / gamma, sub(x_new, z), g)
            y = axpy(-alpha, G, x)
            did_restart = bool(restart and k > 1 and rdot(G, sub(y, y_old)) >= 0)
            if did_restart:
                t = 1.0
            dx = sub(x_new, x)
            dxn, xn = norm(dx), norm(x_new)
            _nonfinite(dxn, "pogm: ||x_k - x_{k-1}||", k)
            x, w_old, z_old, y_old, t_old, gamma_old = x_new, w, z, y, t, gamma
            rel = dxn / xn if xn > 0 else dxn
            hist.record(t0, residual=rel, objective=None if objective is None else objective(x),
                        restart=did_restart)
            bar.update()
            bar.set_postfix(rel=f"{rel:.2e}", refresh=False)
            if callback is not None:
                callback(k, x)
            if rel <= tol:
                hist.converged, hist.stop_reason = True, "tol"
                break
        else:
            hist.stop_reason = "max_iter"
    finally:
        bar.close()
    return x, hist


# ---- primal-dual hybrid gradient ----------------------------------------------------------------

def pdhg(K, KH, prox_f_conj, prox_g, x0, *, sigma=None, tau=None, theta: float = 1.0,
         max_iter: int = 100, tol: float = 1e-5, y0=None, gamma: float = 0.0, objective=None,
         callback=None, progress=None, norm_iter: int = 30):
    """PDHG / Chambolle-Pock (2011) for ``min_x f(K x) + g(x)``.

    Iteration (``xbar_0 = x_0``)::

        y_{k+1}    = prox_f_conj(y_k + sigma * K xbar_k, sigma)       (prox of sigma f*)
        x_{k+1}    = prox_g(x_k - tau * KH y_{k+1}, tau)              (prox of tau g)
        xbar_{k+1} = x_{k+1} + theta (x_{k+1} - x_k)

    Converges for ``theta = 1`` and ``sigma * tau * ||K||^2 <= 1``.

    Parameters
    ----------
    K, KH : callable
        ``x -> K x`` and its adjoint ``y -> K^H y``. The dual variable ``y`` may be an array or a
        tuple of arrays (e.g. ``K(x) = (A x, D x)`` for a data term plus TV); ``prox_f_conj`` then
        receives and returns the same tuple.
    prox_f_conj : callable
        ``(v, s) -> prox_{s f*}(v)``; by Moreau, ``prox_{s f*}(v) = v - s prox_{f/s}(v/s)``.
        For ``f = lam ||.||_{2,1}`` it is the projection onto the ``lam``-ball
        (:func:`recon.solvers.prox.project_l21_ball`). ``None`` means ``f = 0`` (so ``y = 0``).
    prox_g : callable or None
        ``(v, t) -> prox_{t g}(v)``; None means ``g = 0``.
    x0 : array
    sigma, tau : float or None
        Dual and primal steps. Leave both None to use ``sigma = tau = 0.99 / ||K||`` with
        ``||K||^2`` estimated by ``norm_iter`` power iterations on ``KH(K(.))``; give one and the
        other is set to ``0.99 / (||K||^2 * given)``.
    theta : float in [0, 1]
        Extrapolation parameter (ignored when ``gamma > 0``).
    gamma : float >= 0
        Strong-convexity modulus of ``g`` (e.g. 1 for ``g = ||x - b||^2 / 2``). When > 0, Chambolle &
        Pock's accelerated variant (their Algorithm 2, O(1/k^2)) is used: after each iteration
        ``theta_k = 1 / sqrt(1 + 2 gamma tau_k)``, ``tau_{k+1} = theta_k tau_k``,
        ``sigma_{k+1} = sigma_k / theta_k``, and ``theta_k`` is the extrapolation weight.
    tol : float
        Stop when ``||x_{k+1} - x_k|| <= tol * ||x_{k+1}||`` (0 disables).
    y0 : array or tuple, optional
        Starting dual variable (zeros of ``K(x0)``'s shape otherwise).
    objective : callable, optional
        Primal objective ``x -> f(Kx) + g(x)`` recorded per iteration.

    Returns
    -------
    x : array
    history : History
        ``residual`` = relative change of x; ``extra['primal_residual']`` and
        ``extra['dual_residual']`` = the norms of Goldstein et al.'s PDHG residuals
        ``(x_k - x_{k+1}) / tau - KH(y_k - y_{k+1})`` and ``(y_k - y_{k+1}) / sigma - K(xbar_k - x_{k+1})``;
        ``extra['sigma']``, ``extra['tau']`` hold the initial steps; ``extra['y']`` the final dual
        variable (one entry).
    """
    check_array(x0, "pdhg: x0")
    shape = tuple(x0.shape)
    max_iter = check_iters(max_iter)
    tol = check_positive(tol, "pdhg: tol", allow_zero=True)
    theta = float(theta)
    gamma = check_positive(gamma, "pdhg: gamma", allow_zero=True)
    if not 0.0 <= theta <= 1.0:
        raise ValueError(f"pdhg: theta must lie in [0, 1], got {theta}")
    if sigma is None or tau is None:
        if sigma is not None:
            check_positive(sigma, "pdhg: sigma")
        if tau is not None:
            check_positive(tau, "pdhg: tau")
        L2 = power_iteration(lambda v: KH(K(v)), x0, norm_iter) * 1.02
        if L2 <= 0:
            raise ValueError("pdhg: ||K|| estimated as 0; give sigma and tau")
        if sigma is None and tau is None:
            sigma = tau = 0.99 / math.sqrt(L2)
        elif sigma is None:
            sigma = 0.99 / (L2 * float(tau))
        else:
            tau = 0.99 / (L2 * float(sigma))
    sigma = check_positive(sigma, "pdhg: sigma")
    tau = check_positive(tau, "pdhg: tau")
    prox_g = _prox_or_identity(prox_g)
    hist = History()
    hist.extra["sigma"], hist.extra["tau"] = [sigma], [tau]
    t0 = time.perf_counter()

    x = copy(x0)
    Kx = K(x)
    if y0 is None:
        y = zeros_like(Kx)
    else:
        check_array(y0, "pdhg: y0")
        check_same_shape(y0, shape_of(Kx), "pdhg: y0")
        y = copy(y0)
    KHy = _apply_checked(KH, y, shape, "pdhg: KH")
    Kxbar = Kx
    bar = progress_bar(progress, max_iter, "pdhg")
    try:
        for k in range(1, max_iter + 1):
            if prox_f_conj is None:
                y_new = zeros_like(y)
            else:
                y_new = prox_f_conj(axpy(sigma, Kxbar, y), sigma)
            KHy_new = _apply_checked(KH, y_new, shape, "pdhg: KH")
            x_new = _apply_checked(lambda v: prox_g(v, tau), axpy(-tau, KHy_new, x), shape, "pdhg: prox_g")
            Kx_new = K(x_new)
            # residuals (Goldstein, Li, Yuan, Esser & Baraniuk 2015)
            p_res = sub(scale(1.0 / tau, sub(x, x_new)), sub(KHy, KHy_new))
            d_res = sub(scale(1.0 / sigma, sub(y, y_new)), sub(Kxbar, Kx_new))
            dxn, xn = norm(sub(x_new, x)), norm(x_new)
            _nonfinite(dxn, "pdhg: ||x_{k+1} - x_k||", k)
            if gamma > 0:
                theta = 1.0 / math.sqrt(1.0 + 2.0 * gamma * tau)
                tau, sigma = tau * theta, sigma / theta
            Kxbar = lincomb(1.0 + theta, Kx_new, -theta, Kx) if theta else Kx_new
            x, y, Kx, KHy = x_new, y_new, Kx_new, KHy_new
            rel = dxn / xn if xn > 0 else dxn
            hist.record(t0, residual=rel, objective=None if objective is None else objective(x),
                        primal_residual=norm(p_res), dual_residual=norm(d_res))
            bar.update()
            bar.set_postfix(rel=f"{rel:.2e}", refresh=False)
            if callback is not None:
                callback(k, x)
            if rel <= tol:
                hist.converged, hist.stop_reason = True, "tol"
                break
        else:
            hist.stop_reason = "max_iter"
    finally:
        bar.close()
    hist.extra["y"] = [y]
    return x, hist


# ---- ADMM ---------------------------------------------------------------------------------------

def admm(x_update, prox_g, x0, *, rho: float = 1.0, K=None, KH=None, max_iter: int = 50,
         tol: float = 1e-4, z0=None, u0=None, objective=None, callback=None, progress=None):
    """Scaled-form ADMM (Boyd et al. 2011) for ``min_x f(x) + g(K x)`` with the split ``z = K x``.

    Iteration::

        x_{k+1} = x_update(z_k - u_k, rho, x_k)      = argmin_x f(x) + rho/2 ||K x - (z_k - u_k)||^2
        z_{k+1} = prox_g(K x_{k+1} + u_k, 1 / rho)   = argmin_z g(z) + rho/2 ||z - (K x_{k+1} + u_k)||^2
        u_{k+1} = u_k + K x_{k+1} - z_{k+1}

    Parameters
    ----------
    x_update : callable
        ``(v, rho, x_prev) -> x`` solving (exactly or approximately, warm-started at ``x_prev``)
        ``argmin_x f(x) + rho/2 ||K x - v||^2``. For a least-squares data term
        ``f = ||A x - y||^2 / 2`` use :func:`cg_x_update`.
    prox_g : callable
        ``(v, t) -> prox_{t g}(v)``.
    x0 : array
    rho : float > 0
        Penalty parameter.
    K, KH : callable, optional
        The splitting operator and its adjoint (identity when omitted). ``KH`` is only used for the
        dual residual; without it the dual residual is ``rho ||z_{k+1} - z_k||``.
    tol : float
        Stop when both Boyd residuals are small: ``||K x - z|| <= tol * max(||K x||, ||z||)`` and
        ``rho ||KH(z_{k+1} - z_k)|| <= tol * rho ||KH u||`` (0 disables).
    z0, u0 : optional
        Starting split and scaled dual variables (``K x0`` and zeros by default).

    Returns
    -------
    x : array
    history : History
        ``residual`` = primal residual ``||K x - z||``; ``extra['dual_residual']``; ``objective`` when
        given.
    """
    check_array(x0, "admm: x0")
    shape = tuple(x0.shape)
    rho = check_positive(rho, "admm: rho")
    max_iter = check_iters(max_iter)
    tol = check_positive(tol, "admm: tol", allow_zero=True)
    if prox_g is None:
        raise ValueError("admm: prox_g is required")
    Kf = K if K is not None else (lambda v: v)
    KHf = KH if KH is not None else (None if K is not None else (lambda v: v))
    hist = History()
    t0 = time.perf_counter()
    x = copy(x0)
    Kx = Kf(x)
    kshape = shape_of(Kx)
    if z0 is not None:
        check_array(z0, "admm: z0")
        check_same_shape(z0, kshape, "admm: z0")
    if u0 is not None:
        check_array(u0, "admm: u0")
        check_same_shape(u0, kshape, "admm: u0")
    z = copy(Kx) if z0 is None else copy(z0)
    u = zeros_like(Kx) if u0 is None else copy(u0)
    bar = progress_bar(progress, max_iter, "admm")
    try:
        for k in range(1, max_iter + 1):
            x = _apply_checked(lambda v: x_update(v, rho, x), sub(z, u), shape, "admm: x_update")
            Kx = Kf(x)
            z_new = prox_g(add(Kx, u), 1.0 / rho)
            u = add(u, sub(Kx, z_new))
            r = norm(sub(Kx, z_new))
            dz = sub(z_new, z)
            s = rho * (norm(KHf(dz)) if KHf is not None else norm(dz))
            _nonfinite(r + s, "admm: residuals", k)
            z = z_new
            hist.record(t0, residual=r, objective=None if objective is None else objective(x),
                        dual_residual=s)
            bar.update()
            bar.set_postfix(r=f"{r:.2e}", s=f"{s:.2e}", refresh=False)
            if callback is not None:
                callback(k, x)
            if tol > 0:
                eps_p = tol * max(norm(Kx), norm(z))
                eps_d = tol * rho * (norm(KHf(u)) if KHf is not None else norm(u))
                if r <= eps_p and s <= eps_d:
                    hist.converged, hist.stop_reason = True, "tol"
                    break
        else:
            hist.stop_reason = "max_iter"
    finally:
        bar.close()
    return x, hist


def cg_x_update(normal_f, rhs_f, KHK=None, KH=None, *, cg_iter: int = 5, cg_tol: float = 1e-6):
    """An ADMM ``x_update`` for ``f(x) = ||A x - y||^2 / 2``: solves
    ``(A^H A + rho K^H K) x = A^H y + rho K^H v`` by :func:`cg`, warm-started at the previous x.

    ``normal_f`` is ``x -> A^H A x``; ``rhs_f`` the array ``A^H y``; ``KHK`` ``x -> K^H K x`` and
    ``KH`` ``v -> K^H v`` (both identity when omitted, i.e. ``K = I``).
    """
    KHK = KHK or (lambda v: v)
    KH = KH or (lambda v: v)

    def update(v, rho, x_prev):
        x, _ = cg(lambda w: axpy(rho, KHK(w), normal_f(w)), axpy(rho, KH(v), rhs_f), x_prev,
                  max_iter=cg_iter, tol=cg_tol, progress=False)
        return x

    return update
