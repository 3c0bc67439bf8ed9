"""Reliability of the native operators (issue #10): what used to crash, hang, exhaust memory or give
silent garbage, each pinned by a regression test.

* OpenMP teams smaller than asked (OMP_THREAD_LIMIT, OMP_DYNAMIC): every native operator, run in a
  subprocess with the variable set, gives the result of the normal run (forward bitwise; sums whose
  order depends on the team to rounding).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from isolated import run_python

# ---- OpenMP teams smaller than asked -----------------------------------------------------------------

def _openmp_worker(out_path: str, nthreads: int):
    """Runs every native operator with ``nthreads`` threads and saves the results (subprocess body)."""
    from recon.ct import ConeBeam3D, ParallelBeam2D
    from recon.mri.dcf import pipe_menon_dcf
    from recon.ops import Nufft, Projector

    rng = np.random.default_rng(0)
    res = {}
    # enough samples that the plan's sort runs threaded (a thread per 4096 + bins samples)
    for name, N, dt in (("2d", (32, 32), "complex64"), ("3d", (8, 10, 12), "complex128")):
        coord = (rng.random((20000, len(N))) - 0.5) * np.asarray(N)
        op = Nufft(coord, N, 1e-6 if dt == "complex64" else 1e-9, dtype=dt, nthreads=nthreads)
        x = (rng.standard_normal((2,) + N) + 1j * rng.standard_normal((2,) + N)).astype(dt)
        y = (rng.standard_normal((2, 20000)) + 1j * rng.standard_normal((2, 20000))).astype(dt)
        res[f"nufft{name}-forward"] = op.forward(x)
        res[f"nufft{name}-adjoint"] = op.adjoint(y)
        res[f"nufft{name}-normal"] = op.normal(x)
        res[f"nufft{name}-toeplitz-w"] = op.toeplitz(np.linspace(0.5, 1.5, 20000)).forward(x)
        if name == "2d":
            res["dcf"] = pipe_menon_dcf(coord, N, iterations=3, nthreads=nthreads)
    geoms = {"parallel": ParallelBeam2D(np.linspace(0, np.pi, 9, endpoint=False), 24, 1.0, (16, 17)),
             "cone": ConeBeam3D(np.linspace(0, 2 * np.pi, 6, endpoint=False), (12, 16), (1.0, 1.0), 40.0, 20.0,
                                (8, 9, 10))}
    for name, g in geoms.items():
        P = Projector(g, nthreads=nthreads)
        x = rng.random((2,) + g.image_shape).astype(np.float32)
        y = rng.random((2,) + g.sino_shape).astype(np.float32)
        res[f"ct-{name}-forward"] = P.forward(x)
        res[f"ct-{name}-adjoint"] = P.adjoint(y)
    np.savez(out_path, **res)


def _run_worker(tmp_path, env_extra: dict, nthreads: int, tag: str) -> dict:
    out = tmp_path / f"{tag}.npz"
    code = f"import test_reliability_native as t; t._openmp_worker({str(out)!r}, {nthreads})"
    proc = run_python(code, 120, drop=("OMP_THREAD_LIMIT", "OMP_DYNAMIC", "OMP_NUM_THREADS", "RECON_NUM_THREADS"),
                      **env_extra)
    assert proc.returncode == 0, f"{env_extra}: exit code {proc.returncode}\n{proc.stderr[-3000:]}"
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def _rel(a, b) -> float:
    a = a.astype(np.complex128)
    b = b.astype(np.complex128)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("env,nthreads", [({"OMP_THREAD_LIMIT": "1"}, 2), ({"OMP_THREAD_LIMIT": "3"}, 4),
                                          ({"OMP_DYNAMIC": "true"}, 4)],
                         ids=["thread_limit1-n2", "thread_limit3-n4", "dynamic-n4"])
def test_smaller_openmp_team_than_asked(tmp_path, env, nthreads):
    """Used to segfault in the plan's threaded sort, which assumed a team of exactly nthreads."""
    ref = _run_worker(tmp_path, {}, nthreads, "ref")
    got = _run_worker(tmp_path, env, nthreads, "got")
    assert sorted(got) == sorted(ref)
    for k in ref:
        single = ref[k].dtype in (np.complex64, np.float32)
        if k.endswith("forward"):  # one output element per thread-independent sum: bitwise
            assert np.array_equal(got[k], ref[k]), k
        else:  # summation order follows the team
            assert _rel(got[k], ref[k]) <= (1e-6 if single else 1e-13), k


