"""The MRI methods, coil maps, prewhitening, compression, DCF and the pipeline on torch tensors.

Each function takes numpy arrays or torch tensors and returns the kind of its k-space input, on its
device, computed there. Pinned here on CPU tensors: the result type, device and dtype; equality with
the numpy path to float32 rounding (relative l2, bounds ~5-10x the measured values in comments);
identical crop patterns and phase conventions (no phase alignment before comparing: the virtual body
coil and the compression matrix have a backend-independent phase); no host synchronisation per
solver iteration with ``tol=0``; inputs never written. GPU tests (marked ``gpu``, skipped without a
CUDA device) compare CUDA with CPU tensors.

Data: a textured phantom (48 x 40, 6 simulated coils, noise 0.01) on a random column mask with a
fully sampled centre; a golden-angle radial acquisition (40 spokes x 64 samples, 32 x 32 image).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastmri_data import simulate_coil_maps  # noqa: E402
from recon.mri import ReconConfig, RetrospectiveMask, coils, noise, reconstruct  # noqa: E402
from recon.mri import recon as R  # noqa: E402
from recon.mri.dcf import pipe_menon_dcf  # noqa: E402
from recon.mri.simulate import simulate_noncartesian, textured_phantom  # noqa: E402
from recon.mri.trajectory import radial_2d  # noqa: E402
from recon.ops import CartesianSense  # noqa: E402

SHAPE = (48, 40)
N_RAD = 32


def rel(got, ref) -> float:
    """Relative l2 difference of a tensor ``got`` from the numpy ``ref``."""
    assert isinstance(got, torch.Tensor), type(got)
    g = got.detach().cpu().numpy()
    return float(np.linalg.norm(g - ref) / np.linalg.norm(ref))


def T(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.fixture(scope="module")
def cart():
    rng = np.random.default_rng(0)
    x = textured_phantom(1, *SHAPE, seed=0)[0]
    maps = simulate_coil_maps(SHAPE, 6)
    k = CartesianSense(maps)(x).astype(np.complex64)
    k += (0.01 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))).astype(np.complex64)
    cols = rng.random(SHAPE[1]) < 0.35
    cols[SHAPE[1] // 2 - 6: SHAPE[1] // 2 + 6] = True
    ku = (k * cols).astype(np.complex64)
    return k, ku, coils.estimate_maps(ku)


@pytest.fixture(scope="module")
def radial():
    x = textured_phantom(1, N_RAD, N_RAD, seed=3)[0]
    maps = simulate_coil_maps((N_RAD, N_RAD), 4)
    coord = radial_2d(40, 2 * N_RAD, N_RAD)
    return simulate_noncartesian(x, maps, coord, 0.005, seed=4), coord


# ---- coil maps --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,kw,bound", [
    ("espirit", {}, 2e-5),                      # measured 1.8e-6 (eigen-grid 64 > image: every pixel)
    ("espirit", {"eig_grid": 16}, 2e-5),        # 1.1e-6: spline interpolation by matrices vs scipy
    ("lowres", {}, 3e-5),                       # 2.9e-6
    ("walsh", {}, 2e-5),                        # 1.1e-6
])
def test_maps_torch_equal_numpy(cart, method, kw, bound):
    _, ku, _ = cart
    ref = coils.estimate_maps(ku, method, **kw)
    got = coils.estimate_maps(T(ku), method, **kw)
    assert got.dtype == torch.complex64 and got.device.type == "cpu" and tuple(got.shape) == ref.shape
    # same phase convention (no alignment) and the same cropped pixels
    assert rel(got, ref) < bound
    assert torch.equal(got == 0, T(ref == 0))


def test_espirit_eigenvalues_and_3d_torch():
    ksp = np.fft.fftn(simulate_coil_maps((10, 16, 14), 4) * textured_phantom(1, 16, 14)[0][None, None], axes=(1, 2, 3))
    ksp = np.fft.fftshift(ksp, axes=(1, 2, 3)).astype(np.complex64)
    kw = dict(calib_width=10, kernel_width=4, eig_grid=8, return_eigenvalues=True, crop=0)
    ref_maps, ref_eig = coils.espirit_maps(ksp, **kw)
    maps, eig = coils.espirit_maps(T(ksp), **kw)
    assert eig.dtype == torch.float32 and maps.shape == ref_maps.shape
    assert rel(maps, ref_maps) < 1e-4 and rel(eig, ref_eig) < 1e-6   # measured 3.8e-6, 1.4e-7


def test_virtual_body_coil_phase_is_canonical(cart):
    """Entry 0 of the virtual body coil is real positive in both backends (LAPACKs leave its sign free)."""
    _, ku, _ = cart
    calib = ku[:, 12:36, 14:26]
    for v in (coils._virtual_body_coil(calib), coils._virtual_body_coil(T(calib))):
        v = np.asarray(v)
        assert abs(v[0].imag) < 1e-15 and v[0].real > 0 and abs(np.linalg.norm(v) - 1) < 1e-12
    # any phase in gives the canonical one out; entry 0 near zero: the largest entry is made real positive
    v = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 3)) + 1j)[0]
    for theta in (0.3, 2.0, -2.9):
        np.testing.assert_allclose(coils._canonical_phase(v * np.exp(1j * theta)), coils._canonical_phase(v),
                                   atol=1e-12)
    v = np.array([[1e-9 + 0j], [0.6j], [-0.8]])
    np.testing.assert_allclose(coils._canonical_phase(v)[:, 0], [-1e-9, -0.6j, 0.8], atol=1e-15)
    np.testing.assert_allclose(coils._canonical_phase(T(v))[:, 0].numpy(), [-1e-9, -0.6j, 0.8], atol=1e-15)


def test_calib_from_noncartesian_and_dcf_torch(radial):
    y, coord = radial
    w = pipe_menon_dcf(coord, (N_RAD, N_RAD))
    wt = pipe_menon_dcf(T(coord), (N_RAD, N_RAD))
    assert wt.dtype == torch.float32 and torch.equal(wt, T(w))            # host-side: identical
    ref = coils.calib_from_noncartesian(y, coord, (N_RAD, N_RAD), 16, dcf=w)
    got = coils.calib_from_noncartesian(T(y), T(coord), (N_RAD, N_RAD), 16, dcf=wt)
    assert got.dtype == torch.complex64 and rel(got, ref) < 1e-6              # measured 1.0e-7


def test_prewhiten_and_coil_compression_torch(cart, rng):
    k, _, _ = cart
    nz = (rng.standard_normal((6, 300)) + 1j * rng.standard_normal((6, 300))).astype(np.complex64)
    nz[1] += 0.5 * nz[0]
    ref, W = noise.prewhiten(k, nz, scale=2.0)
    got, Wt = noise.prewhiten(T(k), T(nz), scale=2.0)
    assert got.dtype == torch.complex64 and Wt.dtype == torch.complex128
    assert rel(got, ref) < 1e-6 and rel(Wt, W) < 1e-12                       # measured 0, 4e-16
    # numpy noise with torch data (a file's noise scans): torch out, the same numbers
    mixed, _ = noise.prewhiten(T(k), nz, scale=2.0)
    assert rel(mixed, ref) < 1e-6
    with pytest.raises(ValueError, match="positive definite"):
        noise.whitening_matrix(torch.diag(torch.tensor([1.0, 0.0, 1.0])))
    ref_c, U, frac = coils.coil_compress(k, 4)
    got_c, Ut, frac_t = coils.coil_compress(T(k), 4)
    assert got_c.dtype == torch.complex64 and Ut.dtype == torch.complex64
    # the rows' phase is canonical (entry 0 real positive), so the virtual coils agree without alignment
    assert rel(Ut, U) < 1e-6 and rel(got_c, ref_c) < 1e-5 and abs(frac - frac_t) < 1e-12
    assert np.all(U[:, 0].real > 0) and np.all(U[:, 0].imag == 0)
    by_energy = coils.coil_compress(T(k), energy=0.9)
    assert by_energy[1].shape == coils.coil_compress(k, energy=0.9)[1].shape
    again, _, _ = coils.coil_compress(T(k), matrix=U)                     # a numpy matrix on torch data
    assert rel(again, ref_c) < 1e-5


# ---- methods ----------------------------------------------------------------------------------------

METHODS = {
    "zf": (lambda k, m: R.zero_filled(k), 1e-6),                           # measured 8.3e-8
    "zf-sense": (lambda k, m: R.zero_filled(k, maps=m), 1e-6),             # 8.5e-8
    "sense": (lambda k, m: R.cg_sense(k, m, tol=0, max_iter=30), 1e-4),                 # 5.4e-6: 30 CG steps amplify rounding
    "cs-wavelet": (lambda k, m: R.cs_wavelet(k, m, tol=0, max_iter=30), 2e-5),  # 8.7e-7
    "cs-fista": (lambda k, m: R.cs_wavelet(k, m, tol=0, max_iter=20, solver="fista", cycle_spin=False), 2e-5),  # 1.2e-6
    "cs-tv": (lambda k, m: R.cs_tv(k, m, tol=0, max_iter=40), 2e-5),       # 7.7e-8
}


@pytest.mark.parametrize("name", list(METHODS))
def test_cartesian_methods_torch_equal_numpy(cart, name):
    _, ku, maps = cart
    run, bound = METHODS[name]
    ref = run(ku, maps)
    k_t, m_t = T(ku), T(maps)
    k_before = k_t.clone()
    got = run(k_t, m_t)
    assert got.image.dtype == torch.complex64 and got.image.device.type == "cpu"
    assert rel(got.image, ref.image) < bound
    assert torch.equal(k_t, k_before)                                       # the input is not written
    if ref.history is not None:
        assert got.history.n_iter == ref.history.n_iter
        assert np.allclose(got.history.residual, ref.history.residual, rtol=1e-2, atol=1e-6)
        assert got.info["lipschitz"] == pytest.approx(ref.info["lipschitz"], rel=1e-6)
        assert got.info["scale"] == pytest.approx(ref.info["scale"], rel=1e-6)
        assert isinstance(got.maps, torch.Tensor)
    # numpy maps with torch data follow the data
    mixed = run(k_t, maps)
    assert isinstance(mixed.image, torch.Tensor) and rel(mixed.image, ref.image) < bound


@pytest.mark.parametrize("method,regularizer,bound", [
    ("zf", "wavelet", 1e-6),       # measured 5.4e-8
    ("sense", "wavelet", 1e-4),    # 7.2e-6
    ("cs", "wavelet", 2e-5),       # 1.4e-6
    ("cs", "tv", 2e-5),            # 1.2e-6
])
def test_radial_torch_equal_numpy(radial, method, regularizer, bound):
    """Maps from the gridded centre, NUFFT data term (Toeplitz normal) and the solvers, on tensors."""
    y, coord = radial
    kw = dict(coord=coord, im_shape=(N_RAD, N_RAD), calib_width=16, regularizer=regularizer, max_iter=20)
    ref = R.reconstruct(y, method, **kw)
    got = R.reconstruct(T(y), method, **dict(kw, coord=T(coord)))
    assert got.image.dtype == torch.complex64 and rel(got.image, ref.image) < bound


def test_torch_bad_input():
    k = torch.ones((2, 8, 8), dtype=torch.complex64)
    maps = torch.ones((2, 8, 8), dtype=torch.complex64) / 2 ** 0.5
    with pytest.raises(TypeError, match="complex"):
        R.cg_sense(k.real, maps)
    bad = k.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        R.cg_sense(bad, maps)
    with pytest.raises(ValueError, match="NaN"):
        coils.estimate_maps(bad)
    with pytest.raises(ValueError, match="zero"):
        R.cg_sense(torch.zeros_like(k), maps)


# ---- no host synchronisation per iteration ------------------------------------------------------------

_SYNCS = ("item", "__float__", "__bool__", "__int__", "__index__", "cpu", "numpy", "tolist")


@contextlib.contextmanager
def count_host_reads(calls: list):
    """Count calls of the tensor methods that read values on the host (each one waits for a GPU)."""
    orig = {n: getattr(torch.Tensor, n) for n in _SYNCS}

    def counting(name):
        f = orig[name]

        def g(self, *a, **k):
            calls.append(name)
            return f(self, *a, **k)
        return g

    for n in _SYNCS:
        setattr(torch.Tensor, n, counting(n))
    try:
        yield calls
    finally:
        for n in _SYNCS:
            setattr(torch.Tensor, n, orig[n])


@pytest.mark.parametrize("name", ["sense", "cs-wavelet", "cs-tv", "radial-sense", "radial-cs"])
def test_no_host_sync_per_iteration(cart, radial, name):
    """With ``tol=0`` nothing is read on the host between the first and the last iteration (setup reads
    a few scalars once: the data scale, the 99th percentile, ``||A||^2``)."""
    _, ku, maps = cart
    y, coord = radial
    rmaps = simulate_coil_maps((N_RAD, N_RAD), 4).astype(np.complex64)
    runs = {"sense": lambda cb: R.cg_sense(T(ku), T(maps), tol=0, max_iter=6, callback=cb),
            "cs-wavelet": lambda cb: R.cs_wavelet(T(ku), T(maps), tol=0, max_iter=6, callback=cb),
            "cs-tv": lambda cb: R.cs_tv(T(ku), T(maps), tol=0, max_iter=6, callback=cb),
            "radial-sense": lambda cb: R.cg_sense(T(y), T(rmaps), coord=coord, tol=0, max_iter=6, callback=cb),
            "radial-cs": lambda cb: R.cs_wavelet(T(y), T(rmaps), coord=coord, tol=0, max_iter=6, callback=cb)}
    at_iteration = []
    with count_host_reads([]) as calls:
        r = runs[name](lambda k, x: at_iteration.append(len(calls)))
    assert len(at_iteration) == 6 and r.history.n_iter == 6
    assert at_iteration[-1] == at_iteration[0], calls[at_iteration[0]:]
    assert 0 < len(calls) < 40                    # the counter works: the setup does read a few scalars


# ---- the pipeline ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [dict(method="zf"), dict(method="sense", iters=8),
                                 dict(method="cs", iters=10, maps="walsh", virtual_coils=4),
                                 dict(method="cs", regularizer="tv", iters=10, maps="lowres")])
def test_pipeline_torch_in_torch_out(cart, cfg, rng):
    _, ku, _ = cart
    nz = (rng.standard_normal((6, 200)) + 1j * rng.standard_normal((6, 200))).astype(np.complex64)
    config = ReconConfig(quiet=True, **cfg)
    ref = reconstruct(ku, config, noise=nz)
    got = reconstruct(T(ku), config, noise=nz)
    assert isinstance(got.volume, torch.Tensor) and got.volume.dtype == torch.float32
    assert got.images[0].dtype == torch.complex64 and isinstance(got.recons[0].maps, (torch.Tensor, type(None)))
    assert rel(got.images[0], ref.images[0]) < 2e-4 and rel(got.volume, ref.volume) < 2e-4   # measured < 2e-6


def test_pipeline_torch_radial_and_retrospective(cart, radial):
    k, _, _ = cart
    y, coord = radial
    config = ReconConfig(method="cs", iters=10, quiet=True)
    ref = reconstruct(y, config, coord=coord, im_shape=(N_RAD, N_RAD))
    got = reconstruct(T(y), config, coord=T(coord), im_shape=(N_RAD, N_RAD))
    assert isinstance(got.images[0], torch.Tensor) and rel(got.images[0], ref.images[0]) < 1e-4  # 1.2e-5
    config = ReconConfig(method="sense", iters=8, quiet=True, retrospective=RetrospectiveMask("equispaced", 3))
    ref = reconstruct(k, config)
    got = reconstruct(T(k), config)
    assert isinstance(got.reference, torch.Tensor) and rel(got.reference, ref.reference) < 1e-6  # 9.5e-8
    assert got.metrics["PSNR"] == pytest.approx(ref.metrics["PSNR"], abs=1e-3)
    assert got.metrics["SSIM"] == pytest.approx(ref.metrics["SSIM"], abs=1e-5)


# ---- CUDA == CPU (skipped without a GPU) ---------------------------------------------------------------

def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return torch.device("cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["espirit", "lowres", "walsh"])
def test_gpu_maps_equal_cpu(cart, method):
    dev = _cuda()
    _, ku, _ = cart
    cpu = coils.estimate_maps(T(ku), method)
    gpu = coils.estimate_maps(T(ku).to(dev), method)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.complex64
    assert rel(gpu, cpu.numpy()) < 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(METHODS))
def test_gpu_cartesian_methods_equal_cpu(cart, name):
    dev = _cuda()
    _, ku, maps = cart
    run, bound = METHODS[name]
    cpu = run(T(ku), T(maps))
    gpu = run(T(ku).to(dev), T(maps).to(dev))
    assert gpu.image.device.type == "cuda" and rel(gpu.image, cpu.image.numpy()) < 10 * bound


@pytest.mark.gpu
def test_gpu_radial_prewhiten_compress_pipeline_equal_cpu(cart, radial, rng):
    dev = _cuda()
    k, ku, _ = cart
    y, coord = radial
    for method in ("sense", "cs"):
        kw = dict(coord=coord, im_shape=(N_RAD, N_RAD), calib_width=16, max_iter=10)
        cpu = R.reconstruct(T(y), method, **kw)
        gpu = R.reconstruct(T(y).to(dev), method, **kw)
        assert gpu.image.device.type == "cuda" and rel(gpu.image, cpu.image.numpy()) < 1e-3
    nz = T((rng.standard_normal((6, 200)) + 1j * rng.standard_normal((6, 200))).astype(np.complex64))
    w_cpu, _ = noise.prewhiten(T(k), nz)
    w_gpu, _ = noise.prewhiten(T(k).to(dev), nz.to(dev))
    assert w_gpu.device.type == "cuda" and rel(w_gpu, w_cpu.numpy()) < 1e-6
    c_cpu, _, _ = coils.coil_compress(T(k), 4)
    c_gpu, _, _ = coils.coil_compress(T(k).to(dev), 4)
    assert rel(c_gpu, c_cpu.numpy()) < 1e-5
    config = ReconConfig(method="cs", iters=10, virtual_coils=4, quiet=True)
    cpu = reconstruct(T(ku), config)
    gpu = reconstruct(T(ku).to(dev), config)
    assert gpu.volume.device.type == "cuda" and rel(gpu.volume, cpu.volume.numpy()) < 1e-4
