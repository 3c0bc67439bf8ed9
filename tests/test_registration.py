"""Prior images and their registration (recon/ct/prior.py, recon/ct/registration.py): HU conversion,
reading DICOM / NIfTI / .npy priors, and recovering a known rigid transform (a few mm and degrees)
of a phantom on another grid, against a noisy FBP (2D) or FBP-like (3D) target."""

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from recon.ct import (
    Ellipse,
    Ellipsoid,
    FanBeam2D,
    analytic_sinogram,
    fbp,
    rasterize,
    simulate_low_dose,
)
from recon.ct.prior import PriorImage, ct_grid_placement, hu_to_mu, mu_to_hu, read_prior
from recon.ct.registration import register_prior, resample_prior
from recon.io.dicom import write_dicom_series
from recon.io.nifti import write_nifti

FLIP = np.diag([1.0, -1.0, 1.0])  # recon world (x, y up, z) <-> LPS (x, y posterior, z)


def rot2(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s], [s, c]])


# ---- the phantom and the known transform ---------------------------------------------------------------

ELLIPSES = [Ellipse(0.02, (38, 30), (0, 2), 0.1), Ellipse(0.01, (10, 6), (12, 10), 0.6),
            Ellipse(-0.01, (5, 8), (-14, -8), 0.0), Ellipse(0.03, (4, 4), (3, -18), 0.0),
            Ellipse(0.015, (12, 3), (-6, 16), -0.4)]


def moved_2d(R, t, grid_centre_lps):
    """ELLIPSES (recon world coordinates of a grid centred at LPS 0) moved by y = R x + t (LPS, mm) and
    expressed in the recon coordinates of a grid centred at ``grid_centre_lps``."""
    theta = math.atan2(R[1, 0], R[0, 0])
    out = []
    for e in ELLIPSES:
        c = R @ np.array([e.centre[0], -e.centre[1]]) + t - grid_centre_lps[:2]
        out.append(Ellipse(e.value, e.axes, (c[0], -c[1]), e.angle - theta))
    return out


def check(reg, R, t, pts, tol_mm=0.3, tol_deg=0.3):
    """The registration's transform against the true one: displacement over the phantom and angle."""
    err = np.linalg.norm(reg.apply(pts) - (pts @ R.T + t), axis=-1).max()
    dR = reg.matrix @ R.T
    ang = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(dR) - (dR.shape[0] - 2)) / 2))))
    assert err < tol_mm and ang < tol_deg, (err, ang, reg.summary())
    return err, ang


def test_registration_2d_recovers_a_rigid_transform_against_a_noisy_fbp():
    n, v = 96, 1.0
    geom = FanBeam2D(np.linspace(0, 2 * np.pi, 180, endpoint=False), 160, 1.2, 400.0, 300.0, "arc", (n, n), v)
    sino = analytic_sinogram(ELLIPSES, geom).astype(np.float32)
    noisy, _ = simulate_low_dose(sino, 2e3, seed=3)
    target = fbp(noisy, geom, filter="hann")
    R, t = rot2(3.0), np.array([2.5, -1.8])
    centre = np.array([3.0, -2.0, 0.0])  # another field of view, position and voxel size
    prior_img = rasterize(moved_2d(R, t, centre), (128, 128), 0.8, supersample=3)
    d, o = ct_grid_placement((1, 128, 128), (1.0, 0.8, 0.8), centre)
    prior = PriorImage(prior_img, (1.0, 0.8, 0.8), d, o, "phantom")
    reg = register_prior(prior, target, (v, v))
    assert reg.ndim == 2 and reg.metric == "mattes"
    pts = np.stack(np.meshgrid(np.linspace(-35, 35, 8), np.linspace(-35, 35, 8)), -1).reshape(-1, 2)
    check(reg, R, t, pts)
    assert reg.angles_deg[0] == pytest.approx(3.0, abs=0.3)
    # resampled through the registration, the prior lines up with the truth on the target grid
    truth = rasterize(ELLIPSES, (n, n), v, supersample=3)
    on_grid, covered = resample_prior(prior, (n, n), (v, v), registration=reg)
    unregistered, _ = resample_prior(prior, (n, n), (v, v))
    assert covered.all()
    e_reg = np.linalg.norm(on_grid - truth) / np.linalg.norm(truth)
    e_raw = np.linalg.norm(unregistered - truth) / np.linalg.norm(truth)
    assert e_reg < 0.25 * e_raw, (e_reg, e_raw)
    assert "rotation" in reg.summary() and "mm" in reg.summary()


