"""Iterative CT reconstruction on the matched projector (:class:`recon.ops.Projector`), built on the
solvers' step objects and their one run loop (:func:`recon.solvers.run`).

* :func:`sirt` - SIRT (:class:`SIRT`): ``x <- x + C A^T R (p - A x)``, ``R = 1 / (A 1)``, ``C = 1 / (A^T 1)``.
* :func:`os_sart` - ordered-subsets SART (:class:`OSSART`): the same update per subset of views
  (interleaved by angle, visited in bit-reversed order), one :class:`Projector` per subset built from
  the geometry's subset of angles.
* :func:`pwls_tv` - penalised weighted least squares with total variation,
  ``min_{x >= 0} 0.5 ||A x - p||_W^2 + beta TV(x)`` (isotropic TV, Neumann boundary, the
  :class:`recon.solvers.TotalVariation` of recon.solvers), optionally with the PICCS prior-image term
  ``beta (alpha TV(x - prior) + (1 - alpha) TV(x))`` (:class:`recon.solvers.PriorImageTV`); solved
  by FISTA (:class:`recon.solvers.FISTA`, inexact TV prox by FGP) or PDHG (:class:`recon.solvers.PDHG`
  on ``K = Stack([s W^1/2 A, D])`` with ``s`` balancing the blocks, exact TV by its dual).

Units: ``x`` in 1/mm, ``p`` unitless line integrals, ``W`` 1/variance of ``p`` (e.g.
:func:`recon.ct.pwls_weights`), so ``beta`` has units of 1/variance x mm: it scales with the dose
(the weights). All functions return ``(x, history)`` with a :class:`recon.solvers.History`
(``residual``: relative data residual ``||A x - p|| / ||p||`` for SIRT/OS-SART, the solver's
relative change for PWLS-TV; ``objective`` when ``track_objective``), accept numpy arrays or torch
tensors and compute in the input's library (torch in gives torch out, on its device: no conversion
to numpy, apart from PWLS-TV's default start, the FBP, which runs where :func:`recon.ct.fbp` does).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _array
from ..ops import Multiply, Stack
from ..solvers import Alg, PriorImageTV, TotalVariation, fista, pdhg, power_iteration, run, separable
from ..solvers._util import norm, safe_div
from ..solvers.regularizers.base import total
from .geometry import ConeBeam3D, FanBeam2D, Geometry, ParallelBeam2D

__all__ = ["sirt", "os_sart", "pwls_tv", "subset_geometry", "subset_indices", "SIRT", "OSSART"]


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


def _as_data(a, shape, dtype, name: str, fn: str, like=None):
    """``a`` checked (real, ``shape``, finite) and cast to ``dtype``, in its own library (numpy or
    torch); with ``like``, in ``like``'s library and device."""
    if not _array.is_array(a):
        raise TypeError(f"{fn}: {name} must be a numpy array or torch tensor, got {type(a).__name__}")
    if _array.dtype_name(a)[0] not in "fiu":
        raise TypeError(f"{fn}: {name} must be real, got dtype {_array.dtype_name(a)}")
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{fn}: {name} has shape {tuple(a.shape)}, expected {tuple(shape)}")
    if like is not None and _array.is_torch(like) != _array.is_torch(a):
        if _array.is_torch(like):
            import torch

            a = torch.as_tensor(np.asarray(a)).to(like.device)
        else:
            a = _array.to_numpy(a)
    if _array.is_torch(a):
        import torch

        a = a.detach().to(getattr(torch, np.dtype(dtype).name)).contiguous()
        if a.device.type == "cpu" and not bool(torch.isfinite(a).all()):
            raise ValueError(f"{fn}: {name} contains NaN or Inf")
        return a
    arr = np.ascontiguousarray(a, dtype=dtype)
    if not _array.all_finite(arr):
        raise ValueError(f"{fn}: {name} contains NaN or Inf")
    return arr


