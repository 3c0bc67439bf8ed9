"""Coil sensitivity estimation, noise prewhitening and coil compression on simulated data.

Simulation: the fastmri_data Shepp-Logan-like phantom (96 x 80) times smooth birdcage-like coil maps
(``simulate_coil_maps``, unit root-sum-of-squares), centred orthonormal FFT, complex Gaussian noise
of std 1e-3 per part. Errors are relative l2 over the object (|image| > 0.05), after removing a
per-pixel phase (maps are defined up to a phase per pixel).
Measured when written: ESPIRiT 1.4 %, ESPIRiT on the coarse eigen-grid 1.6 %, low-resolution 3.8 %,
Walsh 5.6 %; the bounds below leave about 2x margin.
"""

import numpy as np
import pytest

from fastmri_data import fft2c, phantom, simulate_coil_maps
from recon.mri import coils, noise

SHAPE = (96, 80)


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(0)
    img = phantom(1, *SHAPE)[0].astype(np.complex64)
    maps = simulate_coil_maps(SHAPE, 8)
    ksp = fft2c(maps * img).astype(np.complex64)
    ksp += (1e-3 * (rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape))).astype(np.complex64)
    return img, maps, ksp, np.abs(img) > 0.05


def _map_error(est, true, support):
    inner = np.sum(np.conj(est) * true, axis=0)
    ph = np.exp(1j * np.angle(inner))
    return float(np.linalg.norm((est * ph - true)[:, support]) / np.linalg.norm(true[:, support]))


@pytest.mark.parametrize("method,kw,bound", [
    ("espirit", {"eig_grid": None}, 0.03),
    ("espirit", {"eig_grid": 32}, 0.035),
    ("lowres", {}, 0.08),
    ("walsh", {}, 0.11),
])
def test_maps_reproduce_true_maps(sim, method, kw, bound):
    img, true, ksp, sup = sim
    est = coils.estimate_maps(ksp, method, **kw)
    assert est.shape == true.shape and est.dtype == np.complex64
    assert _map_error(est, true, sup) < bound
    # unit root sum of squares where not cropped
    r = coils.rss(est)[sup]
    assert np.all(np.abs(r[r > 0] - 1) < 1e-3)


def test_espirit_eigenvalues_and_crop(sim):
    img, true, ksp, sup = sim
    maps, eig = coils.espirit_maps(ksp, crop=0.95, return_eigenvalues=True)
    assert eig[sup].min() > 0.99 and eig.max() < 1.0 + 1e-3
    assert np.all(maps[:, eig < 0.95] == 0)
    assert np.all(coils.rss(maps)[eig >= 0.95] > 0.999)


def test_espirit_eig_grid_matches_full_decomposition(sim):
    _, _, ksp, sup = sim
    a = coils.espirit_maps(ksp, crop=0, eig_grid=None)
    b = coils.espirit_maps(ksp, crop=0, eig_grid=48)
    assert np.linalg.norm((a - b)[:, sup]) / np.linalg.norm(a[:, sup]) < 0.02


def test_espirit_with_fastmri_column_mask(sim):
    """A 1D (column) mask: the calibration region is long along the fully sampled readout."""
    img, true, ksp, sup = sim
    cols = np.zeros(SHAPE[1], bool)
    cols[SHAPE[1] // 2 - 6:SHAPE[1] // 2 + 6] = True
    cols[::3] = True
    region = coils.calibration_region(coils.sampling_mask(ksp * cols), 24)
    assert [s.stop - s.start for s in region] == [24, 12]
    est = coils.estimate_maps((ksp * cols).astype(np.complex64))
    assert _map_error(est, true, sup) < 0.05


def test_espirit_3d(rng):
    shape = (12, 16, 14)
    true = simulate_coil_maps(shape, 4)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    img = ((zz**2 + yy**2 + xx**2) < 0.7).astype(np.complex64)
    ax = (1, 2, 3)
    ksp = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(true * img, axes=ax), axes=ax, norm="ortho"), axes=ax)
    est = coils.estimate_maps(ksp.astype(np.complex64), calib_width=10, kernel_width=4)
    assert est.shape == true.shape
    assert _map_error(est, true, np.abs(img) > 0) < 0.05


def test_calibration_region_errors():
    m = np.ones((10, 10), bool)
    m[5, 5] = False
    with pytest.raises(ValueError, match="centre"):
        coils.calibration_region(m)
    with pytest.raises(TypeError):
        coils.estimate_maps(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError):
        coils.estimate_maps(np.zeros((2, 8), np.complex64))