# ---- thread counts far above the cores ---------------------------------------------------------------

def _small_nufft_inputs():
    rng = np.random.default_rng(1)
    return (rng.random((30, 2)) - 0.5) * 8


@pytest.mark.parametrize("nthreads", [10**6, 60000, 2**31, 2**70, 0, -3, 2.0, True])
def test_thread_count_above_the_cap_is_refused(nthreads):
    """Used to segfault (1e6) or abort (6e4) inside libgomp, or raise pybind's TypeError (2**31)."""
    from recon.ct import ParallelBeam2D
    from recon.ops import Nufft, Projector

    with pytest.raises(ValueError, match="nthreads must be a positive integer"):
        Nufft(_small_nufft_inputs(), (8, 8), 1e-3, nthreads=nthreads)
    with pytest.raises(ValueError, match="nthreads must be a positive integer"):
        Projector(ParallelBeam2D(np.linspace(0, np.pi, 4), 12, 1.0, (8, 8)), nthreads=nthreads)


def test_thread_count_numpy_integer_and_the_cap_itself():
    from recon.ops import Nufft
    from recon.ops.backend import max_threads

    cap = max_threads()
    assert cap == 4 * (os.cpu_count() or 1)
    assert Nufft(_small_nufft_inputs(), (8, 8), 1e-3, nthreads=np.int64(2)).nthreads == 2
    assert Nufft(_small_nufft_inputs(), (8, 8), 1e-3, nthreads=cap).nthreads == cap


def test_core_refuses_absurd_thread_counts_itself():
    """A direct recon._core call cannot reach libgomp with an absurd team size either."""
    from recon import _core
    from recon.ct import ParallelBeam2D
    from recon.ops import Projector

    coord = np.ascontiguousarray(_small_nufft_inputs())
    for n in (10**6, 2**31, -1):
        with pytest.raises(ValueError, match=r"nthreads must lie in \[1, "):
            _core.NufftPlan64(coord, [8, 8], 1e-3, 2.0, n)
        with pytest.raises(ValueError, match=r"nthreads must lie in \[1, "):
            _core.all_finite(np.ones(4, np.float32), n)
    P = Projector(ParallelBeam2D(np.linspace(0, np.pi, 4), 12, 1.0, (8, 8)), nthreads=1)
    x, y = np.ones((8, 8), np.float32), np.ones((4, 12), np.float32)
    with pytest.raises(ValueError, match=r"nthreads must lie in \[1, "):
        P._plan.forward(x, np.empty((4, 12), np.float32), 10**6)
    with pytest.raises(ValueError, match=r"nthreads must lie in \[1, "):
        P._plan.adjoint(y, np.empty((8, 8), np.float32), 2**40)
    q, out = np.ones((2, 1, 5)), np.zeros((1, 3, 3))
    with pytest.raises(ValueError, match=r"nthreads must lie in \[1, "):
        _core.ct_backproject_projective(q, np.ones((2, 3, 4)), np.ones(2), np.zeros(3), np.ones(3), out, 10**6)
    with pytest.raises(ValueError, match=r"nthreads must lie in \[1, "):
        _core.ct_backproject_arc2d(np.ones((2, 5)), np.ones((2, 2)), np.ones((2, 4)), 0.1, 2.0, np.ones(2),
                                   np.zeros(2), np.ones(2), np.zeros((3, 3)), 10**6)


