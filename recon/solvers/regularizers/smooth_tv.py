"""Smoothed (Huber / Charbonnier) total variation for gradient-based solvers (:class:`SmoothTV`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ... import _array
from .base import Regularizer, check_step, total
from .tv import TotalVariation, group_magnitude

__all__ = ["SmoothTV"]


class SmoothTV(Regularizer):
    """Smoothed TV for gradient-based solvers: ``R(x) = lam * sum_n phi(|(D x)_n|)`` with

    - ``kind='huber'``: ``phi(s) = s^2 / (2 eps)`` for ``s <= eps``, ``s - eps/2`` otherwise;
      ``grad R = lam D^H (D x / max(|D x|, eps))``;
    - ``kind='charbonnier'``: ``phi(s) = sqrt(s^2 + eps^2) - eps``;
      ``grad R = lam D^H (D x / sqrt(|D x|^2 + eps^2))``.

    ``|.|`` is the pixelwise 2-norm over directions (isotropic) or the modulus per element.
    Both gradients are Lipschitz with ``lipschitz = lam * ||D||^2 / eps`` (using the bound
    ``||D||^2 <= 4 sum w^2``). ``eps`` has the units of image differences. ``value`` and ``grad``
    are differentiable (autograd through :class:`recon.ops.FiniteDifference`).

    ``prior=(alpha, x_prior)`` gives the smoothed PICCS term
    ``lam (alpha R1(x - x_prior) + (1 - alpha) R1(x))`` (same Lipschitz bound).
    """

    def __init__(self, lam: float, eps: float, axes: Sequence[int] = (-2, -1), *, kind: str = "huber",
                 weights=None, boundary: str = "neumann", isotropic: bool = True, prior=None):
        from .prior import PriorImageTV

        self.lam = check_step(lam, "SmoothTV: lam")
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
        p = self._tv.D(x)
        mag = group_magnitude(p, self.grad_op.dir_axis, self.isotropic)
        eps = self.eps
        if self.kind == "huber":
            den = _array.clamp_min(mag, eps)
            phi = _array.where(mag <= eps, mag * mag / (2 * eps), mag - eps / 2)
        else:
            den = (mag * mag + eps * eps) ** 0.5
            phi = den - eps
        return phi, p * _array.as_real_dtype_of(1.0 / den, p)

    def _terms(self, x):
        if self.prior is None:
            return [(1.0, x)]
        xp, _ = self.prior._Dp(x)
        a = self.prior.alpha
        return [(w, y) for w, y in ((a, x - xp), (1 - a, x)) if w > 0]

    def value(self, x):
        out = 0.0
        for w, y in self._terms(x):
            out = out + w * total(self._phi_and_flux(y)[0])
        return self.lam * out

    def grad(self, x):
        """``grad R(x)`` (same shape/kind as ``x``)."""
        out = None
        for w, y in self._terms(x):
            g = self._tv.DH(self._phi_and_flux(y)[1]) * (self.lam * w)
            out = g if out is None else out + g
        return out