def test_calib_from_noncartesian_matches_cartesian_centre(rng):
    """Gridding a Nyquist-sampled radial centre gives the Cartesian calibration data."""
    from recon.mri.trajectory import radial_2d
    from recon.ops import Nufft

    N = 64
    true = simulate_coil_maps((N, N), 4)
    img = phantom(1, N, N)[0].astype(np.complex64)
    coord = radial_2d(64, 2 * N, N)  # Nyquist out to |k| ~ 20
    ksp = Nufft(coord, (N, N), tol=1e-6)(true * img)
    calib = coils.calib_from_noncartesian(ksp, coord, (N, N), 16)
    ref = fft2c(true * img)[:, N // 2 - 8:N // 2 + 8, N // 2 - 8:N // 2 + 8]
    assert np.linalg.norm(calib - ref) / np.linalg.norm(ref) < 0.03  # measured 1.4 %


# ---- noise ----------------------------------------------------------------------------------------


def _correlated_noise(rng, c=6, n=20000):
    B = rng.standard_normal((c, c)) + 1j * rng.standard_normal((c, c))
    cov = B @ B.conj().T / c + 0.1 * np.eye(c)
    L = np.linalg.cholesky(cov)
    white = (rng.standard_normal((c, n)) + 1j * rng.standard_normal((c, n))) / np.sqrt(2)
    return cov, (L @ white).astype(np.complex64)


def test_prewhitening_makes_noise_covariance_identity(rng):
    cov, nz = _correlated_noise(rng)
    c = cov.shape[0]
    W = noise.whitening_matrix(noise.noise_covariance(nz))
    # on the noise scan itself: exactly I (up to float32 rounding of the samples)
    assert np.abs(noise.noise_covariance(W @ nz) - np.eye(c)).max() < 1e-5
    # on independent noise of the same statistics: I within sampling error (~1/sqrt(n) = 0.007)
    _, nz2 = _correlated_noise(np.random.default_rng(99), c)
    nz2 = (np.linalg.cholesky(cov) @ np.linalg.solve(np.linalg.cholesky(noise.noise_covariance(nz2)), nz2)).astype(np.complex64)
    white, W2 = noise.prewhiten(nz2[:, None, :], nz, coil_axis=0)
    assert white.dtype == np.complex64 and white.shape == (c, 1, nz.shape[1])
    assert np.abs(noise.noise_covariance(white) - np.eye(c)).max() < 0.05
    # W is the inverse Cholesky factor: W cov W^H = I
    assert np.abs(W2 @ noise.noise_covariance(nz) @ W2.conj().T - np.eye(c)).max() < 1e-9


def test_prewhitening_scale_and_zeros(rng):
    cov, nz = _correlated_noise(rng, 4, 5000)
    k = np.zeros((4, 8, 8), np.complex64)
    k[:, 2, 3] = 1 + 1j
    w1, W1 = noise.prewhiten(k, cov=cov)
    w2, W2 = noise.prewhiten(k, cov=cov, scale=4.0)
    assert np.allclose(W2, W1 / 2, atol=1e-12)
    assert np.count_nonzero(np.any(w1 != 0, axis=0)) == 1  # unacquired points stay zero


def test_prewhitening_errors(rng):
    with pytest.raises(ValueError, match="positive definite"):
        noise.whitening_matrix(np.diag([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError):
        noise.whitening_matrix(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(TypeError):
        noise.noise_covariance(np.ones((3, 100)))
    with pytest.raises(ValueError):
        noise.prewhiten(np.ones((3, 4), np.complex64), cov=np.eye(2))


# ---- coil compression -----------------------------------------------------------------------------


def test_coil_compression_keeps_energy(sim):
    _, _, ksp, _ = sim
    total = np.linalg.norm(ksp) ** 2
    out, U, frac = coils.coil_compress(ksp, 6)
    assert out.shape == (6,) + SHAPE and U.shape == (6, 8)
    assert np.allclose(U @ U.conj().T, np.eye(6), atol=1e-5)
    # the reported fraction is the energy kept
    assert abs(np.linalg.norm(out) ** 2 / total - frac) < 1e-4
    # 8 localised birdcage coils: 6 virtual coils keep >= 88 % of the energy (measured 90.5 %; 4: 73 %)
    assert frac > 0.88
    fracs = [coils.coil_compression_matrix(ksp, n)[1] for n in range(1, 9)]
    assert np.all(np.diff(fracs) > 0)
    # by energy: the fewest coils reaching the fraction
    out2, U2, frac2 = coils.coil_compress(ksp, energy=0.99)
    assert frac2 >= 0.99 and coils.coil_compression_matrix(ksp, U2.shape[0] - 1)[1] < 0.99
    # all coils: lossless
    full, Uf, f1 = coils.coil_compress(ksp, 8)
    assert abs(f1 - 1) < 1e-9 and abs(np.linalg.norm(full) - np.linalg.norm(ksp)) / np.linalg.norm(ksp) < 1e-5


def test_coil_compression_errors(sim):
    _, _, ksp, _ = sim
    with pytest.raises(ValueError):
        coils.coil_compress(ksp, 9)
    with pytest.raises(ValueError):
        coils.coil_compress(ksp, 0)
    with pytest.raises(ValueError):
        coils.coil_compress(np.zeros_like(ksp), 2)
