"""The common interface of the regularizers (:class:`Regularizer`) and the helpers they share."""

from __future__ import annotations

import numpy as np

from ... import _array
from ..prox import nonneg

__all__ = ["Regularizer", "check_step", "negative_axes", "total"]


check_step = nonneg   # a prox step or a weight: a number >= 0, or a device scalar (unchecked)


def negative_axes(axes, what: str) -> tuple[int, ...]:
    """Regularized axes counted from the end (distinct negative ints); leading axes are batch axes."""
    axes = tuple(int(a) for a in axes)
    if not axes or any(a >= 0 for a in axes):
        raise ValueError(f"{what}: axes must be negative (counted from the last axis), got {axes}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"{what}: axes must be distinct, got {axes}")
    return axes


def total(x):
    """Sum of all elements as a device scalar (a Python float for numpy)."""
    if _array.is_torch(x):
        return x.sum()
    return float(np.sum(x))


def needs_autograd(x) -> bool:
    if not _array.is_torch(x):
        return False
    import torch

    return torch.is_grad_enabled() and x.requires_grad


class Regularizer:
    """A regularizer ``R(x)`` for the solvers. Every one provides

    - ``value(x)`` (also ``R(x)``): the value, a device scalar (a Python float for numpy), summed over
      batch axes;
    - ``prox(v, t)``: ``argmin_x R(x) + ||x - v||^2 / (2 t)``, the ``prox_g`` of FISTA/POGM/ADMM;

    and where the maths allows:

    - a PDHG split ``R(x) = f(K x)``: ``K(x)``, ``KH(y)``, ``prox_conj(y, s)`` (the prox of
      ``s f*``), ``norm_sq_bound`` (``>= ||K||^2``), and ``split(shape, dtype)``: the same split as
      operators for a :class:`recon.ops.Stack` (a list of :class:`recon.ops.Operator` and the list
      of their conjugate proxes, ``R(x) = sum_i f_i(K_i x)``), e.g.
      ``ops, conj = R.split(shape, dtype); K = Stack([A] + ops);
      prox_f_conj = separable([data_conj] + conj, K)``;
    - smooth ones: ``grad(x)`` and ``lipschitz`` (of the gradient).

    Arrays: numpy or torch on any device, real or complex, with leading batch axes. Methods that a
    regularizer lacks raise NotImplementedError naming it.
    """

    lam: float = 1.0

    def value(self, x):
        raise NotImplementedError(f"{type(self).__name__} has no value")

    def __call__(self, x):
        return self.value(x)

    def prox(self, v, t=1.0):
        raise NotImplementedError(f"{type(self).__name__} has no prox (use grad with a gradient method)")

    def K(self, x):
        raise NotImplementedError(f"{type(self).__name__} has no PDHG split")

    def KH(self, y):
        raise NotImplementedError(f"{type(self).__name__} has no PDHG split")

    def prox_conj(self, y, s=None):
        raise NotImplementedError(f"{type(self).__name__} has no PDHG split")

    def split(self, shape, dtype="complex64"):
        raise NotImplementedError(f"{type(self).__name__} has no PDHG split")

    @property
    def norm_sq_bound(self) -> float:
        raise NotImplementedError(f"{type(self).__name__} has no PDHG split")

    def grad(self, x):
        raise NotImplementedError(f"{type(self).__name__} is not smooth (use prox)")

    @property
    def lipschitz(self) -> float:
        raise NotImplementedError(f"{type(self).__name__} is not smooth (use prox)")
