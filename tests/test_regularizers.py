"""The common Regularizer interface (recon.solvers.regularizers): every regularizer gives the same
numbers on numpy and torch (value a device scalar, prox, split), works without host reads where
it promises to, is differentiable where it says so (gradcheck), and the Stack split drives PDHG to
the same iterates as the K/KH/prox_conj split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_solver_loop import host_reads

from recon.ops import Matrix, Stack
from recon.solvers import (L1Wavelet, PriorImageTV, Regularizer, SmoothTV, TotalVariation, pdhg, prox_l2_squared,
                           separable)


def _img(rng, shape, dtype):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _regularizers(prior):
    return {
        "tv": TotalVariation(0.1, n_inner=30, inner_tol=0),
        "tv-aniso-3d": TotalVariation(0.1, axes=(-3, -2, -1), isotropic=False, n_inner=30, inner_tol=0),
        "piccs": PriorImageTV(0.1, 0.4, prior, n_inner=30, inner_tol=0),
        "smooth-tv": SmoothTV(0.1, 0.05, kind="charbonnier"),
        "l1-wavelet": L1Wavelet((6, 8), 0.1, "db2", 2),
    }


@pytest.mark.parametrize("name", ["tv", "tv-aniso-3d", "piccs", "smooth-tv", "l1-wavelet"])
@pytest.mark.parametrize("dtype", ["float64", "complex128", "complex64"])
def test_numpy_equals_torch(name, dtype):
    rng = np.random.default_rng(0)
    x = _img(rng, (2, 6, 8), dtype)
    R = _regularizers(_img(rng, (6, 8), dtype))[name]
    assert isinstance(R, Regularizer)
    xt = torch.from_numpy(x)
    tol = 1e-10 if dtype != "complex64" else 2e-5
    v, vt = R.value(x), R.value(xt)
    assert isinstance(v, float) and isinstance(vt, torch.Tensor) and vt.ndim == 0
    assert abs(float(vt) - v) <= tol * abs(v)
    if name == "smooth-tv":
        g, gt = R.grad(x), R.grad(xt)
        assert isinstance(gt, torch.Tensor) and np.abs(gt.numpy() - g).max() <= tol * np.abs(g).max()
        with pytest.raises(NotImplementedError, match="prox"):
            R.prox(x, 1.0)
        return
    p, pt = R.prox(x, 0.7), R.prox(xt, 0.7)
    assert isinstance(pt, torch.Tensor) and pt.dtype == xt.dtype
    assert np.abs(pt.numpy() - p).max() <= tol * np.abs(p).max()
    with pytest.raises(NotImplementedError, match="not smooth"):
        R.grad(x)


def test_l1_wavelet_no_host_reads_and_dtypes():
    """The L1-wavelet prox on torch tensors, with a device-scalar step (POGM's after a restart),
    never reads a value back to the host; any dtype gets its own transform."""
    R = L1Wavelet((8, 8), 0.2, "db2", 2)
    x = torch.randn(3, 8, 8, dtype=torch.complex64)
    t = torch.tensor(0.5, dtype=torch.float64)
    R.prox(x, t)                              # builds and caches the operator
    with host_reads() as seen:
        R.prox(x, t)
        R.prox_conj(R.K(x))
        R.value(x)
    assert seen == []
    for dt in (torch.float32, torch.float64, torch.complex128):
        y = R.prox(torch.randn(8, 8, dtype=dt), 0.5)
        assert y.dtype == dt
    with host_reads() as seen:
        tv = TotalVariation(0.1)
        tv.prox_conj(tv.K(x))
        SmoothTV(0.1, 0.05).grad(x)
    assert seen == []


def test_autograd_where_promised():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(_img(rng, (5, 6), "float64")).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: SmoothTV(0.3, 0.1).value(v), (x,))
    assert torch.autograd.gradcheck(lambda v: SmoothTV(0.3, 0.1, kind="charbonnier").grad(v), (x,))
    assert torch.autograd.gradcheck(lambda v: TotalVariation(0.3).prox_conj(TotalVariation(0.3).K(v)), (x,))
    xc = torch.from_numpy(_img(rng, (4, 4), "complex128")).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: L1Wavelet((4, 4), 0.1, "haar", 1).prox(v, 1.0), (xc,))
    with pytest.raises(TypeError, match="not differentiable"):
        TotalVariation(0.1).prox(x, 1.0)


@pytest.mark.parametrize("kind", ["tv", "piccs"])
def test_split_drives_pdhg_like_the_k_split(kind):
    """R.split(shape) as Stack blocks gives the PDHG iterates of R.K / R.KH / R.prox_conj (TV
    denoising plus a data term)."""
    rng = np.random.default_rng(2)
    noisy = _img(rng, (7, 9), "float64")
    R = TotalVariation(0.2) if kind == "tv" else PriorImageTV(0.2, 0.5, noisy * 0.5)
    ops, conj = R.split((7, 9), "float64")
    K = Stack(ops)
    args = dict(sigma=0.2, tau=0.2, max_iter=40, tol=0, progress=False)
    g = lambda v, t: prox_l2_squared(v, t, 1.0, noisy)  # noqa: E731
    x1, _ = pdhg(K, None, separable(conj, K), g, noisy, **args)
    x2, _ = pdhg(R.K, R.KH, R.prox_conj, g, noisy, **args)
    assert np.abs(x1 - x2).max() <= 1e-12
    # and with a data block in front: min 1/2 ||M x - y||^2 + R(x)
    M = Matrix(_img(rng, (20, 63), "float64"), ishape=(7, 9))
    y = _img(rng, (20,), "float64")
    K2 = Stack([M] + ops)
    data_conj = lambda u, s: (u - s * y) / (1 + s)  # noqa: E731
    x3, _ = pdhg(K2, None, separable([data_conj] + conj, K2), None, noisy * 0, **args)
    x4, _ = pdhg(lambda v: (M(v), R.K(v)), lambda p: M.H(p[0]) + R.KH(p[1]),
                 lambda p, s: (data_conj(p[0], s), R.prox_conj(p[1], s)), None, noisy * 0, **args)
    assert np.abs(x3 - x4).max() <= 1e-12 * np.abs(x4).max()


def test_dual_projection_gradient_finite_on_flat_images():
    """The dual projections take the norm as sqrt(max(|p|^2, tiny)): autograd through a flat region
    (zero differences) gives finite gradients (a plain sqrt gives 0 * inf = NaN), values unchanged."""
    from recon.solvers import project_l2_ball, project_l2inf_ball

    tv = TotalVariation(0.1)
    x = torch.ones(6, 7, dtype=torch.float64, requires_grad=True)
    (tv.prox_conj(tv.K(x * 2.0)) ** 2).sum().backward()
    assert torch.isfinite(x.grad).all()
    z = torch.zeros(3, 4, dtype=torch.complex128, requires_grad=True)
    (project_l2inf_ball(z + 0, 1.0, axis=0).abs() ** 2).sum().backward()
    assert torch.isfinite(z.grad).all()
    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    project_l2_ball(w + 0, 1.0).sum().backward()
    assert torch.isfinite(w.grad).all()
    p = torch.tensor([[3.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(project_l2inf_ball(p, 1.0, axis=0), torch.tensor([[0.6, 0.0], [0.8, 0.0]], dtype=torch.float64))
