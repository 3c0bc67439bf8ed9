"""The Operator abstraction: ``y = A x`` with its exact adjoint, over numpy arrays and torch tensors.

Subclasses implement ``_forward`` and ``_adjoint`` (and optionally ``_normal``) on plain arrays of
their backend; the public ``forward``/``adjoint``/``normal`` check the input and apply them.

Autograd. An operator whose arithmetic is written in torch operations (``torch_native = True``:
multiplications, FFTs, the algebra below) is differentiated by torch itself, so gradients reach the
input AND the tensors it holds (coil maps from a sensitivity network, a learned mask). An operator
that runs native kernels (``torch_native = False``: NUFFT, CT projector, Toeplitz normal) is applied
through one ``torch.autograd.Function`` whose backward applies the adjoint operator (itself through
the same Function, so double backward works); its parameters (a trajectory, a geometry) are fixed.
Composites (``A @ B``, ``A + B``, ``a * A``, ``A.H``, ``A.N``) apply their parts through
:meth:`Operator._dispatch`, so each part takes its own route.

Algebra: ``A @ B`` (composition), ``A + B``, ``A - B``, ``-A``, ``a * A`` (scalar), ``A.H``
(adjoint, with ``A.H.H is A``), ``A.N`` (normal operator ``A^H A``), ``A @ x`` / ``A(x)`` (apply).

Batching: an input may carry leading batch axes before ``ishape``; they pass through unchanged.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from .. import _array


def _shape(s) -> tuple[int, ...]:
    return tuple(int(v) for v in s)


class Operator:
    """A linear operator ``A: C^ishape -> C^oshape`` (or real) with exact adjoint ``A^H``."""

    #: True when ``_forward``/``_adjoint``/``_normal`` are torch operations on torch inputs (autograd
    #: differentiates them, parameters included); False for native kernels (module docstring).
    torch_native = False

    def __init__(self, ishape: Sequence[int], oshape: Sequence[int], dtype="complex64"):
        self.ishape = _shape(ishape)
        self.oshape = _shape(oshape)
        self.dtype = np.dtype(dtype)

    # ---- to implement -------------------------------------------------------------------------
    def _forward(self, x):
        raise NotImplementedError

    def _adjoint(self, y):
        raise NotImplementedError

    def _normal(self, x):
        return self._adjoint(self._forward(x))

    # ---- input checks ---------------------------------------------------------------------------
    def _check_array(self, x, what: str):
        """``x`` is a numpy array or torch tensor of the operator's dtype (TypeError otherwise)."""
        if not _array.is_array(x):
            raise TypeError(f"{type(self).__name__}.{what}: expected a numpy array or torch tensor, "
                            f"got {type(x).__name__}")
        dt = _array.dtype_name(x)
        if dt != self.dtype.name:
            raise TypeError(f"{type(self).__name__}.{what}: expected dtype {self.dtype.name}, got {dt}")

    def _check(self, x, shape: tuple[int, ...], what: str):
        self._check_array(x, what)
        xs = tuple(x.shape)
        k = len(shape)
        if len(xs) < k or xs[len(xs) - k:] != tuple(shape):
            raise ValueError(f"{type(self).__name__}.{what}: expected shape (..., "
                             f"{', '.join(map(str, shape))}), got {xs}")

    def check_input(self, x):
        self._check(x, self.ishape, "forward")

    def check_output(self, y):
        self._check(y, self.oshape, "adjoint")

    # ---- public application -----------------------------------------------------------------------
    def forward(self, x):
        """``A x``."""
        self.check_input(x)
        return self._dispatch(x, "forward")

    def _dispatch(self, x, method: str):
        """``_forward``/``_adjoint``/``_normal`` of ``x`` without input checks, through the autograd
        Function when this operator runs native kernels and ``x`` needs gradients."""
        if not self.torch_native and _needs_autograd(x):
            op = self if method == "forward" else (self.H if method == "adjoint" else self.N)
            return _apply_autograd(op, x)
        return getattr(self, "_" + method)(x)

    def adjoint(self, y):
        """``A^H y``."""
        return self.H.forward(y)

    def normal(self, x):
        """``A^H A x`` (subclasses may use a faster route, e.g. Toeplitz embedding)."""
        return self.N.forward(x)

    __call__ = forward

    # ---- algebra --------------------------------------------------------------------------------
    @property
    def H(self) -> "Operator":
        """The adjoint operator (one object per operator, so ``A.H.H is A`` and ``A.H is A.H``)."""
        h = self.__dict__.get("_adjoint_op")
        if h is None:
            h = self.__dict__["_adjoint_op"] = Adjoint(self)
        return h

    @property
    def N(self) -> "Operator":
        """The normal operator ``A^H A``."""
        n = self.__dict__.get("_normal_op")
        if n is None:
            n = self.__dict__["_normal_op"] = Normal(self)
        return n

    def __matmul__(self, other):
        if isinstance(other, Operator):
            return Compose(self, other)
        return self.forward(other)

    def __add__(self, other):
        if not isinstance(other, Operator):
            return NotImplemented
        return Sum(self, other)

    def __sub__(self, other):
        if not isinstance(other, Operator):
            return NotImplemented
        return Sum(self, Scaled(other, -1))

    def __neg__(self):
        return Scaled(self, -1)

    def __mul__(self, a):
        if isinstance(a, numbers.Number):
            return Scaled(self, a)
        return NotImplemented

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ishape} -> {self.oshape} {self.dtype.name}>"


