"""Forward finite differences (the discrete gradient of total variation) as an operator.

:class:`Differences` is the shape-agnostic kernel (any leading batch axes; in-place variants that
write into caller buffers, for the TV prox's inner loop); :class:`FiniteDifference` is the
:class:`recon.ops.Operator` on a fixed image shape (dot test, autograd, algebra).
"""

from __future__ import annotations

import math
from typing import Sequence

from .. import _array
from .base import Operator

__all__ = ["Differences", "FiniteDifference"]

BOUNDARIES = ("neumann", "periodic")


def _idx(ndim, axis, sl):
    idx = [slice(None)] * ndim
    idx[axis] = sl
    return tuple(idx)


def normalize_axes(axes, ndim: int, what: str) -> tuple[int, ...]:
    """Axes of a core shape of ``ndim`` axes as distinct negative ints (ValueError otherwise)."""
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"{what}: axis {a} out of range for {ndim} image axes")
        out.append(a - ndim if a >= 0 else a)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: axes must be distinct, got {tuple(axes)}")
    return tuple(out)


def check_weights(weights, n_axes: int, what: str) -> tuple[float, ...]:
    """Per-axis weights: finite, >= 0, one per axis (default 1)."""
    if weights is None:
        return (1.0,) * n_axes
    weights = tuple(float(w) for w in weights)
    if len(weights) != n_axes:
        raise ValueError(f"{what}: {len(weights)} weights for {n_axes} axes")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"{what}: weights must be finite and >= 0, got {weights}")
    return weights


def check_boundary(boundary: str, what: str) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"{what}: boundary must be 'neumann' or 'periodic', got {boundary!r}")
    return boundary


class Differences:
    """Forward differences along the negative ``axes`` of the trailing ``ncore`` image axes (default:
    the deepest axis named); the directions are stacked at axis ``-(ncore + 1)``. Works for any
    leading batch axes. ``forward(x, out)`` and ``adjoint_acc(p, out, scale, tmp)`` can write into
    caller-owned buffers, so that inner loops (the TV prox) allocate nothing per iteration; they are
    plain array code (no autograd: use :class:`FiniteDifference` for that)."""

    def __init__(self, axes: Sequence[int], weights: Sequence[float], boundary: str, ncore: int | None = None):
        self.axes = tuple(int(a) for a in axes)
        self.ncore = max(-a for a in self.axes) if ncore is None else int(ncore)
        self.weights = tuple(float(w) for w in weights)
        self.boundary = boundary
        self.dir_axis = -(self.ncore + 1)

    @property
    def norm_sq_bound(self) -> float:
        """Upper bound on ``||D||^2`` (4 * sum of squared weights)."""
        return 4.0 * sum(w * w for w in self.weights)

    def out_shape(self, shape):
        shape = tuple(shape)
        lead, core = shape[: len(shape) - self.ncore], shape[len(shape) - self.ncore:]
        return lead + (len(self.axes),) + core

    def check_image(self, x):
        if x.ndim < self.ncore:
            raise ValueError(f"finite differences over axes {self.axes} need an array with at least "
                             f"{self.ncore} axes, got shape {tuple(x.shape)}")

    def direction(self, p, i):
        return p[_idx(p.ndim, self.dir_axis, i)]

    def forward(self, x, out=None):
        """``D x`` (into ``out`` when given)."""
        self.check_image(x)
        if out is None:
            out = _array.empty(x, self.out_shape(x.shape))
        n = x.ndim
        for i, (a, w) in enumerate(zip(self.axes, self.weights)):
            oi = self.direction(out, i)
            hi, lo = _idx(n, a, slice(1, None)), _idx(n, a, slice(None, -1))
            _array.subtract_into(x[hi], x[lo], oi[lo])
            last = _idx(n, a, slice(-1, None))
            if self.boundary == "periodic":
                _array.subtract_into(x[_idx(n, a, slice(0, 1))], x[last], oi[last])
            else:
                oi[last] = 0
            if w != 1.0:
                oi *= w
        return out

    def adjoint_acc(self, p, out, scale=1.0, tmp=None):
        """``out += scale * D^H p`` (in place); ``tmp``: a scratch array shaped like ``out``."""
        n = out.ndim
        for i, (a, w) in enumerate(zip(self.axes, self.weights)):
            s = scale * w
            if s == 0.0:
                continue
            q = self.direction(p, i)
            if s != 1.0:
                if tmp is None:
                    tmp = _array.empty(out, tuple(out.shape))
                _array.multiply_into(q, s, tmp)
                q = tmp
            hi, lo = _idx(n, a, slice(1, None)), _idx(n, a, slice(None, -1))
            if self.boundary == "periodic":
                out[hi] += q[lo]
                out[_idx(n, a, slice(0, 1))] += q[_idx(n, a, slice(-1, None))]
                out -= q
            else:
                out[lo] -= q[lo]
                out[hi] += q[lo]
        return out

    def adjoint(self, p):
        """``D^H p`` (the negative divergence)."""
        if p.ndim < self.ncore + 1 or p.shape[self.dir_axis] != len(self.axes):
            raise ValueError(f"finite-difference adjoint: expected shape (..., {len(self.axes)}, <{self.ncore} "
                             f"image axes>), got {tuple(p.shape)}")
        q0 = self.direction(p, 0)
        return self.adjoint_acc(p, _array.zeros(q0, tuple(q0.shape)))


