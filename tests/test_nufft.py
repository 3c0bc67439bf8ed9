"""recon.ops.Nufft against independent references: a float64 direct NUDFT (tests/harness.py, the
convention of recon/conventions.py), sigpy, and the centred orthonormal FFT on Cartesian grids;
batching and frames; the Toeplitz normal operator; determinism; bad input.

Accuracy asserted (relative l2 error of the whole output against the direct sum, random complex
Gaussian inputs, random trajectories uniform in [-N/2, N/2)): ``err <= tol`` for every requested
``tol`` in {1e-2, 1e-4, 1e-6} (complex64) and 1e-9 (complex128), at upsampfac 2.0, 1.25 and automatic.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from harness import cartesian_coord, nudft_adjoint, nudft_forward, random_array, random_coord, rel_err

from recon import _core
from recon.ops import FFT, Nufft

SIZES = [(16, 16), (15, 20), (9, 10, 11), (8, 12, 7)]
ACCURACIES = [("complex64", 1e-2), ("complex64", 1e-4), ("complex64", 1e-6), ("complex128", 1e-9)]
UPSAMPFACS = [2.0, 1.25, None]
# Requests the plan must refuse (ValueError), with the reason it must give:
REFUSED = {
    ("complex64", 1e-6, 1.25): "single precision cannot reach",  # kernel of 13 points: float rounding
    ("complex128", 1e-9, 1.25): "wider than",                    # kernel wider than 16 points
}


def _case(N, M, seed):
    rng = np.random.default_rng(seed)
    coord = random_coord(rng, M, N)
    x = random_array(rng, N, "complex128")
    y = random_array(rng, (M,), "complex128")
    return coord, x, y


# ---- the reference itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("N", [(5, 6), (3, 4, 5)])
def test_reference_nudft_is_the_convention(N):
    """The separable direct sums in harness.py equal the dense matrix written from the convention."""
    coord, x, y = _case(N, 17, 0)
    pos = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in N], indexing="ij"), -1).reshape(-1, len(N))
    E = np.exp(-2j * np.pi * (coord / np.asarray(N)) @ pos.T) / math.sqrt(np.prod(N))
    assert rel_err(nudft_forward(x, coord, N), E @ x.ravel()) < 1e-13
    assert rel_err(nudft_adjoint(y, coord, N), (E.conj().T @ y).reshape(N)) < 1e-13


# ---- accuracy against the direct NUDFT ------------------------------------------------------------------

@pytest.mark.parametrize("upsampfac", UPSAMPFACS, ids=lambda u: f"sigma{u}")
@pytest.mark.parametrize("dtype,tol", ACCURACIES, ids=[f"{d}-{t:g}" for d, t in ACCURACIES])
@pytest.mark.parametrize("N", SIZES, ids=lambda n: "x".join(map(str, n)))
def test_against_nudft(N, dtype, tol, upsampfac):
    coord, x, y = _case(N, 300, hash(N) % 1000)
    refused = REFUSED.get((dtype, tol, upsampfac))
    if refused:
        with pytest.raises(ValueError, match=refused):
            Nufft(coord, N, tol, dtype=dtype, upsampfac=upsampfac)
        return
    op = Nufft(coord, N, tol, dtype=dtype, upsampfac=upsampfac)
    if upsampfac is not None:
        assert op.upsampfac == upsampfac
    ef = rel_err(op.forward(x.astype(dtype)), nudft_forward(x, coord, N))
    ea = rel_err(op.adjoint(y.astype(dtype)), nudft_adjoint(y, coord, N))
    assert ef <= tol, f"forward error {ef:.2e} > tol {tol:g} (sigma={op.upsampfac}, w={op.width})"
    assert ea <= tol, f"adjoint error {ea:.2e} > tol {tol:g} (sigma={op.upsampfac}, w={op.width})"


@pytest.mark.parametrize("dtype,tol", [("complex64", 1e-4), ("complex64", 1e-6), ("complex128", 1e-10)])
def test_larger_2d_against_nudft(dtype, tol):
    N = (64, 64)
    coord, x, y = _case(N, 3000, 7)
    op = Nufft(coord, N, tol, dtype=dtype)
    assert rel_err(op.forward(x.astype(dtype)), nudft_forward(x, coord, N)) <= tol
    assert rel_err(op.adjoint(y.astype(dtype)), nudft_adjoint(y, coord, N)) <= tol


def _radial_with_edges(N, n_spokes=12, n_samples=33):
    """Full spokes sampling the closed interval [-N/2, N/2] on each axis (angle 0 and 90 deg give
    points exactly at +N/2), plus the corners (+-N0/2, +-N1/2)."""
    ang = np.arange(n_spokes) * np.pi / n_spokes  # includes 0 and pi/2
    t = np.linspace(-1.0, 1.0, n_samples)
    c = np.stack([np.outer(np.cos(ang), t) * N[0] / 2, np.outer(np.sin(ang), t) * N[1] / 2], -1).reshape(-1, 2)
    corners = np.array([[s0 * N[0] / 2, s1 * N[1] / 2] for s0 in (-1, 1) for s1 in (-1, 1)])
    c = np.concatenate([c, corners])
    return np.clip(c, -np.asarray(N) / 2, np.asarray(N) / 2)  # cos(pi/2) rounding


@pytest.mark.parametrize("N", [(16, 16), (15, 17)])
@pytest.mark.parametrize("dtype,tol", [("complex64", 1e-6), ("complex128", 1e-10)])
def test_radial_with_points_at_plus_half_N(N, dtype, tol):
    coord = _radial_with_edges(N)
    assert (coord == np.asarray(N) / 2).any(axis=0).all()
    rng = np.random.default_rng(3)
    x = random_array(rng, N, "complex128")
    op = Nufft(coord, N, tol, dtype=dtype)
    y = op.forward(x.astype(dtype))
    assert rel_err(y, nudft_forward(x, coord, N)) <= tol
    assert rel_err(op.adjoint(y), nudft_adjoint(y.astype(np.complex128), coord, N)) <= tol
    # +N/2 and -N/2 are the same frequency on the integer image grid: the corners agree
    corners = y[-4:]
    assert np.allclose(corners, corners[0], rtol=0, atol=10 * tol * np.abs(y).max())


# ---- against sigpy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("N,coord_shape", [((16, 20), (5, 24)), ((9, 10, 11), (4, 10))],
                         ids=["2d", "3d"])
def test_equals_sigpy(N, coord_shape):
    """sigpy.nufft / nufft_adjoint with coils leading and several sample axes (spokes, samples, d).

    sigpy's accuracy is limited by its Kaiser-Bessel kernel: at its default (oversamp 1.25,
    width 4) its relative error is ~1e-2; at oversamp 2, width 8 in complex128 it is ~1e-7.
    We measure sigpy's error against the direct sum (e_s) and assert that recon (tol 1e-10)
    differs from sigpy by at most e_s plus recon's tolerance (triangle inequality), with
    e_s itself below 1e-5 at the accurate setting and 2e-2 at the default.
    """
    sigpy = pytest.importorskip("sigpy", reason="sigpy is part of the [test] extra")
    rng = np.random.default_rng(5)
    C = 3
    coord = random_coord(rng, int(np.prod(coord_shape)), N).reshape(coord_shape + (len(N),))
    x = random_array(rng, (C,) + N, "complex128")
    y = random_array(rng, (C,) + coord_shape, "complex128")
    op = Nufft(coord, N, 1e-10, dtype="complex128")
    yr, xr = op.forward(x), op.adjoint(y)
    assert yr.shape == (C,) + coord_shape and xr.shape == (C,) + N
    y_ref = nudft_forward(x, coord, N)
    x_ref = nudft_adjoint(y, coord, N)
    for (os_, w), bound in (((2.0, 8), 1e-5), ((1.25, 4), 2e-2)):
        ys = sigpy.nufft(x, coord, oversamp=os_, width=w)
        xs = sigpy.nufft_adjoint(y, coord, oshape=(C,) + N, oversamp=os_, width=w)
        es_f, es_a = rel_err(ys, y_ref), rel_err(xs, x_ref)
        assert es_f <= bound and es_a <= bound, (es_f, es_a)
        assert rel_err(yr, ys) <= 1.01 * es_f * np.linalg.norm(y_ref) / np.linalg.norm(ys) + 2e-10
        assert rel_err(xr, xs) <= 1.01 * es_a * np.linalg.norm(x_ref) / np.linalg.norm(xs) + 2e-10


# ---- Cartesian identity --------------------------------------------------------------------------------

@pytest.mark.parametrize("N", [(8, 8), (7, 9), (5, 6, 7), (4, 5, 3)], ids=lambda n: "x".join(map(str, n)))
@pytest.mark.parametrize("dtype,tol", [("complex64", 1e-6), ("complex128", 1e-10)])
def test_cartesian_trajectory_equals_fft(N, dtype, tol):
    rng = np.random.default_rng(8)
    coord = cartesian_coord(N)                      # (*N, d): sample shape equals the image shape
    op = Nufft(coord, N, tol, dtype=dtype)
    F = FFT(N, dtype)
    x = random_array(rng, (2,) + N, dtype)          # two coils
    assert op.forward(x).shape == (2,) + N
    assert rel_err(op.forward(x), F.forward(x)) <= tol
    k = random_array(rng, (2,) + N, dtype)
    assert rel_err(op.adjoint(k), F.adjoint(k)) <= tol


# ---- batching and frames ------------------------------------------------------------------------------

def test_coils_are_batch_axes():
    N = (10, 12)
    rng = np.random.default_rng(9)
    coord = random_coord(rng, 60, N).reshape(3, 20, 2)
    op = Nufft(coord, N, 1e-6)
    x = random_array(rng, (2, 4) + N, "complex64")
    y = op.forward(x)
    assert y.shape == (2, 4, 3, 20)
    yy = random_array(rng, (2, 4, 3, 20), "complex64")
    xa = op.adjoint(yy)
    for i in range(2):
        for c in range(4):
            assert rel_err(y[i, c], op.forward(np.ascontiguousarray(x[i, c]))) <= 1e-6
            assert rel_err(xa[i, c], op.adjoint(np.ascontiguousarray(yy[i, c]))) <= 1e-6


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_frames_one_frame_axis(dtype):
    """coord (T, spokes, samples, d) with frame_ndim=1: frame t uses its own trajectory; coils lead."""
    N = (8, 10)
    T, C = 3, 2
    rng = np.random.default_rng(10)
    coord = random_coord(rng, T * 2 * 7, N).reshape(T, 2, 7, 2)
    op = Nufft(coord, N, 1e-6, dtype=dtype, frame_ndim=1)
    assert op.ishape == (T,) + N and op.oshape == (T, 2, 7)
    x = random_array(rng, (C, T) + N, dtype)
    y = random_array(rng, (C, T, 2, 7), dtype)
    fx, ay = op.forward(x), op.adjoint(y)
    for t in range(T):
        single = Nufft(coord[t], N, 1e-6, dtype=dtype)
        assert rel_err(fx[:, t], single.forward(np.ascontiguousarray(x[:, t]))) <= 1e-6
        assert rel_err(ay[:, t], single.adjoint(np.ascontiguousarray(y[:, t]))) <= 1e-6
    with pytest.raises(ValueError, match="expected shape"):
        op.forward(random_array(rng, (T + 1,) + N, dtype))


def test_frames_two_frame_axes_with_broadcast():
    """coord (T, 1, M, d), frame_ndim=2: one trajectory per frame, broadcast over the coil axis."""
    N = (9, 8, 7)
    T, C, M = 2, 3, 40
    rng = np.random.default_rng(11)
    coord = random_coord(rng, T * M, N).reshape(T, 1, M, 3)
    op = Nufft(coord, N, 1e-6, frame_ndim=2)
    x = random_array(rng, (T, C) + N, "complex64")
    y = random_array(rng, (T, C, M), "complex64")
    fx, ay = op.forward(x), op.adjoint(y)
    assert fx.shape == (T, C, M) and ay.shape == (T, C) + N
    for t in range(T):
        single = Nufft(coord[t, 0], N, 1e-6)
        assert rel_err(fx[t], single.forward(np.ascontiguousarray(x[t]))) <= 1e-6
        assert rel_err(ay[t], single.adjoint(np.ascontiguousarray(y[t]))) <= 1e-6
    # torch gives the same
    assert rel_err(op.forward(torch.from_numpy(x)), fx) <= 1e-6


# ---- Toeplitz normal operator -------------------------------------------------------------------------

TOEPLITZ = [((12, 10), "complex64", 1e-6), ((12, 10), "complex128", 1e-9),
            ((6, 7, 8), "complex64", 1e-6), ((6, 7, 8), "complex128", 1e-9)]


@pytest.mark.parametrize("N,dtype,tol", TOEPLITZ, ids=[f"{len(n)}d-{d}" for n, d, _ in TOEPLITZ])
@pytest.mark.parametrize("weights", ["none", "real", "complex"])
def test_toeplitz_normal(N, dtype, tol, weights):
    """A^H diag(w) A by Toeplitz embedding equals adjoint(w * forward(x)) within the NUFFT tolerance."""
    rng = np.random.default_rng(12)
    coord = random_coord(rng, 250, N).reshape(10, 25, len(N))
    op = Nufft(coord, N, tol, dtype=dtype)
    x = random_array(rng, (2,) + N, dtype)
    if weights == "none":
        w, T = None, op.toeplitz()
        ref = op.adjoint(op.forward(x))
        assert rel_err(op.normal(x), ref) <= tol
    else:
        w = rng.random((10, 25)) + 0.1
        if weights == "complex":
            w = w * np.exp(1j * rng.random((10, 25)))
        T = op.toeplitz(w)
        ref = op.adjoint((w * op.forward(x)).astype(dtype))
    got = T.forward(x)
    assert got.dtype == np.dtype(dtype) and got.shape == x.shape
    assert rel_err(got, ref) <= tol
    gt = T.forward(torch.from_numpy(x))
    assert isinstance(gt, torch.Tensor) and rel_err(gt, ref) <= tol


def test_toeplitz_with_frames():
    N = (8, 9)
    rng = np.random.default_rng(13)
    coord = random_coord(rng, 2 * 50, N).reshape(2, 50, 2)
    op = Nufft(coord, N, 1e-6, frame_ndim=1)
    w = rng.random((2, 50)).astype(np.float32)
    x = random_array(rng, (3, 2) + N, "complex64")
    ref = op.adjoint(w * op.forward(x))
    assert rel_err(op.toeplitz(w).forward(x), ref) <= 1e-6
    assert rel_err(op.normal(x), op.adjoint(op.forward(x))) <= 1e-6
    assert rel_err(op.normal(torch.from_numpy(x)), op.adjoint(op.forward(x))) <= 1e-6


# ---- determinism and threads ------------------------------------------------------------------------------

@pytest.mark.parametrize("N", [(32, 30), (12, 10, 14)])
def test_deterministic_and_thread_count_independent(N):
    """Same plan, same input: bitwise the same result with one thread, and for the forward (type 2)
    with any thread count. The threaded adjoint adds per-bin sub-grids into the fine grid in the
    order threads finish them, so it is reproducible to rounding only (rel <= 1e-6 in complex64)."""
    rng = np.random.default_rng(14)
    coord = random_coord(rng, 4000, N)
    x = random_array(rng, N, "complex64")
    y = random_array(rng, (4000,), "complex64")
    op2 = Nufft(coord, N, 1e-6, nthreads=2)
    op1 = Nufft(coord, N, 1e-6, nthreads=1)
    f1, a1 = op1.forward(x), op1.adjoint(y)
    assert np.array_equal(f1, op1.forward(x)) and np.array_equal(a1, op1.adjoint(y))
    assert np.array_equal(f1, Nufft(coord, N, 1e-6, nthreads=1).forward(x))
    f2, a2 = op2.forward(x), op2.adjoint(y)
    assert np.array_equal(f2, op2.forward(x))
    for _ in range(3):
        assert rel_err(op2.adjoint(y), a2) <= 1e-6
    assert rel_err(f1, f2) <= 1e-6
    assert rel_err(a1, a2) <= 1e-6


# ---- bad input --------------------------------------------------------------------------------------------

@pytest.fixture
def small():
    rng = np.random.default_rng(15)
    N = (8, 6)
    coord = random_coord(rng, 20, N)
    return Nufft(coord, N, 1e-6), coord, random_array(rng, N, "complex64"), random_array(rng, (20,), "complex64")


def test_bad_dtype(small):
    op, coord, x, y = small
    with pytest.raises(TypeError, match="expected dtype complex64, got float32"):
        op.forward(x.real.copy())
    with pytest.raises(TypeError, match="expected dtype complex64, got complex128"):
        op.forward(x.astype(np.complex128))
    with pytest.raises(TypeError, match="expected dtype complex64, got complex128"):
        op.adjoint(torch.from_numpy(y.astype(np.complex128)))
    op128 = Nufft(coord, (8, 6), 1e-9, dtype="complex128")
    with pytest.raises(TypeError, match="expected dtype complex128, got complex64"):
        op128.forward(x)
    with pytest.raises(TypeError, match="complex64 or complex128"):
        Nufft(coord, (8, 6), dtype="float32")
    with pytest.raises(TypeError, match="coord must be float32 or float64"):
        Nufft(np.zeros((3, 2), dtype=np.int64), (8, 6))


def test_bad_shape(small):
    op, coord, x, y = small
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 8, 6\)"):
        op.forward(x[:, :5])
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 20\)"):
        op.adjoint(y[:19])
    with pytest.raises(ValueError, match=r"coord must have shape \(\.\.\., M, 2\)"):
        Nufft(coord[:, :1], (8, 6))
    with pytest.raises(ValueError, match=r"coord must have shape \(\.\.\., M, 2\)"):
        Nufft(np.zeros((5, 3)), (8, 6))
    with pytest.raises(ValueError, match="im_shape must have 2 or 3 entries"):
        Nufft(coord[:, :1], (8,))
    with pytest.raises(ValueError, match="frame_ndim must lie in"):
        Nufft(coord, (8, 6), frame_ndim=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_and_coord(small, bad):
    op, coord, x, y = small
    xb = x.copy()
    xb[2, 3] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        op.forward(xb)
    yb = y.copy()
    yb[4] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        op.adjoint(yb)
    with pytest.raises(ValueError, match="NaN or Inf"):
        op.normal(xb)
    cb = coord.copy()
    cb[0, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        Nufft(cb, (8, 6))



@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_check(dtype, bad):
    """The C++ finiteness check used at the operator boundary: every position, real and imaginary
    parts, thread counts that split the array unevenly."""
    a = np.ones(1001, dtype=dtype)
    assert _core.all_finite(a) and _core.all_finite(a, nthreads=3)
    assert _core.all_finite(np.ones(0, dtype=dtype))
    for pos in (0, 500, 1000):
        b = a.copy()
        b[pos] = bad
        assert not _core.all_finite(b) and not _core.all_finite(b, nthreads=3)
        if b.dtype.kind == "c":
            b[pos] = complex(1.0, bad)
            assert not _core.all_finite(b)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.all_finite(a[::2])
    with pytest.raises(TypeError, match="expected float32"):
        _core.all_finite(np.ones(4, dtype=np.int32))


def test_non_finite_imaginary_part(small):
    op, coord, x, y = small
    yb = y.copy()
    yb[4] = complex(0.0, np.nan)
    with pytest.raises(ValueError, match="NaN or Inf"):
        op.adjoint(yb)

def test_coordinates_out_of_range(small):
    op, coord, x, y = small
    c = coord.copy()
    c[3, 0] = 4.0 + 1e-9
    with pytest.raises(ValueError, match=r"must lie in \[-N/2, N/2\]"):
        Nufft(c, (8, 6))
    c = coord.copy()
    c[3, 1] = -3.5  # N/2 = 3 on the second axis
    with pytest.raises(ValueError, match=r"must lie in \[-N/2, N/2\]"):
        Nufft(c, (8, 6))
    # cycles/sample (|k| <= 0.5) is in range but a trajectory in radians (|k| <= pi) times N is not
    with pytest.raises(ValueError, match="cycles/FOV"):
        Nufft(coord * 2 * np.pi, (8, 6))


def test_non_contiguous_input_gives_the_right_result(small):
    op, coord, x, y = small
    big = random_array(np.random.default_rng(16), (3, 16, 6), "complex64")
    xs = big[1, ::2, :]                                # strided view
    assert not xs.flags.c_contiguous
    assert rel_err(op.forward(xs), op.forward(np.ascontiguousarray(xs))) == 0
    xf = np.asfortranarray(x)
    assert rel_err(op.forward(xf), op.forward(x)) == 0
    ys = np.stack([y, y], axis=-1)[:, 0]
    assert rel_err(op.adjoint(ys), op.adjoint(y)) == 0
    xt = torch.from_numpy(big)[1, ::2, :]
    assert rel_err(op.forward(xt), op.forward(np.ascontiguousarray(xs))) == 0
    assert rel_err(op.forward(torch.from_numpy(x).conj()), op.forward(np.conj(x))) == 0


def test_wrong_device(small):
    op, coord, x, y = small
    with pytest.raises(ValueError, match="expected a CPU"):
        op.forward(torch.empty((8, 6), dtype=torch.complex64, device="meta"))
    with pytest.raises(ValueError, match="expected a CPU"):
        op.adjoint(torch.empty((20,), dtype=torch.complex64, device="meta"))


def test_wrong_device_coord():
    with pytest.raises(ValueError, match="expected a CPU"):
        Nufft(torch.empty((5, 2), dtype=torch.float64, device="meta"), (8, 6))


@pytest.mark.parametrize("tol", [0, 1, 1.5, -1e-3, float("nan")])
def test_tol_out_of_range(tol):
    with pytest.raises(ValueError, match=r"tol must lie in \(0, 1\)"):
        Nufft(np.zeros((3, 2)), (8, 6), tol)


@pytest.mark.parametrize("dtype,tol", [("complex64", 1e-10), ("complex128", 1e-20)])
def test_tol_not_reachable(dtype, tol):
    with pytest.raises(ValueError, match=f"not reachable in {dtype}"):
        Nufft(np.zeros((3, 2)), (8, 6), tol, dtype=dtype)


@pytest.mark.parametrize("upsampfac", [1.0, 3.5])
def test_upsampfac_out_of_range(upsampfac):
    with pytest.raises(ValueError, match=r"upsampfac must lie in \[1.2, 3\]"):
        Nufft(np.zeros((3, 2)), (8, 6), 1e-3, upsampfac=upsampfac)


def test_nthreads_must_be_positive():
    with pytest.raises(ValueError, match="nthreads"):
        Nufft(np.zeros((3, 2)), (8, 6), nthreads=-1)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_empty_trajectory(dtype):
    """M = 0 samples: forward gives an empty array, adjoint and normal give zeros."""
    N = (8, 6)
    op = Nufft(np.zeros((0, 2)), N, 1e-6, dtype=dtype)
    x = random_array(np.random.default_rng(17), (2,) + N, dtype)
    assert op.forward(x).shape == (2, 0)
    a = op.adjoint(np.zeros((2, 0), dtype=dtype))
    assert a.shape == (2,) + N and not a.any()
    assert not op.normal(x).any()


# ---- the raw plan (recon._core) -----------------------------------------------------------------------------

@pytest.fixture
def raw():
    rng = np.random.default_rng(18)
    coord = np.ascontiguousarray(random_coord(rng, 20, (8, 6)))
    plan = _core.NufftPlan64(coord, [8, 6], 1e-6)
    return plan, random_array(rng, (8, 6), "complex64"), random_array(rng, (20,), "complex64")


def test_raw_plan_matches_operator(raw):
    plan, x, y = raw
    out = np.empty(20, np.complex64)
    plan.forward(x, out)
    img = np.empty((8, 6), np.complex64)
    plan.adjoint(y, img)
    assert np.isfinite(out).all() and np.isfinite(img).all()
    assert plan.num_points == 20 and list(plan.image_shape) == [8, 6]


def test_raw_plan_rejects_bad_buffers(raw):
    plan, x, y = raw
    out = np.empty(20, np.complex64)
    with pytest.raises(ValueError, match="C-contiguous"):
        plan.forward(np.asfortranarray(x), out)
    with pytest.raises(ValueError, match="C-contiguous"):
        plan.forward(x, np.empty(40, np.complex64)[::2])
    with pytest.raises(TypeError, match="expected dtype complex64"):
        plan.forward(x.astype(np.complex128), out)
    with pytest.raises(TypeError, match="expected dtype complex64"):
        plan.forward(x.real.copy(), out)
    with pytest.raises(ValueError, match="not a multiple of the image size"):
        plan.forward(x[:7].copy(), out)
    with pytest.raises(ValueError, match="out: expected 20 elements"):
        plan.forward(x, np.empty(19, np.complex64))
    ro = np.empty(20, np.complex64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        plan.forward(x, ro)
    with pytest.raises(ValueError, match="multiple of the number of samples"):
        plan.adjoint(np.empty(19, np.complex64), np.empty((8, 6), np.complex64))
    with pytest.raises(ValueError, match="out: expected 48 elements"):
        plan.adjoint(y, np.empty((8, 5), np.complex64))
    img = np.empty((8, 6), np.complex64)
    img.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        plan.adjoint(y, img)
    with pytest.raises(TypeError):
        plan.forward([1.0, 2.0], out)


def test_raw_plan_rejects_bad_construction():
    c = np.zeros((4, 2))
    with pytest.raises(TypeError, match="coord: expected dtype float64"):
        _core.NufftPlan64(c.astype(np.float32), [8, 8], 1e-6)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.NufftPlan64(np.asfortranarray(np.zeros((4, 2)))[:, ::-1], [8, 8], 1e-6)
    with pytest.raises(ValueError, match=r"coord: expected shape \(M, d\)"):
        _core.NufftPlan64(np.zeros(4), [8, 8], 1e-6)
    with pytest.raises(ValueError, match="image_shape has 2 entries"):
        _core.NufftPlan64(np.zeros((4, 3)), [8, 8], 1e-6)
    with pytest.raises(ValueError, match="dimension must be 2 or 3"):
        _core.NufftPlan64(np.zeros((4, 4)), [8, 8, 8, 8], 1e-6)
    with pytest.raises(ValueError, match="must be >= 1"):
        _core.NufftPlan64(np.zeros((4, 2)), [0, 8], 1e-6)
    with pytest.raises(ValueError, match="finite and lie in"):
        _core.NufftPlan64(np.full((2, 2), 5.0), [8, 8], 1e-6)
    with pytest.raises(ValueError, match="finite and lie in"):
        _core.NufftPlan64(np.full((2, 2), np.nan), [8, 8], 1e-6)
    with pytest.raises(ValueError, match="tol must lie in"):
        _core.NufftPlan64(np.zeros((4, 2)), [8, 8], 2.0)
    with pytest.raises(ValueError, match="fine grid too large"):
        _core.NufftPlan64(np.zeros((4, 2)), [2**31, 8], 1e-3)


def test_raw_plan_empty_trajectory():
    plan = _core.NufftPlan128(np.zeros((0, 2)), [8, 6], 1e-9)
    x = np.ones((8, 6), np.complex128)
    plan.forward(x, np.empty(0, np.complex128))
    img = np.full((8, 6), 7.0 + 0j)
    plan.adjoint(np.empty(0, np.complex128), img)
    assert not img.any()


# ---- ragged frames (respiratory bins, real-time frames: different sample counts) ----------------------------

RAGGED = [((8, 10), "complex64", 1e-6), ((8, 10), "complex128", 1e-10), ((5, 6, 7), "complex64", 1e-6),
          ((5, 6, 7), "complex128", 1e-10)]


def _ragged_coord(rng, N, sizes):
    """Frames of the given sample counts; frame 1 (if any) shaped (spokes, samples, d)."""
    frames = [random_coord(rng, m, N) for m in sizes]
    if len(sizes) > 1 and sizes[1] % 3 == 0:
        frames[1] = frames[1].reshape(3, sizes[1] // 3, len(N))
    return frames


@pytest.mark.parametrize("N,dtype,tol", RAGGED, ids=[f"{len(n)}d-{d}" for n, d, _ in RAGGED])
def test_ragged_frames_equal_per_frame_nufft(N, dtype, tol):
    """Frame f of a ragged Nufft equals a Nufft of frame f alone; coils lead; the adjoint is exact."""
    rng = np.random.default_rng(30)
    sizes = [40, 27, 0, 13]                                  # an empty frame included
    frames = _ragged_coord(rng, N, sizes)
    op = Nufft(frames, N, tol, dtype=dtype)
    F, M = len(sizes), sum(sizes)
    assert op.ragged and op.ishape == (F,) + N and op.oshape == (M,)
    assert op.frame_sizes == tuple(sizes) and op.frame_offsets.tolist() == [0, 40, 67, 67, 80]
    x = random_array(rng, (2, F) + N, dtype)
    y = random_array(rng, (2, M), dtype)
    fx, ay = op.forward(x), op.adjoint(y)
    assert fx.shape == (2, M) and ay.shape == (2, F) + N and fx.dtype == ay.dtype == np.dtype(dtype)
    for f, (c, seg_x, seg_y) in enumerate(zip(frames, op.split(fx), op.split(y))):
        if sizes[f] == 0:
            assert seg_x.shape == (2, 0) and not ay[:, f].any()
            continue
        single = Nufft(c.reshape(-1, len(N)), N, tol, dtype=dtype, upsampfac=op.upsampfac)
        assert np.array_equal(seg_x, single.forward(np.ascontiguousarray(x[:, f])))
        assert rel_err(ay[:, f], single.adjoint(np.ascontiguousarray(seg_y))) <= 1e-6 if dtype == "complex64" \
            else rel_err(ay[:, f], single.adjoint(np.ascontiguousarray(seg_y))) <= 1e-12
        assert rel_err(seg_x, nudft_forward(x[:, f], c.reshape(-1, len(N)), N)) <= tol
    dot = abs(np.vdot(fx, y) - np.vdot(x, ay)) / (np.linalg.norm(fx) * np.linalg.norm(y))
    assert dot <= (1e-6 if dtype == "complex64" else 1e-12)
    # torch, with autograd through the operator mechanism
    xt = torch.from_numpy(x).requires_grad_()
    yt = op.forward(xt)
    assert rel_err(yt.detach(), fx) <= 1e-6
    (g,) = torch.autograd.grad(yt, xt, torch.from_numpy(y))
    assert rel_err(g, ay) <= 1e-6


def test_ragged_frames_gradcheck():
    rng = np.random.default_rng(31)
    op = Nufft(_ragged_coord(rng, (4, 5), [6, 9, 3]), (4, 5), 1e-10, dtype="complex128")
    x = torch.from_numpy(random_array(rng, (3, 4, 5), "complex128")).requires_grad_()
    assert torch.autograd.gradcheck(op.forward, (x,))
    y = torch.from_numpy(random_array(rng, (18,), "complex128")).requires_grad_()
    assert torch.autograd.gradcheck(op.adjoint, (y,))


def test_ragged_split_and_concat():
    rng = np.random.default_rng(32)
    frames = _ragged_coord(rng, (8, 8), [5, 6, 2])
    op = Nufft(frames, (8, 8), 1e-4)
    y = random_array(rng, (3, 13), "complex64")
    parts = op.split(y)
    assert [p.shape for p in parts] == [(3, 5), (3, 6), (3, 2)]
    assert np.shares_memory(parts[0], y)                 # views, not copies
    assert np.array_equal(op.concat(parts), y)
    # per-frame data in the trajectory's own sample shape (frame 1 is (3, 2, 2) -> samples (3, 2))
    shaped = [p.reshape(3, *s) for p, s in zip(parts, op.frame_sample_shapes)]
    assert shaped[1].shape == (3, 3, 2)
    assert np.array_equal(op.concat(shaped), y)
    assert torch.equal(op.concat([torch.from_numpy(p.copy()) for p in parts]), torch.from_numpy(y))
    with pytest.raises(ValueError, match="expected 3 frames"):
        op.concat(parts[:2])
    with pytest.raises(ValueError, match=r"frame 1 must have shape \(\.\.\., 6\) or \(\.\.\., 3, 2\)"):
        op.concat([parts[0], parts[1][:, :4], parts[2]])
    with pytest.raises(ValueError, match="different leading axes"):
        op.concat([parts[0], parts[1][:2], parts[2]])
    with pytest.raises(ValueError, match=r"expected an array of shape \(\.\.\., 13\)"):
        op.split(y[:, :12])
    dense = Nufft(random_coord(rng, 10, (8, 8)), (8, 8), 1e-4)
    with pytest.raises(ValueError, match="only for ragged frames"):
        dense.split(y)


def test_ragged_frames_bad_input():
    rng = np.random.default_rng(33)
    frames = _ragged_coord(rng, (8, 8), [5, 6])
    with pytest.raises(ValueError, match="at least one frame"):
        Nufft([], (8, 8))
    with pytest.raises(ValueError, match="leave it 0"):
        Nufft(frames, (8, 8), frame_ndim=1)
    with pytest.raises(ValueError, match=r"coord\[1\] must have shape \(\.\.\., M, 2\)"):
        Nufft([frames[0], np.zeros((4, 3))], (8, 8))
    with pytest.raises(TypeError, match=r"coord\[1\] must be float32 or float64"):
        Nufft([frames[0], np.zeros((4, 2), np.int32)], (8, 8))
    bad = frames[1].copy()
    bad[0, 0] = 9.0
    with pytest.raises(ValueError, match=r"must lie in \[-N/2, N/2\].*coord\[1\]"):
        Nufft([frames[0], bad], (8, 8))
    op = Nufft(frames, (8, 8), 1e-4)
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 2, 8, 8\)"):
        op.forward(np.zeros((8, 8), np.complex64))
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 11\)"):
        op.adjoint(np.zeros((2, 5), np.complex64))


@pytest.mark.parametrize("dtype,tol", [("complex64", 1e-6), ("complex128", 1e-10)])
def test_ragged_toeplitz_normal(dtype, tol):
    """Per-frame PSF kernels: toeplitz(w) equals adjoint(w * forward) with weights of shape (M_total,)."""
    rng = np.random.default_rng(34)
    N = (10, 9)
    op = Nufft(_ragged_coord(rng, N, [60, 45, 0, 30]), N, tol, dtype=dtype)
    x = random_array(rng, (2, 4) + N, dtype)
    w = rng.random(135) + 0.2
    ref = op.adjoint((w * op.forward(x)).astype(dtype))
    T = op.toeplitz(w)
    got = T.forward(x)
    assert got.shape == x.shape and rel_err(got, ref) <= tol
    assert not got[:, 2].any()                         # the empty frame
    assert rel_err(op.normal(x), op.adjoint(op.forward(x))) <= tol
    assert rel_err(T.forward(torch.from_numpy(x)), ref) <= tol
    with pytest.raises(ValueError, match=r"do not broadcast to the samples \(135,\)"):
        op.toeplitz(np.ones((4, 135)))


# ---- set_points: a new trajectory for the same operator (streaming) -------------------------------------------

@pytest.mark.parametrize("kind", ["single", "frames", "ragged"])
def test_set_points_equals_a_fresh_nufft(kind):
    rng = np.random.default_rng(35)
    N = (12, 10)

    def make(sizes):
        if kind == "single":
            return random_coord(rng, sizes[0], N)
        if kind == "frames":
            return random_coord(rng, 3 * sizes[0], N).reshape(3, sizes[0], 2)
        return _ragged_coord(rng, N, sizes)

    op = Nufft(make([50, 30]), N, 1e-6, upsampfac=2.0)
    T0 = op.toeplitz()
    for sizes in ([80, 12], [20, 0], [50, 30]):          # more, fewer and as many samples as before
        c = make(sizes)
        op.set_points(c)
        fresh = Nufft(c, N, 1e-6, upsampfac=2.0)
        assert op.oshape == fresh.oshape and op.H.ishape == fresh.oshape and op.frame_sizes == fresh.frame_sizes
        x = random_array(rng, op.ishape, "complex64")
        y = random_array(rng, op.oshape, "complex64")
        assert np.array_equal(op.forward(x), fresh.forward(x))
        assert np.array_equal(op.adjoint(y), fresh.adjoint(y))
        assert op.toeplitz() is not T0                    # the old trajectory's kernels are dropped
        assert rel_err(op.normal(x), fresh.normal(x)) <= 1e-6


def test_set_points_checks_structure_and_keeps_the_old_points():
    rng = np.random.default_rng(36)
    N = (8, 8)
    c = random_coord(rng, 60, N).reshape(3, 20, 2)
    op = Nufft(c, N, 1e-4, frame_ndim=1)
    x = random_array(rng, op.ishape, "complex64")
    before = op.forward(x)
    with pytest.raises(ValueError, match=r"expected the frame shape \(3,\)"):
        op.set_points(random_coord(rng, 40, N).reshape(2, 20, 2))
    with pytest.raises(ValueError, match="expected one coord array"):
        op.set_points([c[0], c[1], c[2]])
    bad = c.copy()
    bad[2, 5, 0] = 5.0
    with pytest.raises(ValueError, match=r"must lie in \[-N/2, N/2\]"):
        op.set_points(bad)
    with pytest.raises(ValueError, match="needs about"):
        Nufft(c, N, 1e-4, frame_ndim=1, max_memory=3e5).set_points(random_coord(rng, 3 * 5000, N).reshape(3, 5000, 2))
    assert np.array_equal(op.forward(x), before)             # still the first trajectory
    ragged = Nufft([c[0], c[1]], N, 1e-4)
    with pytest.raises(ValueError, match="expected a list of per-frame trajectories"):
        ragged.set_points(c[0])
    with pytest.raises(ValueError, match=r"expected the frame shape \(2,\)"):
        ragged.set_points([c[0]])


@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer's quarantine keeps freed memory: RSS says nothing there")
def test_set_points_does_not_grow_memory():
    """200 re-plans of a streaming trajectory (sizes varying up to a bound) keep the process's RSS flat."""
    rng = np.random.default_rng(37)
    N = (64, 64)
    op = Nufft(random_coord(rng, 4000, N), N, 1e-4)
    x = random_array(rng, N, "complex64")
    coords = [random_coord(rng, m, N) for m in rng.integers(1000, 4001, 8)]

    def rss_kib():
        with open("/proc/self/status") as f:
            return int(f.read().split("VmRSS:")[1].split()[0])

    for c in coords:  # warm up: buffers at their largest size
        op.set_points(c)
        op.forward(x)
    start = rss_kib()
    for i in range(200):
        op.set_points(coords[i % 8])
        op.forward(x)
    assert rss_kib() - start < 2048


