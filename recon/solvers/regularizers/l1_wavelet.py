"""L1-wavelet sparsity (:class:`L1Wavelet`)."""

from __future__ import annotations

from collections.abc import Sequence

from ... import _array
from ...ops.wavelet import Wavelet
from .. import prox as _prox
from .base import Regularizer, check_step, total

__all__ = ["L1Wavelet"]


class L1Wavelet(Regularizer):
    """``R(x) = lam * ||W x||_1`` with ``W`` the orthonormal :class:`recon.ops.Wavelet` (complex-safe).

    ``prox(v, t) = W^H soft_threshold(W v, t lam)``: exact when ``W`` is unitary (no padding);
    with odd/non-divisible sizes (padding) it is the usual approximation (exact prox of
    ``lam ||W' z||_1`` on the zero-padded image, then cropped). For PDHG: ``K = W``,
    ``prox_conj`` = projection onto ``{|z| <= lam}``. numpy arrays go through PyWavelets, torch
    tensors through recon's transform on their device (no host copy); both are differentiable
    through the operator's autograd (``K``, ``KH``, ``value``, ``prox``). ``W`` is the complex64
    operator; other dtypes get their own (same transform).
    """

    def __init__(self, shape: Sequence[int], lam: float = 1.0, wave: str = "db4", level: int | None = None,
                 axes: Sequence[int] | None = None):
        self.lam = check_step(lam, "L1Wavelet: lam")
        self.W = Wavelet(shape, wave, level, axes)
        self._ops = {self.W.dtype.name: self.W}

    def operator(self, dtype="complex64") -> Wavelet:
        """The wavelet transform for arrays of ``dtype``."""
        name = str(dtype).replace("torch.", "")
        if name not in self._ops:
            W = self.W
            self._ops[name] = Wavelet(W.ishape, W.wave, W.level, W.axes, dtype=name)
        return self._ops[name]

    def K(self, x):
        return self.operator(_array.dtype_name(x)).forward(x)

    def KH(self, z):
        return self.operator(_array.dtype_name(z)).adjoint(z)

    def value(self, x):
        return self.lam * total(abs(self.K(x)))

    def prox(self, v, t=1.0):
        t = check_step(t, "L1Wavelet.prox")
        return self.KH(_prox.soft_threshold(self.K(v), t * self.lam))

    def prox_conj(self, z, s=None):
        return _prox.project_linf_ball(z, self.lam)

    def split(self, shape=None, dtype="complex64"):
        """``([W], [prox_conj])`` for a :class:`recon.ops.Stack` (``shape`` is the operator's own)."""
        return [self.operator(dtype)], [self.prox_conj]

    @property
    def norm_sq_bound(self) -> float:
        return 1.0
