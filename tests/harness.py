"""The operator correctness harness: every registered operator gets the same tests (tests/test_operator.py).

Register an operator (one line, anywhere pytest imports before collection: put your lines in a module
``tests/ops_<topic>.py``, which this harness imports automatically, e.g. ``tests/ops_ct.py``)::

    from harness import register
    register("ct.parallel2d-f32", lambda: Projector(small_geometry, dtype="float32"))

The factory takes no argument and returns either the operator, or ``(operator, make_input)`` where
``make_input(rng, shape, dtype)`` returns a numpy array (use it when random Gaussian inputs are not
valid, e.g. an operator defined on non-negative data). Options of :func:`register`:

* ``normal_rtol``: tolerance of ``normal(x)`` against ``adjoint(forward(x))`` when the normal operator
  takes another route (Toeplitz embedding): the NUFFT tolerance. Default: the op's ``tol`` attribute if
  it has one (the NUFFT's normal is its Toeplitz embedding), else the dtype default below.
* ``gradcheck``: run ``torch.autograd.gradcheck`` (float64/complex128 operators only; default True).
* ``gradgradcheck``: also check double backward (default False; slow, used for a few operators).
* ``batch``: the operator accepts leading batch axes before ``ishape`` (default True).
* ``params``: for operators holding tensors that may require grad (coil maps, masks, weights): a
  callable returning ``(build, arrays)`` where ``build(*tensors)`` makes the operator from torch
  tensors shaped like the numpy ``arrays``; the harness then gradchecks forward, adjoint and normal
  w.r.t. the input AND those tensors (complex128/float64 operators only), and checks that the
  operator built from tensors equals the registered one.

Tests applied to every registered operator, with the bounds they assert (``rtol`` is relative l2):

=====================================  ===================  ====================
check                                  complex64/float32    complex128/float64
=====================================  ===================  ====================
adjoint (dot test) relative error*     1e-6                 1e-12
linearity A(a x + b z) = a Ax + b Az   1e-5                 1e-10
normal(x) = adjoint(forward(x))        1e-5 (or normal_rtol) 1e-10 (or normal_rtol)
numpy == torch (forward/adjoint/normal) 1e-5                 1e-10
batch axes pass through                1e-5                 1e-10
gradcheck (complex128/float64 ops)     --                   torch defaults (eps 1e-6, atol 1e-5, rtol 1e-3)
=====================================  ===================  ====================

\\* ``|<Ax, y> - <x, A^H y>| / (|Ax| |y|)`` on random (complex) x, y.

Reference helpers for other tests live here too: :func:`nudft_forward` / :func:`nudft_adjoint` (the
float64 direct sums of recon's NUFFT convention, recon/conventions.py) and :func:`rel_err`.
"""

from __future__ import annotations

import importlib
import math
import pathlib
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# ---- bounds -----------------------------------------------------------------------------------------

#: Relative adjoint (dot-test) error bound per dtype.
ADJOINT_BOUND = {"complex64": 1e-6, "float32": 1e-6, "complex128": 1e-12, "float64": 1e-12}
#: Relative l2 bound for identities that hold up to rounding (linearity, normal, numpy vs torch, batching).
RTOL = {"complex64": 1e-5, "float32": 1e-5, "complex128": 1e-10, "float64": 1e-10}


def is_double(dtype) -> bool:
    return np.dtype(dtype) in (np.complex128, np.float64)


# ---- registry -----------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    factory: Callable
    normal_rtol: float | None = None
    gradcheck: bool = True
    gradgradcheck: bool = False
    batch: bool = True
    params: Callable | None = None
    options: dict = field(default_factory=dict)

    def build(self):
        """(op, make_input) with make_input(rng, shape, dtype) -> numpy array."""
        made = self.factory()
        if isinstance(made, tuple):
            op, make = made
        else:
            op, make = made, random_array
        return op, make

    def normal_tolerance(self, op) -> float:
        base = RTOL[op.dtype.name]
        if self.normal_rtol is not None:
            return max(self.normal_rtol, base)
        tol = getattr(op, "tol", None)
        return max(float(tol), base) if tol is not None else base


_REGISTRY: dict[str, Case] = {}
_LOADED = False
#: tests/ops_*.py modules that failed to import: name -> traceback
LOAD_ERRORS: dict[str, str] = {}


def register(name: str, factory: Callable, **options) -> Case:
    """Register an operator factory under a unique name (see the module docstring)."""
    if name in _REGISTRY:
        raise ValueError(f"operator {name!r} is already registered")
    known = {"normal_rtol", "gradcheck", "gradgradcheck", "batch", "params"}
    extra = set(options) - known
    if extra:
        raise TypeError(f"register(): unknown options {sorted(extra)}; known: {sorted(known)}")
    case = Case(name, factory, **options)
    _REGISTRY[name] = case
    return case