def test_environment_thread_count_is_clamped_with_a_warning():
    """RECON_NUM_THREADS=200000 used to segfault in libgomp: now clamped to the cap, with a warning."""
    code = ("import warnings, numpy as np; from recon.ops import Nufft; from recon.ops.backend import max_threads\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    op = Nufft((np.random.default_rng(0).random((2000, 2)) - 0.5) * 16, (16, 16), 1e-3)\n"
            "assert op.nthreads == max_threads(), op.nthreads\n"
            "assert any('exceeds the cap' in str(m.message) for m in w), [str(m.message) for m in w]\n"
            "op.adjoint(op.forward(np.ones((16, 16), np.complex64)))\n")
    for var in ("RECON_NUM_THREADS", "OMP_NUM_THREADS"):
        proc = run_python(code, drop=("RECON_NUM_THREADS",), **{var: "200000"})
        assert proc.returncode == 0, f"{var}: exit {proc.returncode}\n{proc.stderr[-2000:]}"


# ---- huge image shapes: refused at once ------------------------------------------------------------

def _smooth_brute_force(N, sigma, w):
    n = max(math.ceil(sigma * N), 2 * w)
    n += n & 1
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 2


def test_fine_grid_size_is_the_smallest_even_smooth_size():
    from recon import _core

    rng = np.random.default_rng(3)
    for N in list(range(1, 300)) + rng.integers(300, 10**6, 300).tolist():
        for sigma, w in ((2.0, 7), (1.25, 5), (1.5, 16), (3.0, 2)):
            assert _core.fine_grid_size(int(N), sigma, w) == _smooth_brute_force(int(N), sigma, w), (N, sigma, w)
    assert _core.fine_grid_size(2**29, 2.0, 7) == 2**30      # the largest fine grid
    assert _core.fine_grid_size(3**18, 1.25, 6) == _smooth_brute_force(3**18, 1.25, 6)


@pytest.mark.parametrize("N", [2**62, 2**40, 2**29 + 1])
def test_fine_grid_size_beyond_the_limit_raises(N):
    """2**62 used to overflow (returned 16); 2**40 searched linearly for minutes."""
    from recon import _core

    with pytest.raises(ValueError, match=r"fine grid too large.*2\^30"):
        _core.fine_grid_size(N, 2.0, 7)


def test_huge_image_shape_is_refused_at_once():
    """Nufft(np.zeros((5, 2)), (2**40, 4)) used to run > 40 s holding the GIL (no Ctrl-C)."""
    code = ("import numpy as np; from recon.ops import Nufft\n"
            "for shape in [(2**40, 4), (2**29 + 1, 4), (4, 2**31), (2**62, 2**62)]:\n"
            "    try:\n"
            "        Nufft(np.zeros((5, 2), 'f4'), shape)\n"
            "    except ValueError as e:\n"
            "        assert 'too large' in str(e), e\n"
            "    else:\n"
            "        raise AssertionError(shape)\n")
    proc = run_python(code, 30)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("shape,error", [((8.5, 8), TypeError), ((8, True), TypeError), (8, TypeError),
                                         ((8,), ValueError), ((8, 0), ValueError), ((2, 2, 2, 2), ValueError)])
def test_bad_image_shape(shape, error):
    from recon.ops import Nufft

    with pytest.raises(error, match="im_shape"):
        Nufft(np.zeros((5, 2)), shape)


# ---- numpy scalars as arguments --------------------------------------------------------------------

def test_numpy_scalars_are_accepted():
    """tol=np.float32(1e-3) used to be refused ("tol must lie in (0, 1), got 0.0010...")."""
    from recon.ops import Nufft

    coord = _small_nufft_inputs()
    ref = Nufft(coord, (8, 8), 1e-3, upsampfac=2.0, nthreads=2)
    for tol in (np.float32(1e-3), np.float64(1e-3)):
        op = Nufft(coord.reshape(1, 30, 2), (np.int64(8), np.int32(8)), tol, upsampfac=np.float32(2.0),
                   nthreads=np.int32(2), frame_ndim=np.int64(1), check_finite=np.bool_(True))
        assert op.tol == pytest.approx(1e-3) and op.upsampfac == 2.0 and op.nthreads == 2
        x = np.ones((1, 8, 8), np.complex64)
        assert np.array_equal(op.forward(x)[0], ref.forward(x[0]))