def test_registration_3d_recovers_a_rigid_transform():
    ells = [Ellipsoid(0.02, (30, 24, 26), (0, 0, 0), 0.2), Ellipsoid(0.012, (8, 5, 10), (10, 8, 6), 0.7),
            Ellipsoid(-0.01, (5, 7, 6), (-11, -7, -5), 0.0), Ellipsoid(0.03, (4, 4, 4), (4, -14, 8), 0.0),
            Ellipsoid(0.015, (10, 3, 4), (-6, 13, -9), -0.5)]
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    a = math.radians(3.0)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K
    t = np.array([2.0, -1.5, 1.2])
    centre = np.array([1.5, 2.0, -3.0])
    moved = []
    for e in ells:
        c = FLIP @ (R @ (FLIP @ np.array(e.centre)) + t - centre)
        Q = FLIP @ R @ FLIP @ e.rotation
        moved.append(Ellipsoid(e.value, e.axes, tuple(c), rotation_matrix=tuple(map(tuple, Q))))
    prior_img = rasterize(moved, (40, 44, 44), (1.5, 1.5, 1.5), supersample=2)
    d, o = ct_grid_placement(prior_img.shape, 1.5, centre)
    prior = PriorImage(prior_img, (1.5, 1.5, 1.5), d, o)
    truth = rasterize(ells, (36, 40, 40), (1.6, 1.6, 1.6), supersample=2)
    rng = np.random.default_rng(4)
    target = gaussian_filter(truth, 0.8) + rng.normal(0, 0.002, truth.shape)  # FBP-like: blurred and noisy
    reg = register_prior(prior, target, (1.6, 1.6, 1.6), shrink_factors=(2, 1), smoothing_sigmas=(1.0, 0.0))
    assert reg.ndim == 3 and len(reg.angles_deg) == 3
    g = np.linspace(-25, 25, 5)
    pts = np.stack(np.meshgrid(g, g, g), -1).reshape(-1, 3)
    check(reg, R, t, pts)


def test_affine_and_mean_squares_run_and_report():
    n = 64
    truth = rasterize(ELLIPSES, (n, n), 1.3, supersample=2)
    R, t = rot2(-2.0), np.array([-1.5, 2.0])
    prior_img = rasterize(moved_2d(R, t, np.zeros(3)), (n, n), 1.3, supersample=2)
    d, o = ct_grid_placement((1, n, n), (1.0, 1.3, 1.3))
    prior = PriorImage(prior_img, (1.0, 1.3, 1.3), d, o)
    reg = register_prior(prior, truth, (1.3, 1.3), transform="affine", metric="mean_squares")
    assert reg.metric == "mean_squares"
    pts = np.stack(np.meshgrid(np.linspace(-30, 30, 5), np.linspace(-30, 30, 5)), -1).reshape(-1, 2)
    check(reg, R, t, pts, tol_mm=0.5, tol_deg=0.5)


def test_hu_conversion():
    np.testing.assert_allclose(hu_to_mu([-1000.0, 0.0, 1000.0], 0.02), [0.0, 0.02, 0.04], atol=1e-9)
    np.testing.assert_allclose(mu_to_hu(hu_to_mu([-500.0, 40.0])), [-500.0, 40.0], atol=1e-3)
    assert hu_to_mu(0.0) == pytest.approx(0.0193)
    with pytest.raises(ValueError, match="mu_water"):
        hu_to_mu(0.0, -1.0)


