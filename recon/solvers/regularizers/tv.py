"""Total variation: :class:`TotalVariation` (prox by FGP on the dual, PDHG split) and :func:`tv_prox`."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ... import _array
from ...ops.finite_difference import Differences, FiniteDifference, check_boundary, check_weights
from .. import prox as _prox
from .._util import norm
from .base import Regularizer, check_step, needs_autograd, negative_axes, total

__all__ = ["TotalVariation", "tv_prox", "group_magnitude", "project_dual"]


def group_magnitude(p, dir_axis: int, isotropic: bool):
    """``|p|`` per pixel: the 2-norm over the direction axis (isotropic) or the modulus per element."""
    if isotropic:
        return _array.sum_axes(_array.abs2(p), dir_axis, keepdims=True) ** 0.5
    return abs(p)


def project_dual(p, radius, dir_axis: int, isotropic: bool):
    """Projection of ``p`` onto ``{|p|_pixel <= radius}`` (the prox of the conjugate of
    ``radius ||.||_{2,1}``, or of ``radius ||.||_1`` when anisotropic)."""
    if isotropic:
        return _prox.project_l2inf_ball(p, radius, axis=dir_axis)
    return _prox.project_linf_ball(p, radius)


def _project_unit_ball_(p, grad: Differences, isotropic, m, scratch):
    """In place: ``p <- p / max(1, |p|_pixel)``; ``m``, ``scratch``: real buffers like one direction."""
    if not isotropic:
        for i in range(len(grad.axes)):
            pi = grad.direction(p, i)
            _array.abs_into(pi, m)
            _array.clamp_(m, 1.0)
            pi /= m
        return p
    m[...] = 0
    for i in range(len(grad.axes)):
        _array.abs2_accumulate(grad.direction(p, i), m, scratch)
    _array.sqrt_(m)
    _array.clamp_(m, 1.0)
    for i in range(len(grad.axes)):
        pi = grad.direction(p, i)
        pi /= m
    return p


def fgp(b, grad: Differences, terms, isotropic, n_iter, tol, bounds, p0=None, check_every=5):
    """Beck & Teboulle's fast gradient projection (FGP) on the dual of
    ``min_x 1/2 ||x - b||^2 + sum_i lam_i ||D x - c_i||_{2,1}  (+ box constraint)``.

    ``terms``: list of ``(lam_i, c_i)`` with ``c_i`` an array shaped like ``D b`` (or None for 0).
    All work happens in buffers allocated once per call (no autograd). The relative change of ``x``
    is tested every ``check_every`` iterations (one host read each). Returns ``(x, duals, n_done)``.
    """
    grad.check_image(b)
    lam_sq = sum(lam * lam for lam, _ in terms)
    L = grad.norm_sq_bound * lam_sq
    dshape = grad.out_shape(b.shape)
    ishape = tuple(b.shape)
    ps = [_array.zeros(b, dshape) for _ in terms] if p0 is None else [_array.copy(p) for p in p0]
    rs = [_array.copy(p) for p in ps]
    gs = [_array.empty(b, dshape) for _ in terms]
    x = _array.empty(b, ishape)
    tmp = _array.empty(b, ishape)
    m = _array.empty(b, ishape, real=True)
    scratch = _array.empty(b, ishape, real=True)
    x_prev = _array.empty(b, ishape) if tol > 0 else None

    def primal(duals, out):
        _array.copy_into(out, b)
        for (lam, _), r in zip(terms, duals):
            grad.adjoint_acc(r, out, -lam, tmp)
        if bounds is not None:
            _array.clamp_(out, *bounds)
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
            _project_unit_ball_(g, grad, isotropic, m, scratch)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        for i in range(len(terms)):
            # r = g + beta (g - p); then p <- g (buffer swap)
            _array.subtract_into(gs[i], ps[i], rs[i])
            rs[i] *= beta
            rs[i] += gs[i]
            ps[i], gs[i] = gs[i], ps[i]
        t = t_new
        n_done = k + 1
        if x_prev is not None:  # relative change of x between consecutive iterations, every few
            if k > 0 and k % check_every == 0:
                _array.subtract_into(x, x_prev, tmp)
                xn = float(norm(x))
                if float(norm(tmp)) <= tol * (xn if xn > 0 else 1.0):
                    break
            if (k + 1) % check_every == 0:
                _array.copy_into(x_prev, x)
    return primal(ps, x), ps, n_done


class TotalVariation(Regularizer):
    """Total variation ``R(x) = lam * sum_n ||(D x)_n||_2`` (isotropic) or ``lam * ||D x||_1``
    (anisotropic), with ``D`` the forward differences of :class:`recon.ops.FiniteDifference`.

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
    boundary : 'neumann' (default) or 'periodic'; see :class:`recon.ops.FiniteDifference`.
    isotropic : bool
        Group the directions in a 2-norm per pixel (True, default) or sum absolute values.
    n_inner, inner_tol : int, float
        The prox is computed by FGP (Beck & Teboulle 2009, fast gradient projection on the dual;
        Chambolle's projection, accelerated) with at most ``n_inner`` iterations (default 50; each
        costs one ``D`` and one ``D^H``), stopped early when the primal iterate changes by less than
        ``inner_tol`` (relative, default 1e-4, tested every 5 iterations; 0 runs all ``n_inner``).
        The prox is therefore inexact; FISTA/POGM tolerate small prox errors, more so with
        ``warm_start=True``. It works in preallocated buffers and is not differentiable (for a
        learned unrolled network use the PDHG split, whose ``K``/``prox_conj`` are, or :class:`SmoothTV`).
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
        self.lam = check_step(lam, "TotalVariation: lam")
        axes = negative_axes(axes, "TotalVariation")
        weights = check_weights(weights, len(axes), "TotalVariation")
        boundary = check_boundary(boundary, "TotalVariation")
        if int(n_inner) < 1:
            raise ValueError(f"TotalVariation: n_inner must be >= 1, got {n_inner}")
        self.grad_op = Differences(axes, weights, boundary)
        self.axes = axes
        self.isotropic = bool(isotropic)
        self.n_inner = int(n_inner)
        self.inner_tol = float(inner_tol)
        self.bounds = bounds
        self.warm_start = bool(warm_start)
        self._dual = None
        self._operators = {}
        self.last_inner_iters = 0

    # the gradient ------------------------------------------------------------------------------------
    def operator(self, shape, dtype="complex64") -> FiniteDifference:
        """The gradient as a :class:`recon.ops.FiniteDifference` on images of core ``shape`` (its
        trailing axes that TV differentiates)."""
        shape = tuple(shape)[-self.grad_op.ncore:]
        key = (shape, str(dtype))
        if key not in self._operators:
            self._operators[key] = FiniteDifference(shape, [a + len(shape) for a in self.axes],
                                                    weights=self.grad_op.weights, boundary=self.grad_op.boundary,
                                                    dtype=dtype)
        return self._operators[key]

    def D(self, x):
        """Forward differences ``D x``: shape ``(..., ndir, *core)`` (autograd through the operator)."""
        if needs_autograd(x):
            self.grad_op.check_image(x)
            return self.operator(x.shape, _array.dtype_name(x)).forward(x)
        return self.grad_op.forward(x)

    def DH(self, p):
        """Adjoint ``D^H p`` (negative divergence)."""
        if needs_autograd(p):
            core = tuple(p.shape)[len(p.shape) - self.grad_op.ncore:]
            return self.operator(core, _array.dtype_name(p)).adjoint(p)
        return self.grad_op.adjoint(p)

    @property
    def norm_sq_bound(self) -> float:
        """Upper bound on ``||D||^2``."""
        return self.grad_op.norm_sq_bound

    # the interface -----------------------------------------------------------------------------------
    def value(self, x):
        return self.lam * total(group_magnitude(self.D(x), self.grad_op.dir_axis, self.isotropic))

    K = D
    KH = DH

    def prox_conj(self, p, s=None):
        """prox of ``s f*`` for ``f = lam ||.||_{2,1}`` (independent of ``s``): projection of ``p`` onto
        the pixelwise ``lam``-ball. Use with ``K = self.K``, ``KH = self.KH`` in PDHG."""
        return project_dual(p, self.lam, self.grad_op.dir_axis, self.isotropic)

    def split(self, shape, dtype="complex64"):
        """``([D], [prox_conj])`` for a :class:`recon.ops.Stack` (see :class:`Regularizer`)."""
        return [self.operator(shape, dtype)], [self.prox_conj]

    def prox(self, v, t=1.0):
        """``argmin_x R(x) + ||x - v||^2 / (2 t)`` by FGP (see the class docstring)."""
        name = type(self).__name__
        t = float(check_step(t, f"{name}.prox"))
        if not _array.is_array(v):
            raise TypeError(f"{name}.prox: expected an array, got {type(v).__name__}")
        if self.lam * t == 0:
            return _prox.project_box(v, *self.bounds) if self.bounds is not None else v
        return self._solve(v, self._prox_terms(v, self.lam * t))

    def _prox_terms(self, v, weight):
        """FGP's terms ``[(lam_i, c_i)]`` of ``sum_i lam_i ||D x - c_i||`` for the prox at ``v``."""
        return [(weight, None)]

    def _solve(self, v, terms):
        if needs_autograd(v):
            raise TypeError(f"{type(self).__name__}.prox is not differentiable (FGP works in place): use the PDHG "
                            "split (K, prox_conj) or SmoothTV in a learned network")
        if self.bounds is not None and _array.is_complex(v):
            raise TypeError("bounds (a box constraint) need real data")
        terms = [(lam, c) for lam, c in terms if lam > 0]
        p0 = None
        key = (tuple(v.shape), len(terms), _array.backend_name(v), _array.dtype_name(v))
        if self.warm_start and self._dual is not None and self._dual[0] == key:
            p0 = self._dual[1]
        x, ps, n = fgp(v, self.grad_op, terms, self.isotropic, self.n_inner, self.inner_tol, self.bounds, p0)
        self.last_inner_iters = n
        if self.warm_start:
            self._dual = (key, ps)
        return x


def tv_prox(v, lam, axes=(-2, -1), *, n_inner: int = 200, inner_tol: float = 1e-6, **kw):
    """TV denoising ``argmin_x lam * TV(x) + ||x - v||^2 / 2`` (the prox of ``lam TV`` at ``v``).
    Keywords as :class:`TotalVariation` (``weights``, ``boundary``, ``isotropic``, ``bounds``)."""
    return TotalVariation(lam, axes, n_inner=n_inner, inner_tol=inner_tol, **kw).prox(v, 1.0)