@pytest.mark.parametrize("kw,error,match", [
    ({"tol": "1e-3"}, TypeError, "tol must be a real number"),
    ({"tol": 1e-3 + 0j}, TypeError, "tol must be a real number"),
    ({"upsampfac": "2"}, TypeError, "upsampfac must be a real number"),
    ({"frame_ndim": 0.5}, TypeError, "frame_ndim must be an integer"),
    ({"dtype": "complex32"}, TypeError, "dtype must be complex64 or complex128"),
    ({"dtype": object}, TypeError, "dtype must be complex64 or complex128"),
])
def test_argument_types_are_named(kw, error, match):
    from recon.ops import Nufft

    with pytest.raises(error, match=match):
        Nufft(_small_nufft_inputs(), (8, 8), **kw)


# ---- Toeplitz weights are checked like data -----------------------------------------------------------

@pytest.mark.parametrize("bad,error,match", [
    ("nan", ValueError, "weights contain NaN or Inf"), ("inf", ValueError, "weights contain NaN or Inf"),
    ("shape", ValueError, "do not broadcast to the samples"), ("object", TypeError, "real or complex numbers"),
    ("string", TypeError, "real or complex numbers"),
])
def test_toeplitz_weights_checked(bad, error, match):
    """NaN weights used to give an all-NaN normal operator silently."""
    from recon.ops import Nufft

    op = Nufft(_small_nufft_inputs().reshape(3, 10, 2), (8, 8), 1e-3)
    w = np.ones((3, 10))
    if bad in ("nan", "inf"):
        w[1, 2] = float(bad)
    elif bad == "shape":
        w = np.ones((3, 9))
    elif bad == "object":
        w = w.astype(object)
    else:
        w = np.full((3, 10), "a")
    with pytest.raises(error, match=match):
        op.toeplitz(w)
    ok = op.toeplitz(np.ones(10, bool))  # booleans (a sampling mask) broadcast over the spokes
    x = np.ones((8, 8), np.complex64)
    assert np.isfinite(ok.forward(x)).all()


# ---- extreme magnitudes ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def magnitude_ops():
    from recon.ops import Nufft

    rng = np.random.default_rng(4)
    N = (12, 10)
    coord = (rng.random((3, 150, 2)) - 0.5) * np.asarray(N)
    x = rng.standard_normal((2,) + N) + 1j * rng.standard_normal((2,) + N)
    y = rng.standard_normal((2, 3, 150)) + 1j * rng.standard_normal((2, 3, 150))
    return Nufft(coord, N, 1e-4), Nufft(coord, N, 1e-10, dtype="complex128"), x, y


@pytest.mark.parametrize("scale", [1e36, 1e-36, 1e37, 3e37, 1e-30, 1e20, 1e-20, 1e-39, 1e-41, 1.5e38])
@pytest.mark.parametrize("method", ["forward", "adjoint", "normal", "toeplitz-w"])
def test_extreme_magnitudes_complex64(magnitude_ops, scale, method):
    """x1e36 used to give inf (adjoint) and NaN (normal) although the result fits in float32."""
    import torch

    A, A128, x, y = magnitude_ops
    base = y if method == "adjoint" else x
    arg = base * (scale / np.abs(base.view(np.float64)).max())   # largest |real| or |imag| part: scale
    if method == "toeplitz-w":
        w = np.linspace(0.5, 2.0, 150)
        f, f128 = A.toeplitz(w).forward, A128.toeplitz(w).forward
    else:
        f, f128 = getattr(A, method), getattr(A128, method)
    a64 = arg.astype(np.complex64)
    before = a64.copy()
    ref = f128(a64.astype(np.complex128))   # complex128: no overflow at these magnitudes
    if np.abs(ref.view(np.float64)).max() > np.finfo(np.float32).max:  # the true result does not fit
        with pytest.raises(ValueError, match="exceeds the range of complex64"):
            f(a64)
        return
    got = f(a64)
    assert np.array_equal(a64, before)     # the input is not written over
    assert np.isfinite(got).all() and np.abs(got).max() > 0
    # relative 1e-4, plus the spacing of float32 subnormals (1.4e-45) for results below 1e-38
    bound = 1e-4 * np.linalg.norm(ref) + 4 * 2.0**-149 * np.sqrt(ref.size)
    assert np.linalg.norm(got - ref) <= bound
    gt = f(torch.from_numpy(a64))
    assert np.linalg.norm(gt.numpy() - ref) <= bound


