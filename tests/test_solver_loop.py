"""The run loop and the step objects (recon.solvers.run, CG, FISTA, POGM, PDHG, ADMM, PowerIteration):

- no host synchronisation per iteration: the number of host reads of torch tensors (``bool``,
  ``item``, ``tolist``, ``cpu``, ...) during ``run`` does not depend on the number of iterations, and
  with a tolerance it grows with the number of *check points*, not iterations;
- run's bookkeeping: history as Python floats, callbacks, check_every, stop reasons, non-finite
  detection, progress bar;
- per-item (batched) CG against per-item dense solves, per-item damping and stopping;
- steps under autograd: gradcheck through unrolled FISTA/POGM/PDHG iterations with learnable steps;
- PDHG on a Stack operator with a separable prox equals PDHG on the hand-built tuple split.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from recon.ops import FiniteDifference, Matrix, Stack
from recon.solvers import _util as solver_util
from recon.solvers import (ADMM, CG, FISTA, PDHG, POGM, PowerIteration, TotalVariation, cg, cg_x_update, pdhg,
                           prox_l2_squared, run, separable, soft_threshold)

# ---- counting host reads -------------------------------------------------------------------------------

_READS = ("__bool__", "item", "tolist", "__float__", "__int__", "__index__", "cpu", "numpy", "__array__")


@contextlib.contextmanager
def host_reads():
    """Counts calls that move a torch tensor's value to the host (each one a device synchronisation
    on a GPU)."""
    orig = {n: getattr(torch.Tensor, n) for n in _READS}
    seen = []

    def wrap(name, f):
        def g(self, *a, **k):
            seen.append(name)
            return f(self, *a, **k)
        return g

    for n, f in orig.items():
        setattr(torch.Tensor, n, wrap(n, f))
    try:
        yield seen
    finally:
        for n, f in orig.items():
            setattr(torch.Tensor, n, f)


def _lasso(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(30, 20, generator=g, dtype=dtype)
    y = torch.randn(30, generator=g, dtype=dtype)
    L = float(torch.linalg.matrix_norm(A, 2) ** 2)
    return A, y, L


def _algorithms():
    A, y, L = _lasso()
    grad = lambda x: A.T @ (A @ x - y)  # noqa: E731
    prox = lambda v, t: soft_threshold(v, 0.3 * t)  # noqa: E731
    x0 = torch.zeros(20, dtype=torch.float64)
    D = Stack([Matrix(A.numpy()), FiniteDifference((20,), dtype="float64")])
    upd = cg_x_update(lambda x: A.T @ (A @ x), A.T @ y, cg_iter=3, cg_tol=0.0)
    return {
        "cg": lambda: CG(lambda v: A.T @ (A @ v), A.T @ y, damping=0.1),
        "cg-batched": lambda: CG(lambda v: v @ (A.T @ A).T, torch.randn(3, 20, dtype=torch.float64),
                                 batch_ndim=1, damping=torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)),
        "fista": lambda: FISTA(grad, prox, x0, 1 / L),
        "pogm": lambda: POGM(grad, prox, x0, 1 / L, n_iter=40),
        "pdhg": lambda: PDHG(D, None, separable([lambda v, s: (v - s * y) / (1 + s), lambda v, s: v.clamp(-0.3, 0.3)], D),
                             None, x0, sigma=0.1, tau=0.1),
        "pdhg-accelerated": lambda: PDHG(D, None, separable([lambda v, s: (v - s * y) / (1 + s),
                                                             lambda v, s: v.clamp(-0.3, 0.3)], D),
                                         lambda v, t: prox_l2_squared(v, t), x0, sigma=0.1, tau=0.1, gamma=1.0),
        "admm": lambda: ADMM(upd, prox, x0, rho=L / 4),
        "power": lambda: PowerIteration(lambda v: A.T @ (A @ v), torch.ones(20, dtype=torch.float64)),
    }


@pytest.mark.parametrize("name", list(_algorithms()))
def test_no_host_read_per_iteration(name, monkeypatch):
    """tol = 0: the host reads in run() (the final history conversion and stop-reason test) are the
    same for 4 and 40 iterations: nothing waits for the device inside the loop. (Input arrays are
    scanned for NaN on the CPU only; the scan is switched off here as it is for GPU tensors, since
    ADMM's x-update builds a CG per iteration.)"""
    monkeypatch.setattr(solver_util, "scan_for_nan", lambda x: not torch.is_tensor(x))
    make = _algorithms()[name]
    counts = []
    for n_iter in (4, 40):
        alg = make()
        with host_reads() as seen:
            run(alg, n_iter)
        counts.append(len(seen))
    assert counts[0] == counts[1] <= 4, counts


def test_host_reads_only_at_check_points():
    make = _algorithms()["fista"]
    counts = {}
    for every in (1, 10):
        alg = make()
        with host_reads() as seen:
            _, h = run(alg, 40, tol=1e-30, check_every=every)
        assert h.n_iter == 40 and not h.converged
        counts[every] = len(seen)
    # 40 check points against 4 (+ the initial one): reads scale with the check points
    assert counts[10] < counts[1] / 5


def test_run_bookkeeping():
    A, y, L = _lasso()
    alg = FISTA(lambda x: A.T @ (A @ x - y), lambda v, t: soft_threshold(v, 0.3 * t),
                torch.zeros(20, dtype=torch.float64), 1 / L)
    seen = []
    x, h = run(alg, 7, callback=lambda k, xk: seen.append((k, xk is alg.x)),
               objective=lambda v: 0.5 * ((A @ v - y) ** 2).sum())
    assert seen == [(k, True) for k in range(1, 8)]
    assert h.n_iter == 7 and h.stop_reason == "max_iter" and not h.converged
    assert all(type(r) is float for r in h.residual + h.objective)
    assert all(type(b) is bool for b in h.extra["restart"])
    assert x is alg.x and alg.iter == 7
    # the same run continues where it stopped
    x, h2 = run(alg, 3)
    assert alg.iter == 10 and h2.n_iter == 3
    # check_every: the tolerance stops at a multiple of it
    alg = FISTA(lambda x: A.T @ (A @ x - y), None, torch.zeros(20, dtype=torch.float64), 1 / L)
    _, h = run(alg, 1000, tol=1e-3, check_every=7)
    assert h.converged and h.n_iter % 7 == 0 and h.residual[-1] <= 1e-3
    # history=False records nothing
    _, h = run(CG(lambda v: A.T @ (A @ v), A.T @ y), 5, history=False)
    assert h.residual == [] and h.stop_reason == "max_iter"
    with pytest.raises(ValueError, match="check_every"):
        run(CG(lambda v: v, A.T @ y), 5, check_every=0)
    with pytest.raises(ValueError, match="tol"):
        run(CG(lambda v: v, A.T @ y), 5, tol=-1.0)


def test_non_finite_detected_without_tolerance():
    A, y, L = _lasso()
    alg = FISTA(lambda x: A.T @ (A @ x - y), None, torch.ones(20, dtype=torch.float64), 1e3 / L, restart=False)
    with pytest.raises(FloatingPointError, match="iteration"):
        run(alg, 2000)
    alg = FISTA(lambda x: A.T @ (A @ x - y), None, torch.ones(20, dtype=torch.float64), 1e3 / L, restart=False)
    with pytest.raises(FloatingPointError):
        run(alg, 2000, history=False)


def test_cg_breakdown_and_zero_rhs():
    x, h = cg(lambda v: -v, np.ones(4), max_iter=5, tol=1e-8, progress=False)
    assert h.stop_reason.startswith("breakdown") and np.all(x == 0)
    x, h = cg(lambda v: v, np.zeros(4), np.ones(4), tol=1e-6, progress=False)
    assert h.stop_reason == "zero_rhs" and h.converged and np.all(x == 0)


# ---- per-item (batched) CG ------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_batched_cg_per_item(backend):
    rng = np.random.default_rng(3)
    n, B = 12, 3
    mats = []
    for cond in (1.0, 30.0, 1000.0):   # very different conditioning: different iteration counts
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
        mats.append((Q * np.logspace(0, -np.log10(cond), n)) @ Q.conj().T)
    mats = np.stack(mats)
    b = rng.standard_normal((B, n)) + 1j * rng.standard_normal((B, n))
    lam = np.array([0.0, 1e-3, 1e-2])
    ref = np.stack([np.linalg.solve(m + l * np.eye(n), bi) for m, l, bi in zip(mats, lam, b)])
    if backend == "torch":
        M, bb, lm = torch.from_numpy(mats), torch.from_numpy(b), torch.from_numpy(lam)
        normal = lambda v: (M @ v[..., None])[..., 0]  # noqa: E731
    else:
        bb, lm = b, lam
        normal = lambda v: (mats @ v[..., None])[..., 0]  # noqa: E731
    x, h = cg(normal, bb, max_iter=200, tol=1e-10, damping=lm, batch_ndim=1, progress=False)
    x = np.asarray(x)
    assert np.abs(x - ref).max() <= 1e-8 * np.abs(ref).max()
    res = np.array(h.residual)                      # (iterations, B)
    assert res.shape == (h.n_iter, B) and h.converged
    # per-item stopping: the well-conditioned item reaches tol first and is frozen from then on
    first = [int(np.argmax(res[:, i] <= 1e-10)) for i in range(B)]
    assert first[0] < first[1] < first[2] == h.n_iter - 1
    assert np.all(res[first[0]:, 0] == res[first[0], 0])
    # the batched solve equals the items solved one by one
    for i in range(B):
        xi, _ = cg(lambda v: mats[i] @ v, b[i], max_iter=200, tol=1e-10, damping=float(lam[i]), progress=False)
        assert np.abs(xi - ref[i]).max() <= 1e-8 * np.abs(ref[i]).max()
    with pytest.raises(ValueError, match="per-item damping"):
        cg(normal, bb, damping=lm[:2], batch_ndim=1)


# ---- autograd through steps -----------------------------------------------------------------------------

def _unroll(alg, n):
    for _ in range(n):
        alg.step()
    return alg.x


def test_unrolled_steps_gradcheck():
    """Gradients through a few steps of each algorithm, w.r.t. the data and a learnable step size
    (torch.autograd.gradcheck in float64): the steps write nothing in place that autograd needs."""
    A, y, L = _lasso()
    A, y = A[:8, :5], y[:8]
    y = y.clone().requires_grad_(True)
    step = torch.tensor(0.5 / L, dtype=torch.float64, requires_grad=True)

    def fista(y, step):
        return _unroll(FISTA(lambda x: A.T @ (A @ x - y), lambda v, t: prox_l2_squared(v, t, 0.1),
                             torch.zeros(5, dtype=torch.float64), step), 4)

    def pogm(y, step):
        return _unroll(POGM(lambda x: A.T @ (A @ x - y), lambda v, t: prox_l2_squared(v, t, 0.1),
                            torch.zeros(5, dtype=torch.float64), step), 4)

    def pdhg_learned(y, step):
        K = Matrix(A.numpy())
        alg = PDHG(K, None, lambda v, s: (v - s * y) / (1 + s), lambda v, t: prox_l2_squared(v, t, 0.1),
                   torch.zeros(5, dtype=torch.float64), sigma=0.5 / L ** 0.5, tau=0.5 / L ** 0.5, residuals=False)
        for k in range(3):   # a learned step per iteration
            alg.tau = step * L ** 0.5 * (1 + 0.1 * k)
            alg.step()
        return alg.x

    for f in (fista, pogm, pdhg_learned):
        assert torch.autograd.gradcheck(f, (y, step)), f.__name__


def test_pdhg_stack_equals_tuple_split():
    """min 1/2 ||A x - y||^2 + lam TV(x): PDHG on Stack([A, D]) with a separable prox gives the same
    iterates as the hand-built tuple K(x) = (A x, D x)."""
    rng = np.random.default_rng(5)
    A = Matrix(rng.standard_normal((40, 36)), ishape=(6, 6))
    D = FiniteDifference((6, 6), dtype="float64")
    y = rng.standard_normal(40)
    tv = TotalVariation(0.2)
    K = Stack([A, D])
    data_conj = lambda u, s: (u - s * y) / (1.0 + s)  # noqa: E731
    x1, h1 = pdhg(K, None, separable([data_conj, tv.prox_conj], K), None, np.zeros((6, 6)),
                  sigma=0.2, tau=0.2, max_iter=60, tol=0, progress=False)
    x2, h2 = pdhg(lambda x: (A(x), D(x)), lambda p: A.H(p[0]) + D.H(p[1]),
                  lambda p, s: (data_conj(p[0], s), tv.prox_conj(p[1], s)), None, np.zeros((6, 6)),
                  sigma=0.2, tau=0.2, max_iter=60, tol=0, progress=False)
    assert np.abs(x1 - x2).max() <= 1e-12 * np.abs(x2).max()
    assert np.allclose(h1.extra["dual_residual"], h2.extra["dual_residual"], rtol=1e-10)
    with pytest.raises(ValueError, match="2 blocks"):
        separable([data_conj], K)