def _check_iters(n, name: str, fn: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _check_relaxation(relaxation, fn: str) -> float:
    if not (0 < float(relaxation) < 2):
        raise ValueError(f"{fn}: relaxation must lie in (0, 2), got {relaxation!r}")
    return float(relaxation)


def _ones(ref, shape):
    return _array.zeros(ref, shape) + 1


def _safe_inverse(a, rel: float = 1e-6):
    """1/a where a > rel * max(a), 0 elsewhere (rays missing the image, voxels no ray sees)."""
    if a.size == 0 if isinstance(a, np.ndarray) else a.numel() == 0:
        return a
    m = a > a.max() * rel
    return _array.where(m, 1.0 / _array.where(m, a, 1.0), 0.0)


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


def _relative_residual(projector, x, p, pn):
    return safe_div(norm(projector.forward(x) - p), pn)


def _project(x, nonneg: bool):
    return _array.clamp_min(x, 0.0) if nonneg else x


# ---- SIRT and OS-SART as step objects ----------------------------------------------------------------

class SIRT(Alg):
    """SIRT as a step object: ``x <- P(x + C A^T R (p - A x))`` with ``R``, ``C`` as in :func:`sirt`
    (``C`` includes the relaxation); ``residual`` = ``||A x_k - p|| / ||p||`` of the iterate the step
    started from."""

    name = "sirt"

    def __init__(self, projector, p, x0, R, C, nonneg: bool = True):
        super().__init__()
        self.A, self.p, self.x, self.R, self.C, self.nonneg = projector, p, x0, R, C, nonneg
        self.pn = norm(p)

    def step(self):
        r = self.p - self.A.forward(self.x)
        self.x = _project(self.x + self.C * self.A.adjoint(self.R * r), self.nonneg)
        self.residual = safe_div(norm(r), self.pn)
        self.iter += 1


class OSSART(Alg):
    """OS-SART as a step object: one step = one pass over all ``subsets`` ``(A_s, p_s, R_s, C_s)``;
    ``residual`` (computed when read, e.g. for the history: one full forward projection) =
    ``||A x_k - p|| / ||p||``."""

    name = "os_sart"

    def __init__(self, projector, p, x0, subsets, nonneg: bool = True):
        super().__init__()
        self.A, self.p, self.x, self.subsets, self.nonneg = projector, p, x0, subsets, nonneg
        self.pn = norm(p)
        self._res = (None, None)

    @property
    def residual(self):
        if self.iter == 0:
            return None
        if self._res[0] != self.iter:
            self._res = (self.iter, _relative_residual(self.A, self.x, self.p, self.pn))
        return self._res[1]

    def step(self):
        x = self.x
        for A, ps, R, C in self.subsets:
            x = _project(x + C * A.adjoint(R * (ps - A.forward(x))), self.nonneg)
        self.x = x
        self.iter += 1


# ---- SIRT ----------------------------------------------------------------------------------------

def sirt(projector, sinogram, n_iter: int, x0=None, nonneg: bool = True, *, relaxation: float = 1.0,
         progress=None, callback=None):
    """SIRT (simultaneous iterative reconstruction technique).

    ``x_{k+1} = P(x_k + relaxation * C A^T R (p - A x_k))`` with ``R = 1/(A 1)`` (inverse ray
    lengths through the image), ``C = 1/(A^T 1)`` (inverse backprojected ones) and ``P`` the
    projection onto ``x >= 0`` when ``nonneg``. ``0 < relaxation < 2``. Starts from ``x0`` (zeros).
    Returns ``(x, history)``; ``history.residual[k]`` = ``||A x_k - p|| / ||p||`` (before step k+1);
    ``extra['final_residual']`` that of the result.
    """
    fn = "sirt"
    _check_projector(projector, fn)
    n_iter = _check_iters(n_iter, "n_iter", fn)
    relaxation = _check_relaxation(relaxation, fn)
    dt = projector.dtype
    p = _as_data(sinogram, projector.oshape, dt, "sinogram", fn)
    x = _array.zeros(p, projector.ishape) if x0 is None else _as_data(x0, projector.ishape, dt, "x0", fn, like=p)
    R = _safe_inverse(projector.forward(_ones(p, projector.ishape)))
    C = _safe_inverse(projector.adjoint(_ones(p, projector.oshape))) * relaxation
    alg = SIRT(projector, p, x, R, C, nonneg)
    x, hist = run(alg, n_iter, callback=callback, progress=progress)
    hist.extra["final_residual"] = [float(_relative_residual(projector, x, p, alg.pn))]
    return x, hist


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
    from ..ops import Projector

    fn = "os_sart"
    _check_projector(projector, fn, need_geometry=True)
    n_iter = _check_iters(n_iter, "n_iter", fn)
    g = projector.geometry
    n_subsets = _check_iters(n_subsets, "n_subsets", fn)
    if n_subsets > g.n_angles:
        raise ValueError(f"{fn}: n_subsets ({n_subsets}) exceeds the number of views ({g.n_angles})")
    relaxation = _check_relaxation(relaxation, fn)
    dt = projector.dtype
    p = _as_data(sinogram, projector.oshape, dt, "sinogram", fn)
    x = _array.zeros(p, projector.ishape) if x0 is None else _as_data(x0, projector.ishape, dt, "x0", fn, like=p)
    kw = {}
    for name in ("model", "nthreads", "subsample"):
        if hasattr(projector, name):
            kw[name] = getattr(projector, name)
    subsets = []
    for idx in subset_indices(g.n_angles, n_subsets):
        A = Projector(subset_geometry(g, idx), dtype=dt, **kw)
        R = _safe_inverse(A.forward(_ones(p, A.ishape)))
        C = _safe_inverse(A.adjoint(_ones(p, A.oshape))) * relaxation
        ps = p[_index_like(idx, p)]
        subsets.append((A, ps.contiguous() if _array.is_torch(ps) else np.ascontiguousarray(ps), R, C))
    return run(OSSART(projector, p, x, subsets, nonneg), n_iter, callback=callback, progress=progress)


def _index_like(idx, ref):
    if _array.is_torch(ref):
        import torch

        return torch.as_tensor(idx, device=ref.device)
    return idx


# ---- PWLS-TV -------------------------------------------------------------------------------------

def _tv_axes(ndim: int):
    return (-2, -1) if ndim == 2 else (-3, -2, -1)


def _percentile95(a) -> float:
    """95th percentile of a non-empty 1-D array (host float; numpy's linear interpolation)."""
    if _array.is_torch(a):
        return float(a.double().quantile(0.95))
    return float(np.percentile(a, 95))


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
        ``"pdhg"`` (Chambolle-Pock on ``K = Stack([s W^1/2 A, D])`` with ``s`` balancing the two
        blocks' norms; exact TV via its dual; non-negativity as ``g``; steps
        ``sigma tau ||K||^2 = 0.98``).
    prior, alpha : PICCS prior image and weight ``alpha`` in [0, 1].
    nonneg : enforce ``x >= 0``.
    track_objective : record the objective each iteration (one extra forward projection).
    lipschitz : ``||W^1/2 A||^2`` if known (skips the power iteration).
    pdhg_ratio : PDHG step ratio ``tau / sigma`` in the normalised variables (default: estimated
        from the start point, see the code); ``sigma tau ||K||^2 = 0.98`` always.

    Returns ``(x, history)`` (:class:`recon.solvers.History` of the solver; ``extra['lipschitz']``).
    """
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
    W = _as_data(weights, projector.oshape, dt, "weights", fn, like=p)
    if bool((W < 0).any()):
        raise ValueError(f"{fn}: weights must be >= 0")
    ndim = len(projector.ishape)
    axes = _tv_axes(ndim)
    if prior is not None:
        pr = _as_data(prior, projector.ishape, dt, "prior", fn, like=p)
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{fn}: alpha must lie in [0, 1], got {alpha!r}")
    if x0 is None:
        geom = getattr(projector, "geometry", None)
        if isinstance(geom, (ParallelBeam2D, FanBeam2D, ConeBeam3D)):
            from .fbp import fbp

            x = _as_data(fbp(p, geom, filter="hann"), projector.ishape, dt, "FBP start", fn, like=p)
        else:
            x = _array.zeros(p, projector.ishape)
    else:
        x = _as_data(x0, projector.ishape, dt, "x0", fn, like=p)
    x = _project(x, nonneg)
    bounds = (0.0, None) if nonneg else None

    def data_term(v):
        r = projector.forward(v) - p
        return 0.5 * total(W * r * r)

    if prior is not None:
        reg = PriorImageTV(beta, alpha, pr, axes, bounds=bounds if method == "fista" else None,
                           n_inner=tv_inner, warm_start=True)
    else:
        reg = TotalVariation(beta, axes, bounds=bounds if method == "fista" else None, n_inner=tv_inner,
                             warm_start=True)
    objective = (lambda v: data_term(v) + reg.value(v)) if track_objective else None

    if lipschitz is None:
        L = power_iteration(lambda v: projector.adjoint(W * projector.forward(v)),
                            _ones(p, projector.ishape), 20) * 1.05
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
        x, hist = _pwls_pdhg(projector, p, W, x, beta, L, pr if prior is not None else None, alpha, axes, nonneg,
                             n_iter, pdhg_ratio, objective, callback, progress)
    hist.extra["lipschitz"] = [L]
    return x, hist


def _pwls_pdhg(projector, p, W, x, beta, L, prior, alpha, axes, nonneg, n_iter, pdhg_ratio, objective,
               callback, progress):
    """PWLS-TV by PDHG in normalised variables (see :func:`pwls_tv`)."""
    dt = projector.dtype
    ndim = len(projector.ishape)
    # Normalised variables (primal iterates O(1), TV dual in the unit ball):
    # x = xs u (xs: typical attenuation), objective divided by beta xs:
    #   mu/2 ||A xs u - p||_W^2 + TV(u) [PICCS: prior / xs],  mu = 1 / (beta xs).
    # K u = (s M u, D u), M = sqrt(mu) xs W^1/2 A, s^2 ||M||^2 = ||D||^2 (balanced blocks);
    # f1(z) = ||z - b||^2 / (2 s^2), b = s sqrt(mu) W^1/2 p, prox_{sig f1*}(y) = (y - sig b) / (1 + sig s^2).
    pos = x[x > 0]
    xs = _percentile95(pos) if _size(pos) else 0.0
    if not xs > 0:  # no positive start: max line integral / mean ray length through the image
        ray_len = float(projector.forward(_ones(p, projector.ishape)).mean())
        xs = float(abs(p).max()) / ray_len if ray_len > 0 else 0.0
        xs = xs if xs > 0 else 1.0
    mu = 1.0 / (beta * xs) if beta > 0 else 1.0 / (xs * xs * L)
    lam_u = 1.0 if beta > 0 else 0.0
    reg_u = PriorImageTV(lam_u, alpha, prior / xs, axes) if prior is not None else TotalVariation(lam_u, axes)
    LD = reg_u.norm_sq_bound
    s = math.sqrt(LD / (mu * xs * xs * L))
    sqrt_w = _array.xp_of(W).sqrt(W)
    sw = sqrt_w * (s * math.sqrt(mu) * xs)
    b = sqrt_w * p * (s * math.sqrt(mu))
    c1 = s * s

    def f1_conj_prox(y0, sig):
        return (y0 - sig * b) / (1.0 + sig * c1)

    reg_ops, reg_conj = reg_u.split(projector.ishape, dt)
    K = Stack([Multiply(projector.oshape, sw, dtype=dt) @ projector] + reg_ops)

    def prox_g(v, t):
        return _array.clamp_min(v, 0.0) if nonneg else v

    # primal/dual step ratio tau/sigma ~ ||u|| / ||y|| estimated at the start (Chambolle & Pock's
    # advice to balance the steps with the solution scales): data dual grad f1(K0 u0), TV dual
    # of unit length where u0 has an edge; the factor 1/2 was tuned on low-dose phantoms.
    u0 = x / xs
    y_data = (sw * projector.forward(u0) - b) / c1
    Du = reg_u.D(u0)
    mag = _array.xp_of(Du).sqrt(_array.sum_axes(Du * Du, -ndim - 1))
    mag_max = float(mag.max()) if _size(mag) else 0.0
    n_edge = float((mag > 1e-3 * mag_max).sum()) if mag_max > 0 else 0.0
    y_norm = math.hypot(_host_norm(y_data), math.sqrt(n_edge))
    u_norm = _host_norm(u0)
    rho = 0.5 * u_norm / y_norm if (u_norm > 0 and y_norm > 0) else 1.0
    if pdhg_ratio is not None:
        rho = float(pdhg_ratio)
    step = 0.99 / math.sqrt(2.0 * LD)
    sigma, tau = step / rho, step * rho
    obj_u = None if objective is None else (lambda u: objective(u * xs))
    cb_u = None if callback is None else (lambda k, u: callback(k, u * xs))
    u, hist = pdhg(K, None, separable([f1_conj_prox] + reg_conj, K), prox_g, u0, sigma=sigma, tau=tau,
                   max_iter=n_iter, tol=0.0, objective=obj_u, callback=cb_u, progress=progress)
    hist.extra.pop("y", None)
    hist.extra["scale"], hist.extra["ratio"] = [xs], [rho]
    return u * xs, hist


def _host_norm(a) -> float:
    """The 2-norm on the host (numpy's float32 rounding for float32 data, as before)."""
    return float(_array.xp_of(a).linalg.norm(a))


def _size(a) -> int:
    return a.numel() if _array.is_torch(a) else a.size
