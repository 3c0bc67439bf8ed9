"""Regularizers for the solvers: finite differences, total variation (TV), smoothed TV, orthonormal
wavelets and L1-wavelet sparsity, and the prior-image TV term of PICCS.

Every regularizer object ``R`` exposes (where the maths allows):

- ``R(x)`` / ``R.value(x)``: the value as a float (batched arrays: summed over everything);
- ``R.prox(v, t)``: ``argmin_x R(x) + ||x - v||^2 / (2 t)``, i.e. the ``prox_g(v, t)`` the proximal
  solvers (:func:`~recon.solvers.fista`, :func:`~recon.solvers.pogm`, :func:`~recon.solvers.pdhg`,
  :func:`~recon.solvers.admm`) expect;
- ``R.K(x)``, ``R.KH(y)``, ``R.prox_conj(y, s)``: a split ``R(x) = f(K x)`` for PDHG (``prox_conj`` is
  the prox of ``s f*``);
- smooth ones (:class:`SmoothTV`): ``R.grad(x)`` and ``R.lipschitz`` (of the gradient).

Arrays: numpy or torch (CPU), real or complex, with any leading batch axes (the regularized axes
are the trailing ones named by ``axes``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .. import _array
from ..ops.finite_difference import Differences as _Grad
from ..ops.finite_difference import FiniteDifference
from ..ops.wavelet import Wavelet
from . import prox as _prox
from ._util import norm

__all__ = ["FiniteDifference", "TotalVariation", "tv_prox", "PriorImageTV", "SmoothTV", "Wavelet",
           "L1Wavelet"]


# ---- backend helpers ------------------------------------------------------------------------------

def _zeros(ref, shape):
    if _array.is_torch(ref):
        return ref.new_zeros(shape)
    return np.zeros(shape, dtype=ref.dtype)


def _empty(ref, shape):
    if _array.is_torch(ref):
        return ref.new_empty(shape)
    return np.empty(shape, dtype=ref.dtype)


def _empty_real(ref, shape):
    if _array.is_torch(ref):
        return ref.new_empty(shape, dtype=ref.real.dtype)
    return np.empty(shape, dtype=np.finfo(ref.dtype).dtype if ref.dtype.kind in "fc" else np.float64)


def _copy(x):
    return x.clone() if _array.is_torch(x) else x.copy()


def _copy_into(dst, src):
    if _array.is_torch(dst):
        dst.copy_(src)
    else:
        np.copyto(dst, src)


def _sub_out(a, b, out):
    if _array.is_torch(out):
        import torch

        torch.sub(a, b, out=out)
    else:
        np.subtract(a, b, out=out)


def _mul_out(a, s, out):
    if _array.is_torch(out):
        import torch

        torch.mul(a, s, out=out)
    else:
        np.multiply(a, s, out=out)


def _abs2_acc(p, acc, scratch):
    """acc += |p|^2 (acc, scratch real)."""
    if _array.is_torch(p):
        if p.is_complex():
            acc.addcmul_(p.real, p.real)
            acc.addcmul_(p.imag, p.imag)
        else:
            acc.addcmul_(p, p)
        return
    if np.iscomplexobj(p):
        np.multiply(p.real, p.real, out=scratch)
        acc += scratch
        np.multiply(p.imag, p.imag, out=scratch)
    else:
        np.multiply(p, p, out=scratch)
    acc += scratch


def _abs_out(p, out):
    if _array.is_torch(p):
        import torch

        torch.abs(p, out=out)
    else:
        np.abs(p, out=out)


def _sqrt_(m):
    if _array.is_torch(m):
        m.sqrt_()
    else:
        np.sqrt(m, out=m)


def _clamp_min_(m, v):
    if _array.is_torch(m):
        m.clamp_(min=v)
    else:
        np.maximum(m, v, out=m)


def _clip_(x, lower, upper):
    if _array.is_array(x) and (x.is_complex() if _array.is_torch(x) else np.iscomplexobj(x)):
        raise TypeError("bounds (a box constraint) need real data")
    if _array.is_torch(x):
        x.clamp_(min=lower, max=upper)
    else:
        np.clip(x, lower, upper, out=x)


def _idx(ndim, axis, sl):
    idx = [slice(None)] * ndim
    idx[axis] = sl
    return tuple(idx)


def _abs2(x):
    if _array.is_torch(x):
        return x.real ** 2 + x.imag ** 2 if x.is_complex() else x * x
    return x.real ** 2 + x.imag ** 2 if np.iscomplexobj(x) else x * x


def _sum(x, axis, keepdims=False):
    if _array.is_torch(x):
        return x.sum(dim=axis, keepdim=keepdims)
    return x.sum(axis=axis, keepdims=keepdims)


def _sum_all(x) -> float:
    return float(x.sum().item()) if _array.is_torch(x) else float(np.sum(x))


def _rcast(scale, x):
    """Cast a real array ``scale`` to the real precision of ``x``."""
    if _array.is_torch(x):
        return scale.to(x.real.dtype if x.is_complex() else x.dtype)
    return scale.astype(np.finfo(x.dtype).dtype if x.dtype.kind in "fc" else np.float64, copy=False)


def _norm_axes(axes, ndim_hint=None) -> tuple[int, ...]:
    axes = tuple(int(a) for a in axes)
    if ndim_hint is not None:
        axes = tuple(a - ndim_hint if a >= 0 else a for a in axes)
    if any(a >= 0 for a in axes):
        raise ValueError(f"axes must be negative (counted from the last axis), got {axes}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes must be distinct, got {axes}")
    return axes


# ---- total variation ----------------------------------------------------------------------------

def _group_mag(p, dir_axis, isotropic):
    """|p| per pixel: 2-norm over the direction axis (isotropic) or per element (anisotropic)."""
    if isotropic:
        return _sum(_abs2(p), dir_axis, keepdims=True) ** 0.5
    return abs(p)


def _project_dual(p, radius, dir_axis, isotropic):
    """Projection of p onto {|p|_pixel <= radius}."""
    if radius == 0:
        return p * 0
    mag = _group_mag(p, dir_axis, isotropic)
    if _array.is_torch(mag):
        fac = 1.0 / (mag * (1.0 / radius)).clamp(min=1.0)
    else:
        fac = 1.0 / np.maximum(mag * (1.0 / radius), 1.0)
    return p * _rcast(fac, p)


def _project_dual_(p, grad: _Grad, isotropic, m, t):
    """In place: p <- p / max(1, |p|_pixel) (projection onto the unit pixelwise ball).
    ``m``, ``t``: real scratch arrays shaped like one direction of ``p``."""
    if not isotropic:
        for i in range(len(grad.axes)):
            pi = grad.direction(p, i)
            _abs_out(pi, m)
            _clamp_min_(m, 1.0)
            pi /= m
        return p
    m[...] = 0
    for i in range(len(grad.axes)):
        _abs2_acc(grad.direction(p, i), m, t)
    _sqrt_(m)
    _clamp_min_(m, 1.0)
    for i in range(len(grad.axes)):
        pi = grad.direction(p, i)
        pi /= m
    return p


def _fgp(b, grad: _Grad, terms, isotropic, n_iter, tol, bounds, p0=None, check_every=5):
    """Beck & Teboulle's fast gradient projection (FGP) on the dual of
    ``min_x 1/2 ||x - b||^2 + sum_i lam_i ||D x - c_i||_{2,1}  (+ box constraint)``.

    ``terms``: list of ``(lam_i, c_i)`` with ``c_i`` an array shaped like ``D b`` (or None for 0).
    All work happens in buffers allocated once per call. Returns ``(x, duals, n_done)``.
    """
    grad.check_image(b)
    lam_sq = sum(l * l for l, _ in terms)
    L = grad.norm_sq_bound * lam_sq
    dshape = grad.out_shape(b.shape)
    ishape = tuple(b.shape)
    ps = [_zeros(b, dshape) for _ in terms] if p0 is None else [_copy(p) for p in p0]
    rs = [_copy(p) for p in ps]
    gs = [_empty(b, dshape) for _ in terms]
    x = _empty(b, ishape)
    tmp = _empty(b, ishape)
    m = _empty_real(b, ishape)
    t_r = _empty_real(b, ishape)
    x_prev = _empty(b, ishape) if tol > 0 else None

    def primal(duals, out):
        _copy_into(out, b)
        for (lam, _), r in zip(terms, duals):
            grad.adjoint_acc(r, out, -lam, tmp)
        if bounds is not None:
            _clip_(out, *bounds)
        return out

    t = 1.0
    n_done = 0
    for k in range(n_iter):
        primal(rs, x)
        for (lam, c), r, g in zip(terms, rs, gs):
            grad.forward(x, out=g)           # g = D x
            if c is not None:
                g -= c                       # D x - c
            g *= lam / L
            g += r                           # r + (lam / L) (D x - c)
            _project_dual_(g, grad, isotropic, m, t_r)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        for i in range(len(terms)):
            # r = g + beta (g - p); then p <- g (buffer swap)
            _sub_out(gs[i], ps[i], rs[i])
            rs[i] *= beta
            rs[i] += gs[i]
            ps[i], gs[i] = gs[i], ps[i]
        t = t_new
        n_done = k + 1
        if x_prev is not None:  # relative change of x between consecutive iterations, every few
            if k > 0 and k % check_every == 0:
                _sub_out(x, x_prev, tmp)
                xn = norm(x)
                if norm(tmp) <= tol * (xn if xn > 0 else 1.0):
                    break
            if (k + 1) % check_every == 0:
                _copy_into(x_prev, x)
    return primal(ps, x), ps, n_done


def _check_step(t, name):
    t = float(t)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"{name}: step must be a finite number >= 0, got {t}")
    return t


class TotalVariation:
    """Total variation ``R(x) = lam * sum_n ||(D x)_n||_2`` (isotropic) or ``lam * ||D x||_1``
    (anisotropic), with ``D`` the forward differences of :class:`FiniteDifference`.

    Parameters
    ----------
    lam : float
        Regularization weight (>= 0).
    axes : sequence of negative int
        The axes differentiated, counted from the end: ``(-2, -1)`` for 2D images (default),
        ``(-3, -2, -1)`` for volumes, ``(-3, -2, -1)`` with ``weights=(mu_t, 1, 1)`` for
        spatio-temporal TV on ``(..., t, y, x)`` with temporal weight ``mu_t``. Leading axes that are
        not named are batch axes (each slice is regularized independently; values are summed).
    weights : per-axis weights (default 1).
    boundary : 'neumann' (default) or 'periodic'; see :class:`FiniteDifference`.
    isotropic : bool
        Group the directions in a 2-norm per pixel (True, default) or sum absolute values.
    n_inner, inner_tol : int, float
        The prox is computed by FGP (Beck & Teboulle 2009, fast gradient projection on the dual;
        Chambolle's projection, accelerated) with at most ``n_inner`` iterations (default 50; each
        costs one ``D`` and one ``D^H``), stopped early when the primal iterate changes by less than
        ``inner_tol`` (relative, default 1e-4; 0 runs all ``n_inner``). The prox is therefore
        inexact; FISTA/POGM tolerate small prox errors, more so with ``warm_start=True``.
    bounds : (lower, upper) or None
        Optional box constraint folded into the prox (real data), e.g. ``(0, None)`` for
        non-negative attenuation: ``prox`` then solves ``min_{lower<=x<=upper} R(x) + ||x-v||^2/(2t)``.
    warm_start : bool
        Start each prox's dual from the previous call's (when shapes agree). Cuts inner iterations
        inside FISTA/POGM; makes results depend on call history.
    """

    def __init__(self, lam: float = 1.0, axes: Sequence[int] = (-2, -1), *,
                 weights: Sequence[float] | None = None, boundary: str = "neumann",
                 isotropic: bool = True, n_inner: int = 50, inner_tol: float = 1e-4,
                 bounds=None, warm_start: bool = False):
        self.lam = _check_step(lam, "TotalVariation: lam")
        axes = _norm_axes(axes)
        if weights is None:
            weights = (1.0,) * len(axes)
        if len(weights) != len(axes):
            raise ValueError(f"TotalVariation: {len(weights)} weights for {len(axes)} axes")
        if any(not math.isfinite(float(w)) or float(w) < 0 for w in weights):
            raise ValueError(f"TotalVariation: weights must be finite and >= 0, got {tuple(weights)}")
        if boundary not in ("neumann", "periodic"):
            raise ValueError(f"TotalVariation: boundary must be 'neumann' or 'periodic', got {boundary!r}")
        if int(n_inner) < 1:
            raise ValueError(f"TotalVariation: n_inner must be >= 1, got {n_inner}")
        self.grad_op = _Grad(axes, weights, boundary)
        self.axes = axes
        self.isotropic = bool(isotropic)
        self.n_inner = int(n_inner)
        self.inner_tol = float(inner_tol)
        self.bounds = bounds
        self.warm_start = bool(warm_start)
        self._dual = None
        self.last_inner_iters = 0

    # value and split
    def D(self, x):
        """Forward differences ``D x``: shape ``(..., ndir, *core)``."""
        return self.grad_op.forward(x)

    def DH(self, p):
        """Adjoint ``D^H p`` (negative divergence)."""
        return self.grad_op.adjoint(p)

    def operator(self, shape, dtype="complex64") -> FiniteDifference:
        """The gradient as a :class:`FiniteDifference` operator on images of core ``shape``."""
        shape = tuple(shape)[-self.grad_op.ncore:]
        return FiniteDifference(shape, [a + len(shape) for a in self.axes], weights=self.grad_op.weights,
                                boundary=self.grad_op.boundary, dtype=dtype)

    @property
    def norm_sq_bound(self) -> float:
        """Upper bound on ``||D||^2``."""
        return self.grad_op.norm_sq_bound

    def value(self, x) -> float:
        return self.lam * _sum_all(_group_mag(self.D(x), self.grad_op.dir_axis, self.isotropic))

    __call__ = value

    K = D
    KH = DH

    def prox_conj(self, p, s=None):
        """prox of ``s f*`` for ``f = lam ||.||_{2,1}`` (independent of ``s``): projection of ``p`` onto
        the pixelwise ``lam``-ball. Use with ``K = self.K``, ``KH = self.KH`` in PDHG."""
        return _project_dual(p, self.lam, self.grad_op.dir_axis, self.isotropic)

    def prox(self, v, t=1.0):
        """``argmin_x lam * TV(x) + ||x - v||^2 / (2 t)`` by FGP (see the class docstring)."""
        t = _check_step(t, "TotalVariation.prox")
        if not _array.is_array(v):
            raise TypeError(f"TotalVariation.prox: expected an array, got {type(v).__name__}")
        if self.lam * t == 0:
            return _prox.project_box(v, *self.bounds) if self.bounds is not None else v
        return self._solve(v, [(self.lam * t, None)])

    def _solve(self, v, terms):
        terms = [(lam, c) for lam, c in terms if lam > 0]
        p0 = None
        if self.warm_start and self._dual is not None:
            shp, duals = self._dual
            if shp == (tuple(v.shape), len(terms), _array.backend_name(v), _array.dtype_name(v)):
                p0 = duals
        x, ps, n = _fgp(v, self.grad_op, terms, self.isotropic, self.n_inner, self.inner_tol,
                        self.bounds, p0)
        self.last_inner_iters = n
        if self.warm_start:
            self._dual = ((tuple(v.shape), len(terms), _array.backend_name(v), _array.dtype_name(v)), ps)
        return x


def tv_prox(v, lam, axes=(-2, -1), *, n_inner: int = 200, inner_tol: float = 1e-6, **kw):
    """TV denoising ``argmin_x lam * TV(x) + ||x - v||^2 / 2`` (the prox of ``lam TV`` at ``v``).
    Keywords as :class:`TotalVariation` (``weights``, ``boundary``, ``isotropic``, ``bounds``)."""
    return TotalVariation(lam, axes, n_inner=n_inner, inner_tol=inner_tol, **kw).prox(v, 1.0)


class PriorImageTV(TotalVariation):
    """PICCS prior-image regularizer (Chen, Tang & Leng, Med Phys 35(2):660-663, 2008):

    ``R(x) = lam * ( alpha * TV(x - x_prior) + (1 - alpha) * TV(x) )``,  ``0 <= alpha <= 1``.

    PICCS (prior image constrained compressed sensing) reconstructs from few views by trusting
    a prior image ``x_prior`` (e.g. an FBP of all views pooled over time/gates): ``alpha = 0`` is
    plain TV; ``alpha -> 1`` favours images whose *difference* from the prior is sparse in
    gradient. The original paper solves ``min R(x)`` subject to data consistency; here ``R`` is a
    regularizer for penalised forms ``||A x - y||^2 / 2 + R(x)`` (FISTA/POGM/ADMM via ``prox``, or
    PDHG via ``K``/``KH``/``prox_conj``).

    The prox ``argmin_x R(x) + ||x - v||^2 / (2t)`` is computed exactly in the model (up to the inner
    tolerance) by FGP on the dual with two dual fields, one per term (see :class:`TotalVariation`
    for ``n_inner``, ``inner_tol``, ``bounds``, ``warm_start``). ``x_prior`` must broadcast against
    the images (core shape or full batched shape). For gradient-based solvers use
    :meth:`smoothed`.
    """

    def __init__(self, lam: float, alpha: float, x_prior, axes: Sequence[int] = (-2, -1), **kw):
        super().__init__(lam, axes, **kw)
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"PriorImageTV: alpha must lie in [0, 1], got {alpha}")
        if not _array.is_array(x_prior):
            raise TypeError(f"PriorImageTV: x_prior must be an array, got {type(x_prior).__name__}")
        self.alpha = alpha
        self.x_prior = x_prior
        self._Dprior = {}

    def _Dp(self, like):
        key = (_array.backend_name(like), _array.dtype_name(like))
        if key not in self._Dprior:
            xp = self.x_prior
            if _array.is_torch(like) and not _array.is_torch(xp):
                import torch

                xp = torch.as_tensor(np.asarray(xp)).to(like.device)
            elif not _array.is_torch(like) and _array.is_torch(xp):
                xp = _array.to_numpy(xp)
            xp = xp.to(like.dtype) if _array.is_torch(xp) else xp.astype(like.dtype)
            self._Dprior[key] = (xp, self.D(xp))
        return self._Dprior[key]

    def value(self, x) -> float:
        xp, _ = self._Dp(x)
        da, iso = self.grad_op.dir_axis, self.isotropic
        v = 0.0
        if self.alpha > 0:
            v += self.alpha * _sum_all(_group_mag(self.D(x - xp), da, iso))
        if self.alpha < 1:
            v += (1 - self.alpha) * _sum_all(_group_mag(self.D(x), da, iso))
        return self.lam * v

    __call__ = value

    def prox(self, v, t=1.0):
        t = _check_step(t, "PriorImageTV.prox")
        if not _array.is_array(v):
            raise TypeError(f"PriorImageTV.prox: expected an array, got {type(v).__name__}")
        if self.lam * t == 0:
            return _prox.project_box(v, *self.bounds) if self.bounds is not None else v
        _, Dxp = self._Dp(v)
        return self._solve(v, [(self.lam * t * self.alpha, Dxp), (self.lam * t * (1 - self.alpha), None)])

    # PDHG split: K x = (D x, D x), f(z1, z2) = lam alpha ||z1 - D x_prior|| + lam (1-alpha) ||z2||
    def K(self, x):
        Dx = self.D(x)
        return (Dx, Dx)

    def KH(self, ps):
        return self.DH(ps[0] + ps[1])

    def prox_conj(self, ps, s):
        """prox of ``s f*`` for the split ``K x = (D x, D x)``: ``(P_{lam alpha}(p1 - s D x_prior),
        P_{lam (1 - alpha)}(p2))`` with ``P_r`` the pixelwise projection onto the ``r``-ball."""
        _, Dxp = self._Dp(ps[0])
        da, iso = self.grad_op.dir_axis, self.isotropic
        return (_project_dual(ps[0] - Dxp * float(s), self.lam * self.alpha, da, iso),
                _project_dual(ps[1], self.lam * (1 - self.alpha), da, iso))

    @property
    def norm_sq_bound(self) -> float:
        """Upper bound on ``||K||^2`` for the PDHG split (``2 ||D||^2``)."""
        return 2.0 * self.grad_op.norm_sq_bound

    def smoothed(self, eps: float, kind: str = "huber") -> "SmoothTV":
        """The smoothed counterpart ``lam (alpha S(x - x_prior) + (1 - alpha) S(x))`` with ``S`` the
        Huber/Charbonnier TV of :class:`SmoothTV` (has ``grad`` and ``lipschitz``)."""
        return SmoothTV(self.lam, eps, self.axes, kind=kind, weights=self.grad_op.weights,
                        boundary=self.grad_op.boundary, isotropic=self.isotropic,
                        prior=(self.alpha, self.x_prior))


class SmoothTV:
    """Smoothed TV for gradient-based solvers: ``R(x) = lam * sum_n phi(|(D x)_n|)`` with

    - ``kind='huber'``: ``phi(s) = s^2 / (2 eps)`` for ``s <= eps``, ``s - eps/2`` otherwise;
      ``grad R = lam D^H (D x / max(|D x|, eps))``;
    - ``kind='charbonnier'``: ``phi(s) = sqrt(s^2 + eps^2) - eps``;
      ``grad R = lam D^H (D x / sqrt(|D x|^2 + eps^2))``.

    ``|.|`` is the pixelwise 2-norm over directions (isotropic) or the modulus per element.
    Both gradients are Lipschitz with ``lipschitz = lam * ||D||^2 / eps`` (using the bound
    ``||D||^2 <= 4 sum w^2``). ``eps`` has the units of image differences.

    ``prior=(alpha, x_prior)`` gives the smoothed PICCS term
    ``lam (alpha R1(x - x_prior) + (1 - alpha) R1(x))`` (same Lipschitz bound).
    """

    def __init__(self, lam: float, eps: float, axes: Sequence[int] = (-2, -1), *, kind: str = "huber",
                 weights=None, boundary: str = "neumann", isotropic: bool = True, prior=None):
        self.lam = _check_step(lam, "SmoothTV: lam")
        self.eps = float(eps)
        if not math.isfinite(self.eps) or self.eps <= 0:
            raise ValueError(f"SmoothTV: eps must be a positive number, got {eps}")
        if kind not in ("huber", "charbonnier"):
            raise ValueError(f"SmoothTV: kind must be 'huber' or 'charbonnier', got {kind!r}")
        self.kind = kind
        self._tv = TotalVariation(1.0, axes, weights=weights, boundary=boundary, isotropic=isotropic)
        self.grad_op = self._tv.grad_op
        self.isotropic = bool(isotropic)
        self.prior = None
        if prior is not None:
            alpha, xp = prior
            self.prior = PriorImageTV(1.0, alpha, xp, axes, weights=weights, boundary=boundary,
                                      isotropic=isotropic)

    @property
    def lipschitz(self) -> float:
        """Lipschitz constant of ``grad`` (an upper bound)."""
        return self.lam * self.grad_op.norm_sq_bound / self.eps

    def _phi_and_flux(self, x):
        p = self.grad_op.forward(x)
        mag = _group_mag(p, self.grad_op.dir_axis, self.isotropic)
        eps = self.eps
        if self.kind == "huber":
            if _array.is_torch(mag):
                den = mag.clamp(min=eps)
                phi = (mag * mag / (2 * eps)).where(mag <= eps, mag - eps / 2)
            else:
                den = np.maximum(mag, eps)
                phi = np.where(mag <= eps, mag * mag / (2 * eps), mag - eps / 2)
        else:
            den = (mag * mag + eps * eps) ** 0.5
            phi = den - eps
        return phi, p * _rcast(1.0 / den, p)

    def _terms(self, x):
        if self.prior is None:
            return [(1.0, x)]
        xp, _ = self.prior._Dp(x)
        a = self.prior.alpha
        return [(w, y) for w, y in ((a, x - xp), (1 - a, x)) if w > 0]

    def value(self, x) -> float:
        return self.lam * sum(w * _sum_all(self._phi_and_flux(y)[0]) for w, y in self._terms(x))

    __call__ = value

    def grad(self, x):
        """``grad R(x)`` (same shape/kind as ``x``)."""
        out = None
        for w, y in self._terms(x):
            g = self.grad_op.adjoint(self._phi_and_flux(y)[1]) * (self.lam * w)
            out = g if out is None else out + g
        return out


# ---- wavelets -----------------------------------------------------------------------------------

class L1Wavelet:
    """``R(x) = lam * ||W x||_1`` with ``W`` the orthonormal :class:`Wavelet` (complex-safe).

    ``prox(v, t) = W^H soft_threshold(W v, t lam)``: exact when ``W`` is unitary (no padding);
    with odd/non-divisible sizes (padding) it is the usual approximation (exact prox of
    ``lam ||W' z||_1`` on the zero-padded image, then cropped). For PDHG: ``K = W``,
    ``prox_conj`` = projection onto ``{|z| <= lam}``.
    """

    def __init__(self, shape: Sequence[int], lam: float = 1.0, wave: str = "db4", level: int | None = None,
                 axes: Sequence[int] | None = None):
        self.lam = _check_step(lam, "L1Wavelet: lam")
        self.W = Wavelet(shape, wave, level, axes)

    def K(self, x):
        return self.W._forward(x)

    def KH(self, z):
        return self.W._adjoint(z)

    def value(self, x) -> float:
        return self.lam * _sum_all(abs(self.K(x)))

    __call__ = value

    def prox(self, v, t=1.0):
        t = _check_step(t, "L1Wavelet.prox")
        return self.KH(_prox.soft_threshold(self.K(v), t * self.lam))

    def prox_conj(self, z, s=None):
        return _project_dual(z, self.lam, -1, False)

    @property
    def norm_sq_bound(self) -> float:
        return 1.0
