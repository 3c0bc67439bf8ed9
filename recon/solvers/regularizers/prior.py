"""The PICCS prior-image TV term (:class:`PriorImageTV`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import _array
from .base import total
from .tv import TotalVariation, group_magnitude, project_dual

__all__ = ["PriorImageTV"]


class PriorImageTV(TotalVariation):
    """PICCS prior-image regularizer (Chen, Tang & Leng, Med Phys 35(2):660-663, 2008):

    ``R(x) = lam * ( alpha * TV(x - x_prior) + (1 - alpha) * TV(x) )``,  ``0 <= alpha <= 1``.

    PICCS (prior image constrained compressed sensing) reconstructs from few views by trusting
    a prior image ``x_prior`` (e.g. an FBP of all views pooled over time/gates): ``alpha = 0`` is
    plain TV; ``alpha -> 1`` favours images whose *difference* from the prior is sparse in
    gradient. The original paper solves ``min R(x)`` subject to data consistency; here ``R`` is a
    regularizer for penalised forms ``||A x - y||^2 / 2 + R(x)`` (FISTA/POGM/ADMM via ``prox``, or
    PDHG via ``K``/``KH``/``prox_conj`` or ``split``).

    The prox ``argmin_x R(x) + ||x - v||^2 / (2t)`` is computed exactly in the model (up to the inner
    tolerance) by FGP on the dual with two dual fields, one per term (see :class:`TotalVariation`
    for ``n_inner``, ``inner_tol``, ``bounds``, ``warm_start``). ``x_prior`` must broadcast against
    the images (core shape or full batched shape); it is moved once to the data's library, device and
    dtype. For gradient-based solvers use :meth:`smoothed`.
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
        """``(x_prior, D x_prior)`` in ``like``'s library, device and dtype (cached)."""
        key = (_array.backend_name(like), str(getattr(like, "device", "cpu")), _array.dtype_name(like))
        if key not in self._Dprior:
            xp = self.x_prior
            if _array.is_torch(like):
                import torch

                xp = torch.as_tensor(xp.detach() if _array.is_torch(xp) else np.asarray(xp))
                xp = xp.to(device=like.device, dtype=like.dtype)
            else:
                xp = (_array.to_numpy(xp) if _array.is_torch(xp) else np.asarray(xp)).astype(like.dtype)
            self._Dprior[key] = (xp, self.grad_op.forward(xp))
        return self._Dprior[key]

    def value(self, x):
        xp, _ = self._Dp(x)
        da, iso = self.grad_op.dir_axis, self.isotropic
        v = 0.0
        if self.alpha > 0:
            v = v + self.alpha * total(group_magnitude(self.D(x - xp), da, iso))
        if self.alpha < 1:
            v = v + (1 - self.alpha) * total(group_magnitude(self.D(x), da, iso))
        return self.lam * v

    def _prox_terms(self, v, weight):
        _, Dxp = self._Dp(v)
        return [(weight * self.alpha, Dxp), (weight * (1 - self.alpha), None)]

    # PDHG split: K x = (D x, D x), f(z1, z2) = lam alpha ||z1 - D x_prior|| + lam (1-alpha) ||z2||
    def K(self, x):
        Dx = self.D(x)
        return (Dx, Dx)

    def KH(self, ps):
        return self.DH(ps[0] + ps[1])

    def _prox_conj_prior(self, p, s):
        """The conjugate prox of ``lam alpha ||z - D x_prior||``: ``P_{lam alpha}(p - s D x_prior)``."""
        _, Dxp = self._Dp(p)
        return project_dual(p - Dxp * s, self.lam * self.alpha, self.grad_op.dir_axis, self.isotropic)

    def _prox_conj_plain(self, p, s):
        return project_dual(p, self.lam * (1 - self.alpha), self.grad_op.dir_axis, self.isotropic)

    def prox_conj(self, ps, s):
        """prox of ``s f*`` for the split ``K x = (D x, D x)``: ``(P_{lam alpha}(p1 - s D x_prior),
        P_{lam (1 - alpha)}(p2))`` with ``P_r`` the pixelwise projection onto the ``r``-ball."""
        return (self._prox_conj_prior(ps[0], s), self._prox_conj_plain(ps[1], s))

    def split(self, shape, dtype="complex64"):
        """``([D, D], [conj prox of the prior term, of the plain term])`` for a :class:`recon.ops.Stack`."""
        D = self.operator(shape, dtype)
        return [D, D], [self._prox_conj_prior, self._prox_conj_plain]

    @property
    def norm_sq_bound(self) -> float:
        """Upper bound on ``||K||^2`` for the PDHG split (``2 ||D||^2``)."""
        return 2.0 * self.grad_op.norm_sq_bound

    def smoothed(self, eps: float, kind: str = "huber"):
        """The smoothed counterpart ``lam (alpha S(x - x_prior) + (1 - alpha) S(x))`` with ``S`` the
        Huber/Charbonnier TV of :class:`SmoothTV` (has ``grad`` and ``lipschitz``)."""
        from .smooth_tv import SmoothTV

        return SmoothTV(self.lam, eps, self.axes, kind=kind, weights=self.grad_op.weights,
                        boundary=self.grad_op.boundary, isotropic=self.isotropic,
                        prior=(self.alpha, self.x_prior))
