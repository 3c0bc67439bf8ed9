"""recon.ops.Wavelet and its array-library transform (recon.ops.wavelet.dwt_forward/dwt_adjoint)
against PyWavelets: the coefficients of ``pywt.coeffs_to_array(pywt.wavedecn(x, wave,
mode='periodization', level))`` and the inverse ``pywt.waverecn``, to float rounding, for haar, db2,
db4 and sym4, several levels, 2D and 3D, odd sizes (zero padding), axis subsets, real and complex,
numpy and torch. Also the Stack/Diag block operators' split/join and errors."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from recon.ops import FFT, Diag, FiniteDifference, Matrix, Stack, Wavelet
from recon.ops.wavelet import dwt_adjoint, dwt_forward

CASES = [((16, 16), "haar", 3, None), ((9, 14), "haar", 2, None), ((12, 10), "db2", 2, None),
         ((11, 13), "db4", 1, None), ((40, 36), "db4", 2, None), ((20, 17), "sym4", 2, None),
         ((5, 6, 7), "db2", 2, None), ((8, 9, 10), "sym4", 1, None), ((6, 8, 8), "haar", 3, (-2, -1)),
         ((4, 10, 12), "db4", 1, (0, 2)), ((33,), "sym4", 2, None)]


def _rand(rng, shape, dtype):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _pywt_reference(x, W):
    """float64/complex128 coefficients by PyWavelets of the zero-padded image."""
    pad = [(0, 0)] * (x.ndim - len(W.ishape)) + [(0, p - s) for p, s in zip(W.padded_shape, W.ishape)]
    xp = np.pad(x.astype(np.complex128 if np.iscomplexobj(x) else np.float64), pad)
    axes = tuple(x.ndim + a for a in W.axes)
    c = pywt.wavedecn(xp, W.wave, mode="periodization", level=W.level, axes=axes)
    return pywt.coeffs_to_array(c, axes=axes)[0]


@pytest.mark.filterwarnings("ignore:Level value")
@pytest.mark.parametrize("shape,wave,level,axes", CASES)
@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32", "complex64"])
def test_torch_transform_equals_pywavelets(shape, wave, level, axes, dtype):
    rng = np.random.default_rng(0)
    W = Wavelet(shape, wave, level, axes, dtype=dtype)
    x = _rand(rng, (2,) + shape, dtype)
    ref = _pywt_reference(x, W)
    got = W(torch.from_numpy(x))
    assert isinstance(got, torch.Tensor) and got.dtype == getattr(torch, dtype) and got.shape == ref.shape
    tol = 1e-13 if dtype in ("float64", "complex128") else 2e-6
    assert np.abs(got.numpy() - ref).max() <= tol * np.abs(ref).max()
    # the inverse (= adjoint) against pywt.waverecn, cropped
    y = _rand(rng, (2,) + W.oshape, dtype)
    axes_abs = tuple(y.ndim + a for a in W.axes)
    slices = pywt.coeffs_to_array(pywt.wavedecn(np.zeros(W.oshape), wave, "periodization", W.level,
                                                axes=tuple(len(shape) + a for a in W.axes)),
                                  axes=tuple(len(shape) + a for a in W.axes))[1]
    slices = [tuple([slice(None)] + list(s)) if isinstance(s, tuple) else s for s in slices[:1]] + \
        [{k: (slice(None),) + v for k, v in d.items()} for d in slices[1:]]
    rec = pywt.waverecn(pywt.array_to_coeffs(y.astype(np.complex128 if np.iscomplexobj(y) else np.float64),
                                             slices, output_format="wavedecn"), wave, "periodization",
                        axes=axes_abs)
    rec = rec[(Ellipsis,) + tuple(slice(0, s) for s in shape)]
    got_h = W.H(torch.from_numpy(y)).numpy()
    # PyWavelets reconstructs with its tabulated rec_* filters, which are the reversed dec_* to 1e-12
    # for sym4 (machine precision for haar/db): hence the 1e-11 floor in double precision
    tol_h = 1e-11 if dtype in ("float64", "complex128") else 2e-6
    assert np.abs(got_h - rec).max() <= tol_h * np.abs(rec).max()
    # the numpy path of the operator is PyWavelets itself
    assert np.abs(W(x) - ref).max() <= tol * np.abs(ref).max()


@pytest.mark.filterwarnings("ignore:Level value")
@pytest.mark.parametrize("wave", ["haar", "db2", "db4", "sym4"])
def test_array_transform_on_numpy_equals_pywavelets(wave):
    """The same lines the torch path runs, applied to numpy arrays (so the maths is pinned
    independently of torch)."""
    rng = np.random.default_rng(1)
    x = _rand(rng, (3, 32, 24), "complex128")
    w = pywt.Wavelet(wave)
    for level in (1, 2, 3):
        c = pywt.wavedecn(x, wave, mode="periodization", level=level, axes=(1, 2))
        ref = pywt.coeffs_to_array(c, axes=(1, 2))[0]
        got = dwt_forward(x, w.dec_lo, w.dec_hi, level, (-2, -1))
        assert np.abs(got - ref).max() <= 1e-13 * np.abs(ref).max()
        back = dwt_adjoint(got, w.dec_lo, w.dec_hi, level, (-2, -1))
        assert np.abs(back - x).max() <= 1e-11 * np.abs(x).max()


def test_wavelet_gpu_free_and_no_host_copy():
    """torch in, torch out, no numpy round trip: the result does not share memory with a numpy array
    and carries gradients through the operator's autograd Function."""
    W = Wavelet((8, 8), "db2", 2, dtype="complex64")
    x = torch.randn(8, 8, dtype=torch.complex64, requires_grad=True)
    y = W(x)
    (y.abs() ** 2).sum().backward()
    # ||W x||^2 = ||x||^2, so the gradient is 2 x
    assert torch.allclose(x.grad, 2 * x.detach(), atol=1e-5)


