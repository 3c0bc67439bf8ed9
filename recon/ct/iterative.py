"""Iterative CT reconstruction on the matched projector (:class:`recon.ops.Projector`).

* :func:`sirt` - SIRT: ``x <- x + C A^T R (p - A x)``, ``R = 1 / (A 1)``, ``C = 1 / (A^T 1)``.
* :func:`os_sart` - ordered-subsets SART: the same update per subset of views (interleaved by
  angle, visited in bit-reversed order), one :class:`Projector` per subset built from the
  geometry's subset of angles.
* :func:`pwls_tv` - penalised weighted least squares with total variation,
  ``min_{x >= 0} 0.5 ||A x - p||_W^2 + beta TV(x)`` (isotropic TV, Neumann boundary, the
  :class:`recon.solvers.TotalVariation` of recon.solvers), optionally with the PICCS prior-image term
  ``beta (alpha TV(x - prior) + (1 - alpha) TV(x))`` (:class:`recon.solvers.PriorImageTV`); solved
  by FISTA (:func:`recon.solvers.fista`, inexact TV prox by FGP) or PDHG
  (:func:`recon.solvers.pdhg`, exact splitting ``K = (s W^1/2 A, D)`` with ``s`` balancing the blocks).

Units: ``x`` in 1/mm, ``p`` unitless line integrals, ``W`` 1/variance of ``p`` (e.g.
:func:`recon.ct.pwls_weights`), so ``beta`` has units of 1/variance x mm: it scales with the dose
(the weights). All functions return ``(x, history)`` with a :class:`recon.solvers.History`
(``residual``: relative data residual ``||A x - p|| / ||p||`` for SIRT/OS-SART, the solver's
relative change for PWLS-TV; ``objective`` when ``track_objective``), accept numpy arrays or CPU
torch tensors, and return the input's array kind.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .. import _array
from .geometry import ConeBeam3D, FanBeam2D, Geometry, ParallelBeam2D

__all__ = ["sirt", "os_sart", "pwls_tv", "subset_geometry", "subset_indices"]


# ---- helpers -------------------------------------------------------------------------------------

def _check_projector(projector, fn: str, need_geometry: bool = False):
    from ..ops import Operator

    if not isinstance(projector, Operator):
        raise TypeError(f"{fn}: projector must be a recon.ops.Operator (e.g. recon.ops.Projector), "
                        f"got {type(projector).__name__}")
    if projector.dtype.kind != "f":
        raise TypeError(f"{fn}: projector must be real (float32/float64), got {projector.dtype}")
    if need_geometry and not isinstance(getattr(projector, "geometry", None), Geometry):
        raise TypeError(f"{fn}: projector must carry a recon.ct geometry (recon.ops.Projector)")


def _as_data(a, shape, dtype, name: str, fn: str) -> np.ndarray:
    if not _array.is_array(a):
        raise TypeError(f"{fn}: {name} must be a numpy array or torch tensor, got {type(a).__name__}")
    arr = _array.to_numpy(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: {name} must be real, got dtype {arr.dtype}")
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{fn}: {name} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{fn}: {name} contains NaN or Inf")
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_iters(n, name: str, fn: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _bar(progress, total: int, desc: str):
    import sys

    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _safe_inverse(a: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    """1/a where a > rel * max(a), 0 elsewhere (rays missing the image, voxels no ray sees)."""
    amax = float(a.max()) if a.size else 0.0
    out = np.zeros_like(a)
    m = a > rel * amax
    out[m] = 1.0 / a[m]
    return out


def subset_geometry(geometry: Geometry, index) -> Geometry:
    """The same geometry restricted to the views ``index`` (:meth:`recon.geometry.Geometry.subset`)."""
    return geometry.subset(index)


def _bit_reversed(n: int) -> list[int]:
    bits = max(1, math.ceil(math.log2(max(n, 2))))
    order = sorted(range(1 << bits), key=lambda i: int(format(i, f"0{bits}b")[::-1], 2))
    return [i for i in order if i < n]


def subset_indices(n_angles: int, n_subsets: int) -> list[np.ndarray]:
    """Interleaved view subsets ``{i : i mod S == s}`` visited in bit-reversed order of ``s`` (so that
    consecutive subsets are far apart in angle)."""
    return [np.arange(s, n_angles, n_subsets) for s in _bit_reversed(n_subsets)]


def _residual(projector, x, p) -> float:
    r = projector.forward(x) - p
    pn = float(np.linalg.norm(p))
    return float(np.linalg.norm(r)) / (pn if pn > 0 else 1.0)


def _history():
    from ..solvers import History

    return History()


# ---- SIRT ----------------------------------------------------------------------------------------

def sirt(projector, sinogram, n_iter: int, x0=None, nonneg: bool = True, *, relaxation: float = 1.0,
         progress=None, callback=None):
    """SIRT (simultaneous iterative reconstruction technique).

    ``x_{k+1} = P(x_k + relaxation * C A^T R (p - A x_k))`` with ``R = 1/(A 1)`` (inverse ray
    lengths through the image), ``C = 1/(A^T 1)`` (inverse backprojected ones) and ``P`` the
    projection onto ``x >= 0`` when ``nonneg``. ``0 < relaxation < 2``. Starts from ``x0`` (zeros).
    Returns ``(x, history)``; ``history.residual[k]`` = ``||A x_k - p|| / ||p||``.
    """
    fn = "sirt"
    _check_projector(projector, fn)
    n_iter = _check_iters(n_iter, "n_iter", fn)
    if not (0 < float(relaxation) < 2):
        raise ValueError(f"{fn}: relaxation must lie in (0, 2), got {relaxation!r}")
    dt = projector.dtype
    p = _as_data(sinogram, projector.oshape, dt, "sinogram", fn)
    x = np.zeros(projector.ishape, dt) if x0 is None else _as_data(x0, projector.ishape, dt, "x0", fn).copy()
    R = _safe_inverse(projector.forward(np.ones(projector.ishape, dt)))
    C = _safe_inverse(projector.adjoint(np.ones(projector.oshape, dt))) * dt.type(relaxation)
    hist = _history()
    t0 = time.perf_counter()
    bar = _bar(progress, n_iter, fn)
    try:
        for k in range(1, n_iter + 1):
            r = p - projector.forward(x)
            x += C * projector.adjoint(R * r)
            if nonneg:
                np.maximum(x, 0, out=x)
            pn = float(np.linalg.norm(p))
            hist.record(t0, residual=float(np.linalg.norm(r)) / (pn if pn > 0 else 1.0))
            if bar is not None:
                bar.update()
            if callback is not None:
                callback(k, x)
    finally:
        if bar is not None:
            bar.close()
    hist.stop_reason = "max_iter"
    hist.extra["final_residual"] = [_residual(projector, x, p)]
    return _array.like(x, sinogram), hist


# ---- OS-SART -------------------------------------------------------------------------------------

def os_sart(projector, sinogram, n_iter: int, n_subsets: int, x0=None, nonneg: bool = True, *,
            relaxation: float = 1.0, progress=None, callback=None):
    """Ordered-subsets SART (Andersen & Kak 1984; Wang & Jiang 2004).

    The views are split into ``n_subsets`` interleaved subsets (:func:`subset_indices`); for each
    subset ``s`` (one :class:`recon.ops.Projector` ``A_s`` built on :func:`subset_geometry`) the SART
    update ``x <- P(x + relaxation * C_s A_s^T R_s (p_s - A_s x))``, ``R_s = 1/(A_s 1)``,
    ``C_s = 1/(A_s^T 1)``. One iteration = one pass over all subsets (one forward and one
    backprojection of the full data). ``n_subsets=1`` is SIRT. Returns ``(x, history)``;
    ``history.residual[k]`` = ``||A x_k - p|| / ||p||`` (full data, after iteration ``k``).
    """
    fn = "os_sart"
    _check_projector(projector, fn, need_geometry=True)
    n_iter = _check_iters(n_iter, "n_iter", fn)
    g = projector.geometry
    n_subsets = _check_iters(n_subsets, "n_subsets", fn)
    if n_subsets > g.n_angles:
        raise ValueError(f"{fn}: n_subsets ({n_subsets}) exceeds the number of views ({g.n_angles})")
    if not (0 < float(relaxation) < 2):
        raise ValueError(f"{fn}: relaxation must lie in (0, 2), got {relaxation!r}")
    from ..ops import Projector

    dt = projector.dtype
    p = _as_data(sinogram, projector.oshape, dt, "sinogram", fn)
    x = np.zeros(projector.ishape, dt) if x0 is None else _as_data(x0, projector.ishape, dt, "x0", fn).copy()
    kw = {}
    for name in ("model", "nthreads", "subsample"):
        if hasattr(projector, name):
            kw[name] = getattr(projector, name)
    subsets = []
    for idx in subset_indices(g.n_angles, n_subsets):
        A = Projector(subset_geometry(g, idx), dtype=dt, **kw)
        R = _safe_inverse(A.forward(np.ones(A.ishape, dt)))
        C = _safe_inverse(A.adjoint(np.ones(A.oshape, dt))) * dt.type(relaxation)
        subsets.append((A, np.ascontiguousarray(p[idx]), R, C))
    hist = _history()
    t0 = time.perf_counter()
    bar = _bar(progress, n_iter, fn)
    try:
        for k in range(1, n_iter + 1):
            for A, ps, R, C in subsets:
                x += C * A.adjoint(R * (ps - A.forward(x)))
                if nonneg:
                    np.maximum(x, 0, out=x)
            hist.record(t0, residual=_residual(projector, x, p))
            if bar is not None:
                bar.update()
            if callback is not None:
                callback(k, x)
    finally:
        if bar is not None:
            bar.close()
    hist.stop_reason = "max_iter"
    return _array.like(x, sinogram), hist


# ---- PWLS-TV -------------------------------------------------------------------------------------

def _tv_axes(ndim: int):
    return (-2, -1) if ndim == 2 else (-3, -2, -1)


def pwls_tv(projector, sinogram, weights, beta: float, n_iter: int, x0=None, method: str = "fista",
            prior=None, alpha: float = 0.5, *, nonneg: bool = True, tv_inner: int = 20,
            track_objective: bool = False, lipschitz: float | None = None, pdhg_ratio: float | None = None,
            progress=None, callback=None):
    """Penalised weighted least squares with TV: ``min_x 0.5 ||A x - p||_W^2 + R(x)``, ``x >= 0``.

    ``R(x) = beta TV(x)`` (isotropic, Neumann), or with ``prior`` (an image of the same shape, e.g. an
    FBP of pooled data) the PICCS term ``beta (alpha TV(x - prior) + (1 - alpha) TV(x))``.

    Parameters
    ----------
    projector : :class:`recon.ops.Projector` (or any real Operator image -> sinogram).
    sinogram : line integrals ``p`` (projector.oshape).
    weights : statistical weights ``W`` (same shape, >= 0; e.g. :func:`recon.ct.pwls_weights`; all
        ones gives unweighted least squares).
    beta : TV weight (>= 0); units 1/variance x mm (scales with the weights).
    n_iter : solver iterations (each: one forward and one backprojection, plus the TV prox).
    x0 : start (default: FBP of ``sinogram`` with the Hann filter, clipped at 0, when the projector
        has a geometry FBP supports; zeros otherwise).
    method : ``"fista"`` (step ``1 / ||W^1/2 A||^2`` from 20 power iterations, TV prox by FGP with
        ``tv_inner`` warm-started inner iterations, non-negativity folded into the prox) or
        ``"pdhg"`` (Chambolle-Pock on ``K x = (s W^1/2 A x, D x)`` with ``s`` balancing the two
        blocks' norms; exact TV via its dual; non-negativity as ``g``; steps
        ``sigma = tau = 0.99 / ||K||``).
    prior, alpha : PICCS prior image and weight ``alpha`` in [0, 1].
    nonneg : enforce ``x >= 0``.
    track_objective : record the objective each iteration (one extra forward projection).
    lipschitz : ``||W^1/2 A||^2`` if known (skips the power iteration).
    pdhg_ratio : PDHG step ratio ``tau / sigma`` in the normalised variables (default: estimated
        from the start point, see the code); ``sigma tau ||K||^2 = 0.98`` always.

    Returns ``(x, history)`` (:class:`recon.solvers.History` of the solver; ``extra['lipschitz']``).
    """
    from ..solvers import PriorImageTV, TotalVariation, fista, pdhg, power_iteration

    fn = "pwls_tv"
    _check_projector(projector, fn)
    n_iter = _check_iters(n_iter, "n_iter", fn)
    if method not in ("fista", "pdhg"):
        raise ValueError(f"{fn}: method must be 'fista' or 'pdhg', got {method!r}")
    try:
        beta = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: beta must be a non-negative number, got {beta!r}") from None
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"{fn}: beta must be a non-negative finite number, got {beta!r}")
    dt = projector.dtype
    p = _as_data(sinogram, projector.oshape, dt, "sinogram", fn)
    W = _as_data(weights, projector.oshape, dt, "weights", fn)
    if np.any(W < 0):
        raise ValueError(f"{fn}: weights must be >= 0")
    ndim = len(projector.ishape)
    axes = _tv_axes(ndim)
    if prior is not None:
        pr = _as_data(prior, projector.ishape, dt, "prior", fn)
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{fn}: alpha must lie in [0, 1], got {alpha!r}")
    if x0 is None:
        geom = getattr(projector, "geometry", None)
        if isinstance(geom, (ParallelBeam2D, FanBeam2D, ConeBeam3D)):
            from .fbp import fbp

            x = np.maximum(np.asarray(fbp(p, geom, filter="hann"), dtype=dt), 0) if nonneg else \
                np.asarray(fbp(p, geom, filter="hann"), dtype=dt)
        else:
            x = np.zeros(projector.ishape, dt)
    else:
        x = _as_data(x0, projector.ishape, dt, "x0", fn).copy()
        if nonneg:
            np.maximum(x, 0, out=x)
    bounds = (0.0, None) if nonneg else None

    def data_term(v):
        r = projector.forward(v) - p
        return 0.5 * float(np.sum(W * r * r))

    if prior is not None:
        reg = PriorImageTV(beta, alpha, pr, axes, bounds=bounds if method == "fista" else None,
                           n_inner=tv_inner, warm_start=True)
    else:
        reg = TotalVariation(beta, axes, bounds=bounds if method == "fista" else None, n_inner=tv_inner,
                             warm_start=True)
    objective = (lambda v: data_term(v) + reg.value(v)) if track_objective else None

    if lipschitz is None:
        L = power_iteration(lambda v: projector.adjoint(W * projector.forward(v)),
                            np.ones(projector.ishape, dt), 20) * 1.05
    else:
        L = float(lipschitz)
    if not (L > 0 and math.isfinite(L)):
        raise ValueError(f"{fn}: ||W^1/2 A||^2 = {L}: all weights zero or the projector is zero")

    if method == "fista":
        def grad_f(v):
            return projector.adjoint(W * (projector.forward(v) - p))

        x, hist = fista(grad_f, reg.prox, x, 1.0 / L, max_iter=n_iter, tol=0.0, restart=True,
                        objective=objective, callback=callback, progress=progress)
    else:
        # Normalised variables (primal iterates O(1), TV dual in the unit ball):
        # x = xs u (xs: typical attenuation), objective divided by beta xs:
        #   mu/2 ||A xs u - p||_W^2 + TV(u) [PICCS: prior / xs],  mu = 1 / (beta xs).
        # K u = (s M u, D u), M = sqrt(mu) xs W^1/2 A, s^2 ||M||^2 = ||D||^2 (balanced blocks);
        # f1(z) = ||z - b||^2 / (2 s^2), b = s sqrt(mu) W^1/2 p, prox_{sig f1*}(y) = (y - sig b) / (1 + sig s^2).
        pos = x[x > 0]
        xs = float(np.percentile(pos, 95)) if pos.size else 0.0
        if not xs > 0:  # no positive start: max line integral / mean ray length through the image
            ray_len = float(np.mean(np.asarray(projector.forward(np.ones(projector.ishape, dt)))))
            xs = float(np.abs(p).max()) / ray_len if ray_len > 0 else 0.0
            xs = xs if xs > 0 else 1.0
        mu = 1.0 / (beta * xs) if beta > 0 else 1.0 / (xs * xs * L)
        if prior is not None:
            reg_u = PriorImageTV(1.0 if beta > 0 else 0.0, alpha, (pr / dt.type(xs)).astype(dt), axes)
        else:
            reg_u = TotalVariation(1.0 if beta > 0 else 0.0, axes)
        LD = reg_u.norm_sq_bound
        s = math.sqrt(LD / (mu * xs * xs * L))
        sw = (np.sqrt(W) * dt.type(s * math.sqrt(mu) * xs)).astype(dt)
        b = (np.sqrt(W) * p * dt.type(s * math.sqrt(mu))).astype(dt)
        c1 = s * s

        def f1_conj_prox(y0, sig):
            return (y0 - dt.type(sig) * b) / dt.type(1.0 + sig * c1)

        if prior is not None:
            def K(u):
                return (sw * projector.forward(u),) + tuple(reg_u.K(u))

            def KH(ys):
                return projector.adjoint(sw * ys[0]) + reg_u.KH(tuple(ys[1:]))

            def prox_f_conj(ys, sig):
                return (f1_conj_prox(ys[0], sig),) + tuple(reg_u.prox_conj(tuple(ys[1:]), sig))
        else:
            def K(u):
                return (sw * projector.forward(u), reg_u.K(u))

            def KH(ys):
                return projector.adjoint(sw * ys[0]) + reg_u.KH(ys[1])

            def prox_f_conj(ys, sig):
                return (f1_conj_prox(ys[0], sig), reg_u.prox_conj(ys[1], sig))

        def prox_g(v, t):
            return np.maximum(v, 0) if nonneg else v

        # primal/dual step ratio tau/sigma ~ ||u|| / ||y|| estimated at the start (Chambolle & Pock's
        # advice to balance the steps with the solution scales): data dual grad f1(K0 u0), TV dual
        # of unit length where u0 has an edge; the factor 1/2 was tuned on low-dose phantoms.
        u0 = (x / dt.type(xs)).astype(dt)
        y_data = (sw * projector.forward(u0) - b) / dt.type(c1)
        Du = reg_u.D(u0)
        mag = np.sqrt(np.sum(Du * Du, axis=-ndim - 1))
        n_edge = float(np.sum(mag > 1e-3 * float(mag.max()))) if mag.size and float(mag.max()) > 0 else 0.0
        y_norm = math.hypot(float(np.linalg.norm(y_data)), math.sqrt(n_edge))
        u_norm = float(np.linalg.norm(u0))
        rho = 0.5 * u_norm / y_norm if (u_norm > 0 and y_norm > 0) else 1.0
        if pdhg_ratio is not None:
            rho = float(pdhg_ratio)
        step = 0.99 / math.sqrt(2.0 * LD)
        sigma, tau = step / rho, step * rho
        hist_scale = {"scale": xs, "ratio": rho}
        obj_u = None if objective is None else (lambda u: objective(u * dt.type(xs)))
        cb_u = None if callback is None else (lambda k, u: callback(k, u * dt.type(xs)))
        u, hist = pdhg(K, KH, prox_f_conj, prox_g, (x / dt.type(xs)).astype(dt), sigma=sigma, tau=tau,
                       max_iter=n_iter, tol=0.0, objective=obj_u, callback=cb_u, progress=progress)
        x = u * dt.type(xs)
        hist.extra.pop("y", None)
        for k_, v_ in hist_scale.items():
            hist.extra[k_] = [v_]
    hist.extra["lipschitz"] = [L]
    return _array.like(np.ascontiguousarray(x), sinogram), hist