def _load_registrations():
    """Import every tests/ops_*.py once, so registrations elsewhere need no edit of this file."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    here = pathlib.Path(__file__).parent
    for path in sorted(here.glob("ops_*.py")):
        try:
            importlib.import_module(path.stem)
        except Exception:  # reported by test_operator.py::test_registration_modules_import, not fatal here
            LOAD_ERRORS[path.stem] = traceback.format_exc()


def registration_modules() -> list[str]:
    """Names of the tests/ops_*.py modules (imported or failed)."""
    return sorted(p.stem for p in pathlib.Path(__file__).parent.glob("ops_*.py"))


def cases() -> list[Case]:
    _load_registrations()
    return list(_REGISTRY.values())


def case(name: str) -> Case:
    _load_registrations()
    return _REGISTRY[name]


# ---- random data and references ----------------------------------------------------------------------

def random_array(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Standard normal real or complex (real and imaginary parts each N(0, 1)) array."""
    dtype = np.dtype(dtype)
    a = rng.standard_normal(tuple(shape))
    if dtype.kind == "c":
        a = a + 1j * rng.standard_normal(tuple(shape))
    return a.astype(dtype)


def rel_err(got, ref) -> float:
    """||got - ref|| / ||ref|| (l2 over all entries); numpy arrays or torch tensors."""
    g = _np(got).astype(np.complex128).ravel()
    r = _np(ref).astype(np.complex128).ravel()
    return float(np.linalg.norm(g - r) / np.linalg.norm(r))


def _np(a):
    if hasattr(a, "detach"):
        a = a.detach()
        if a.is_conj():
            a = a.resolve_conj()
        return a.cpu().numpy()
    return np.asarray(a)


def _centred(n):
    return np.arange(n) - n // 2


def _phases(coord, im_shape):
    """Per-axis factors exp(-2 pi i k_a x_a / N_a), each (M, N_a), float64/complex128."""
    coord = np.asarray(coord, dtype=np.float64).reshape(-1, len(im_shape))
    return [np.exp(-2j * np.pi * np.outer(coord[:, a], _centred(n)) / n) for a, n in enumerate(im_shape)]


def nudft_forward(x, coord, im_shape) -> np.ndarray:
    """Direct type 2 in float64: ``y_j = (1/sqrt(prod N)) sum_n x[n] exp(-2 pi i sum_a k_ja x_a / N_a)``
    with centred positions ``x_a = n_a - N_a//2`` (recon/conventions.py). ``x``: (..., *im_shape);
    ``coord``: (..., M, d) without frame axes (one trajectory). Returns (..., *coord.shape[:-1])."""
    im_shape = tuple(im_shape)
    d = len(im_shape)
    x = np.asarray(x, dtype=np.complex128)
    lead = x.shape[: x.ndim - d]
    e = _phases(coord, im_shape)
    xs = x.reshape((-1,) + im_shape)
    out = np.empty((xs.shape[0], e[0].shape[0]), dtype=np.complex128)
    for b, img in enumerate(xs):
        if d == 2:
            out[b] = np.einsum("ja,ja->j", e[0], e[1] @ img.T)
        else:
            t = (img.reshape(-1, im_shape[2]) @ e[2].T).reshape(im_shape[0], im_shape[1], -1)  # (N0, N1, M)
            t = np.einsum("abj,jb->ja", t, e[1])
            out[b] = np.einsum("ja,ja->j", t, e[0])
    out /= math.sqrt(float(np.prod(im_shape)))
    return out.reshape(lead + tuple(np.shape(coord)[:-1]))


def nudft_adjoint(y, coord, im_shape) -> np.ndarray:
    """Direct type 1 in float64, the conjugate transpose of :func:`nudft_forward`.
    ``y``: (..., *coord.shape[:-1]). Returns (..., *im_shape)."""
    im_shape = tuple(im_shape)
    d = len(im_shape)
    sample_shape = tuple(np.shape(coord)[:-1])
    y = np.asarray(y, dtype=np.complex128)
    lead = y.shape[: y.ndim - len(sample_shape)]
    e = [np.conj(f) for f in _phases(coord, im_shape)]
    ys = y.reshape((-1, e[0].shape[0]))
    out = np.empty((ys.shape[0],) + im_shape, dtype=np.complex128)
    for b, v in enumerate(ys):
        if d == 2:
            out[b] = (e[0] * v[:, None]).T @ e[1]
        else:
            t = np.einsum("ja,jb->jab", e[0] * v[:, None], e[1]).reshape(len(v), -1)  # (M, N0*N1)
            out[b] = (t.T @ e[2]).reshape(im_shape)
    out /= math.sqrt(float(np.prod(im_shape)))
    return out.reshape(lead + im_shape)