def test_result_beyond_the_dtype_range_is_an_error(magnitude_ops):
    A, _, _, y = magnitude_ops
    big = (y * 3e38 / np.abs(y).max()).astype(np.complex64)   # every sample near the float32 maximum
    with pytest.raises(ValueError, match="exceeds the range of complex64.*use complex128"):
        A.adjoint(big)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_message_names_the_method(magnitude_ops, bad):
    A, _, x, y = magnitude_ops
    xb = x.astype(np.complex64)
    xb[1, 2, 3] = bad
    for method, arg in (("forward", xb), ("normal", xb)):
        with pytest.raises(ValueError, match=f"Nufft.{method}: input contains NaN or Inf"):
            getattr(A, method)(arg)
    yb = y.astype(np.complex64)
    yb[0, 1, 2] = complex(0, bad)
    with pytest.raises(ValueError, match="Nufft.adjoint: input contains NaN or Inf"):
        A.adjoint(yb)


# ---- memory: estimated and refused before allocating -------------------------------------------------

@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer's shadow memory and quarantine make the peak RSS meaningless")
def test_huge_plan_refused_before_allocating():
    """(100000, 100000) with 200 points used to build a 0.5-4 GB plan, (300000, 300000) 6.7 GB, and the
    first apply asked numpy for 74.5 GiB. Now both are refused at once and the process stays small."""
    code = ("import numpy as np; from recon.ops import Nufft\n"
            "for shape in [(100000, 100000), (300000, 300000), (3000, 3000, 3000)]:\n"
            "    try:\n"
            "        Nufft(np.zeros((200, len(shape))), shape, 1e-3)\n"
            "    except ValueError as e:\n"
            "        assert 'needs about' in str(e) and 'fine grid' in str(e), e\n"
            "    else:\n"
            "        raise AssertionError(shape)\n"
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n")
    proc = run_python(code, RECON_MAX_MEMORY="2G")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) < 400 * 1024  # peak RSS (VmHWM, KiB; ru_maxrss survives exec): no plan


def test_explicit_memory_limit():
    from recon.ops import Nufft

    coord = (np.random.default_rng(5).random((500, 2)) - 0.5) * 64
    with pytest.raises(ValueError, match=r"Nufft: a plan for im_shape \(64, 64\) with 500 samples \(fine grid "
                                         r"128 x 128\) needs about .* \(max_memory\)"):
        Nufft(coord, (64, 64), 1e-6, upsampfac=2.0, max_memory=100e3)
    op = Nufft(coord, (64, 64), 1e-6, max_memory=2e6)
    op.forward(np.ones((64, 64), np.complex64))
    with pytest.raises(ValueError, match=r"Nufft.forward of 40 transforms needs about .* \(max_memory\)"):
        op.forward(np.ones((40, 64, 64), np.complex64))
    with pytest.raises(ValueError, match=r"Nufft.adjoint of 40 transforms"):
        op.adjoint(np.ones((40, 500), np.complex64))
    with pytest.raises(ValueError, match="max_memory must be a positive"):
        Nufft(coord, (64, 64), max_memory=0)


