"""Tests of recon.solvers: solvers against direct references, prox operators against formulas,
regularizer operators by dot tests and dense references, TV denoising quality, bad input.

Every reference is independent of the code under test: numpy.linalg.solve/eigvalsh, a LASSO whose
exact solution is built from its optimality (KKT) conditions, a long-run FGP for TV, explicit
formulas for soft thresholding, forward differences and the Haar transform.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.solvers import (FiniteDifference, L1Wavelet, PriorImageTV, SmoothTV, TotalVariation, Wavelet,
                           admm, cg, cg_x_update, conjugate_prox, fista, group_soft_threshold, pdhg,
                           pogm, power_iteration, project_box, project_l2_ball, project_l2inf_ball,
                           project_nonneg, prox_l2_squared, soft_threshold, tv_prox)

RNG = np.random.default_rng(1234)


def rand(shape, dtype, rng=RNG):
    dt = np.dtype(dtype)
    a = rng.standard_normal(shape)
    if dt.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dt)


def to(backend, a):
    return torch.from_numpy(np.ascontiguousarray(a)) if backend == "torch" else a


def npy(a):
    return a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def matfun(M, backend):
    """x -> M x on the last axis (numpy or torch)."""
    Mt = torch.from_numpy(M)
    if backend == "torch":
        return lambda v: (Mt.to(v.dtype) @ v.unsqueeze(-1)).squeeze(-1)
    return lambda v: (M.astype(v.dtype) @ v[..., None])[..., 0]


def spd(n, dtype, cond_shift=0.5, rng=RNG):
    M = rand((n, n), dtype, rng)
    return M.conj().T @ M / n + cond_shift * np.eye(n, dtype=dtype)


# ---- CG -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("complex128", 1e-10),
                                       ("float32", 1e-4), ("complex64", 1e-4)])
def test_cg_matches_linalg_solve(backend, dtype, tol):
    n = 40
    A = spd(n, "complex128" if "complex" in dtype else "float64")
    b = rand(n, A.dtype)
    ref = np.linalg.solve(A, b)
    rhs = to(backend, b.astype(dtype))
    x, hist = cg(matfun(A, backend), rhs, max_iter=200, tol=tol / 10, progress=False)
    assert type(x) is type(rhs) and str(x.dtype).endswith(dtype)
    assert np.linalg.norm(npy(x) - ref) <= tol * np.linalg.norm(ref) * 10
    assert hist.converged and hist.stop_reason == "tol"
    assert hist.residual[-1] <= tol / 10
    assert len(hist.residual) == len(hist.time) == hist.n_iter <= 200


def test_cg_batched_is_one_vector_and_damping():
    # a batch (3, n) of independent SPD systems: block-diagonal normal operator
    n = 15
    mats = [spd(n, "complex128") for _ in range(3)]
    b = rand((3, n), "complex128")
    normal = lambda v: np.stack([m @ vi for m, vi in zip(mats, v)])  # noqa: E731
    damping = 0.3
    x, hist = cg(normal, b, max_iter=300, tol=1e-12, damping=damping, progress=False)
    ref = np.stack([np.linalg.solve(m + damping * np.eye(n), bi) for m, bi in zip(mats, b)])
    assert np.allclose(x, ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    # one vector: one residual per iteration, not per batch element
    assert all(isinstance(r, float) for r in hist.residual)


def test_cg_x0_stopping_callback_and_zero_rhs():
    n = 30
    A = spd(n, "float64", cond_shift=0.05)
    b = rand(n, "float64")
    seen = []
    x, hist = cg(lambda v: A @ v, b, max_iter=5, tol=0.0, callback=lambda k, xk: seen.append(k),
                 progress=False)
    assert hist.n_iter == 5 and seen == [1, 2, 3, 4, 5] and not hist.converged
    assert hist.stop_reason == "max_iter"
    # residual of CG is the true residual
    assert np.isclose(hist.residual[-1], np.linalg.norm(b - A @ x) / np.linalg.norm(b), rtol=1e-6)
    # restart from x: continues to converge
    x2, hist2 = cg(lambda v: A @ v, b, x, max_iter=200, tol=1e-10, progress=False)
    assert hist2.converged and np.allclose(x2, np.linalg.solve(A, b), atol=1e-8)
    # the solution as x0: stops at once
    x3, hist3 = cg(lambda v: A @ v, b, np.linalg.solve(A, b), tol=1e-8, progress=False)
    assert hist3.n_iter == 0 and hist3.converged
    z, hz = cg(lambda v: A @ v, np.zeros(n), progress=False)
    assert np.all(z == 0) and hz.stop_reason == "zero_rhs"


def test_cg_bad_input():
    A = spd(5, "float64")
    f = lambda v: A @ v  # noqa: E731
    with pytest.raises(ValueError, match="NaN"):
        cg(f, np.array([1.0, np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        cg(f, np.ones(5), np.ones(4))
    with pytest.raises(ValueError, match="shape"):
        cg(lambda v: np.ones(3), np.ones(5))
    with pytest.raises(ValueError):
        cg(f, np.ones(5), max_iter=-1)
    with pytest.raises(ValueError):
        cg(f, np.ones(5), damping=-1.0)
    with pytest.raises(TypeError):
        cg(f, [1.0, 2.0])


# ---- power iteration ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_power_iteration_vs_eigvalsh(backend, dtype):
    n = 30
    A = spd(n, dtype, cond_shift=0.0)
    w = np.linalg.eigvalsh(A)
    # well-separated top eigenvalue: add a rank-one spike
    u = rand(n, dtype)
    u /= np.linalg.norm(u)
    A = A + 2 * w[-1] * np.outer(u, u.conj())
    lmax = np.linalg.eigvalsh(A)[-1]
    est = power_iteration(matfun(A, backend), to(backend, np.zeros(n, dtype)), 100)
    assert isinstance(est, float)
    assert abs(est - lmax) <= 1e-8 * lmax
    # shape-tuple form; a lower bound converging from below
    est2 = power_iteration(matfun(A, backend) if backend == "numpy" else (lambda v: A @ v), (n,), 3,
                           dtype=dtype)
    assert est2 <= lmax * (1 + 1e-12)
    with pytest.raises(ValueError):
        power_iteration(lambda v: v, (n,), 0)


# ---- FISTA / POGM on a LASSO with a known solution -------------------------------------------------

def lasso_problem(dtype, m=60, n=40, lam=0.3, rng=None, cond=None):
    """min 1/2 ||A x - y||^2 + lam ||x||_1 with a KKT-certified unique solution x_star (A tall, full
    rank): y = A x_star + r with A^H r = lam s, s = phase(x_star) on the support, |s| <= 0.5 off it.
    ``cond``: condition number of A (singular values log-spaced), default that of a random A."""
    rng = rng or np.random.default_rng(7)
    A = rand((m, n), dtype, rng)
    if cond is not None:
        U, _, Vh = np.linalg.svd(A, full_matrices=False)
        A = (U * np.logspace(0, -np.log10(cond), n)) @ Vh
    x_star = np.zeros(n, dtype)
    supp = rng.choice(n, 8, replace=False)
    x_star[supp] = rand(8, dtype, rng) + 2 * np.sign(rand(8, "float64", rng))
    s = 0.5 * rng.uniform(-1, 1, n).astype(dtype)
    if np.dtype(dtype).kind == "c":
        s = 0.5 * rng.uniform(0, 1, n) * np.exp(2j * np.pi * rng.uniform(size=n))
    s[supp] = x_star[supp] / np.abs(x_star[supp])
    r = lam * A @ np.linalg.solve(A.conj().T @ A, s)
    y = A @ x_star + r
    L = np.linalg.eigvalsh(A.conj().T @ A)[-1]
    return A, y, lam, x_star, L


@pytest.mark.parametrize("solver", [fista, pogm])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_fista_pogm_lasso_known_solution(solver, dtype):
    A, y, lam, x_star, L = lasso_problem(dtype)
    obj = lambda x: 0.5 * np.linalg.norm(A @ x - y) ** 2 + lam * np.abs(x).sum()  # noqa: E731
    x, hist = solver(lambda x: A.conj().T @ (A @ x - y), lambda v, t: soft_threshold(v, lam * t),
                     np.zeros_like(x_star), 1.0 / L, max_iter=3000, tol=1e-12, objective=obj,
                     progress=False)
    assert np.linalg.norm(x - x_star) <= 1e-7 * np.linalg.norm(x_star)
    # monotone-ish: with restart the objective never rises by more than 1% of the initial gap
    f = np.array(hist.objective)
    f_star = obj(x_star)
    gap0 = obj(np.zeros_like(x_star)) - f_star
    assert np.max(np.diff(f)) <= 0.01 * gap0
    assert f[-1] - f_star <= 1e-10 * gap0
    assert len(hist.objective) == len(hist.residual) == hist.n_iter == len(hist.extra["restart"])
    assert hist.converged and hist.n_iter < 3000


def test_pogm_not_slower_than_fista_and_torch_float32():
    A, y, lam, x_star, L = lasso_problem("float64", cond=100.0)
    obj = lambda x: 0.5 * np.linalg.norm(A @ x - y) ** 2 + lam * np.abs(x).sum()  # noqa: E731
    gf = lambda x: A.T @ (A @ x - y)  # noqa: E731
    pr = lambda v, t: soft_threshold(v, lam * t)  # noqa: E731
    gap = {}
    for solver in (fista, pogm):
        for restart in (True, False):
            x, _ = solver(gf, pr, np.zeros(40), 1 / L, max_iter=50, tol=0, restart=restart, progress=False)
            gap[solver.__name__, restart] = obj(x) - obj(x_star)
    # on this ill-conditioned LASSO: POGM ahead of FISTA, restart ahead of no restart
    assert gap["pogm", True] < gap["fista", True] < gap["fista", False]
    assert gap["pogm", True] < gap["pogm", False]
    A, y, lam, x_star, L = lasso_problem("float64")
    # torch float32 in -> torch float32 out, same answer to float32 precision
    At, yt = torch.from_numpy(A.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    for solver in (fista, pogm):
        xt, h = solver(lambda x: At.T @ (At @ x - yt), pr, torch.zeros(40), 1 / L, max_iter=500,
                       tol=0, progress=False)
        assert isinstance(xt, torch.Tensor) and xt.dtype == torch.float32
        assert np.linalg.norm(xt.numpy() - x_star) <= 1e-4 * np.linalg.norm(x_star)


def test_fista_history_stopping_and_bad_input():
    A, y, lam, x_star, L = lasso_problem("float64")
    gf = lambda x: A.T @ (A @ x - y)  # noqa: E731
    pr = lambda v, t: soft_threshold(v, lam * t)  # noqa: E731
    calls = []
    x, h = fista(gf, pr, np.zeros(40), 1 / L, max_iter=7, tol=0, callback=lambda k, x: calls.append(k),
                 progress=False)
    assert h.n_iter == 7 and calls == list(range(1, 8)) and h.stop_reason == "max_iter"
    assert h.objective == [] and np.all(np.diff(h.time) >= 0)
    x, h = fista(gf, pr, np.zeros(40), 1 / L, max_iter=5000, tol=1e-3, progress=False)
    assert h.converged and h.residual[-1] <= 1e-3 and all(r > 1e-3 for r in h.residual[:-1])
    x, h = fista(gf, None, np.zeros(40), 1 / L, max_iter=0, progress=False)
    assert h.n_iter == 0 and np.all(x == 0)
    for solver in (fista, pogm):
        with pytest.raises(ValueError, match="step"):
            solver(gf, pr, np.zeros(40), -1.0)
        with pytest.raises(ValueError, match="step"):
            solver(gf, pr, np.zeros(40), 0.0)
        with pytest.raises(ValueError, match="NaN"):
            solver(gf, pr, np.full(40, np.nan), 1.0)
        with pytest.raises(ValueError, match="shape"):
            solver(lambda x: np.ones(3), pr, np.zeros(40), 1.0)
        with pytest.raises(FloatingPointError), np.errstate(over="ignore", invalid="ignore"):
            solver(gf, None, np.ones(40), 1e3 / L, max_iter=2000, tol=0, restart=False)  # step >> 2/L


# ---- ADMM ---------------------------------------------------------------------------------------

def test_admm_lasso_known_solution():
    A, y, lam, x_star, L = lasso_problem("complex128")
    AH = A.conj().T
    upd = cg_x_update(lambda x: AH @ (A @ x), AH @ y, cg_iter=50, cg_tol=1e-12)
    obj = lambda x: 0.5 * np.linalg.norm(A @ x - y) ** 2 + lam * np.abs(x).sum()  # noqa: E731
    x, h = admm(upd, lambda v, t: soft_threshold(v, lam * t), np.zeros_like(x_star), rho=L / 4,
                max_iter=2000, tol=1e-10, objective=obj, progress=False)
    assert np.linalg.norm(x - x_star) <= 1e-6 * np.linalg.norm(x_star)
    assert h.converged and len(h.extra["dual_residual"]) == h.n_iter
    with pytest.raises(ValueError, match="rho"):
        admm(upd, lambda v, t: v, np.zeros(40), rho=0.0)


# ---- prox operators -----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_soft_threshold_vs_formula(backend, dtype):
    x = rand((50,), dtype)
    x[:3] = 0
    t = 0.7
    got = soft_threshold(to(backend, x), t)
    assert type(got) is type(to(backend, x)) and str(got.dtype).endswith(dtype)
    got = npy(got)
    mag = np.abs(x)
    ref = np.where(mag > t, (mag - t) * np.exp(1j * np.angle(x)), 0)
    if np.dtype(dtype).kind == "f":
        ref = np.sign(x) * np.maximum(np.abs(x) - t, 0)
    rtol = 1e-6 if dtype in ("float32", "complex64") else 1e-14
    assert np.allclose(got, ref, rtol=rtol, atol=rtol)
    assert np.all(np.isfinite(got)) and np.all(got[:3] == 0)
    assert np.array_equal(npy(soft_threshold(to(backend, x), 0.0)), x)
    # elementwise thresholds
    tt = np.linspace(0, 2, 50)
    mag64 = np.abs(x.astype(np.complex128))
    ref2 = np.where(mag64 > tt, x * (1 - tt / np.where(mag64 > 0, mag64, 1.0)), 0)
    assert np.allclose(npy(soft_threshold(to(backend, x), to(backend, tt.astype(np.abs(x).dtype)))), ref2,
                       rtol=rtol, atol=rtol)
    with pytest.raises(ValueError):
        soft_threshold(to(backend, x), -1.0)


def test_projections_and_group_threshold():
    x = rand((4, 6), "float64")
    b = project_box(x, -0.5, 0.25)
    assert np.array_equal(b, np.clip(x, -0.5, 0.25))
    assert np.array_equal(project_nonneg(x), np.maximum(x, 0))
    assert np.array_equal(project_nonneg(torch.from_numpy(x)).numpy(), np.maximum(x, 0))
    with pytest.raises(TypeError):
        project_box(rand(3, "complex64"), 0, 1)
    with pytest.raises(ValueError):
        project_box(x, 1.0, 0.0)
    # L2 ball: inside unchanged, outside scaled onto the sphere around the centre
    c = rand((4, 6), "complex128")
    z = rand((4, 6), "complex128")
    r = 0.5 * np.linalg.norm(z - c)
    pz = project_l2_ball(z, r, center=c)
    assert np.isclose(np.linalg.norm(pz - c), r) and np.allclose((pz - c) / np.linalg.norm(pz - c),
                                                                 (z - c) / np.linalg.norm(z - c))
    assert np.allclose(project_l2_ball(z, 10 * r, center=c), z)
    # per-slice balls
    pb = project_l2_ball(z, 1.0, axes=(-1,))
    assert np.allclose(pb, z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1.0))
    # pointwise l2 over axis 0 (TV dual projection) and group soft threshold, vs formulas
    p = rand((2, 5, 5), "complex128")
    m = np.sqrt((np.abs(p) ** 2).sum(0, keepdims=True))
    assert np.allclose(project_l2inf_ball(p, 0.8, axis=0), p / np.maximum(m / 0.8, 1))
    assert np.allclose(group_soft_threshold(p, 0.8, axis=0), p * np.maximum(0, 1 - 0.8 / m))
    # Moreau: prox of the conjugate of lam ||.||_1 is the clip onto [-lam, lam]
    lam = 0.6
    pc = conjugate_prox(lambda v, t: soft_threshold(v, lam * t))
    xr = rand(20, "float64")
    assert np.allclose(pc(xr, 0.37), np.clip(xr, -lam, lam))
    assert np.allclose(prox_l2_squared(xr, 0.5, 2.0, y=np.ones(20)), (xr + 1.0) / 2.0)


# ---- finite differences ---------------------------------------------------------------------------

def dot_err(op, x, y):
    Ax = op.forward(x)
    AHy = op.adjoint(y)
    lhs = complex(np.vdot(npy(Ax).ravel(), npy(y).ravel()))
    rhs = complex(np.vdot(npy(x).ravel(), npy(AHy).ravel()))
    return abs(lhs - rhs) / (np.linalg.norm(npy(Ax)) * np.linalg.norm(npy(y)))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype,bound", [("float32", 1e-6), ("complex64", 1e-6),
                                         ("float64", 1e-12), ("complex128", 1e-12)])
@pytest.mark.parametrize("shape,axes,boundary", [((7, 6), None, "neumann"), ((4, 5, 6), None, "periodic"),
                                                 ((3, 5, 4), (0, 1, 2), "neumann"), ((5, 6), (1,), "neumann")])
def test_finite_difference_dot_test(backend, dtype, bound, shape, axes, boundary):
    D = FiniteDifference(shape, axes, boundary=boundary, dtype=dtype, weights=None if axes is None or len(axes) != 3
                         else (0.5, 1.0, 1.0))
    x = to(backend, rand((2,) + shape, dtype))  # batched
    y = to(backend, rand((2,) + D.oshape, dtype))
    assert dot_err(D, x, y) <= bound
    assert tuple(D.forward(x).shape) == (2,) + D.oshape


def test_finite_difference_vs_direct_formula_and_norm():
    x = rand((5, 6, 7), "float64")
    D = FiniteDifference(x.shape, dtype="float64")
    d = D(x)
    for i in range(3):
        ref = np.diff(x, axis=i, append=np.take(x, [-1], axis=i))  # last difference 0 (Neumann)
        assert np.allclose(d[i], ref, atol=1e-14)
    Dp = FiniteDifference(x.shape, axes=(-1,), boundary="periodic", dtype="float64")
    assert np.allclose(Dp(x)[0], np.roll(x, -1, axis=-1) - x)
    # adjoint = negative divergence: constant images have zero gradient and sum(D^H p) = 0
    assert np.abs(D(np.ones((5, 6, 7)))).max() == 0
    assert abs(D.H(rand(D.oshape, "float64")).sum()) < 1e-10
    # ||D||^2 below the documented bound
    lmax = power_iteration(D.normal, np.zeros((5, 6, 7)), 200)
    assert lmax <= D.norm_sq_bound and lmax > 0.8 * D.norm_sq_bound
    with pytest.raises(ValueError, match="shape"):
        D(np.zeros((5, 6, 8)))
    with pytest.raises(TypeError, match="dtype"):
        D(np.zeros((5, 6, 7), np.float32))
    with pytest.raises(ValueError):
        FiniteDifference((4, 4), axes=(2,))
    with pytest.raises(ValueError):
        FiniteDifference((4, 4), weights=(1.0,))


# ---- wavelets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype,bound", [("float32", 1e-6), ("complex64", 1e-6), ("complex128", 1e-12)])
@pytest.mark.parametrize("shape,wave,level", [((16, 16), "db4", 2), ((9, 14), "sym3", None),
                                              ((4, 8, 8), "haar", 3)])
def test_wavelet_orthonormal_and_dot_test(backend, dtype, bound, shape, wave, level):
    W = Wavelet(shape, wave, level, dtype=dtype)
    x = to(backend, rand((2,) + shape, dtype))
    y = to(backend, rand((2,) + W.oshape, dtype))
    assert dot_err(W, x, y) <= bound
    Wx = W(x)
    assert type(Wx) is type(x) and str(Wx.dtype).endswith(dtype)
    xn = npy(x)
    # orthonormality holds to the precision of PyWavelets' tabulated filters (sym3: |h.h - 1| = 5e-12;
    # db/coif/haar: machine precision), hence the 1e-10 floor; the dot test above is exact regardless
    tol = max(10 * bound, 1e-10)
    assert abs(np.linalg.norm(npy(Wx)) - np.linalg.norm(xn)) <= tol * np.linalg.norm(xn)
    assert np.linalg.norm(npy(W.H(Wx)) - xn) <= tol * np.linalg.norm(xn)
    if not W.needs_padding:  # unitary: W W^H = I as well
        assert np.linalg.norm(npy(W(W.H(y))) - npy(y)) <= tol * np.linalg.norm(npy(y))


def test_wavelet_haar_reference_and_errors():
    x = np.arange(8, dtype=np.float64) ** 2
    W = Wavelet((8,), "haar", 1, dtype="float64")
    a = (x[0::2] + x[1::2]) / np.sqrt(2)
    d = (x[0::2] - x[1::2]) / np.sqrt(2)
    assert np.allclose(W(x), np.concatenate([a, d]))
    W3 = Wavelet((5,), "haar", 1, dtype="float64")  # odd: zero-padded to 6
    assert W3.oshape == (6,) and W3.needs_padding
    with pytest.raises(ValueError, match="orthogonal"):
        Wavelet((8, 8), "bior2.2")
    with pytest.raises(ValueError):
        Wavelet((8, 8), "nonexistent-wave")


def test_l1_wavelet_prox_is_exact_prox():
    """For a unitary W, prox(v) minimises lam ||W x||_1 + ||x - v||^2 / (2t): check by optimality of
    the coefficients (soft threshold) and by comparing objectives against perturbations."""
    rng = np.random.default_rng(3)
    v = rand((16, 16), "complex128", rng)
    R = L1Wavelet((16, 16), lam=0.4, wave="db2", level=2)
    t = 0.5
    x = R.prox(v, t)
    F = lambda z: R.value(z) + np.linalg.norm(z - v) ** 2 / (2 * t)  # noqa: E731
    for _ in range(5):
        assert F(x) <= F(x + 1e-3 * rand((16, 16), "complex128", rng))
    c = R.K(x)
    assert np.allclose(c, soft_threshold(R.K(v), t * 0.4))


# ---- TV -------------------------------------------------------------------------------------------

def phantom(n=48):
    img = np.zeros((n, n))
    img[n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 1.0
    img[3 * n // 8: 5 * n // 8, n // 8: n // 2] = 0.5
    img[n // 2: n // 2 + 6, n // 2: n // 2 + 6] = 0.2
    return img


def psnr(x, ref):
    return 10 * np.log10(np.abs(ref).max() ** 2 / np.mean(np.abs(x - ref) ** 2))


@pytest.fixture(scope="module")
def tv_problem():
    rng = np.random.default_rng(11)
    img = phantom()
    noisy = img + 0.1 * rng.standard_normal(img.shape)
    lam = 0.08
    ref = TotalVariation(lam, n_inner=3000, inner_tol=0).prox(noisy)  # long-run FGP (float64)
    return img, noisy, lam, ref


def tv_objective(x, noisy, lam):
    return TotalVariation(lam).value(x) + 0.5 * np.sum((x - noisy) ** 2)


def test_tv_prox_optimality_and_psnr(tv_problem):
    img, noisy, lam, ref = tv_problem
    den = tv_prox(noisy, lam)
    # stated accuracy of the default tv_prox (200 FGP iterations at most): 1e-3 max abs on a
    # unit-contrast image; its objective is within 1e-4 of the long-run reference
    assert np.abs(den - ref).max() <= 1e-3
    f_ref = tv_objective(ref, noisy, lam)
    assert tv_objective(den, noisy, lam) - f_ref <= 1e-4 * f_ref
    # the reference is optimal: no random perturbation lowers the objective
    rng = np.random.default_rng(5)
    for _ in range(5):
        assert tv_objective(ref + 1e-3 * rng.standard_normal(ref.shape), noisy, lam) > f_ref
    # stated denoising margin: >= 8 dB PSNR gain on the piecewise-constant phantom (sigma = 0.1)
    assert psnr(den, img) >= psnr(noisy, img) + 8.0


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_tv_prox_backends_dtypes_batched(tv_problem, backend, dtype):
    img, noisy, lam, ref = tv_problem
    phase = np.exp(0.7j) if dtype == "complex64" else 1.0
    batch = np.stack([noisy, noisy.T]) * phase
    out = tv_prox(to(backend, batch.astype(dtype)), lam)
    assert type(out) is type(to(backend, batch)) and str(out.dtype).endswith(dtype)
    out = npy(out)
    # TV is phase-equivariant (global phase), transpose-equivariant, and batch slices are independent
    assert np.abs(out[0] / phase - ref).max() <= 2e-3
    assert np.abs(out[1] / phase - ref.T).max() <= 2e-3


def test_pdhg_tv_denoising_matches_prox(tv_problem):
    img, noisy, lam, ref = tv_problem
    tv = TotalVariation(lam)
    x, h = pdhg(tv.K, tv.KH, tv.prox_conj, lambda v, t: prox_l2_squared(v, t, 1.0, noisy), noisy,
                max_iter=1000, tol=0, progress=False)
    # stated tolerance: 1e-3 max abs vs the long-run FGP reference, and vs tv_prox
    assert np.abs(x - ref).max() <= 1e-3
    assert np.abs(x - tv_prox(noisy, lam)).max() <= 2e-3
    assert h.n_iter == 1000 and len(h.extra["primal_residual"]) == 1000
    assert h.extra["primal_residual"][-1] < 1e-2 * h.extra["primal_residual"][0]
    # accelerated variant (g is 1-strongly convex) reaches the same tolerance
    xa, _ = pdhg(tv.K, tv.KH, tv.prox_conj, lambda v, t: prox_l2_squared(v, t, 1.0, noisy), noisy,
                 max_iter=1000, tol=0, gamma=1.0, progress=False)
    assert np.abs(xa - ref).max() <= 1e-3
    with pytest.raises(ValueError, match="sigma"):
        pdhg(tv.K, tv.KH, tv.prox_conj, None, noisy, sigma=-1.0, tau=0.1)
    with pytest.raises(ValueError, match="theta"):
        pdhg(tv.K, tv.KH, tv.prox_conj, None, noisy, sigma=0.1, tau=0.1, theta=2.0)


def test_fista_with_tv_prox_deblurring_torch():
    """FISTA + inexact (warm-started) TV prox on a small deblurring problem in torch float32:
    recovers a better image than the blurred data and than unregularised least squares."""
    img = phantom(32)
    k = np.array([1, 4, 6, 4, 1], float) / 16

    def blur(u):
        for ax in (-1, -2):
            u = sum(w * torch.roll(u, s - 2, dims=ax) for s, w in enumerate(k))
        return u

    rng = np.random.default_rng(2)
    xt = torch.from_numpy(img.astype(np.float32))
    y = blur(xt) + 0.02 * torch.from_numpy(rng.standard_normal(img.shape).astype(np.float32))
    grad = lambda u: blur(blur(u) - y)  # noqa: E731  (the blur is symmetric: self-adjoint)
    tv = TotalVariation(0.01, n_inner=20, warm_start=True, bounds=(0.0, None))
    x, h = fista(grad, tv.prox, torch.zeros_like(y), 1.0, max_iter=150, tol=1e-5, progress=False)
    x_ls, _ = fista(grad, None, torch.zeros_like(y), 1.0, max_iter=150, tol=1e-5, progress=False)
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and float(x.min()) >= 0
    assert psnr(x.numpy(), img) >= psnr(y.numpy(), img) + 3.0
    assert psnr(x.numpy(), img) >= psnr(x_ls.numpy(), img) + 1.0


def test_spatiotemporal_tv_temporal_weight():
    rng = np.random.default_rng(4)
    frames = np.stack([phantom(24) * (1 + 0.1 * t) for t in range(6)])
    noisy = frames + 0.1 * rng.standard_normal(frames.shape)
    tv = TotalVariation(0.05, axes=(-3, -2, -1), weights=(2.0, 1.0, 1.0), n_inner=200)
    out = tv.prox(noisy)
    assert psnr(out, frames) >= psnr(noisy, frames) + 6.0
    # zero temporal weight = independent 2D TV per frame
    tv0 = TotalVariation(0.05, axes=(-3, -2, -1), weights=(0.0, 1.0, 1.0), n_inner=300, inner_tol=0)
    tv2 = TotalVariation(0.05, axes=(-2, -1), n_inner=600, inner_tol=0)
    assert np.abs(tv0.prox(noisy) - tv2.prox(noisy)).max() <= 2e-3
    # value: isotropic formula
    d = FiniteDifference(frames.shape, weights=(2.0, 1.0, 1.0), dtype="float64")(frames)
    assert np.isclose(tv.value(frames), 0.05 * np.sqrt((d ** 2).sum(0)).sum())


def test_prior_image_tv(tv_problem):
    img, noisy, lam, ref = tv_problem
    prior = img.copy()
    prior[30:36, 10:16] = 0.0  # the prior lacks a feature present now
    # alpha = 0 is plain TV, exactly (same dual iteration)
    p0 = PriorImageTV(lam, 0.0, prior, n_inner=100)
    t0 = TotalVariation(lam, n_inner=100)
    assert np.array_equal(p0.prox(noisy), t0.prox(noisy))
    assert np.isclose(p0.value(noisy), t0.value(noisy))
    # alpha = 1 is TV of the difference: prior + prox_TV(v - prior)
    p1 = PriorImageTV(lam, 1.0, prior, n_inner=400, inner_tol=0)
    t1 = TotalVariation(lam, n_inner=400, inner_tol=0)
    assert np.abs(p1.prox(noisy) - (prior + t1.prox(noisy - prior))).max() <= 1e-8
    # a good prior helps: PICCS (alpha = 0.5) beats plain TV on this image
    ph = PriorImageTV(lam, 0.5, prior, n_inner=300)
    assert psnr(ph.prox(noisy), img) >= psnr(ref, img) + 1.0
    # the prox is the minimiser of its objective (vs random perturbations)
    x = PriorImageTV(lam, 0.5, prior, n_inner=2000, inner_tol=0).prox(noisy)
    F = lambda z: ph.value(z) + 0.5 * np.sum((z - noisy) ** 2)  # noqa: E731
    rng = np.random.default_rng(8)
    for _ in range(5):
        assert F(x) < F(x + 1e-3 * rng.standard_normal(x.shape))
    # PDHG through the two-field split gives the same minimiser
    xp, _ = pdhg(ph.K, ph.KH, ph.prox_conj, lambda v, t: prox_l2_squared(v, t, 1.0, noisy), noisy,
                 max_iter=1500, tol=0, progress=False)
    assert np.abs(xp - x).max() <= 2e-3
    with pytest.raises(ValueError, match="alpha"):
        PriorImageTV(lam, 1.5, prior)


@pytest.mark.parametrize("kind", ["huber", "charbonnier"])
def test_smooth_tv_gradient_and_lipschitz(kind):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((10, 12))
    R = SmoothTV(0.3, 0.05, kind=kind)
    g = R.grad(x)
    for _ in range(3):  # directional derivative vs central difference
        d = rng.standard_normal(x.shape)
        h = 1e-6
        fd = (R.value(x + h * d) - R.value(x - h * d)) / (2 * h)
        assert abs(fd - np.sum(g * d)) <= 1e-5 * max(1.0, abs(fd))
    for _ in range(5):  # Lipschitz bound of the gradient
        y = x + 0.01 * rng.standard_normal(x.shape)
        assert np.linalg.norm(R.grad(y) - g) <= R.lipschitz * np.linalg.norm(y - x) * (1 + 1e-9)
    # Huber/Charbonnier TV approaches TV as eps -> 0
    tv = TotalVariation(0.3).value(x)
    assert abs(SmoothTV(0.3, 1e-6, kind=kind).value(x) - tv) <= 1e-4 * tv
    # prior-image smoothed term: gradient matches too
    prior = rng.standard_normal((10, 12))
    Rp = PriorImageTV(0.3, 0.4, prior).smoothed(0.05, kind)
    gp = Rp.grad(x)
    d = rng.standard_normal(x.shape)
    fd = (Rp.value(x + 1e-6 * d) - Rp.value(x - 1e-6 * d)) / 2e-6
    assert abs(fd - np.sum(gp * d)) <= 1e-5 * max(1.0, abs(fd))
    with pytest.raises(ValueError):
        SmoothTV(0.3, 0.0)


def test_regularizer_bad_input():
    with pytest.raises(ValueError):
        TotalVariation(-1.0)
    with pytest.raises(ValueError):
        TotalVariation(1.0, axes=(0, 1))
    with pytest.raises(ValueError):
        TotalVariation(1.0, weights=(1.0,))
    with pytest.raises(ValueError):
        TotalVariation(1.0).prox(np.zeros((4, 4)), -1.0)
    with pytest.raises(TypeError):
        TotalVariation(1.0).prox([[1.0]], 1.0)
    with pytest.raises(ValueError):
        TotalVariation(1.0, axes=(-3, -2, -1)).prox(np.zeros((4, 4)))


def test_progress_bar_output(capsys):
    A = spd(10, "float64")
    cg(lambda v: A @ v, np.ones(10), max_iter=3, tol=0, progress=False)
    assert capsys.readouterr().err == ""
    cg(lambda v: A @ v, np.ones(10), max_iter=3, tol=0, progress=True)
    assert "cg" in capsys.readouterr().err


# ---- autograd through the regularizer operators; an MRI-like compressed-sensing run ---------------

@pytest.mark.parametrize("make", [lambda: FiniteDifference((4, 5), dtype="complex128"),
                                  lambda: Wavelet((8, 6), "db2", 1, dtype="complex128"),
                                  lambda: FiniteDifference((3, 4), boundary="periodic", dtype="float64")])
def test_operator_gradcheck(make):
    op = make()
    x = torch.from_numpy(rand((2,) + op.ishape, op.dtype)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: op.forward(v), (x,), eps=1e-6, atol=1e-8)
    y = torch.from_numpy(rand((2,) + op.oshape, op.dtype)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: op.adjoint(v), (y,), eps=1e-6, atol=1e-8)


def test_compressed_sensing_l1_wavelet_fista_torch_complex64():
    """Cartesian undersampled k-space (centred orthonormal FFT, recon.ops; ~35% of samples) +
    L1-wavelet via FISTA and POGM in torch complex64. The phantom's edges sit on the dyadic grid, so it
    is very sparse in Haar (99% of the energy in 20 of 1024 coefficients): CS recovers it far better
    than zero filling (stated margin 10 dB; measured about 25 dB)."""
    from recon.ops import FFT, Multiply

    n = 32
    img = (phantom(n) * np.exp(1j * np.linspace(0, 1, n))[None, :]).astype(np.complex64)
    rng = np.random.default_rng(6)
    mask = (rng.uniform(size=(n, n)) < 0.3).astype(np.float32)
    mask[n // 2 - 4: n // 2 + 4, n // 2 - 4: n // 2 + 4] = 1
    A = Multiply((n, n), mask.astype(np.complex64)) @ FFT((n, n))
    y = A(torch.from_numpy(img))
    x_zf = A.adjoint(y)
    L = power_iteration(A.normal, x_zf, 30)
    assert L <= 1 + 1e-5  # a sampled unitary transform
    R = L1Wavelet((n, n), lam=0.003, wave="haar", level=3)
    for solver in (fista, pogm):
        x, h = solver(lambda v: A.adjoint(A(v) - y), R.prox, x_zf, 1.0 / L, max_iter=150, tol=1e-6,
                      progress=False)
        assert isinstance(x, torch.Tensor) and x.dtype == torch.complex64
        assert psnr(x.numpy(), img) >= psnr(x_zf.numpy(), img) + 10.0
