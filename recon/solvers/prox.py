"""Proximal operators and projections (numpy arrays and torch tensors; real and complex).

Convention: ``prox_{t h}(v) = argmin_z h(z) + ||z - v||^2 / (2 t)``. Functions named ``prox_*`` take
the step ``t`` as their second argument so that ``functools.partial`` (or a lambda) turns them into
the ``prox_g(v, t)`` callables the solvers expect. Projections do not depend on ``t``.

Complex data: norms are moduli, so soft thresholding shrinks the magnitude and keeps the phase.
"""

from __future__ import annotations

import numpy as np

from .. import _array

__all__ = [
    "soft_threshold", "prox_l1", "group_soft_threshold", "prox_l21", "project_box",
    "project_nonneg", "project_l2_ball", "project_l2inf_ball", "prox_l2_squared", "conjugate_prox",
    "project_linf_ball", "separable",
]


_TINY = float(np.finfo(np.float32).tiny)  # representable in float32 and float64


# ---- helpers --------------------------------------------------------------------------------------

def _abs2_sum(x, axis, keepdims=True):
    return _array.sum_axes(_array.abs2(x), axis, keepdims)


def _group_norm(x, axis):
    """``sqrt(max(sum |x|^2, tiny))`` over ``axis`` (kept): the 2-norm wherever it exceeds ~1e-19,
    with a finite derivative at 0 (autograd through a projection of a zero vector gives 0, not NaN)."""
    return _array.clamp_min(_abs2_sum(x, axis), _TINY) ** 0.5


def _check(x, name):
    if not _array.is_array(x):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")


def nonneg(t, name: str):
    """A finite number >= 0 (a threshold, step or weight) as a float; arrays and device scalars
    pass through unchecked (checking them would wait for the device)."""
    if _array.is_array(t):
        return t
    t = float(t)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {t}")
    return t




def _shrink_factor(mag, t):
    """max(0, 1 - t / mag), with 0 where mag == 0."""
    safe = _array.clamp_min(mag, _TINY)
    return _array.clamp_min(1.0 - t / safe, 0.0)


# ---- L1 -----------------------------------------------------------------------------------------

def soft_threshold(x, thresh):
    """Soft thresholding ``S_t(x) = x * max(0, 1 - t / |x|)``: the prox of ``t ||x||_1``.

    For real ``x`` this is ``sign(x) max(|x| - t, 0)``; for complex ``x`` it shrinks the modulus
    and keeps the phase. ``thresh`` is a non-negative float or an array broadcastable against ``x``.
    """
    _check(x, "soft_threshold")
    t = nonneg(thresh, "soft_threshold")
    mag = abs(x)
    return x * _array.as_real_dtype_of(_shrink_factor(mag, t), x)


def prox_l1(v, t, lam=1.0):
    """prox of ``t * lam * ||x||_1`` (= :func:`soft_threshold` with threshold ``t * lam``)."""
    return soft_threshold(v, t * lam)


def group_soft_threshold(x, thresh, axis=0):
    """Group (isotropic) soft thresholding over ``axis``: the prox of ``t * sum_n ||x[n]||_2``,
    where ``x[n]`` is the vector along ``axis`` (e.g. the gradient directions of TV)."""
    _check(x, "group_soft_threshold")
    t = nonneg(thresh, "group_soft_threshold")
    mag = _group_norm(x, axis)
    return x * _array.as_real_dtype_of(_shrink_factor(mag, t), x)


def prox_l21(v, t, lam=1.0, axis=0):
    """prox of ``t * lam * ||v||_{2,1}`` with the 2-norm over ``axis``."""
    return group_soft_threshold(v, t * lam, axis)


# ---- projections ----------------------------------------------------------------------------------

def project_box(x, lower=None, upper=None):
    """Projection onto ``{lower <= x <= upper}`` (real data; either bound may be None)."""
    _check(x, "project_box")
    if _array.is_complex(x):
        raise TypeError("project_box: expected real data (a box constraint has no meaning for complex "
                        "values; project the real part explicitly if that is what you want)")
    if lower is not None and upper is not None and not _array.is_array(lower) and not _array.is_array(upper):
        if float(lower) > float(upper):
            raise ValueError(f"project_box: lower ({lower}) > upper ({upper})")
    out = x
    if lower is not None:
        out = _array.clamp_min(out, lower)
    if upper is not None:
        out = _array.clamp_max(out, upper)
    if out is x:
        out = _array.copy(x)
    return out


def project_nonneg(x):
    """Projection onto ``{x >= 0}`` (real data)."""
    return project_box(x, 0.0, None)


