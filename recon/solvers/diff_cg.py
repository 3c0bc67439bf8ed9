"""Differentiable data consistency: ``x = (N + lam I)^{-1} b`` by CG, with an implicit backward.

:func:`cg_solve` is a ``torch.autograd.Function``: the forward runs :class:`~recon.solvers.CG` without
building a graph; the backward solves ``(N + lam I) g = grad_x`` with the same operator (``N`` is
Hermitian) and returns

- ``grad_b = g``;
- ``grad_lam = -Re<g, x>`` (summed per batch item when ``lam`` is per item);
- for each tensor in ``params`` (what ``normal`` depends on, e.g. coil maps or a learned weight):
  the gradient of ``Re<-g, N(x)>``, i.e. ``-g`` backpropagated through ``normal(x)`` evaluated with
  gradients on.

Only ``x`` and ``lam`` are saved, so memory does not grow with the number of CG iterations (unlike
autograd through unrolled iterations); the price is one more CG solve in the backward.
"""

from __future__ import annotations

from .. import _array
from ._util import rdot
from .cg import CG
from .loop import run

__all__ = ["cg_solve"]

_FUNCTION = None


def _solve(normal, b, lam, opts, x0=None):
    damping = 0.0 if lam is None else lam
    alg = CG(normal, b, x0, damping=damping, batch_ndim=opts["batch_ndim"], tol=opts["tol"])
    x, _ = run(alg, opts["max_iter"], tol=opts["tol"], check_every=opts["check_every"], history=False)
    return x


def _function():
    global _FUNCTION
    if _FUNCTION is None:
        import torch
        from torch.autograd.function import once_differentiable

        class CGSolve(torch.autograd.Function):
            @staticmethod
            def forward(ctx, b, lam, normal, opts, x0, *params):
                with torch.no_grad():
                    x = _solve(normal, b.detach(), None if lam is None else lam.detach(), opts,
                               None if x0 is None else x0.detach())
                ctx.save_for_backward(x, lam)
                ctx.normal, ctx.opts, ctx.params = normal, opts, params
                return x

            @staticmethod
            @once_differentiable
            def backward(ctx, grad_x):
                x, lam = ctx.saved_tensors
                opts, params = ctx.opts, ctx.params
                with torch.no_grad():
                    g = _solve(ctx.normal, grad_x.contiguous(), lam, opts)
                grad_b = g if ctx.needs_input_grad[0] else None
                grad_lam = None
                if lam is not None and ctx.needs_input_grad[1]:
                    grad_lam = (-rdot(g, x, lam.ndim)).to(lam.dtype).reshape(lam.shape)
                want = [i for i, p in enumerate(params) if ctx.needs_input_grad[5 + i]]
                grad_params = [None] * len(params)
                if want:
                    with torch.enable_grad():
                        out = ctx.normal(x.detach())
                        got = torch.autograd.grad(out, [params[i] for i in want], grad_outputs=-g,
                                                  allow_unused=True)
                    for i, gp in zip(want, got):
                        grad_params[i] = gp
                return (grad_b, grad_lam, None, None, None, *grad_params)

        _FUNCTION = CGSolve
    return _FUNCTION


def cg_solve(normal, b, lam=0.0, *, params=(), max_iter: int = 30, tol: float = 1e-6, batch_ndim: int = 0,
             x0=None, check_every: int | None = None):
    """``x = (normal + lam I)^{-1} b`` by CG, differentiable by implicit differentiation.

    Parameters
    ----------
    normal : callable
        ``x -> N x`` with ``N`` Hermitian positive semi-definite (e.g. ``A.normal``), *without* the
        ``lam`` term. It must be linear in ``x``; it may depend on tensors listed in ``params``.
    b : torch.Tensor
        Right-hand side (real or complex; ``(B, ...)`` with ``batch_ndim=1`` for a batch of
        independent systems). A numpy array is solved by plain CG (no autograd).
    lam : float or torch.Tensor
        Real damping ``>= 0``: a number, a 0-d tensor, or one value per item (shape
        ``b.shape[:batch_ndim]``). May require grad (a learned regularization weight).
    params : sequence of torch.Tensor
        The tensors ``normal`` depends on whose gradients are wanted (e.g. coil maps from a
        sensitivity network, a learned diagonal weight). Tensors not listed get no gradient.
    max_iter, tol, check_every : CG budget, relative tolerance (per item when batched) and how often
        the tolerance is tested (each test waits for the device once; ``tol=0`` never waits).
    batch_ndim : int
        Leading axes of ``b`` that index independent systems, solved in lockstep with per-item step
        lengths and per-item stopping.
    x0 : torch.Tensor, optional
        Warm start of the forward solve (no gradient flows into it).

    Returns
    -------
    torch.Tensor
        ``x``, shaped like ``b``. Backward: see the module docstring.
    """
    if not _array.is_torch(b):
        return _solve(normal, b, None if (isinstance(lam, float) and lam == 0.0) else lam,
                      {"batch_ndim": batch_ndim, "tol": tol, "max_iter": max_iter, "check_every": check_every}, x0)
    import torch

    params = tuple(params)
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"cg_solve: params[{i}] is {type(p).__name__}, expected a torch.Tensor")
    if isinstance(lam, torch.Tensor):
        if lam.is_complex():
            raise TypeError("cg_solve: lam must be real")
        lam_t = lam
    else:
        lam_f = float(lam)
        if not lam_f >= 0:
            raise ValueError(f"cg_solve: lam must be a number >= 0, got {lam!r}")
        lam_t = None if lam_f == 0.0 else torch.full((), lam_f, dtype=b.real.dtype, device=b.device)
    opts = {"batch_ndim": int(batch_ndim), "tol": tol, "max_iter": max_iter, "check_every": check_every}
    return _function().apply(b, lam_t, normal, opts, x0, *params)
