"""Block operators: :class:`Stack` (``[A_1; A_2; ...]``, one input, outputs concatenated) and
:class:`Diag` (``diag(A_1, A_2, ...)``, inputs and outputs concatenated).

Blocks are flattened and concatenated along one last axis, so a stacked output is one array
``(..., sum_i prod(oshape_i))`` (leading batch axes kept): solvers see a single array (PDHG's dual,
ADMM's split), and ``split``/``join`` move between it and the per-block arrays ``(..., *oshape_i)``.
Use :func:`recon.solvers.prox.separable` for a prox that acts block by block.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import _array
from .base import Operator

__all__ = ["Stack", "Diag", "Blocks"]


class Blocks:
    """Flattened concatenation of arrays of the given core ``shapes`` along one last axis."""

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.shapes = tuple(tuple(int(v) for v in s) for s in shapes)
        self.sizes = tuple(int(np.prod(s, dtype=np.int64)) for s in self.shapes)
        self.offsets = tuple(int(v) for v in np.cumsum((0,) + self.sizes))
        self.total = self.offsets[-1]

    def split(self, y, what: str = "split"):
        """``(..., total)`` -> ``[(..., *shape_i)]`` (views where the library allows)."""
        if not _array.is_array(y):
            raise TypeError(f"{what}: expected a numpy array or torch tensor, got {type(y).__name__}")
        if y.ndim < 1 or y.shape[-1] != self.total:
            raise ValueError(f"{what}: expected shape (..., {self.total}), got {tuple(y.shape)}")
        lead = tuple(y.shape[:-1])
        return [y[..., o: o + n].reshape(lead + s) for o, n, s in zip(self.offsets, self.sizes, self.shapes)]

    def join(self, parts, what: str = "join"):
        """``[(..., *shape_i)]`` -> ``(..., total)`` (the inverse of :meth:`split`)."""
        parts = list(parts)
        if len(parts) != len(self.shapes):
            raise ValueError(f"{what}: expected {len(self.shapes)} blocks, got {len(parts)}")
        lead = None
        for i, (p, s) in enumerate(zip(parts, self.shapes)):
            if not _array.is_array(p):
                raise TypeError(f"{what}: block {i} is {type(p).__name__}, expected an array")
            ps = tuple(p.shape)
            if len(ps) < len(s) or ps[len(ps) - len(s):] != s:
                raise ValueError(f"{what}: block {i} has shape {ps}, expected (..., {', '.join(map(str, s))})")
            here = ps[: len(ps) - len(s)]
            if lead is None:
                lead = here
            elif here != lead:
                raise ValueError(f"{what}: blocks have different batch axes {lead} and {here}")
        return _array.concatenate([p.reshape(lead + (-1,)) for p in parts], -1)


def _contiguous(x):
    return x.contiguous() if _array.is_torch(x) else np.ascontiguousarray(x)


def _check_ops(ops, what: str):
    ops = list(ops)
    if not ops:
        raise ValueError(f"{what}: needs at least one operator")
    for i, op in enumerate(ops):
        if not isinstance(op, Operator):
            raise TypeError(f"{what}: block {i} is {type(op).__name__}, expected a recon.ops.Operator")
    dtypes = {op.dtype for op in ops}
    if len(dtypes) > 1:
        raise TypeError(f"{what}: all blocks need one dtype, got {sorted(d.name for d in dtypes)}")
    return tuple(ops)


def _sum(parts):
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


class Stack(Operator):
    """Vertical stack ``K = [A_1; A_2; ...]``: ``K x = join(A_1 x, A_2 x, ...)``.

    All blocks share ``ishape`` and dtype; ``oshape = (sum_i prod(A_i.oshape),)``. The adjoint is
    ``K^H y = sum_i A_i^H y_i`` with ``y_i = split(y)[i]``; the normal operator ``sum_i A_i^H A_i``
    uses each block's own normal (e.g. Toeplitz). Example, PDHG for ``1/2 ||A x - y||^2 + lam TV(x)``::

        K = Stack([A, FiniteDifference(A.ishape)])
        prox_f_conj = separable([data_conj, tv.prox_conj], K)
    """

    torch_native = True  # applies its blocks through their own routes (recon.ops.base)

    def __init__(self, ops: Sequence[Operator]):
        ops = _check_ops(ops, "Stack")
        shapes = {op.ishape for op in ops}
        if len(shapes) > 1:
            raise ValueError(f"Stack: all blocks need one input shape, got {sorted(shapes)}")
        self.ops = ops
        self.blocks = Blocks([op.oshape for op in ops])
        super().__init__(ops[0].ishape, (self.blocks.total,), ops[0].dtype)

    def split(self, y):
        """The per-block outputs ``[(..., *A_i.oshape)]`` of a stacked array ``(..., oshape[0])``."""
        return self.blocks.split(y, "Stack.split")

    def join(self, parts):
        """The stacked array of per-block outputs (inverse of :meth:`split`)."""
        return self.blocks.join(parts, "Stack.join")

    def _forward(self, x):
        return self.blocks.join([op._dispatch(x, "forward") for op in self.ops])

    def _adjoint(self, y):
        return _sum([op._dispatch(_contiguous(p), "adjoint") for op, p in zip(self.ops, self.blocks.split(y))])

    def _normal(self, x):
        return _sum([op._dispatch(x, "normal") for op in self.ops])

    def __repr__(self):
        return f"Stack([{', '.join(map(repr, self.ops))}])"


class Diag(Operator):
    """Block-diagonal ``D = diag(A_1, A_2, ...)`` on concatenated inputs and outputs:
    ``D join_input(x_1, x_2, ...) = join(A_1 x_1, A_2 x_2, ...)``.

    ``ishape = (sum_i prod(A_i.ishape),)``, ``oshape = (sum_i prod(A_i.oshape),)``; one dtype for
    all blocks. ``split``/``join`` act on outputs, ``split_input``/``join_input`` on inputs.
    """

    torch_native = True

    def __init__(self, ops: Sequence[Operator]):
        ops = _check_ops(ops, "Diag")
        self.ops = ops
        self.blocks = Blocks([op.oshape for op in ops])
        self.input_blocks = Blocks([op.ishape for op in ops])
        super().__init__((self.input_blocks.total,), (self.blocks.total,), ops[0].dtype)

    def split(self, y):
        return self.blocks.split(y, "Diag.split")

    def join(self, parts):
        return self.blocks.join(parts, "Diag.join")

    def split_input(self, x):
        return self.input_blocks.split(x, "Diag.split_input")

    def join_input(self, parts):
        return self.input_blocks.join(parts, "Diag.join_input")

    def _forward(self, x):
        return self.blocks.join([op._dispatch(_contiguous(p), "forward")
                                 for op, p in zip(self.ops, self.input_blocks.split(x))])

    def _adjoint(self, y):
        return self.input_blocks.join([op._dispatch(_contiguous(p), "adjoint")
                                       for op, p in zip(self.ops, self.blocks.split(y))])

    def _normal(self, x):
        return self.input_blocks.join([op._dispatch(_contiguous(p), "normal")
                                       for op, p in zip(self.ops, self.input_blocks.split(x))])

    def __repr__(self):
        return f"Diag([{', '.join(map(repr, self.ops))}])"