def test_wavelet_errors():
    with pytest.raises(ValueError, match="orthogonal"):
        Wavelet((8, 8), "bior2.2")
    with pytest.raises(ValueError, match="unknown wavelet"):
        Wavelet((8, 8), "nonexistent-wave")
    with pytest.raises(ValueError, match="level"):
        Wavelet((8, 8), "haar", 0)
    with pytest.raises(ValueError, match="out of range"):
        Wavelet((8, 8), "haar", 1, axes=(2,))
    with pytest.raises(ValueError, match="distinct"):
        Wavelet((8, 8), "haar", 1, axes=(0, -2))
    with pytest.raises(ValueError, match="shape"):
        Wavelet((0, 8))


# ---- Stack / Diag ------------------------------------------------------------------------------------

def test_stack_split_join_and_dense_reference():
    rng = np.random.default_rng(2)
    M = _rand(rng, (5, 6), "complex128")
    A = Matrix(M, ishape=(2, 3))
    D = FiniteDifference((2, 3), dtype="complex128")
    K = Stack([A, D])
    assert K.ishape == (2, 3) and K.oshape == (5 + 2 * 2 * 3,)
    x = _rand(rng, (4, 2, 3), "complex128")     # a batch of 4
    y = K(x)
    assert y.shape == (4, 17)
    a, d = K.split(y)
    assert a.shape == (4, 5) and d.shape == (4, 2, 2, 3)
    assert np.allclose(a, A(x)) and np.allclose(d, D(x))
    assert np.array_equal(K.join([a, d]), y)
    # adjoint: the sum of the blocks' adjoints; normal: the sum of the normals
    assert np.allclose(K.H(y), A.H(a) + D.H(d))
    assert np.allclose(K.normal(x), A.normal(x) + D.normal(x))
    # torch: same numbers, tensors out
    yt = K(torch.from_numpy(x))
    assert isinstance(yt, torch.Tensor) and np.allclose(yt.numpy(), y)
    assert all(isinstance(p, torch.Tensor) for p in K.split(yt))


def test_diag_blocks():
    rng = np.random.default_rng(3)
    F = FFT((3, 4), "complex64")
    A = Matrix(_rand(rng, (2, 5), "complex64"))
    Dg = Diag([F, A])
    assert Dg.ishape == (12 + 5,) and Dg.oshape == (12 + 2,)
    x1, x2 = _rand(rng, (3, 4), "complex64"), _rand(rng, (5,), "complex64")
    x = Dg.join_input([x1, x2])
    y1, y2 = Dg.split(Dg(x))
    assert np.allclose(y1, F(x1), atol=1e-6) and np.allclose(y2, A(x2), atol=1e-6)
    u1, u2 = Dg.split_input(Dg.H(Dg.join([y1, y2])))
    assert np.allclose(u1, F.H(y1), atol=1e-6) and np.allclose(u2, A.H(y2), atol=1e-6)


def test_block_errors():
    A = FFT((3, 4), "complex64")
    with pytest.raises(ValueError, match="at least one"):
        Stack([])
    with pytest.raises(ValueError, match="input shape"):
        Stack([A, FFT((4, 3), "complex64")])
    with pytest.raises(TypeError, match="one dtype"):
        Stack([A, FFT((3, 4), "complex128")])
    with pytest.raises(TypeError, match="Operator"):
        Diag([A, np.eye(3)])
    K = Stack([A, A])
    with pytest.raises(ValueError, match="expected shape"):
        K.split(np.zeros(23, np.complex64))
    with pytest.raises(ValueError, match="2 blocks"):
        K.join([np.zeros((3, 4), np.complex64)])
    with pytest.raises(ValueError, match="block 1"):
        K.join([np.zeros((3, 4), np.complex64), np.zeros((4, 4), np.complex64)])
    with pytest.raises(ValueError, match="batch axes"):
        K.join([np.zeros((2, 3, 4), np.complex64), np.zeros((3, 3, 4), np.complex64)])
    with pytest.raises(TypeError, match="expected a numpy array"):
        K.split([1, 2])
