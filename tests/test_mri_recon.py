"""Reconstruction quality: zero-filled < CG-SENSE < compressed sensing on generated data.

Cartesian data: a fastMRI-format multicoil file written by ``fastmri_data.write_fastmri_multicoil``
from ``recon.mri.simulate.textured_phantom`` (2 slices of 160 x 224, 8 simulated coils, complex
Gaussian noise 0.01 per part), read back with ``read_fastmri``, undersampled with fastMRI's
``RandomMaskFunc`` (4x with centre fraction 0.08, 8x with 0.04), maps by ESPIRiT from the data,
metrics (fastMRI definitions) against the file's ``reconstruction_rss``.

Measured with the defaults of recon.mri.recon after issue #11 (support constraint, convergence-based
stopping, SENSE lam 1e-2, wavelet 4e-3), PSNR dB / SSIM (before it: SENSE 33.2 / 0.866 and
29.6 / 0.862, CS 42.5 / 0.951 and 38.0 / 0.932):

==========  ===============  ===============
accel       4x               8x
==========  ===============  ===============
zero-filled 24.7 / 0.290     22.8 / 0.328
CG-SENSE    34.0 / 0.890     29.1 / 0.884
CS (Haar)   43.1 / 0.960     39.2 / 0.960
==========  ===============  ===============

The assertions keep margins below the measured gaps (MARGINS).
"""

import numpy as np
import pytest

from fastmri_data import read_fastmri, simulate_coil_maps, write_fastmri_multicoil
from fastmri_data.masks import RandomMaskFunc
from fastmri_data.metrics import nmse, psnr, ssim
from recon.mri import coils
from recon.mri import recon as R
from recon.mri.simulate import simulate_noncartesian, textured_phantom
from recon.mri.trajectory import radial_2d

#: (psnr dB, ssim) by which each method must beat the previous one, per acceleration
MARGINS = {4: {"sense": (6.0, 0.4), "cs": (5.0, 0.05)},
           8: {"sense": (4.0, 0.4), "cs": (4.0, 0.04)}}


@pytest.fixture(scope="module")
def fastmri_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mri") / "synthetic_multicoil.h5"
    write_fastmri_multicoil(path, textured_phantom(2, 160, 224, seed=0), num_coils=8, noise_std=0.01, seed=1)
    return read_fastmri(path)


@pytest.mark.parametrize("accel,cf", [(4, 0.08), (8, 0.04)])
def test_cs_beats_sense_beats_zero_filled(fastmri_file, accel, cf):
    vol = fastmri_file
    mf = RandomMaskFunc([cf], [accel], seed=0)
    out = {"zf": [], "sense": [], "cs": []}
    for s in range(vol.num_slices):
        m, _ = mf(vol.kspace[s].shape, seed=s)
        k = (vol.kspace[s] * m).astype(np.complex64)
        maps = coils.estimate_maps(k)
        out["zf"].append(np.abs(R.zero_filled(k).image))
        sense = R.cg_sense(k, maps)
        cs = R.cs_wavelet(k, maps)
        assert sense.history.n_iter >= 1 and cs.history.n_iter >= 1
        out["sense"].append(np.abs(sense.image))
        out["cs"].append(np.abs(cs.image))
    gt = vol.target
    score = {name: (psnr(gt, np.stack(v)), ssim(gt, np.stack(v)), nmse(gt, np.stack(v))) for name, v in out.items()}
    for prev, cur in (("zf", "sense"), ("sense", "cs")):
        dp, ds = MARGINS[accel][cur]
        assert score[cur][0] >= score[prev][0] + dp, (accel, score)
        assert score[cur][1] >= score[prev][1] + ds, (accel, score)
        assert score[cur][2] < score[prev][2]


