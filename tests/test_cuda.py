"""The CUDA module recon._cuda and the GPU path of recon.ops.Nufft (recon/ops/nufft_cuda.py).

Without a GPU (CI): the module's presence when the build was expected to produce it
(RECON_EXPECT_CUDA_MODULE=1), its device queries, argument checks, and the host emulation
(recon._cuda.HostNufftPlan*: the kernels' per-element code in host loops, driven by the same
Python orchestration as the GPU) against the CPU plan, a direct NUDFT and the dot test.
With a GPU (tests marked ``gpu``): CUDA vs CPU, dot test, gradcheck, cupy and torch inputs, plan
reuse, streams, chunking, bad pointers.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import recon
from recon import _core
from harness import ADJOINT_BOUND, nudft_adjoint, nudft_forward, random_coord, rel_err
from recon.ops import nufft_cuda
from recon.ops.nufft import Nufft

try:
    from recon import _cuda
except ImportError as exc:  # not built (no nvcc at build time, or RECON_CUDA=OFF)
    _cuda = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = ""

needs_module = pytest.mark.skipif(_cuda is None, reason=f"recon._cuda not built ({_IMPORT_ERROR})")

# float32 results differ from the CPU by rounding only (same weights; other summation order)
GPU_RTOL = {"complex64": 1e-5, "complex128": 1e-12}


def _data(rng, shape, dtype):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


# ---- without a GPU ------------------------------------------------------------------------------------

def test_import_recon_and_cuda_available_without_gpu():
    assert isinstance(recon.cuda_available(), bool)
    assert isinstance(nufft_cuda.is_available(), bool)


def test_module_built_when_expected():
    if os.environ.get("RECON_EXPECT_CUDA_MODULE") != "1":
        pytest.skip("RECON_EXPECT_CUDA_MODULE is not 1 (set it where nvcc was present at build time)")
    assert _cuda is not None, f"recon._cuda was expected (nvcc present at build time) but: {_IMPORT_ERROR}"
    assert hasattr(_cuda, "NufftPlan64") and hasattr(_cuda, "HostNufftPlan128")


@needs_module
def test_device_queries():
    n = _cuda.device_count()
    assert isinstance(n, int) and n >= 0
    assert _cuda.runtime_version() >= 12000
    assert isinstance(_cuda.architectures, str) and _cuda.architectures
    status = _cuda.device_status()
    assert (status == "") == (n > 0)
    assert recon.cuda_available() == (n > 0)
    with pytest.raises(ValueError, match="does not exist"):
        _cuda.device_name(n)


def _op(rng, im_shape, M, tol, dtype, **kw):
    return Nufft(random_coord(rng, M, im_shape), im_shape, tol, dtype=dtype, nthreads=1, **kw)


@needs_module
def test_device_plan_without_device_raises(rng):
    if _cuda.device_count() > 0:
        pytest.skip("a CUDA device is visible")
    op = _op(rng, (8, 8), 20, 1e-3, "complex64")
    with pytest.raises(ValueError, match="does not exist"):
        _cuda.NufftPlan64(device=0, **nufft_cuda.plan_arguments(op, 0))


EMULATION_CASES = [
    # im_shape, M, tol, dtype, batch
    ((16, 20), 300, 1e-6, "complex64", (3,)),
    ((15, 9), 250, 1e-3, "complex64", ()),
    ((33, 17), 400, 1e-9, "complex128", (2,)),
    ((9, 12, 10), 300, 1e-3, "complex128", (2,)),
    ((7, 8, 11), 200, 1e-5, "complex64", ()),
]


@needs_module
@pytest.mark.parametrize("method", ["auto", "sm", "gm"])
@pytest.mark.parametrize("im_shape,M,tol,dtype,batch", EMULATION_CASES)
def test_emulation_matches_cpu_plan(rng, im_shape, M, tol, dtype, batch, method):
    """Same weights, same pipeline: equal to the CPU plan up to rounding (sorted order differs)."""
    op = _op(rng, im_shape, M, tol, dtype)
    x = _data(rng, batch + im_shape, dtype)
    y = _data(rng, batch + (M,), dtype)
    # small bins and sub-problems exercise partial last bins, wrap-around tiles and bin splitting
    bins = [5] * len(im_shape) if method == "sm" else None
    with nufft_cuda.using(spread_method=method, bin_shape=bins, max_subproblem=7):
        ye = nufft_cuda.run_host_emulation(op, x, "forward")
        xe = nufft_cuda.run_host_emulation(op, y, "adjoint")
        plan = nufft_cuda.device_plans(op, nufft_cuda._HostBackend(), -1)[0]
    if method != "auto":
        assert plan.spread_method == method
    assert ye.shape == batch + (M,) and ye.dtype == dtype
    assert xe.shape == batch + im_shape and xe.dtype == dtype
    assert rel_err(ye, op.forward(x)) < GPU_RTOL[dtype]
    assert rel_err(xe, op.adjoint(y)) < GPU_RTOL[dtype]


@needs_module
@pytest.mark.parametrize("im_shape,dtype,tol", [((12, 10), "complex128", 1e-8), ((6, 7, 8), "complex128", 1e-6),
                                                ((10, 11), "complex64", 1e-4)])
def test_emulation_matches_nudft(rng, im_shape, dtype, tol):
    M = 150
    coord = random_coord(rng, M, im_shape)
    coord[:4] = np.asarray(im_shape) / 2 * np.array([[1], [-1], [1], [-1]])  # the edges +-N/2
    op = Nufft(coord, im_shape, tol, dtype=dtype, nthreads=1)
    x = _data(rng, im_shape, dtype)
    y = _data(rng, (M,), dtype)
    ye = nufft_cuda.run_host_emulation(op, x, "forward")
    xe = nufft_cuda.run_host_emulation(op, y, "adjoint")
    assert rel_err(ye, nudft_forward(x, coord, im_shape)) < 10 * tol
    assert rel_err(xe, nudft_adjoint(y, coord, im_shape)) < 10 * tol


@needs_module
@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("method", ["sm", "gm"])
@pytest.mark.parametrize("im_shape", [(14, 9), (6, 9, 7)])
def test_emulation_dot_test(rng, dtype, method, im_shape):
    op = _op(rng, im_shape, 120, 1e-4, dtype)
    x = _data(rng, im_shape, dtype)
    y = _data(rng, (120,), dtype)
    with nufft_cuda.using(spread_method=method):
        ax = nufft_cuda.run_host_emulation(op, x, "forward")
        ahy = nufft_cuda.run_host_emulation(op, y, "adjoint")
    err = abs(np.vdot(ax, y) - np.vdot(x, ahy)) / (np.linalg.norm(ax) * np.linalg.norm(y))
    assert err < ADJOINT_BOUND[dtype]


@needs_module
def test_emulation_frames_and_empty(rng):
    im_shape = (10, 12)
    coord = np.stack([random_coord(rng, 50, im_shape) for _ in range(3)])  # (3, 50, 2): 3 frames
    op = Nufft(coord, im_shape, 1e-5, dtype="complex128", frame_ndim=1, nthreads=1)
    x = _data(rng, (2, 3) + im_shape, "complex128")  # (coils, frames, *N)
    y = _data(rng, (2, 3, 50), "complex128")
    assert rel_err(nufft_cuda.run_host_emulation(op, x, "forward"), op.forward(x)) < 1e-12
    assert rel_err(nufft_cuda.run_host_emulation(op, y, "adjoint"), op.adjoint(y)) < 1e-12
    # a plan without samples (Nufft itself needs M >= 1): spreading gives zeros, no crash
    args = dict(nufft_cuda.plan_arguments(op, 0), coord=np.zeros((0, 2)))
    plan = _cuda.HostNufftPlan128(**args)
    grid = np.ones(op.grid_shape, np.complex128)
    plan.spread(np.zeros(0, np.complex128), grid)
    assert plan.num_points == 0 and not np.any(grid)
    plan.interpolate(grid, np.zeros(0, np.complex128))


@needs_module
def test_emulation_chunked_batches(rng):
    op = _op(rng, (12, 12), 80, 1e-4, "complex64")
    x = _data(rng, (5, 12, 12), "complex64")
    y = _data(rng, (5, 80), "complex64")
    grid_bytes = int(np.prod(op.grid_shape)) * 8 * 2  # two batch items per chunk: chunks of 2, 2, 1
    with nufft_cuda.using(grid_bytes=grid_bytes):
        assert rel_err(nufft_cuda.run_host_emulation(op, x, "forward"), op.forward(x)) < 1e-5
        assert rel_err(nufft_cuda.run_host_emulation(op, y, "adjoint"), op.adjoint(y)) < 1e-5


@needs_module
@pytest.mark.parametrize("im_shape", [(20, 14), (9, 10, 12)])
def test_emulation_sort(rng, im_shape):
    """Samples sorted by bin: a permutation, bins non-decreasing, each sample in its bin (bin of the
    stencil start ceil(u - w/2) mod n, computed here independently)."""
    M = 200
    op = _op(rng, im_shape, M, 1e-4, "complex64")
    with nufft_cuda.using(bin_shape=[4] * len(im_shape), spread_method="gm"):
        plan = nufft_cuda.device_plans(op, nufft_cuda._HostBackend(), -1)[0].plan
    order = np.asarray(plan.order)
    offsets = np.asarray(plan.bin_offsets)
    assert sorted(order.tolist()) == list(range(M))
    n = np.asarray(op.grid_shape)
    N = np.asarray(im_shape)
    w = op.width
    start = np.ceil(op._coord[0] * n / N - w / 2).astype(np.int64) % n
    nb = -(-n // 4)
    bins = np.ravel_multi_index(tuple((start // 4).T), tuple(nb))
    assert offsets[0] == 0 and offsets[-1] == M and np.all(np.diff(offsets) >= 0)
    for b in np.unique(bins):
        assert set(order[offsets[b]:offsets[b + 1]].tolist()) == set(np.flatnonzero(bins == b).tolist())


@needs_module
def test_bin_choice_falls_back_to_global_atomics(rng):
    """A 3D double-precision wide kernel: its tile does not fit 48 KiB of shared memory (-> "gm"),
    but fits 227 KiB (-> "sm", smaller bins)."""
    op = _op(rng, (16, 16, 16), 30, 1e-11, "complex128")
    args = nufft_cuda.plan_arguments(op, 0)
    small = _cuda.HostNufftPlan128(smem_bytes=48 * 1024, **args)
    large = _cuda.HostNufftPlan128(smem_bytes=227 * 1024, **args)
    assert small.spread_method == "gm"
    assert large.spread_method == "sm"
    w = op.width
    assert np.prod([b + w - 1 for b in large.bin_shape]) * 16 <= 227 * 1024
    args["spread_method"] = "sm"
    with pytest.raises(ValueError, match="shared memory"):
        _cuda.HostNufftPlan128(smem_bytes=48 * 1024, **args)


@needs_module
def test_plan_argument_checks(rng):
    op = _op(rng, (8, 10), 20, 1e-3, "complex64")
    good = nufft_cuda.plan_arguments(op, 0)
    for key, bad, exc in [
        ("coord", np.full((20, 2), 100.0), ValueError),          # outside [-N/2, N/2]
        ("coord", np.full((20, 2), np.nan), ValueError),
        ("coord", np.zeros((20, 3)), ValueError),                 # wrong d
        ("horner", np.zeros((3, good["width"] + 1)), ValueError),
        ("deconv", good["deconv"][:1], ValueError),
        ("grid_shape", [4, 4], ValueError),                       # < 2 w and < N
        ("spread_method", "fast", ValueError),
        ("scale", float("nan"), ValueError),
        ("max_subproblem", 0, ValueError),
    ]:
        args = dict(good, **{key: bad})
        with pytest.raises(exc):
            _cuda.HostNufftPlan64(**args)
    plan = _cuda.HostNufftPlan64(**good)
    with pytest.raises(TypeError):
        plan.pad(np.zeros((8, 10), np.complex128), np.zeros(op.grid_shape, np.complex64))
    with pytest.raises(ValueError):
        plan.pad(np.zeros((8, 9), np.complex64), np.zeros(op.grid_shape, np.complex64))
    with pytest.raises(ValueError):
        plan.interpolate(np.zeros(op.grid_shape, np.complex64), np.zeros(21, np.complex64))


# ---- with a GPU ---------------------------------------------------------------------------------------

@pytest.fixture(params=["cupy", "torch"])
def gpu(request):
    """(to_device, to_numpy, library) for one GPU array library; skips when it is not usable."""
    if request.param == "cupy":
        cupy = pytest.importorskip("cupy", reason="cupy not installed")
        return (lambda a: cupy.asarray(a)), (lambda a: cupy.asnumpy(a)), cupy
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device (CPU build of torch)")
    return (lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()), (lambda a: a.detach().cpu().numpy()), torch


GPU_CASES = [
    ((64, 48), 3000, 1e-6, "complex64", (4,)),
    ((33, 31), 2000, 1e-3, "complex64", ()),
    ((40, 40), 1500, 1e-10, "complex128", (2,)),
    ((24, 20, 18), 5000, 1e-6, "complex64", (3,)),
    ((15, 16, 17), 3000, 1e-9, "complex128", ()),
]


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["auto", "sm", "gm"])
@pytest.mark.parametrize("im_shape,M,tol,dtype,batch", GPU_CASES)
def test_gpu_matches_cpu(rng, gpu, im_shape, M, tol, dtype, batch, method):
    to_dev, to_np, _ = gpu
    op = _op(rng, im_shape, M, tol, dtype)
    x = _data(rng, batch + im_shape, dtype)
    y = _data(rng, batch + (M,), dtype)
    with nufft_cuda.using(spread_method=method):
        try:
            yg = op.forward(to_dev(x))
            xg = op.adjoint(to_dev(y))
        except ValueError as exc:
            if method == "sm" and "shared memory" in str(exc):
                pytest.skip(f"tile too large for this GPU's shared memory: {exc}")
            raise
    assert tuple(yg.shape) == batch + (M,) and tuple(xg.shape) == batch + im_shape
    assert rel_err(to_np(yg), op.forward(x)) < GPU_RTOL[dtype]
    assert rel_err(to_np(xg), op.adjoint(y)) < GPU_RTOL[dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("im_shape", [(50, 40), (20, 22, 18)])
def test_gpu_dot_test(rng, gpu, dtype, im_shape):
    to_dev, to_np, _ = gpu
    op = _op(rng, im_shape, 4000, 1e-5, dtype)
    x = _data(rng, im_shape, dtype)
    y = _data(rng, (4000,), dtype)
    ax = to_np(op.forward(to_dev(x)))
    ahy = to_np(op.adjoint(to_dev(y)))
    err = abs(np.vdot(ax, y) - np.vdot(x, ahy)) / (np.linalg.norm(ax) * np.linalg.norm(y))
    assert err < ADJOINT_BOUND[dtype]


@pytest.mark.gpu
def test_gpu_nudft(rng, gpu):
    to_dev, to_np, _ = gpu
    im_shape = (12, 14, 10)
    coord = random_coord(rng, 400, im_shape)
    op = Nufft(coord, im_shape, 1e-9, dtype="complex128")
    x = _data(rng, im_shape, "complex128")
    assert rel_err(to_np(op.forward(to_dev(x))), nudft_forward(x, coord, im_shape)) < 1e-8


@pytest.mark.gpu
def test_gpu_gradcheck():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    rng = np.random.default_rng(5)
    op = _op(rng, (6, 7), 30, 1e-10, "complex128")
    x = torch.from_numpy(_data(rng, (6, 7), "complex128")).cuda().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: op.forward(t), (x,))
    y = torch.from_numpy(_data(rng, (30,), "complex128")).cuda().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: op.adjoint(t), (y,))


@pytest.mark.gpu
def test_gpu_plan_reuse_and_frames(rng, gpu):
    to_dev, to_np, lib = gpu
    im_shape = (20, 24)
    coord = np.stack([random_coord(rng, 300, im_shape) for _ in range(2)])
    op = Nufft(coord, im_shape, 1e-6, dtype="complex64", frame_ndim=1)
    x = _data(rng, (3, 2) + im_shape, "complex64")
    first = to_np(op.forward(to_dev(x)))
    plans = dict(op.__dict__["_cuda_plans"])
    second = to_np(op.forward(to_dev(x)))
    assert op.__dict__["_cuda_plans"] == plans  # no new plan
    assert len(next(iter(plans.values()))) == 2  # one per frame
    assert rel_err(second, first) < 1e-6
    assert rel_err(first, op.forward(x)) < 1e-5


@pytest.mark.gpu
def test_gpu_stream_and_chunks(rng, gpu):
    to_dev, to_np, lib = gpu
    op = _op(rng, (32, 32), 2000, 1e-6, "complex64")
    x = _data(rng, (5, 32, 32), "complex64")
    y = _data(rng, (5, 2000), "complex64")
    stream = lib.cuda.Stream()  # a non-default stream of either library
    ctx = stream if lib.__name__ == "cupy" else lib.cuda.stream(stream)
    with ctx, nufft_cuda.using(grid_bytes=int(np.prod(op.grid_shape)) * 8 * 2):
        yg = op.forward(to_dev(x))
        xg = op.adjoint(to_dev(y))
        stream.synchronize()
    assert rel_err(to_np(yg), op.forward(x)) < 1e-5
    assert rel_err(to_np(xg), op.adjoint(y)) < 1e-5


@pytest.mark.gpu
def test_gpu_toeplitz_normal_torch(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    op = _op(rng, (24, 20), 1500, 1e-6, "complex64")
    x = _data(rng, (24, 20), "complex64")
    got = op.normal(torch.from_numpy(x).cuda()).cpu().numpy()
    assert rel_err(got, op.normal(x)) < 1e-5


@pytest.mark.gpu
def test_gpu_bad_input(rng, gpu):
    to_dev, to_np, _ = gpu
    op = _op(rng, (16, 16), 100, 1e-4, "complex64")
    x = _data(rng, (16, 16), "complex64")
    x[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        op.forward(to_dev(x))
    with pytest.raises(TypeError):
        op.forward(to_dev(x.astype(np.complex128)))
    plan = nufft_cuda.device_plans(op, nufft_cuda._backend_of(to_dev(x)), 0)[0]
    host = np.zeros((16, 16), np.complex64)
    grid = to_dev(np.zeros(op.grid_shape, np.complex64))
    grid_ptr = nufft_cuda._backend_of(grid).handle(grid.reshape(1, -1), 0, 1)
    with pytest.raises(ValueError, match="host pointer|not a CUDA pointer"):
        plan.pad(host.ctypes.data, grid_ptr, 1, 0)
    with pytest.raises(ValueError, match="null pointer"):
        plan.pad(0, grid_ptr, 1, 0)
    with pytest.raises(ValueError, match="aligned"):
        plan.pad(grid_ptr + 4, grid_ptr, 1, 0)


# ---- CT: the Joseph projector (recon/ops/projector_cuda.py, cuda/joseph_*.cu) -------------------------

def _ct_geometries():
    from recon.ct import ConeBeam3D, FanBeam2D, ParallelBeam2D

    a7 = np.linspace(0, 2 * np.pi, 7, endpoint=False) + 0.1
    return {
        "parallel": ParallelBeam2D(a7, 11, 0.9, (6, 7), (1.1, 0.8), det_offset=0.3),
        "fanflat": FanBeam2D(a7, 14, 1.0, 20.0, 10.0, "flat", (6, 7), 0.8, det_offset=-0.4),
        "fanarc": FanBeam2D(a7, 14, 1.0, 20.0, 10.0, "arc", (6, 7), 0.8, det_offset=0.5),
        "cone": ConeBeam3D(a7[:4], (8, 9), (1.0, 1.1), 20.0, 10.0, (4, 5, 6), (0.9, 0.8, 0.7),
                           det_offset=(0.3, -0.2)),
    }


CT_RTOL = {"float32": 1e-5, "float64": 1e-12}


@needs_module
@pytest.mark.parametrize("subsample", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["parallel", "fanflat", "fanarc", "cone"])
def test_joseph_emulation_matches_cpu_projector(rng, kind, dtype, subsample):
    """The GPU kernels' per-ray code (host loops) against the CPU projector: same weights; and the
    dot test of the emulated pair."""
    from recon.ops import Projector, projector_cuda

    op = Projector(_ct_geometries()[kind], dtype=dtype, subsample=subsample, nthreads=1)
    x = rng.standard_normal((2,) + op.ishape).astype(dtype)
    y = rng.standard_normal((2,) + op.oshape).astype(dtype)
    ye = projector_cuda.run_host_emulation(op, x, "forward")
    xe = projector_cuda.run_host_emulation(op, y, "adjoint")
    assert rel_err(ye, op.forward(x)) < CT_RTOL[dtype]
    assert rel_err(xe, op.adjoint(y)) < CT_RTOL[dtype]
    err = abs(np.vdot(ye, y) - np.vdot(x, xe)) / (np.linalg.norm(ye) * np.linalg.norm(y))
    assert err < ADJOINT_BOUND[dtype]


@needs_module
def test_joseph_argument_checks(rng):
    from recon.ops import Projector, projector_cuda

    op = Projector(_ct_geometries()["parallel"], dtype="float32", nthreads=1)
    good = projector_cuda.projector_arguments(op)
    for key, bad in [("kind", 7), ("vectors", good["vectors"][:, :4]), ("image_shape", [6, 7, 2]),
                     ("voxel_size", [0.0, 1.0]), ("det_shape", [0]), ("subsample", 0),
                     ("vectors", np.full_like(good["vectors"], np.nan))]:
        with pytest.raises(ValueError):
            _cuda.HostJosephProjectorF32(**dict(good, **{key: bad}))
    # one validation for the CPU and CUDA projectors (csrc/ct/spec.h): the same message for a
    # degenerate view
    degenerate = good["vectors"].copy()
    degenerate[1, :2] = 0.0
    for make in (lambda: _cuda.HostJosephProjectorF32(**dict(good, vectors=degenerate)),
                 lambda: _core.JosephProjector(good["kind"], degenerate, good["image_shape"], good["voxel_size"],
                                               good["det_shape"], good["subsample"])):
        with pytest.raises(ValueError, match="zero ray direction at view 1"):
            make()
    proj = _cuda.HostJosephProjectorF32(**good)
    with pytest.raises(TypeError):
        proj.forward(np.zeros(op.ishape), np.zeros(op.oshape, np.float32))
    with pytest.raises(ValueError):
        proj.forward(np.zeros((5, 7), np.float32), np.zeros(op.oshape, np.float32))
    with pytest.raises(TypeError):
        projector_cuda.run_host_emulation(op, np.zeros(op.ishape, np.float64), "forward")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["parallel", "fanflat", "fanarc", "cone"])
def test_gpu_joseph_matches_cpu_and_dot_test(rng, gpu, kind, dtype):
    from recon.ops import Projector, projector_cuda

    to_dev, to_np, _ = gpu
    op = Projector(_ct_geometries()[kind], dtype=dtype, subsample=2)
    x = rng.standard_normal((3,) + op.ishape).astype(dtype)
    y = rng.standard_normal((3,) + op.oshape).astype(dtype)
    yg = to_np(projector_cuda.run_on_gpu(op, to_dev(x), "forward"))
    xg = to_np(projector_cuda.run_on_gpu(op, to_dev(y), "adjoint"))
    assert rel_err(yg, op.forward(x)) < CT_RTOL[dtype]
    assert rel_err(xg, op.adjoint(y)) < CT_RTOL[dtype]
    err = abs(np.vdot(yg, y) - np.vdot(x, xg)) / (np.linalg.norm(yg) * np.linalg.norm(y))
    assert err < ADJOINT_BOUND[dtype]


@pytest.mark.gpu
def test_gpu_joseph_larger_and_bad_input(rng, gpu):
    from recon.ct import ParallelBeam2D
    from recon.ops import Projector, projector_cuda

    to_dev, to_np, _ = gpu
    geom = ParallelBeam2D(np.linspace(0, np.pi, 90, endpoint=False), 183, 1.0, (128, 128), 1.0)
    op = Projector(geom, dtype="float32")
    x = rng.standard_normal((2, 128, 128)).astype(np.float32)
    assert rel_err(to_np(projector_cuda.run_on_gpu(op, to_dev(x), "forward")), op.forward(x)) < 1e-5
    x[0, 3, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        projector_cuda.run_on_gpu(op, to_dev(x), "forward")
    proj = projector_cuda.device_projector(op, 0)
    with pytest.raises(ValueError, match="host pointer|not a CUDA pointer"):
        proj.forward(x.ctypes.data, x.ctypes.data, 1, 0)
