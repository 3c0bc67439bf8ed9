"""The harness (tests/harness.py) applied to every registered operator, plus the Operator algebra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness
from harness import ADJOINT_BOUND, RTOL, is_double, rel_err

from recon.ops import FFT, Adjoint, Identity, Matrix, Multiply

CASES = harness.cases()


def _ids(cs):
    return [c.name for c in cs]


@pytest.fixture(scope="module")
def built():
    """Operators built once per module (plans are cheap but not free)."""
    cache = {}

    def get(case):
        if case.name not in cache:
            cache[case.name] = case.build()
        return cache[case.name]

    return get


def _inputs(op, make, seed=0, lead=()):
    rng = np.random.default_rng(seed)
    return make(rng, lead + op.ishape, op.dtype), make(rng, lead + op.oshape, op.dtype)


def _dot(a, b) -> complex:
    return complex(np.vdot(np.asarray(a, dtype=np.complex128).ravel(), np.asarray(b, dtype=np.complex128).ravel()))


def _scalars(op):
    return (0.3 - 1.2j, 2.0 + 0.5j) if op.dtype.kind == "c" else (1.5, -0.7)


# ---- the harness ------------------------------------------------------------------------------------

def test_registry_has_the_core_operators():
    names = {c.name for c in CASES}
    for dt in ("complex64", "complex128"):
        for base in ("identity", "multiply", "matrix", "fft2d", "fft3d", "nufft2d", "nufft3d", "nufft2d-frames",
                     "nufft2d-H", "nufft2d-N", "nufft@multiply"):
            assert f"{base}-{dt}" in names
    with pytest.raises(ValueError, match="already registered"):
        harness.register("identity-complex64", lambda: None)
    with pytest.raises(TypeError, match="unknown options"):
        harness.register("new-op-with-typo", lambda: None, normal_rol=1e-3)


@pytest.mark.parametrize("module", harness.registration_modules())
def test_registration_modules_import(module):
    assert module not in harness.LOAD_ERRORS, harness.LOAD_ERRORS.get(module)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_adjoint_dot(case, built):
    """|<Ax, y> - <x, A^H y>| / (|Ax| |y|) <= 1e-6 (single) / 1e-12 (double)."""
    op, make = built(case)
    for seed in range(3):
        x, y = _inputs(op, make, seed)
        Ax = op.forward(x)
        AHy = op.adjoint(y)
        assert Ax.shape == op.oshape and AHy.shape == op.ishape
        assert Ax.dtype == op.dtype and AHy.dtype == op.dtype
        err = abs(_dot(Ax, y) - _dot(x, AHy)) / (np.linalg.norm(Ax) * np.linalg.norm(y))
        assert err <= ADJOINT_BOUND[op.dtype.name], f"{case.name}: dot-test error {err:.2e}"


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_linearity(case, built):
    op, make = built(case)
    x, _ = _inputs(op, make, 1)
    z, _ = _inputs(op, make, 2)
    a, b = _scalars(op)
    lhs = op.forward((a * x + b * z).astype(op.dtype))
    rhs = a * op.forward(x) + b * op.forward(z)
    assert rel_err(lhs, rhs) <= RTOL[op.dtype.name]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_normal_is_adjoint_of_forward(case, built):
    op, make = built(case)
    x, _ = _inputs(op, make, 3)
    ref = op.adjoint(op.forward(x))
    got = op.normal(x)
    assert got.shape == op.ishape and got.dtype == op.dtype
    assert rel_err(got, ref) <= case.normal_tolerance(op)
    # the normal operator is self-adjoint
    u, _ = _inputs(op, make, 4)
    err = abs(_dot(op.normal(x), u) - _dot(x, op.normal(u))) / (np.linalg.norm(op.normal(x)) * np.linalg.norm(u))
    assert err <= 10 * ADJOINT_BOUND[op.dtype.name]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_numpy_equals_torch(case, built):
    op, make = built(case)
    x, y = _inputs(op, make, 5)
    tol = RTOL[op.dtype.name]
    for method, arg in (("forward", x), ("adjoint", y), ("normal", x)):
        ref = getattr(op, method)(arg)
        got = getattr(op, method)(torch.from_numpy(arg.copy()))
        assert isinstance(got, torch.Tensor), method
        assert str(got.dtype) == f"torch.{op.dtype.name}", method
        assert rel_err(got, ref) <= tol, method


@pytest.mark.parametrize("case", [c for c in CASES if c.batch], ids=_ids([c for c in CASES if c.batch]))
def test_batch_axes_pass_through(case, built):
    op, make = built(case)
    x, y = _inputs(op, make, 6, lead=(2,))
    fx = op.forward(x)
    assert fx.shape == (2,) + op.oshape
    for i in range(2):
        assert rel_err(fx[i], op.forward(np.ascontiguousarray(x[i]))) <= RTOL[op.dtype.name]
        assert rel_err(op.adjoint(y)[i], op.adjoint(np.ascontiguousarray(y[i]))) <= RTOL[op.dtype.name]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_bad_dtype_and_shape_raise(case, built):
    op, make = built(case)
    x, y = _inputs(op, make, 7)
    wrong = {"complex64": "complex128", "complex128": "complex64", "float32": "float64", "float64": "float32"}
    with pytest.raises(TypeError, match="expected dtype"):
        op.forward(x.astype(wrong[op.dtype.name]))
    with pytest.raises(TypeError, match="expected dtype"):
        op.adjoint(y.astype(wrong[op.dtype.name]))
    with pytest.raises(ValueError, match="expected shape"):
        op.forward(np.zeros(op.ishape[:-1] + (op.ishape[-1] + 1,), dtype=op.dtype))
    with pytest.raises(ValueError, match="expected shape"):
        op.adjoint(np.zeros(op.oshape[:-1] + (op.oshape[-1] + 1,), dtype=op.dtype))
    with pytest.raises(TypeError, match="expected a numpy array or torch tensor"):
        op.forward(x.tolist())


# ---- autograd ------------------------------------------------------------------------------------------

GRAD = [c for c in CASES if c.gradcheck]


@pytest.mark.parametrize("case", GRAD, ids=_ids(GRAD))
def test_gradcheck(case, built):
    """torch.autograd.gradcheck on the autograd path (forward and adjoint) of double-precision ops."""
    op, make = built(case)
    if not is_double(op.dtype):
        # single precision: the autograd path must still give A^H g exactly
        x, y = _inputs(op, make, 8)
        xt = torch.from_numpy(x).requires_grad_(True)
        out = op.forward(xt)
        g = torch.from_numpy(y)
        out.backward(g)
        assert rel_err(xt.grad, op.adjoint(y)) <= RTOL[op.dtype.name]
        return
    x, y = _inputs(op, make, 8)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.from_numpy(y).requires_grad_(True)
    assert torch.autograd.gradcheck(op.forward, (xt,))
    assert torch.autograd.gradcheck(op.adjoint, (yt,))
    # the gradient is exactly the adjoint applied to the output gradient
    out = op.forward(xt)
    g = torch.from_numpy(_inputs(op, make, 9)[1])
    (gx,) = torch.autograd.grad(out, xt, g)
    assert rel_err(gx, op.adjoint(g.numpy())) <= RTOL[op.dtype.name]


PARAMS = [c for c in CASES if c.params is not None]


def test_some_operators_have_tensor_parameters():
    assert len(PARAMS) >= 4


@pytest.mark.parametrize("case", PARAMS, ids=_ids(PARAMS))
def test_gradcheck_tensor_parameters(case, built):
    """Gradients reach the tensors an operator holds (maps, masks, weights): gradcheck over the input
    and the parameters (double precision), and the tensor-built operator equals the registered one."""
    op, make = built(case)
    build, arrays = case.params()
    x, y = _inputs(op, make, 14)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    op_t = build(*tensors)
    for method, arg in (("forward", x), ("adjoint", y), ("normal", x)):
        tol = case.normal_tolerance(op) if method == "normal" else RTOL[op.dtype.name]
        assert rel_err(getattr(op_t, method)(arg), getattr(op, method)(arg)) <= tol, method
    if not is_double(op.dtype):
        return
    diff = [t.clone().requires_grad_(True) for t in tensors if t.is_floating_point() or t.is_complex()]
    assert diff, "no differentiable parameter"
    for method, arg in (("forward", x), ("adjoint", y), ("normal", x)):
        def f(a, *ps, method=method):
            it = iter(ps)
            built_op = build(*[next(it) if (t.is_floating_point() or t.is_complex()) else t for t in tensors])
            return getattr(built_op, method)(a)

        a = torch.from_numpy(arg).requires_grad_(True)
        assert torch.autograd.gradcheck(f, (a, *diff)), method


GRADGRAD = [c for c in CASES if c.gradgradcheck]


def test_some_operators_check_double_backward():
    assert len(GRADGRAD) >= 2


@pytest.mark.parametrize("case", GRADGRAD, ids=_ids(GRADGRAD))
def test_gradgradcheck(case, built):
    op, make = built(case)
    assert is_double(op.dtype)
    x, _ = _inputs(op, make, 10)
    xt = torch.from_numpy(x).requires_grad_(True)
    assert torch.autograd.gradgradcheck(op.forward, (xt,))


# ---- algebra ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_algebra_identities(case, built):
    op, make = built(case)
    x, y = _inputs(op, make, 11)
    tol = RTOL[op.dtype.name]
    a, _ = _scalars(op)
    assert op.H.H is op
    if isinstance(op, Adjoint):
        assert op.H is op.op
    assert rel_err((a * op).forward(x), a * op.forward(x)) <= tol
    assert rel_err((op * a).adjoint(y), np.conj(a) * op.adjoint(y)) <= tol
    assert rel_err((op + op).forward(x), 2 * op.forward(x)) <= tol
    assert np.linalg.norm((op - op).forward(x)) <= tol * np.linalg.norm(op.forward(x))
    assert rel_err((-op).adjoint(y), -op.adjoint(y)) <= tol
    assert rel_err(op @ x, op.forward(x)) <= tol
    assert rel_err(op(x), op.forward(x)) <= tol
    assert rel_err(op.H.forward(y), op.adjoint(y)) <= tol
    assert rel_err(op.N.forward(x), op.normal(x)) <= tol
    # (A^H A) as a composition: dot test of the composed operator and its adjoint
    C = op.H @ op
    u, _ = _inputs(op, make, 12)
    Cx = C.forward(x)
    err = abs(_dot(Cx, u) - _dot(x, C.H.forward(u))) / (np.linalg.norm(Cx) * np.linalg.norm(u))
    assert err <= 10 * ADJOINT_BOUND[op.dtype.name]


def test_composition_adjoint_dot_test():
    rng = np.random.default_rng(0)
    A = Matrix(harness.random_array(rng, (6, 5), "complex128"))
    B = Multiply((5,), harness.random_array(rng, (5,), "complex128"), dtype="complex128")
    C = FFT((5,), "complex128")
    op = (A @ B @ C + 0.5j * A @ C)
    x = harness.random_array(rng, (5,), "complex128")
    y = harness.random_array(rng, (6,), "complex128")
    dense = A.A @ np.diag(B.w) @ np.fft.fftshift(np.fft.fft(np.fft.ifftshift(np.eye(5), axes=0), axis=0, norm="ortho"),
                                                  axes=0)
    dense = dense + 0.5j * A.A @ np.fft.fftshift(np.fft.fft(np.fft.ifftshift(np.eye(5), axes=0), axis=0, norm="ortho"),
                                                  axes=0)
    assert rel_err(op.forward(x), dense @ x) <= 1e-12
    assert rel_err(op.H.forward(y), dense.conj().T @ y) <= 1e-12
    assert abs(_dot(op.forward(x), y) - _dot(x, op.H.forward(y))) <= 1e-12 * np.linalg.norm(dense @ x) * np.linalg.norm(y)


def test_algebra_rejects_mismatches():
    with pytest.raises(ValueError, match="cannot compose"):
        Identity((3,), "complex64") @ Identity((4,), "complex64")
    with pytest.raises(TypeError, match="dtypes"):
        Identity((3,), "complex64") @ Identity((3,), "complex128")
    with pytest.raises(ValueError, match="cannot add"):
        Identity((3,), "complex64") + Identity((4,), "complex64")
    with pytest.raises(TypeError, match="complex scale"):
        1j * Identity((3,), "float32")
    with pytest.raises(TypeError):
        Identity((3,), "complex64") + 1


def test_adjoint_of_adjoint_is_cached():
    B = Identity((3,), "complex64")
    A = B.H
    assert A.H.H is A


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_cpu_equals_gpu(case, built):
    """CUDA torch tensors give the CPU (numpy) result to float rounding (skipped without a GPU)."""
    op, make = built(case)
    x, y = _inputs(op, make, 13)
    for method, arg in (("forward", x), ("adjoint", y), ("normal", x)):
        ref = getattr(op, method)(arg)
        got = getattr(op, method)(torch.from_numpy(arg.copy()).to("cuda"))
        assert isinstance(got, torch.Tensor) and got.device.type == "cuda", method
        tol = case.normal_tolerance(op) if method == "normal" else RTOL[op.dtype.name]
        assert rel_err(got.cpu(), ref) <= tol, method
