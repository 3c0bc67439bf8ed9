"""Differentiable data consistency recon.solvers.cg_solve: x = (N + lam I)^{-1} b with an implicit
(one more CG solve) backward.

- gradients to b, lam and a tensor inside the normal operator (a diagonal weight; coil maps of a
  SENSE-like operator) equal autograd through the unrolled CG iterations (run to convergence) within
  1e-4 relative, real and complex, single systems and a batch with per-item lam;
- torch.autograd.gradcheck in complex128 on a tiny system;
- the number of tensors autograd saves does not depend on the number of CG iterations (it does for
  the unrolled iterations);
- the forward equals a dense solve; bad input raises.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.solvers import CG, cg, cg_solve


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _unrolled(normal, b, lam, n_iter, batch_ndim=0):
    alg = CG(normal, b, damping=lam, batch_ndim=batch_ndim)
    for _ in range(n_iter):
        alg.step()
    return alg.x


def _system(dtype, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g, dtype=dtype)
    N0 = M.conj().T @ M / n + 0.05 * torch.eye(n, dtype=dtype)
    w = (torch.rand(n, generator=g, dtype=torch.float64) + 0.5).to(N0.real.dtype).requires_grad_(True)
    b = torch.randn(n, generator=g, dtype=dtype).requires_grad_(True)
    return N0, w, b


def _loss(x, target):
    return ((x - target).abs() ** 2).sum()


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradients_equal_unrolled_autograd(dtype):
    N0, w, b = _system(dtype)
    lam = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    target = torch.randn(b.shape, dtype=dtype)

    def normal(v):
        return N0 @ v + w * v

    x = cg_solve(normal, b, lam, params=(w,), max_iter=200, tol=1e-12)
    got = torch.autograd.grad(_loss(x, target), (b, lam, w))
    xu = _unrolled(normal, b, lam, 60)       # 8 unknowns: converged to rounding
    ref = torch.autograd.grad(_loss(xu, target), (b, lam, w))
    assert rel(x.detach(), xu.detach()) <= 1e-10
    for name, g, r in zip(("b", "lam", "w"), got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype, name
        assert rel(g, r) <= 1e-4, (name, rel(g, r))


def test_sense_like_batch_with_coil_maps_and_per_item_lam():
    """A batch of 3 slices with different coil maps and masks: N x = sum_c conj(S_c) F^H M F (S_c x).
    Gradients reach the maps (a tensor inside the normal operator) and the per-item lam, equal to
    unrolled autograd (per-item CG in lockstep) within 1e-4."""
    g = torch.Generator().manual_seed(1)
    B, C, ny, nx = 3, 2, 6, 5
    maps = torch.randn(B, C, ny, nx, generator=g, dtype=torch.complex128).requires_grad_(True)
    mask = (torch.rand(B, 1, ny, nx, generator=g) < 0.6).to(torch.float64)
    b = torch.randn(B, ny, nx, generator=g, dtype=torch.complex128).requires_grad_(True)
    lam = torch.tensor([0.05, 0.1, 0.3], dtype=torch.float64, requires_grad=True)
    target = torch.randn(B, ny, nx, generator=g, dtype=torch.complex128)

    def normal(x):
        k = torch.fft.fft2(maps * x[:, None], norm="ortho") * mask
        return (maps.conj() * torch.fft.ifft2(k, norm="ortho")).sum(1)

    x = cg_solve(normal, b, lam, params=(maps,), max_iter=300, tol=1e-12, batch_ndim=1)
    got = torch.autograd.grad(_loss(x, target), (b, lam, maps))
    xu = _unrolled(normal, b, lam, 200, batch_ndim=1)
    ref = torch.autograd.grad(_loss(xu, target), (b, lam, maps))
    assert rel(x.detach(), xu.detach()) <= 1e-9
    assert got[1].shape == (3,)
    for name, gv, r in zip(("b", "lam", "maps"), got, ref):
        assert rel(gv, r) <= 1e-4, (name, rel(gv, r))
    # each item is its own system: the batched forward equals the items solved alone
    for i in range(B):
        def normal_i(v, i=i):
            return normal(torch.stack([v if j == i else torch.zeros_like(v) for j in range(B)]))[i]
        xi = cg_solve(normal_i, b[i].detach(), float(lam[i].detach()), max_iter=300, tol=1e-12)
        assert rel(x[i].detach(), xi) <= 1e-9


def test_gradcheck_complex128():
    N0, w, b = _system(torch.complex128, n=4, seed=2)
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)

    def f(b, lam, w):
        return cg_solve(lambda v: N0 @ v + w * v, b, lam, params=(w,), max_iter=100, tol=1e-14)

    assert torch.autograd.gradcheck(f, (b, lam, w))


def _saved_tensors(fn):
    count = [0]

    def pack(t):
        count[0] += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return count[0]


def test_memory_independent_of_iterations():
    N0, w, b = _system(torch.complex128)

    def normal(v):
        return N0 @ v + w * v

    implicit = [_saved_tensors(lambda n=n: cg_solve(normal, b, 0.1, params=(w,), max_iter=n, tol=0.0))
                for n in (3, 30)]
    unrolled = [_saved_tensors(lambda n=n: _unrolled(normal, b, 0.1, n)) for n in (3, 30)]
    assert implicit[0] == implicit[1] <= 2       # x and lam
    assert unrolled[1] > 5 * unrolled[0]


def test_forward_dense_reference_real_and_float32():
    rng = np.random.default_rng(4)
    M = rng.standard_normal((10, 10))
    A = M.T @ M / 10 + 0.1 * np.eye(10)
    b = rng.standard_normal(10)
    ref = np.linalg.solve(A + 0.5 * np.eye(10), b)
    At = torch.from_numpy(A.astype(np.float32))
    x = cg_solve(lambda v: At @ v, torch.from_numpy(b.astype(np.float32)), 0.5, max_iter=100, tol=1e-7)
    assert x.dtype == torch.float32 and np.abs(x.numpy() - ref).max() <= 1e-5 * np.abs(ref).max()
    # numpy in: plain CG (no autograd), the same answer as recon.solvers.cg
    xn = cg_solve(lambda v: A @ v, b, 0.5, max_iter=100, tol=1e-12)
    xc, _ = cg(lambda v: A @ v, b, damping=0.5, max_iter=100, tol=1e-12, progress=False)
    assert isinstance(xn, np.ndarray) and np.array_equal(xn, xc)


def test_bad_input():
    N0, w, b = _system(torch.complex128, n=4)
    with pytest.raises(TypeError, match="real"):
        cg_solve(lambda v: N0 @ v, b, torch.tensor(0.1 + 0j))
    with pytest.raises(ValueError, match="lam"):
        cg_solve(lambda v: N0 @ v, b, -1.0)
    with pytest.raises(TypeError, match="params"):
        cg_solve(lambda v: N0 @ v, b, 0.1, params=(np.ones(4),))
    with pytest.raises(ValueError, match="shape"):
        cg_solve(lambda v: v[:2], b, 0.1)