# ---- the plan cache -------------------------------------------------------------------------------------------

def test_cached_nufft_hits_and_misses(monkeypatch):
    from recon.ops.backend import plan_cache

    rng = np.random.default_rng(38)
    N = (8, 10)
    c = random_coord(rng, 30, N)
    plan_cache.clear()
    a = Nufft.cached(c, N, 1e-4)
    b = Nufft.cached(c.copy(), (np.int64(8), 10), np.float64(1e-4))    # same content and arguments
    assert a is b and (plan_cache.hits, plan_cache.misses) == (1, 1)
    assert Nufft.cached(c, N, 1e-6) is not a                           # tol is part of the key
    assert Nufft.cached(c, N, 1e-4, dtype="complex128") is not a
    assert Nufft.cached(c.astype(np.float32), N, 1e-4) is not a         # the coord's dtype too
    c2 = c.copy()
    c2[0, 0] += 1e-3
    assert Nufft.cached(c2, N, 1e-4) is not a
    assert plan_cache.misses == 5 and plan_cache.hits == 1
    frames = [c[:10], c[10:]]
    r = Nufft.cached(frames, N, 1e-4)
    assert r.ragged and Nufft.cached([f.copy() for f in frames], N, 1e-4) is r
    x = random_array(rng, N, "complex64")
    assert np.array_equal(a.forward(x), Nufft(c, N, 1e-4).forward(x))
    with pytest.raises(ValueError, match="comes from Nufft.cached"):
        a.set_points(c)
    with pytest.raises(ValueError, match=r"must lie in \[-N/2, N/2\]"):
        Nufft.cached(c * 10, N, 1e-4)
    monkeypatch.setenv("RECON_PLAN_CACHE", "0")
    assert Nufft.cached(c, N, 1e-4) is not a
    plan_cache.clear()