def test_read_priors(tmp_path):
    hu = np.random.default_rng(0).uniform(-1000, 1500, (3, 8, 10)).round()
    centre = np.array([5.0, -7.0, 20.0])
    d, o = ct_grid_placement(hu.shape, (2.0, 0.7, 0.7), centre)
    write_dicom_series(tmp_path / "dcm", hu, (2.0, 0.7, 0.7), direction=d, origin_mm=o)
    p = read_prior(tmp_path / "dcm", mu_water=0.02)
    np.testing.assert_allclose(p.image, 0.02 * (1 + hu / 1000), atol=0.02 * 2500 / 65535 / 1000 + 1e-7)
    np.testing.assert_allclose(p.origin, o, atol=1e-6)
    assert p.voxel_size == pytest.approx((2.0, 0.7, 0.7))
    mu = hu_to_mu(hu, 0.02)
    write_nifti(tmp_path / "p.nii.gz", mu, (2.0, 0.7, 0.7), direction=d, origin_mm=o)
    q = read_prior(tmp_path / "p.nii.gz")
    np.testing.assert_allclose(q.image, mu, rtol=1e-6)
    np.testing.assert_allclose(q.origin, o, atol=1e-5)
    r = read_prior(tmp_path / "p.nii.gz", units="HU", mu_water=0.02)  # a NIfTI in HU
    np.testing.assert_allclose(r.image, hu_to_mu(mu, 0.02), rtol=1e-6)
    np.save(tmp_path / "p.npy", mu)
    s = read_prior(tmp_path / "p.npy", voxel_size=(2.0, 0.7, 0.7))
    np.testing.assert_allclose(s.image, mu)
    np.testing.assert_allclose(s.origin, ct_grid_placement(mu.shape, (2.0, 0.7, 0.7))[1])
    with pytest.raises(ValueError, match="voxel_size"):
        read_prior(tmp_path / "p.npy")
    with pytest.raises(ValueError, match="units"):
        read_prior(tmp_path / "p.npy", units="g/cm3", voxel_size=1.0)
    with pytest.raises(FileNotFoundError):
        read_prior(tmp_path / "none.nii")
    with pytest.raises(ValueError, match="NaN"):
        PriorImage(np.full((2, 2), np.nan), (1.0, 1.0), None, np.zeros(3))


def test_resample_covers_only_the_prior_fov_and_bad_arguments():
    prior_img = np.ones((1, 20, 20), np.float32)
    d, o = ct_grid_placement(prior_img.shape, 1.0, (30.0, 0.0, 0.0))  # shifted to x in [20, 40] mm
    prior = PriorImage(prior_img, (1.0, 1.0, 1.0), d, o)
    img, covered = resample_prior(prior, (40, 80), (1.0, 1.0))
    x = (np.arange(80) - 39.5)
    np.testing.assert_array_equal(covered[20], (x > 20.0) & (x < 40.0) | np.isclose(np.abs(x - 30), 9.5))
    assert img[~covered].max() == 0.0 and img[covered].min() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="transform"):
        register_prior(prior, np.zeros((20, 20)), (1.0, 1.0), transform="bspline")
    with pytest.raises(ValueError, match="metric"):
        register_prior(prior, np.zeros((20, 20)), (1.0, 1.0), metric="ncc")
    with pytest.raises(ValueError, match="single-slice target needs a single-slice prior"):
        register_prior(PriorImage(np.ones((4, 8, 8)), 1.0, None, np.zeros(3)), np.zeros((8, 8)), (1.0, 1.0))
    with pytest.raises(TypeError, match="PriorImage"):
        register_prior(np.zeros((8, 8)), np.zeros((8, 8)), (1.0, 1.0))
    with pytest.raises(ValueError, match="target"):
        register_prior(prior, np.full((8, 8), np.nan), (1.0, 1.0))