def project_l2_ball(x, radius, center=None, axes=None):
    """Projection onto ``{||x - center||_2 <= radius}``.

    ``axes``: the axes the norm runs over (None: the whole array, i.e. one ball). With e.g.
    ``axes=(-2, -1)`` each leading-axis slice is projected onto its own ball.
    """
    _check(x, "project_l2_ball")
    r = float(radius)
    if not np.isfinite(r) or r < 0:
        raise ValueError(f"project_l2_ball: radius must be a finite number >= 0, got {radius}")
    d = x if center is None else x - center
    if axes is None:
        axes = tuple(range(d.ndim))
    nrm = _group_norm(d, tuple(axes))
    fac = _array.as_real_dtype_of(_array.clamp_max(r / _array.clamp_min(nrm, _TINY), 1.0), d)
    out = d * fac
    return out if center is None else out + center


def _ball_factor(mag, r):
    """``1 / max(1, mag / r)``: the shrink factor onto the ``r``-ball."""
    if _array.is_array(r):
        return 1.0 / _array.clamp_min(mag / _array.clamp_min(r, _TINY), 1.0)
    return 1.0 / _array.clamp_min(mag * (1.0 / r), 1.0)


def project_l2inf_ball(p, radius, axis=0):
    """Pointwise projection ``p[n] -> p[n] / max(1, ||p[n]||_2 / radius)`` with the 2-norm over
    ``axis``: the projection onto the dual ball of ``radius * ||.||_{2,1}``, i.e. the prox of the
    convex conjugate of ``radius * ||.||_{2,1}`` (the dual step of isotropic TV in PDHG / Chambolle)."""
    _check(p, "project_l2inf_ball")
    r = nonneg(radius, "project_l2inf_ball")
    if not _array.is_array(r) and r == 0:
        return p * 0
    return p * _array.as_real_dtype_of(_ball_factor(_group_norm(p, axis), r), p)


def project_linf_ball(p, radius):
    """Element-wise projection ``p -> p / max(1, |p| / radius)`` (moduli clipped at ``radius``, phase
    kept): the prox of the convex conjugate of ``radius * ||.||_1`` (anisotropic TV, L1-wavelet)."""
    _check(p, "project_linf_ball")
    r = nonneg(radius, "project_linf_ball")
    if not _array.is_array(r) and r == 0:
        return p * 0
    return p * _array.as_real_dtype_of(_ball_factor(abs(p), r), p)


# ---- quadratic and conjugates -------------------------------------------------------------------

def prox_l2_squared(v, t, lam=1.0, y=None):
    """prox of ``t * lam/2 * ||x - y||^2``: ``(v + t lam y) / (1 + t lam)`` (``y = 0`` if None)."""
    _check(v, "prox_l2_squared")
    c = nonneg(t, "prox_l2_squared") * nonneg(lam, "prox_l2_squared")
    if y is None:
        return v * (1.0 / (1.0 + c))
    return (v + y * c) * (1.0 / (1.0 + c))


def conjugate_prox(prox_f):
    """Moreau's identity: from ``prox_f(v, t)`` build ``prox_f_conj(v, s) = v - s prox_f(v / s, 1 / s)``
    (the prox of ``s f*``), e.g. for :func:`recon.solvers.pdhg`."""

    def prox_f_conj(v, s):
        return v - prox_f(v * (1.0 / s), 1.0 / s) * s

    return prox_f_conj


# ---- block-separable functions --------------------------------------------------------------------

def separable(proxes, blocks):
    """The prox of a block-separable ``f(y) = sum_i f_i(y_i)`` on the stacked output of a
    :class:`recon.ops.Stack` or :class:`recon.ops.Diag` ``blocks``: ``prox(v, t) =
    blocks.join([prox_i(v_i, t) for v_i in blocks.split(v)])``. Each ``prox_i(v_i, t)`` gets its block
    shaped ``(..., *oshape_i)``. The same function serves conjugates: pass each block's
    ``prox_conj`` for PDHG's ``prox_f_conj`` (the conjugate of a separable sum is the separable sum of
    the conjugates)."""
    proxes = list(proxes)
    if not hasattr(blocks, "split") or not hasattr(blocks, "join"):
        raise TypeError(f"separable: blocks must be a recon.ops.Stack or Diag, got {type(blocks).__name__}")
    n = len(blocks.ops) if hasattr(blocks, "ops") else None
    if n is not None and len(proxes) != n:
        raise ValueError(f"separable: {len(proxes)} prox functions for {n} blocks")
    for i, p in enumerate(proxes):
        if not callable(p):
            raise TypeError(f"separable: prox {i} is {type(p).__name__}, expected a callable (v, t) -> array")

    def prox(v, t):
        return blocks.join([p(u, t) for p, u in zip(proxes, blocks.split(v))])

    return prox
