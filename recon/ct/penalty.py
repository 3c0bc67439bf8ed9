"""The edge-preserving penalty of the fast PWLS solver (:func:`recon.ct.pwls_tv` with ``method="os"``):
Huber-smoothed total variation, optionally the PICCS prior-image form with a per-pixel ``alpha``.

``R(x) = beta sum_n b_n [ a_n phi(|(D (x - prior))_n|) + (1 - a_n) phi(|(D x)_n|) ]``

with ``D`` the forward differences (Neumann boundary) of :class:`recon.ops.finite_difference.Differences`
over the image axes, ``|.|`` the 2-norm over the directions at each pixel (isotropic), ``phi`` the
Huber function ``s^2 / (2 eps)`` for ``s <= eps``, ``s - eps / 2`` above (``eps`` in 1/mm: TV for
differences above ``eps``), and ``a = alpha`` a number in [0, 1] or a map of the image's shape (the
change-aware PICCS lowers it where the data disagree with the prior: :func:`recon.ct.change_map`),
``b`` a per-pixel factor on ``beta`` (default 1; the change-aware variant also lowers it there, so that
a change keeps its contrast). Without a prior ``a = 0``: Huber-TV.

Surrogate (for separable quadratic surrogates): at ``z`` each term is majorised by the quadratic with
Huber's weight ``w_n = 1 / max(|(D z)_n|, eps)`` (half-quadratic, Huber & Erdogan-Fessler), whose
Hessian ``D^T diag(c) D`` (``c_n = beta b_n a_n w_n`` and ``beta b_n (1 - a_n) w_n``) has the separable
(diagonal) majoriser ``2 sum_axes (c_j + c_{j - e_axis})``: :meth:`HuberPenalty.gradient_and_curvature`.
Units: ``x`` 1/mm, ``beta`` as in :func:`recon.ct.pwls_tv` (weight x mm), the curvature in the data
term's units (weight x mm^2).
"""

from __future__ import annotations

import math

from .. import _array
from ..ops.finite_difference import Differences
from ..solvers.regularizers.tv import group_magnitude

__all__ = ["HuberPenalty"]


def _with_neighbour(c, axis: int):
    """``c_j + c_{j - e_axis}`` (no second term at the first index along ``axis``)."""
    out = _array.copy(c)
    hi = [slice(None)] * c.ndim
    lo = [slice(None)] * c.ndim
    hi[axis], lo[axis] = slice(1, None), slice(None, -1)
    out[tuple(hi)] += c[tuple(lo)]
    return out


class HuberPenalty:
    """``R(x)`` of the module docstring for single images of ``ndim`` (2 or 3) axes; ``alpha`` a number
    in [0, 1] or a map of the image's shape (numpy/torch like the images), used only with a ``prior``
    (an image of the same shape and kind); ``beta_map`` None (1) or a map of factors ``b`` >= 0."""

    def __init__(self, beta: float, eps: float, ndim: int = 2, prior=None, alpha=0.5, beta_map=None):
        self.beta = float(beta)
        self.eps = float(eps)
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"HuberPenalty: beta must be a finite number >= 0, got {beta!r}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"HuberPenalty: eps must be a positive number (1/mm), got {eps!r}")
        if ndim not in (2, 3):
            raise ValueError(f"HuberPenalty: ndim must be 2 or 3, got {ndim!r}")
        self.ndim = ndim
        self.D = Differences(tuple(range(-ndim, 0)), (1.0,) * ndim, "neumann")
        self.prior = prior
        self.alpha = alpha if prior is not None else 0.0
        self.beta_map = beta_map

    def _terms(self, x):
        """``[(weight, image)]``: the images whose TV is penalised, with their weights (number or map)."""
        b = 1.0 if self.beta_map is None else self.beta_map
        if self.prior is None:
            return [(b, x)]
        a = self.alpha
        if _array.is_array(a):
            return [(a * b, x - self.prior), ((1.0 - a) * b, x)]
        return [(w * b, y) for w, y in ((a, x - self.prior), (1.0 - a, x)) if w > 0]

    def _magnitude(self, y):
        """``(D y, |D y|)``: differences ``(ndim, *image)`` and their magnitude ``(1, *image)``."""
        if y.ndim != self.ndim:
            raise ValueError(f"HuberPenalty: expected a {self.ndim}D image, got shape {tuple(y.shape)}")
        p = self.D.forward(y)
        return p, group_magnitude(p, 0, True)

    def value(self, x) -> float:
        """``R(x)`` (a host float)."""
        total = 0.0
        for w, y in self._terms(x):
            _, mag = self._magnitude(y)
            phi = _array.where(mag <= self.eps, mag * mag / (2 * self.eps), mag - self.eps / 2)[0]
            total += float((w * phi).sum())
        return self.beta * total

    def gradient_and_curvature(self, x):
        """``(grad R(x), c)``: the gradient and the diagonal of a separable quadratic majoriser of ``R``
        at ``x`` (module docstring), both of ``x``'s shape, kind and dtype."""
        grad = curv = None
        for w, y in self._terms(x):
            p, mag = self._magnitude(y)
            c = (self.beta / _array.clamp_min(mag, self.eps)) * w  # beta * weight * Huber weight, (1, *image)
            g = self.D.adjoint(p * c)
            c = c[0]
            s = None
            for ax in range(c.ndim):
                t = _with_neighbour(c, ax)
                s = t if s is None else s + t
            grad = g if grad is None else grad + g
            curv = s if curv is None else curv + s
        return grad, 2.0 * curv