def test_tv_cs_beats_zero_filled_and_runs_pdhg(fastmri_file):
    vol = fastmri_file
    m, _ = RandomMaskFunc([0.08], [4], seed=0)(vol.kspace[0].shape, seed=0)
    k = (vol.kspace[0] * m).astype(np.complex64)
    maps = coils.estimate_maps(k)
    tv = R.cs_tv(k, maps, max_iter=80)
    zf = R.zero_filled(k)
    gt = vol.target[:1]
    assert tv.info["solver"] == "pdhg" and len(tv.history.extra["dual_residual"]) == tv.history.n_iter
    assert psnr(gt, np.abs(tv.image)[None]) > psnr(gt, np.abs(zf.image)[None]) + 8.0  # measured +11 dB


def test_fully_sampled_zero_filled_with_true_maps_is_exact(rng):
    shape = (32, 28)
    maps = simulate_coil_maps(shape, 4)
    x = textured_phantom(1, *shape)[0]
    from recon.ops import CartesianSense

    k = CartesianSense(maps)(x)
    r = R.zero_filled(k, maps=maps)
    assert np.linalg.norm(r.image - x) / np.linalg.norm(x) < 1e-5
    rss = R.zero_filled(k)
    assert np.allclose(np.abs(rss.image), np.abs(x), atol=1e-5)


def test_cg_sense_solves_the_damped_normal_equations(rng):
    shape = (24, 20)
    maps = simulate_coil_maps(shape, 4)
    x = textured_phantom(1, *shape)[0]
    mask = rng.random(shape) < 0.4
    mask[10:14, 8:12] = True
    from recon.ops import CartesianSense

    A = CartesianSense(maps, mask)
    y = A(x)
    lam = 1e-2
    r = R.cg_sense(y, maps, mask=mask, lam=lam, max_iter=200, tol=1e-7)
    assert r.history.converged
    # the returned image solves (A^H A + lam L I) x = A^H y with L the normalisation (module docstring)
    L = r.info["lipschitz"]
    res = A.normal(r.image) + lam * L * r.image - A.H(y)
    assert np.linalg.norm(res) / np.linalg.norm(A.H(y)) < 1e-5


def test_radial_golden_angle_multicoil_through_the_nufft():
    """Simulated 8-coil golden-angle radial (48 spokes of 192 samples, 96 x 96, noise 0.005):
    maps from the gridded centre, reconstruction through the NUFFT (Toeplitz normal).
    Measured relative l2 errors of the magnitude: zf 0.30, sense 0.13, cs 0.041."""
    N = 96
    x = textured_phantom(1, N, N, seed=3)[0]
    maps_true = simulate_coil_maps((N, N), 8)
    coord = radial_2d(48, 2 * N, N)
    y = simulate_noncartesian(x, maps_true, coord, 0.005, seed=4)
    ref = np.abs(x)

    def err(img):
        return float(np.linalg.norm(np.abs(img) - ref) / np.linalg.norm(ref))

    zf = R.reconstruct(y, "zf", coord=coord, im_shape=(N, N))
    sense = R.reconstruct(y, "sense", coord=coord, im_shape=(N, N), calib_width=30)
    cs = R.reconstruct(y, "cs", coord=coord, im_shape=(N, N), calib_width=30)
    e = {"zf": err(zf.image), "sense": err(sense.image), "cs": err(cs.image)}
    assert e["sense"] < 0.16 and e["cs"] < 0.07 and e["cs"] < e["sense"] < e["zf"], e


def test_recon_bad_inputs():
    k = np.ones((2, 8, 8), np.complex64)
    maps = np.ones((2, 8, 8), np.complex64) / np.sqrt(2)
    with pytest.raises(TypeError):
        R.cg_sense(k.real, maps)
    bad = k.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        R.cg_sense(bad, maps)
    with pytest.raises(ValueError):
        R.cg_sense(k, maps[:1])
    with pytest.raises(ValueError):
        R.reconstruct(k, "bogus")
    with pytest.raises(ValueError):
        R.cs_wavelet(k, maps, lam=-1)
    with pytest.raises(ValueError):
        R.cg_sense(np.zeros_like(k), maps)
    with pytest.raises(ValueError):
        R.zero_filled(k, coord=radial_2d(2, 8, 8))  # non-Cartesian needs im_shape