class FiniteDifference(Operator):
    """Forward-difference gradient ``D: C^shape -> C^(ndir, *shape)`` over ``axes`` of ``shape``.

    ``(D x)[i, ..., n_a, ...] = w_i * (x[..., n_a + 1, ...] - x[..., n_a, ...])`` along axis ``a =
    axes[i]``. Boundary:

    - ``'neumann'`` (default): the difference at the last sample along each axis is 0 (mirror /
      zero-flux boundary, Chambolle 2004); the adjoint is the negative divergence
      ``(D^H q)[n] = w (q[n-1] - q[n])`` with ``q[-1] = 0`` and ``q[N-1]`` ignored.
    - ``'periodic'``: wraps around (``x[N] = x[0]``); adjoint ``w (q[n-1] - q[n])`` cyclically.

    ``||D||^2 <= 4 * sum(w_i^2)`` (``norm_sq_bound``). ``weights`` (default 1 per axis) scale each
    direction: e.g. ``axes=(0, 1, 2), weights=(mu_t, 1, 1)`` for spatio-temporal TV on ``(t, y, x)``.
    Batched inputs ``(..., *shape)`` give ``(..., ndir, *shape)``. numpy or torch (any device), real
    or complex.
    """

    def __init__(self, shape: Sequence[int], axes: Sequence[int] | None = None, *,
                 weights: Sequence[float] | None = None, boundary: str = "neumann", dtype="complex64"):
        shape = tuple(int(s) for s in shape)
        if len(shape) == 0 or any(s < 1 for s in shape):
            raise ValueError(f"FiniteDifference: shape must be non-empty with positive sizes, got {shape}")
        axes = normalize_axes(range(len(shape)) if axes is None else axes, len(shape), "FiniteDifference")
        weights = check_weights(weights, len(axes), "FiniteDifference")
        boundary = check_boundary(boundary, "FiniteDifference")
        super().__init__(shape, (len(axes),) + shape, dtype)
        # the whole core shape is the image, so the directions stack in front of it
        self.kernel = Differences(axes, weights, boundary, ncore=len(shape))
        self.axes, self.weights, self.boundary = axes, weights, boundary

    @property
    def norm_sq_bound(self) -> float:
        return self.kernel.norm_sq_bound

    def _forward(self, x):
        return self.kernel.forward(x)

    def _adjoint(self, y):
        return self.kernel.adjoint(y)
