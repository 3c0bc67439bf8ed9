"""Classical MRI quality (issue #11, phase 1): nothing outside the maps' support, a clean background,
and convergence-based stopping (recon.mri.recon).

Data: recon's textured phantom (96 x 96; the head fills about 70 % of the field of view, air
around it), 8 simulated coils (``fastmri_data.simulate_coil_maps``) set to zero outside the head
dilated by 8 pixels (as ESPIRiT's crop leaves them), complex noise 0.01 per part, a fastMRI random
1D mask (4x, centre 0.08). The measurements behind the defaults are in docs/mri.md ("Quality and
defaults"), made by ``tools/mri_quality.py``.
"""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from fastmri_data import simulate_coil_maps
from fastmri_data.masks import RandomMaskFunc
from fastmri_data.metrics import ssim
from recon.mri import recon as R
from recon.mri.simulate import textured_phantom
from recon.ops import CartesianSense

N = 96


def _mask(accel, cf):
    m, _ = RandomMaskFunc([cf], [accel], seed=0)((1, N, N), seed=0)
    return np.broadcast_to(np.asarray(m, np.float32).reshape(1, N), (N, N))


@pytest.fixture(scope="module")
def case():
    x = textured_phantom(1, N, N, seed=0)[0]
    obj = binary_dilation(abs(x) > 0.05 * abs(x).max(), iterations=1)
    support = binary_dilation(obj, iterations=8)
    maps = (simulate_coil_maps((N, N), 8) * support).astype(np.complex64)
    maps[:, support] /= np.sqrt((abs(maps[:, support]) ** 2).sum(0))      # unit RSS on the support
    rng = np.random.default_rng(1)
    full = CartesianSense(maps)(x)
    full = (full + 0.01 * (rng.standard_normal(full.shape) + 1j * rng.standard_normal(full.shape))).astype(np.complex64)
    return {"x": x, "obj": obj, "support": support, "maps": maps, "full": full}


def _k(case, accel=4, cf=0.08):
    return (case["full"] * _mask(accel, cf)).astype(np.complex64)


@pytest.mark.parametrize("method", ["wavelet", "tv"])
def test_zero_outside_the_support_and_background_below_the_noise_floor(case, method):
    k, maps = _k(case), case["maps"]
    run = R.cs_wavelet if method == "wavelet" else R.cs_tv
    r = run(k, maps)
    img = abs(r.image)
    # the data say nothing outside the support: the estimate is exactly 0 there (projection)
    assert img[~case["support"]].max() == 0.0
    # air inside the support (object dilated by 3 excluded): mean magnitude against the noise floor
    # of the fully sampled image and against zero-filled's residual aliasing there. Measured (96 x 96,
    # 4x): zero-filled 4.3, wavelet 1.2, tv 0.74 times the floor. The wavelet does NOT reach the
    # floor on this small, strongly aliased case (docs/mri.md: it does at 128 x 128).
    air = case["support"] & ~binary_dilation(case["obj"], iterations=3)
    floor = abs(R.zero_filled(case["full"], maps=maps).image)[air].mean()
    zf_air = abs(R.zero_filled(k, maps=maps).image)[air].mean()
    assert img[air].mean() < 0.35 * zf_air, (img[air].mean(), zf_air)
    assert img[air].mean() < {"wavelet": 1.5, "tv": 1.0}[method] * floor, (img[air].mean(), floor)
    # whole-image SSIM above zero-filled's
    ref = abs(case["x"])[None]
    zf = abs(R.zero_filled(k, maps=maps).image)[None]
    assert ssim(ref, img[None]) > ssim(ref, zf) + 0.05
    assert r.info["support_fraction"] == pytest.approx(case["support"].mean())


def test_full_support_keeps_the_problem_unmasked(case):
    maps = simulate_coil_maps((N, N), 8).astype(np.complex64)
    P = R.sense_problem(CartesianSense(maps)(case["x"]), maps)
    assert P.support is None and P.info["support_fraction"] == 1.0


def test_wavelet_level_from_the_image_size():
    assert [R.wavelet_level(s) for s in [(8, 8), (64, 64), (320, 320), (230, 180), (640, 368)]] == [1, 4, 6, 5, 6]
    k = np.random.default_rng(0).standard_normal((2, 40, 48)).astype(np.complex64)
    r = R.cs_wavelet(k, np.full((2, 40, 48), 0.5 ** 0.5, np.complex64), max_iter=2)
    assert r.info["level"] == 3 and r.info["wave"] == R.DEFAULT_WAVELET


@pytest.mark.parametrize("method,kw,long_iter,close", [
    ("sense", {}, 150, 5e-3),
    ("tv", {}, 1200, 2e-2),
    ("wavelet", {"cycle_spin": False, "max_iter": 300}, 900, 1e-2),
])
def test_stopping_on_convergence_easy_before_hard(case, method, kw, long_iter, close):
    """The same tolerance stops an easy problem (2x, centre 0.16) earlier than a hard one (4x, centre
    0.08), both before the cap, and the hard one's result is close to a long run (``long_iter``
    iterations, tol=0; relative l2 difference below ``close``)."""
    run = {"sense": R.cg_sense, "wavelet": R.cs_wavelet, "tv": R.cs_tv}[method]
    maps = case["maps"]
    its = {}
    for name, (accel, cf) in {"easy": (2, 0.16), "hard": (4, 0.08)}.items():
        P = R.sense_problem(_k(case, accel, cf), maps)
        r = run(problem=P, maps=maps, **kw)
        assert r.info["converged"] and r.history.converged and r.history.stop_reason == "tol"
        assert r.info["iterations"] == r.history.n_iter < r.info["max_iter"]
        assert r.info["iterations"] % R.CHECK_EVERY == 0          # tested every CHECK_EVERY iterations
        its[name] = r.info["iterations"]
    # the hard problem's result against a long run (tol=0)
    long = run(problem=P, maps=maps, **dict(kw, tol=0, max_iter=long_iter))
    assert long.info["iterations"] == long_iter and not long.info["converged"]
    diff = np.linalg.norm(r.image - long.image) / np.linalg.norm(long.image)
    assert diff < close, diff
    assert its["easy"] < its["hard"], its


def test_stopping_arguments_are_checked(case):
    k, maps = _k(case), case["maps"]
    for bad in ({"tol": -1.0}, {"tol": float("nan")}, {"max_iter": 0}, {"max_iter": 2.5}, {"lam": float("inf")}):
        with pytest.raises(ValueError):
            R.cg_sense(k, maps, **bad)