def cartesian_coord(im_shape) -> np.ndarray:
    """Integer grid coordinates ``n - N//2`` covering the image size: shape (*im_shape, d)."""
    grids = np.meshgrid(*[_centred(n) for n in im_shape], indexing="ij")
    return np.stack(grids, axis=-1).astype(np.float64)


def random_coord(rng, M, im_shape) -> np.ndarray:
    """M points uniform in [-N/2, N/2) per axis: shape (M, d), cycles per FOV."""
    return (rng.random((M, len(im_shape))) - 0.5) * np.asarray(im_shape, dtype=np.float64)


# ---- the operators this harness ships with -------------------------------------------------------------

def _register_core():
    from recon.ops import FFT, Identity, Matrix, Multiply, Nufft

    def rng(seed):
        return np.random.default_rng(seed)

    for dt in ("complex64", "complex128"):
        register(f"identity-{dt}", lambda dt=dt: Identity((3, 4), dtype=dt))
        register(f"multiply-{dt}",  # broadcasts (4, 5) to (3, 4, 5): adjoint sums over the new axis
                 lambda dt=dt: Multiply((4, 5), random_array(rng(1), (3, 4, 5), dt), dtype=dt))
        register(f"matrix-{dt}", lambda dt=dt: Matrix(random_array(rng(2), (7, 5), dt)))
        register(f"fft2d-{dt}", lambda dt=dt: FFT((6, 5), dtype=dt))
        register(f"fft3d-{dt}", lambda dt=dt: FFT((3, 4, 5), dtype=dt))
        # NUFFTs: small odd/even/non-square images, a few dozen points including the edge +-N/2
        tol = 1e-6 if dt == "complex64" else 1e-10

        def nufft2d(dt=dt, tol=tol):
            c = random_coord(rng(3), 40, (6, 7))
            c[0] = (3.0, 3.5)       # the +N/2 edge
            c[1] = (-3.0, -3.5)
            return Nufft(c, (6, 7), tol, dtype=dt)

        def nufft3d(dt=dt, tol=tol):
            return Nufft(random_coord(rng(4), 50, (4, 5, 3)), (4, 5, 3), tol, dtype=dt)

        def nufft2d_frames(dt=dt, tol=tol):  # 3 frames x 2 spokes x 6 samples, frames broadcast over coils
            c = random_coord(rng(5), 3 * 12, (6, 6)).reshape(3, 1, 2, 6, 2)
            return Nufft(c, (6, 6), tol, dtype=dt, frame_ndim=2)

        register(f"nufft2d-{dt}", nufft2d, gradgradcheck=dt == "complex128")
        register(f"nufft3d-{dt}", nufft3d)
        register(f"nufft2d-frames-{dt}", nufft2d_frames)
        # composites: the algebra as operators in their own right
        register(f"nufft2d-H-{dt}", lambda f=nufft2d: f().H)
        register(f"nufft2d-N-{dt}", lambda f=nufft2d: f().N, normal_rtol=tol)
        register(f"nufft@multiply-{dt}",  # a one-coil SENSE-like chain
                 lambda f=nufft2d, dt=dt: f() @ Multiply((6, 7), random_array(rng(6), (6, 7), dt), dtype=dt),
                 normal_rtol=tol)
        register(f"fft@fft.H-sum-{dt}", lambda dt=dt: FFT((4, 5), dt) @ FFT((4, 5), dt).H + 0.5 * Identity((4, 5), dt))
        register(f"scaled-diff-matrix-{dt}",
                 lambda dt=dt: (2.5 - 1j) * Matrix(random_array(rng(7), (6, 4), dt))
                 - Matrix(random_array(rng(8), (6, 4), dt)))
    for dt in ("float32", "float64"):
        register(f"matrix-{dt}", lambda dt=dt: Matrix(random_array(rng(9), (6, 8), dt), ishape=(2, 4), oshape=(3, 2)),
                 gradgradcheck=dt == "float64")
        register(f"matrix@matrix-{dt}", lambda dt=dt: Matrix(random_array(rng(10), (5, 3), dt))
                 @ (3.0 * Matrix(random_array(rng(11), (3, 4), dt))))


_register_core()