def test_memory_limit_from_the_environment(monkeypatch):
    from recon.ops import Nufft
    from recon.ops.nufft import memory_limit

    coord = (np.random.default_rng(5).random((500, 2)) - 0.5) * 64
    monkeypatch.setenv("RECON_MAX_MEMORY", "100k")
    assert memory_limit() == (100 * 1024, "RECON_MAX_MEMORY")
    with pytest.raises(ValueError, match=r"needs about .* \(RECON_MAX_MEMORY\)"):
        Nufft(coord, (64, 64))
    monkeypatch.setenv("RECON_MAX_MEMORY", "2GiB")
    assert memory_limit(1e6) == (1e6, "max_memory")
    assert memory_limit()[0] <= 2 * 1024**3
    monkeypatch.setenv("RECON_MAX_MEMORY", "lots")
    with pytest.raises(ValueError, match="RECON_MAX_MEMORY='lots' is not a positive size"):
        Nufft(coord, (64, 64))


def test_core_plan_memory_estimate_and_limit():
    from recon import _core

    est = _core.NufftPlan64.memory_estimate(1000, [64, 64], 1e-3, 2.0, 1)
    assert est["grid"] >= 128 * 128 * 8 and est["plan"] >= 1000 * (8 + 2 * 8)
    assert _core.NufftPlan64.memory_estimate(2000, [64, 64], 1e-3, 2.0, 1)["plan"] > est["plan"]
    coord = np.zeros((1000, 2))
    with pytest.raises(ValueError, match="more than the limit of 9.77 KiB"):
        _core.NufftPlan64(coord, [64, 64], 1e-3, max_memory=10e3)
    with pytest.raises(ValueError, match="max_memory must be a finite number"):
        _core.NufftPlan64(coord, [64, 64], 1e-3, max_memory=-1.0)
    _core.NufftPlan64(coord, [64, 64], 1e-3, max_memory=est["plan"] + est["grid"])
    with pytest.raises(ValueError, match="upsampfac must lie"):
        _core.NufftPlan64.memory_estimate(10, [8, 8], 1e-3, 5.0)


def test_toeplitz_memory_limit():
    from recon.ops import Nufft

    coord = (np.random.default_rng(5).random((500, 2)) - 0.5) * 64
    op = Nufft(coord, (64, 64), 1e-6, max_memory=1.5e6)
    with pytest.raises(ValueError, match=r"Nufft.toeplitz: the kernels of 1 frame\(s\) on the 2N grid \(128, 128\) "
                                         r"needs about .* \(max_memory\)"):
        op.normal(np.ones((64, 64), np.complex64))
    op = Nufft(coord, (64, 64), 1e-6, max_memory=6e6)
    op.normal(np.ones((64, 64), np.complex64))
    with pytest.raises(ValueError, match=r"Nufft.normal of 20 images needs about"):
        op.normal(np.ones((20, 64, 64), np.complex64))


# ---- the CT projector at extreme magnitudes ----------------------------------------------------------

def test_projector_result_beyond_float32_is_an_error():
    """Line integrals of 1e38 used to come back as Inf silently; 1e-38 and 1e36 stay accurate."""
    from recon.ct import ConeBeam3D, ParallelBeam2D
    from recon.ops import Projector

    rng = np.random.default_rng(6)
    for g in (ParallelBeam2D(np.linspace(0, np.pi, 7, endpoint=False), 12, 1.0, (8, 8)),
              ConeBeam3D(np.linspace(0, 2 * np.pi, 4, endpoint=False), (8, 12), (1.0, 1.0), 40.0, 20.0, (4, 6, 6))):
        P, P64 = Projector(g, nthreads=2), Projector(g, dtype="float64", nthreads=2)
        x, y = rng.standard_normal(g.image_shape), rng.standard_normal(g.sino_shape)
        with pytest.raises(ValueError, match="JosephProjector.forward: .*exceeds the range of float32"):
            P.forward(np.full(g.image_shape, 1e38, np.float32))
        with pytest.raises(ValueError, match="JosephProjector.adjoint: .*exceeds the range of float32"):
            P.adjoint(np.full(g.sino_shape, 3e38, np.float32))
        for s in (1e36, 1e-38):
            for method, a in (("forward", x), ("adjoint", y)):
                a32 = (a * s).astype(np.float32)
                got, ref = getattr(P, method)(a32), getattr(P64, method)(a32.astype(np.float64))
                assert np.linalg.norm(got - ref) <= 1e-5 * np.linalg.norm(ref), (method, s)
