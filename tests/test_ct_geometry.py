"""recon.ct geometries and phantoms: conventions (against ASTRA's own vector conversion when astra is
importable, else against the formulas written in recon/ct/geometry.py), validation, and the analytic
line integrals against closed forms (disk chords, fan/cone distances)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recon.ct import (
    ConeBeam3D,
    Ellipse,
    Ellipsoid,
    FanBeam2D,
    ParallelBeam2D,
    analytic_sinogram,
    random_ellipses,
    rasterize,
    shepp_logan_2d,
    shepp_logan_3d,
    shepp_logan_ellipses,
)

ANG = np.array([0.0, 0.4, 1.3, 2.9, 4.0])


# ---- vectors: ASTRA's vec conventions ------------------------------------------------------------------

def test_parallel_vectors_formula():
    g = ParallelBeam2D(ANG, 10, 0.7, (8, 8), 0.5, det_offset=0.2)
    v = g.vectors()
    c, s = np.cos(ANG), np.sin(ANG)
    assert np.allclose(v[:, 0:2], np.stack([s, -c], 1))
    assert np.allclose(v[:, 2:4], 0.2 * np.stack([c, s], 1))
    assert np.allclose(v[:, 4:6], 0.7 * np.stack([c, s], 1))
    assert g.sino_shape == (5, 10) and g.image_shape == (8, 8) and g.voxel_size == (0.5, 0.5)


def test_fan_and_cone_vectors_formula():
    f = FanBeam2D(ANG, 20, 1.5, 100.0, 50.0, "flat", (16, 16), 1.0)
    v = f.vectors()
    c, s = np.cos(ANG), np.sin(ANG)
    assert np.allclose(v[:, 0:2], 100 * np.stack([s, -c], 1))
    assert np.allclose(v[:, 2:4], -50 * np.stack([s, -c], 1))
    assert np.allclose(v[:, 4:6], 1.5 * np.stack([c, s], 1))
    k = ConeBeam3D(ANG, (6, 20), (1.2, 1.5), 100.0, 50.0, (4, 16, 16), 1.0, det_offset=(0.3, -0.4))
    w = k.vectors()
    assert w.shape == (5, 12) and k.sino_shape == (5, 6, 20) and k.det_shape == (6, 20)
    assert np.allclose(w[:, 0:3], np.stack([100 * s, -100 * c, 0 * c], 1))
    assert np.allclose(w[:, 3:6], np.stack([-50 * s - 0.4 * c, 50 * c - 0.4 * s, 0.3 + 0 * c], 1))
    assert np.allclose(w[:, 6:9], np.stack([1.5 * c, 1.5 * s, 0 * c], 1))
    assert np.allclose(w[:, 9:12], np.stack([0 * c, 0 * c, 1.2 + 0 * c], 1))


def test_vectors_equal_astra_conversion():
    astra = pytest.importorskip("astra", reason="astra-toolbox not installed (optional extra recon[astra])")
    p = ParallelBeam2D(ANG, 10, 0.7, (8, 8), 0.5)
    assert np.allclose(p.vectors(), astra.geom_2vec(p.to_astra()[1])["Vectors"])
    f = FanBeam2D(ANG, 20, 1.5, 100.0, 50.0, "flat", (16, 16), 1.0)
    assert np.allclose(f.vectors(), astra.geom_2vec(f.to_astra()[1])["Vectors"])
    k = ConeBeam3D(ANG, (6, 20), (1.2, 1.5), 100.0, 50.0, (4, 16, 16), 1.0)
    cone = astra.create_proj_geom("cone", 1.5, 1.2, 6, 20, ANG, 100.0, 50.0)
    assert np.allclose(k.vectors(), astra.geom_2vec(cone)["Vectors"])


def test_arc_detector_is_equiangular():
    f = FanBeam2D([0.7], 9, 2.0, 100.0, 50.0, "arc", (16, 16), 1.0, det_offset=1.0, check_coverage=False)
    src, d = f.rays()
    gam = np.arctan2(d[0, :, 0, 1], d[0, :, 0, 0])
    # equal steps of arc length / radius (source-detector distance), turning towards +u (clockwise)
    assert np.allclose(np.diff(gam), -2.0 / 150.0)
    central = np.arctan2(-f.vectors()[0, 1], -f.vectors()[0, 0])  # source -> origin
    assert math.isclose(gam[4] - central, -1.0 / 150.0, abs_tol=1e-12)  # offset along the arc
    # the detector centre lies on the arc around the source
    v = f.vectors()[0]
    assert math.isclose(math.hypot(v[2] - v[0], v[3] - v[1]), 150.0)


def test_voxel_centres_row0_at_plus_y():
    g = ParallelBeam2D([0.0], 5, 1.0, (4, 5), (0.5, 1.0))
    yc, xc = g.voxel_centres()
    assert np.allclose(xc, [-2, -1, 0, 1, 2]) and np.allclose(yc, [0.75, 0.25, -0.25, -0.75])
    img = rasterize([Ellipse(1.0, (0.3, 0.3), (-2.0, 0.75))], g, supersample=1)
    assert img[0, 0] == 1.0 and img.sum() == 1.0


# ---- validation -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    (dict(angles=[]), "angles"),
    (dict(angles=[0.0, np.nan]), "angles"),
    (dict(angles=np.zeros((2, 2))), "angles"),
    (dict(det_count=0), "det_count"),
    (dict(det_count=2.5), "det_count"),
    (dict(det_spacing=-1.0), "det_spacing"),
    (dict(image_shape=(8, 0)), "image_shape"),
    (dict(image_shape=(8, 8, 8)), "image_shape"),
    (dict(voxel_size=0.0), "voxel_size"),
    (dict(det_offset=np.inf), "det_offset"),
    (dict(det_count=8, det_spacing=0.9), "cover"),
    (dict(det_count=16, det_offset=4.5), "cover"),
])
def test_parallel_validation(kw, match):
    args = dict(angles=ANG, det_count=16, det_spacing=1.0, image_shape=(8, 8), voxel_size=1.0)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        ParallelBeam2D(**args)


def test_coverage_can_be_disabled():
    g = ParallelBeam2D(ANG, 4, 1.0, (8, 8), 1.0, check_coverage=False)
    assert g.sino_shape == (5, 4)


@pytest.mark.parametrize("kw,match", [
    (dict(source_origin=0.0), "source_origin"),
    (dict(source_origin=10.0), "source_origin"),  # inside the image (circumscribed radius 11.3)
    (dict(origin_det=-5.0), "origin_det"),
    (dict(detector="curved"), "detector"),
    (dict(det_count=20), "cover"),
    (dict(detector="arc", det_count=20), "cover"),
    (dict(detector="arc", det_spacing=40.0), "fan angle"),
])
def test_fan_validation(kw, match):
    args = dict(angles=ANG, det_count=40, det_spacing=1.0, source_origin=40.0, origin_det=20.0,
                detector="flat", image_shape=(16, 16), voxel_size=1.0)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        FanBeam2D(**args)


@pytest.mark.parametrize("kw,match", [
    (dict(det_shape=(8,)), "det_shape"),
    (dict(det_shape=(40, 10)), "cover"),
    (dict(det_shape=(10, 40)), "rows"),
    (dict(det_spacing=(1.0, 0.0)), "det_spacing"),
    (dict(voxel_size=(1.0, -1.0, 1.0)), "voxel_size"),
    (dict(det_offset=0.5), "det_offset"),
    (dict(image_shape=(16, 16)), "image_shape"),
])
def test_cone_validation(kw, match):
    args = dict(angles=ANG, det_shape=(40, 40), det_spacing=1.0, source_origin=40.0, origin_det=20.0,
                image_shape=(16, 16, 16), voxel_size=1.0)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        ConeBeam3D(**args)


# ---- phantoms and analytic line integrals ---------------------------------------------------------------

def test_disk_chords_parallel():
    r, mu = 3.0, 0.5
    g = ParallelBeam2D(ANG, 16, 0.5, (16, 16), 1.0, check_coverage=False)
    s = (np.arange(16) - 7.5) * 0.5
    expect = 2 * mu * np.sqrt(np.maximum(r * r - s * s, 0))
    sino = analytic_sinogram([Ellipse(mu, (r, r))], g)
    assert np.allclose(sino, expect[None], rtol=1e-13, atol=1e-13)
    # a shifted disk: chord depends on the distance s - <centre, u>
    c = np.array([1.0, -2.0])
    sino = analytic_sinogram([Ellipse(mu, (r, r), tuple(c))], g)
    u = np.stack([np.cos(ANG), np.sin(ANG)], 1)
    d = s[None, :] - (u @ c)[:, None]
    assert np.allclose(sino, 2 * mu * np.sqrt(np.maximum(r * r - d * d, 0)), atol=1e-12)


def test_disk_chords_fan_and_cone():
    r, mu, SO, OD = 3.0, 0.5, 40.0, 20.0
    f = FanBeam2D(ANG, 30, 0.5, SO, OD, "flat", (16, 16), 1.0, check_coverage=False)
    u = (np.arange(30) - 14.5) * 0.5
    dist = SO * np.sin(np.arctan(u / (SO + OD)))  # distance of each ray from the origin
    expect = 2 * mu * np.sqrt(np.maximum(r * r - dist * dist, 0))
    assert np.allclose(analytic_sinogram([Ellipse(mu, (r, r))], f), expect[None], atol=1e-12)
    a = FanBeam2D(ANG, 30, 0.5, SO, OD, "arc", (16, 16), 1.0, check_coverage=False)
    dist = SO * np.sin(u / (SO + OD))
    expect = 2 * mu * np.sqrt(np.maximum(r * r - dist * dist, 0))
    assert np.allclose(analytic_sinogram([Ellipse(mu, (r, r))], a), expect[None], atol=1e-12)
    # cone: a ball; the central row equals the fan beam, other rows see the ball off-centre
    k = ConeBeam3D(ANG, (20, 30), 0.5, SO, OD, (8, 16, 16), 1.0, check_coverage=False)
    s3 = analytic_sinogram([Ellipsoid(mu, (r, r, r))], k)
    uu, vv = np.meshgrid(u, (np.arange(20) - 9.5) * 0.5, indexing="xy")
    p = np.stack([uu, np.full_like(uu, SO + OD), vv], -1)  # detector point, source at origin, axis along y
    centre = np.array([0.0, SO, 0.0])
    dist = np.linalg.norm(np.cross(p, centre), axis=-1) / np.linalg.norm(p, axis=-1)
    expect = 2 * mu * np.sqrt(np.maximum(r * r - dist * dist, 0))
    assert np.allclose(s3, expect[None], atol=1e-12)


def test_half_lines_from_the_source():
    # an ellipse behind the source contributes nothing to a fan beam but does to a full line
    g = FanBeam2D([0.0], 40, 1.0, 20.0, 10.0, "flat", (8, 8), 1.0, check_coverage=False)
    behind = Ellipse(1.0, (2.0, 2.0), (0.0, -30.0))
    assert np.all(analytic_sinogram([behind], g) == 0)


def test_rasterize_and_shepp_logan():
    img = rasterize([Ellipse(1.0, (10.0, 10.0))], (64, 64), 0.5, supersample=4)
    assert math.isclose(img.sum() * 0.25, math.pi * 100, rel_tol=2e-3)
    img3 = rasterize([Ellipsoid(1.0, (6.0, 6.0, 6.0))], (24, 24, 24), 0.75, supersample=2)
    assert math.isclose(img3.sum() * 0.75**3, 4 / 3 * math.pi * 216, rel_tol=1e-2)
    sl = shepp_logan_2d(64, 0.5)
    assert sl.shape == (64, 64) and math.isclose(sl.max(), 1.0) and sl.min() >= -1e-12
    assert sl[0, 32] == 0 and sl[32, 32] > 0
    sl3 = shepp_logan_3d(16)
    assert sl3.shape == (16, 16, 16) and np.allclose(sl3[8], rasterize(shepp_logan_ellipses(8.0, 3), (16, 16, 16))[8])
    assert len(shepp_logan_ellipses(10.0, 2, scale=0.02)) == 10
    with pytest.raises(ValueError):
        shepp_logan_ellipses(-1.0)
    with pytest.raises(ValueError):
        Ellipse(1.0, (0.0, 1.0))


def test_analytic_sinogram_subsamples_and_random_ellipses():
    g = ParallelBeam2D(ANG, 32, 1.0, (16, 16), 1.0)
    ell = random_ellipses(0, 4, 2, 7.0)
    for e in ell:
        assert np.hypot(*e.centre) + max(e.axes) <= 7.0 + 1e-12
    a1 = analytic_sinogram(ell, g)
    a5 = analytic_sinogram(ell, g, subsamples=5)
    assert a1.shape == a5.shape == g.sino_shape
    assert 0 < np.linalg.norm(a5 - a1) < 0.2 * np.linalg.norm(a1)
    with pytest.raises(ValueError):
        analytic_sinogram([Ellipsoid(1.0, (1.0, 1.0, 1.0))], g)