# ---- the GPU pipeline on ragged frames, through its host emulation (recon._cuda without a device) --------------

def test_gpu_pipeline_host_emulation_ragged_frames_and_scaling():
    """nufft_cuda runs ragged frames through the same per-frame jobs as the CPU (Nufft._frame_jobs) and
    rescales extreme magnitudes like the CPU; checked with the CUDA kernels' host emulation."""
    pytest.importorskip("recon._cuda", reason="recon._cuda not built (tools/dev_build.sh with nvcc)")
    from recon.ops import nufft_cuda

    rng = np.random.default_rng(39)
    N = (8, 9)
    op = Nufft(_ragged_coord(rng, N, [30, 12, 0, 21]), N, 1e-6)
    x = random_array(rng, (2, 4) + N, "complex64")
    y = random_array(rng, (2, 63), "complex64")
    assert rel_err(nufft_cuda.run_host_emulation(op, x, "forward"), op.forward(x)) <= 1e-5
    ae = nufft_cuda.run_host_emulation(op, y, "adjoint")
    assert rel_err(ae, op.adjoint(y)) <= 1e-5 and not ae[:, 2].any()
    big = (x * 1e36).astype(np.complex64)
    got = nufft_cuda.run_host_emulation(op, big, "forward")
    assert np.isfinite(got).all() and rel_err(got, op.forward(big)) <= 1e-5
    with pytest.raises(ValueError, match="Nufft.adjoint: input contains NaN or Inf"):
        nufft_cuda.run_host_emulation(op, np.full((63,), np.nan, np.complex64), "adjoint")