class Adjoint(Operator):
    """``A^H``; its adjoint is ``A`` itself."""

    def __init__(self, op: Operator):
        super().__init__(op.oshape, op.ishape, op.dtype)
        self.op = op
        self.torch_native = op.torch_native

    def check_input(self, x):
        self.op.check_output(x)

    def check_output(self, y):
        self.op.check_input(y)

    def _forward(self, y):
        return self.op._adjoint(y)

    def _adjoint(self, x):
        return self.op._forward(x)

    def _normal(self, y):
        return self.op._forward(self.op._adjoint(y))

    @property
    def H(self):
        return self.op

    def __repr__(self):
        return f"{self.op!r}.H"


class Normal(Operator):
    """``A^H A`` (self-adjoint); uses ``A._normal`` so subclasses' fast paths apply."""

    def __init__(self, op: Operator):
        super().__init__(op.ishape, op.ishape, op.dtype)
        self.op = op
        self.torch_native = op.torch_native

    def check_input(self, x):
        self.op.check_input(x)

    check_output = check_input

    def _forward(self, x):
        return self.op._normal(x)

    _adjoint = _forward

    @property
    def H(self):
        return self


class Compose(Operator):
    """``A @ B``: x -> A(B(x))."""

    torch_native = True  # applies its parts through their own routes

    def __init__(self, a: Operator, b: Operator):
        if a.ishape != b.oshape:
            raise ValueError(f"cannot compose: {a!r} takes {a.ishape} but {b!r} gives {b.oshape}")
        if a.dtype != b.dtype:
            raise TypeError(f"cannot compose operators of dtypes {a.dtype} and {b.dtype}")
        super().__init__(b.ishape, a.oshape, a.dtype)
        self.a, self.b = a, b

    def check_input(self, x):
        self.b.check_input(x)

    def check_output(self, y):
        self.a.check_output(y)

    def _forward(self, x):
        return self.a._dispatch(self.b._dispatch(x, "forward"), "forward")

    def _adjoint(self, y):
        return self.b._dispatch(self.a._dispatch(y, "adjoint"), "adjoint")

    def _normal(self, x):
        # B^H (A^H A) B: keeps A's fast normal (e.g. Toeplitz NUFFT inside SENSE)
        return self.b._dispatch(self.a._dispatch(self.b._dispatch(x, "forward"), "normal"), "adjoint")

    def __repr__(self):
        return f"({self.a!r} @ {self.b!r})"


class Sum(Operator):
    """``A + B``."""

    torch_native = True

    def __init__(self, a: Operator, b: Operator):
        if a.ishape != b.ishape or a.oshape != b.oshape:
            raise ValueError(f"cannot add {a!r} and {b!r}: shapes differ")
        if a.dtype != b.dtype:
            raise TypeError(f"cannot add operators of dtypes {a.dtype} and {b.dtype}")
        super().__init__(a.ishape, a.oshape, a.dtype)
        self.a, self.b = a, b

    def check_input(self, x):
        self.a.check_input(x)

    def check_output(self, y):
        self.a.check_output(y)

    def _forward(self, x):
        return self.a._dispatch(x, "forward") + self.b._dispatch(x, "forward")

    def _adjoint(self, y):
        return self.a._dispatch(y, "adjoint") + self.b._dispatch(y, "adjoint")


class Scaled(Operator):
    """``a * A`` for a scalar ``a`` (adjoint ``conj(a) * A^H``)."""

    torch_native = True

    def __init__(self, op: Operator, a: numbers.Number):
        if isinstance(a, complex) and op.dtype.kind != "c":
            raise TypeError("a complex scale needs a complex operator")
        super().__init__(op.ishape, op.oshape, op.dtype)
        self.op, self.a = op, a

    def check_input(self, x):
        self.op.check_input(x)

    def check_output(self, y):
        self.op.check_output(y)

    def _forward(self, x):
        return self.op._dispatch(x, "forward") * self.a

    def _adjoint(self, y):
        return self.op._dispatch(y, "adjoint") * self.a.conjugate()

    def _normal(self, x):
        return self.op._dispatch(x, "normal") * (abs(self.a) ** 2)


# ---- torch autograd -------------------------------------------------------------------------------

def _needs_autograd(x) -> bool:
    if not _array.is_torch(x):
        return False
    import torch

    return torch.is_grad_enabled() and x.requires_grad


_FUNCTION = None


def _apply_autograd(op: Operator, x):
    global _FUNCTION
    if _FUNCTION is None:
        import torch

        class OperatorFunction(torch.autograd.Function):
            """y = op(x); backward: grad_x = op.H(grad_y), applied through this same Function."""

            @staticmethod
            def forward(ctx, x, op):  # noqa: D401
                ctx.op = op
                return op._forward(x.detach())

            @staticmethod
            def backward(ctx, grad_y):
                return ctx.op.H.forward(grad_y.contiguous()), None

        _FUNCTION = OperatorFunction
    return _FUNCTION.apply(x, op)
