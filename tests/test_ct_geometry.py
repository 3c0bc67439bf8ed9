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
    HelicalConeBeam3D,
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


# ---- recon.geometry: the layer below the operators ----------------------------------------------------------

def test_geometry_package_imports_only_numpy_and_stdlib():
    """recon/geometry/*.py import numpy, the standard library, each other and recon's memory-limit leaf:
    nothing from recon above (astra only inside ``to_astra``, for users who have it)."""
    import ast
    import pathlib
    import sys

    import recon.geometry

    root = pathlib.Path(recon.geometry.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 1 or (node.level == 2 and node.module == "_memory") \
                    or node.module.split(".")[0] in ("numpy", "__future__") \
                    or node.module.split(".")[0] in sys.stdlib_module_names, (path.name, node.module)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    top = a.name.split(".")[0]
                    assert top in ("numpy", "astra") or top in sys.stdlib_module_names, (path.name, a.name)


def test_ops_projector_does_not_import_ct():
    from isolated import run_python

    code = ("import sys, recon.ops.projector, recon.geometry; "
            "bad = [m for m in sys.modules if m == 'recon.ct' or m.startswith('recon.ct.')]; "
            "assert not bad, bad; print('ok')")
    out = run_python(code, 120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_recon_ct_reexports_the_same_classes():
    import recon.ct
    import recon.ct.geometry as old
    import recon.geometry as new

    for name in ("Geometry", "ParallelBeam2D", "FanBeam2D", "ConeBeam3D", "KIND_PARALLEL2D", "KIND_FAN_FLAT",
                 "KIND_FAN_ARC", "KIND_CONE_FLAT"):
        assert getattr(old, name) is getattr(new, name)
    for name in ("Geometry", "ParallelBeam2D", "FanBeam2D", "ConeBeam3D", "HelicalConeBeam3D", "ParallelVec2D",
                 "FanVec2D", "ConeVec3D", "from_dict"):
        assert getattr(recon.ct, name) is getattr(new, name)
    assert isinstance(FanBeam2D(ANG, 40, 1.0, 40.0, 20.0, "flat", (16, 16)), new.Geometry)


def test_pickles_round_trip_and_old_pickles_load():
    """A pickle written before the move names recon.ct.geometry and has no check_coverage attribute:
    it still loads, as the same class, equal to a fresh geometry, and projects."""
    import pickle

    from recon.ops import Projector

    g = FanBeam2D(ANG, 40, 1.0, 40.0, 20.0, "arc", (16, 16), 1.0, det_offset=0.5)
    assert pickle.loads(pickle.dumps(g)) == g
    old = FanBeam2D(ANG, 40, 1.0, 40.0, 20.0, "arc", (16, 16), 1.0, det_offset=0.5)
    del old.check_coverage
    data = pickle.dumps(old, protocol=0).replace(b"recon.geometry.analytic", b"recon.ct.geometry")
    assert b"recon.ct.geometry" in data
    back = pickle.loads(data)
    assert type(back) is FanBeam2D and back == g and back.to_dict() == g.to_dict()
    assert np.array_equal(Projector(back)(np.ones((16, 16), np.float32)), Projector(g)(np.ones((16, 16), np.float32)))


def test_image_grid():
    from recon.geometry import ImageGrid

    g = ImageGrid((4, 5), (0.5, 1.0))
    yc, xc = g.voxel_centres()
    assert np.allclose(xc, [-2, -1, 0, 1, 2]) and np.allclose(yc, [0.75, 0.25, -0.25, -0.75])
    assert g.inscribed_radius == 1.0 and math.isclose(g.circumscribed_radius, 0.5 * math.hypot(2.0, 5.0))
    assert g == ParallelBeam2D([0.0], 5, 1.0, (4, 5), (0.5, 1.0)).grid and hash(g) == hash(ImageGrid((4, 5), (0.5, 1)))
    v = ImageGrid(np.int64(4), np.float32(2.0), ndim=3)
    assert v.shape == (4, 4, 4) and v.voxel_size == (2.0, 2.0, 2.0) and math.isclose(v.bounding_radius, 4 * math.sqrt(3))
    assert list(v.encloses(np.array([[0.0, 0.0, 6.0], [6.0, 0, 0], [0, 0, 7.0]]))) == [True, False, False]
    for bad, match in [(((4, 0),), "image_shape"), (((4, 4, 4, 4),), "image_shape"), (((4, 4), 0.0), "voxel_size"),
                       (((4, 4), (1.0, np.nan)), "voxel_size"), ((("a", 4),), "image_shape"),
                       (((1 << 31, 4),), "image_shape"), (((1 << 21,) * 3,), "2\\^40")]:
        with pytest.raises(ValueError, match=match):
            ImageGrid(*bad)


# ---- vector geometries ----------------------------------------------------------------------------------------

def _analytic_examples():
    return [
        ParallelBeam2D(ANG, 10, 0.7, (8, 8), 0.5, det_offset=0.2),
        FanBeam2D(ANG, 20, 1.5, 100.0, 50.0, "flat", (16, 16), 1.0, det_offset=-0.7),
        FanBeam2D(ANG, 20, 1.5, 100.0, 50.0, "arc", (16, 16), 1.0, det_offset=0.9),
        ConeBeam3D(ANG, (6, 20), (1.2, 1.5), 100.0, 50.0, (4, 16, 16), 1.0, det_offset=(0.3, -0.4)),
        HelicalConeBeam3D(ANG, (6, 20), (1.2, 1.5), 100.0, 50.0, (4, 16, 16), 1.0, det_offset=(0.3, -0.4), pitch=5.0),
    ]


@pytest.mark.parametrize("g", _analytic_examples(), ids=lambda g: type(g).__name__ + getattr(g, "detector", ""))
def test_vector_form_of_every_analytic_geometry(g):
    from recon.geometry import ConeVec3D, FanVec2D, ParallelVec2D

    vg = g.as_vector_geometry()
    assert type(vg) is {0: ParallelVec2D, 1: FanVec2D, 2: FanVec2D, 3: ConeVec3D}[g.kind]
    assert vg.kind == g.kind and vg.sino_shape == g.sino_shape and vg.image_shape == g.image_shape
    assert vg.voxel_size == g.voxel_size and np.array_equal(vg.vectors(), g.vectors())
    assert vg.as_vector_geometry() is vg and vg != g  # a different class: not equal
    for s in (1, 3):
        o1, d1 = g.rays(s)
        o2, d2 = vg.rays(s)
        assert np.array_equal(o1, o2) and np.array_equal(d1, d2)
        assert np.allclose(np.linalg.norm(d1, axis=-1), 1.0, atol=1e-14)
    with pytest.raises(ValueError, match="read-only"):
        vg.vectors()[0, 0] = 1.0


def test_rays_of_the_vector_form_match_the_geometry():
    """Fan rays from the vectors equal the closed forms of the analytic geometries (flat: through
    d + i u; arc: equiangular about the central ray), independently of the vector code."""
    f = FanBeam2D(ANG, 9, 2.0, 100.0, 50.0, "flat", (16, 16), 1.0, det_offset=1.0, check_coverage=False)
    o, d = f.rays()
    t = ANG[:, None]
    src = 100.0 * np.stack([np.sin(t), -np.cos(t)], -1)
    pos = (np.arange(9) - 4)[None, :] * 2.0 + 1.0
    det = -50.0 * np.stack([np.sin(t), -np.cos(t)], -1) + pos[..., None] * np.stack([np.cos(t), np.sin(t)], -1)
    expect = (det - src) / np.linalg.norm(det - src, axis=-1, keepdims=True)
    assert np.allclose(o[:, :, 0], np.broadcast_to(src, expect.shape), atol=1e-12)
    assert np.allclose(d[:, :, 0], expect, atol=1e-12)
    a = FanBeam2D(ANG, 9, 2.0, 100.0, 50.0, "arc", (16, 16), 1.0, check_coverage=False)
    _, d = a.rays()
    central = -src[:, 0] / 100.0
    gam = (np.arange(9) - 4) * 2.0 / 150.0  # fan angle of bin i: arc length / radius, towards +u
    cross = central[:, None, 0] * d[:, :, 0, 1] - central[:, None, 1] * d[:, :, 0, 0]
    assert np.allclose(np.arcsin(-cross), gam[None, :], atol=1e-12)  # +u is clockwise from the central ray


def _vec(kind):
    """Vectors of the analytic example with kernel kind ``kind`` (a copy to modify)."""
    return _analytic_examples()[kind].vectors().copy()


def _fan(v, det_count=20, detector="flat"):
    from recon.geometry import FanVec2D

    return FanVec2D(v, det_count, detector, (16, 16), 1.0)


@pytest.mark.parametrize("case,match", [
    ("nan", r"vectors\[2, 3\] \(view 2\) is NaN or Inf"),
    ("shape", r"shape \(n_views, 6\)"),
    ("empty", "n_views >= 1"),
    ("zero_ray", "ray direction .* zero at view 1"),
    ("zero_u", "detector axis u .* zero at view 4"),
    ("u_along_ray", "parallel to the rays at view 0"),
    ("det_count", "det_count"),
    ("image_shape", "image_shape"),
])
def test_parallel_vec_validation(case, match):
    from recon.geometry import ParallelVec2D

    v = _vec(0)
    args = dict(vectors=v, det_count=10, image_shape=(8, 8), voxel_size=0.5)
    if case == "nan":
        v[2, 3] = np.nan
    elif case == "shape":
        args["vectors"] = v[:, :5]
    elif case == "empty":
        args["vectors"] = v[:0]
    elif case == "zero_ray":
        v[1, 0:2] = 0
    elif case == "zero_u":
        v[4, 4:6] = 0
    elif case == "u_along_ray":
        v[0, 4:6] = 3 * v[0, 0:2]
    elif case == "det_count":
        args["det_count"] = 0
    else:
        args["image_shape"] = (8, -1)
    with pytest.raises(ValueError, match=match):
        ParallelVec2D(**args)


def test_fan_and_cone_vec_validation():
    from recon.geometry import ConeVec3D

    v = _vec(1)
    w = v.copy()
    w[3, 0:2] = [1.0, 2.0]  # a source inside the 16 x 16 mm image
    with pytest.raises(ValueError, match=r"vectors\[3\]: the source at view 3 lies inside"):
        _fan(w)
    w = v.copy()
    w[2, 4:6] = w[2, 2:4] - w[2, 0:2]  # the detector line through the source
    with pytest.raises(ValueError, match="source lies on the detector line at view 2"):
        _fan(w)
    with pytest.raises(ValueError, match="detector must be 'flat' or 'arc'"):
        _fan(v, detector="curved")
    a = _vec(2)
    w = a.copy()
    w[1, 2:4] = w[1, 0:2]
    with pytest.raises(ValueError, match="centre coincides with the source at view 1"):
        _fan(w, detector="arc")
    with pytest.raises(ValueError, match="fan angle of pi or more at view 0"):
        _fan(a, det_count=320, detector="arc")
    c = _vec(3)
    ok = ConeVec3D(c, (6, 20), (4, 16, 16), 1.0)
    assert ok.det_rows == 6 and ok.det_cols == 20 and ok.det_shape == (6, 20)
    for mutate, match in [
        (lambda w: w.__setitem__((1, slice(9, 12)), 2 * w[1, 6:9]), "u and v are parallel at view 1"),
        (lambda w: w.__setitem__((2, slice(9, 12)), 0), "axis v .* zero at view 2"),
        (lambda w: w.__setitem__((0, slice(0, 3)), w[0, 3:6] + 0.5 * w[0, 6:9]), "in the detector plane at view 0"),
        (lambda w: w.__setitem__((4, slice(0, 3)), [0.0, 0.0, 5.0]), "source at view 4 lies inside"),
        (lambda w: w.__setitem__((4, 7), np.inf), r"vectors\[4, 7\]"),
    ]:
        w = c.copy()
        mutate(w)
        with pytest.raises(ValueError, match=match):
            ConeVec3D(w, (6, 20), (4, 16, 16), 1.0)
    # a source above the volume (outside its bounding sphere, inside the cylinder) is fine
    w = c.copy()
    w[0, 0:3] = [0.0, 0.0, 40.0]
    w[0, 3:6] = [0.0, 0.0, -20.0]
    w[0, 6:9], w[0, 9:12] = [1.5, 0, 0], [0, 1.2, 0]
    ConeVec3D(w, (6, 20), (4, 16, 16), 1.0)
    with pytest.raises(ValueError, match="det_shape"):
        ConeVec3D(c, (6,), (4, 16, 16), 1.0)


# ---- the helical cone beam ------------------------------------------------------------------------------------

def test_helical_geometry():
    t = np.linspace(0, 4 * np.pi, 9)
    h = HelicalConeBeam3D(t, (5, 25), 1.0, 100.0, 50.0, (4, 16, 16), 1.0, pitch=8.0)
    assert np.allclose(h.table_positions, 8.0 * (t - 2 * np.pi) / (2 * np.pi))  # centred on the volume
    v = h.vectors()
    assert np.allclose(v[:, 2], h.table_positions) and np.allclose(v[:, 5], h.table_positions)
    assert np.allclose(v[:, [0, 1, 3, 4, 6, 7, 8, 9, 10, 11]],
                       ConeBeam3D(t, (5, 25), 1.0, 100.0, 50.0, (4, 16, 16), 1.0, check_coverage=False).vectors()[:, [0, 1, 3, 4, 6, 7, 8, 9,
                                                                                               10, 11]])
    # the central ray (odd detector) runs from the source through the rotation axis at height z_k
    o, d = h.rays()
    central_o, central_d = o[:, 2, 12, 0], d[:, 2, 12, 0]
    s = -np.einsum("ij,ij->i", central_o[:, :2], central_d[:, :2]) / np.einsum("ij,ij->i", central_d[:, :2],
                                                                                 central_d[:, :2])
    hit = central_o + s[:, None] * central_d
    assert np.allclose(hit[:, :2], 0, atol=1e-12) and np.allclose(hit[:, 2], h.table_positions)
    z = np.linspace(-3, 3, 9)
    h2 = HelicalConeBeam3D(t, (5, 25), 1.0, 100.0, 50.0, (4, 16, 16), 1.0, table_positions=z)
    assert h2.pitch is None and np.array_equal(h2.table_positions, z)
    assert "pitch=8.0" in repr(h) and "z in [-8, 8] mm" in repr(h)
    for kw, match in [(dict(), "exactly one of pitch"), (dict(pitch=1.0, table_positions=z), "exactly one"),
                      (dict(table_positions=z[:4]), "table_positions has 4 entries"),
                      (dict(table_positions=np.where(z > 0, np.nan, z)), "table_positions contains NaN"),
                      (dict(pitch=np.inf), "pitch")]:
        with pytest.raises(ValueError, match=match):
            HelicalConeBeam3D(t, (5, 25), 1.0, 100.0, 50.0, (4, 16, 16), 1.0, **kw)
    # coverage: columns only (a helical detector need not cover the volume's z extent)
    HelicalConeBeam3D(t, (1, 25), 1.0, 100.0, 50.0, (40, 16, 16), 1.0, pitch=8.0)
    with pytest.raises(ValueError, match="cols"):
        HelicalConeBeam3D(t, (5, 9), 1.0, 100.0, 50.0, (4, 16, 16), 1.0, pitch=8.0)


# ---- subsets ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("g", _analytic_examples() + [g.as_vector_geometry() for g in _analytic_examples()],
                         ids=lambda g: type(g).__name__ + getattr(g, "detector", ""))
def test_subset_every_form_of_views(g):
    from recon.ct import subset_geometry

    vec = g.vectors()
    for views, idx in [([3, 0, 3], [3, 0, 3]), (np.array([1, 4]), [1, 4]), (slice(1, None, 2), [1, 3]),
                       (np.array([True, False, False, True, True]), [0, 3, 4]), (-1, [4]), (np.int64(2), [2])]:
        sub = g.subset(views)
        assert type(sub) is type(g) and sub.sino_shape == (len(idx),) + g.det_shape
        assert np.array_equal(sub.vectors(), vec[idx]) and sub.image_shape == g.image_shape
        if hasattr(g, "angles"):
            assert np.array_equal(sub.angles, g.angles[idx])
        assert subset_geometry(g, views) == sub
    assert g.subset(slice(None)) == g
    for views, match in [([5], "out of range"), ([-6], "out of range"), (np.ones(4, bool), "shape \\(5,\\)"),
                         ([0.5], "integer indices"), (slice(3, 3), "no view"), (np.zeros(5, bool), "no view"),
                         ("all", "integer indices")]:
        with pytest.raises(ValueError, match=match):
            g.subset(views)


# ---- equality, repr, to_dict / from_dict -------------------------------------------------------------------------

def _all_examples():
    ex = _analytic_examples()
    return ex + [g.as_vector_geometry() for g in ex] + [
        ParallelBeam2D(ANG, 4, 1.0, (8, 8), 1.0, check_coverage=False),
        HelicalConeBeam3D(ANG, (2, 20), 1.5, 100.0, 50.0, (4, 16, 16), 1.0, table_positions=np.arange(5.0)),
    ]


@pytest.mark.parametrize("g", _all_examples(), ids=lambda g: type(g).__name__ + getattr(g, "detector", ""))
def test_to_dict_round_trip_through_json(g):
    import json

    from recon.geometry import from_dict

    d = g.to_dict()
    assert d["kind"] == type(g).__name__
    text = json.dumps(d)
    back = from_dict(json.loads(text))
    assert type(back) is type(g) and back == g and back.to_dict() == d
    assert np.array_equal(back.vectors(), g.vectors())
    assert back.subset([0, 2]) == g.subset([0, 2])
    r = repr(g)
    assert r.startswith(type(g).__name__ + "(") and f"={g.n_views}" in r and "image_shape" in r


def test_equality():
    a = FanBeam2D(ANG, 40, 1.0, 40.0, 20.0, "flat", (16, 16))
    assert a == FanBeam2D(list(ANG), np.int64(40), 1, 40, 20, "flat", [16, 16])
    assert a != FanBeam2D(ANG, 40, 1.0, 40.0, 20.0, "arc", (16, 16))
    assert a != FanBeam2D(ANG + 1e-9, 40, 1.0, 40.0, 20.0, "flat", (16, 16))
    assert a != FanBeam2D(ANG, 40, 1.0, 40.0, 20.0, "flat", (16, 16), 0.9)
    assert a != a.as_vector_geometry() and a != "FanBeam2D"
    with pytest.raises(TypeError):
        hash(a)


def test_from_dict_errors_name_the_field():
    from recon.geometry import from_dict

    good = FanBeam2D(ANG, 40, 1.0, 40.0, 20.0, "flat", (16, 16)).to_dict()
    for change, exc, match in [
        (dict(kind="Fan"), ValueError, "'kind' must be one of"),
        (dict(kind=None), ValueError, "'kind'"),
        (dict(colour=1), ValueError, "no field.* colour"),
        (dict(det_count="many"), ValueError, "det_count"),
        (dict(angles=[0.0, "x"]), ValueError, "angles"),
        (dict(source_origin=-1.0), ValueError, "source_origin"),
        (dict(image_shape=[16]), ValueError, "image_shape"),
        (dict(check_coverage="no"), ValueError, "check_coverage"),
    ]:
        with pytest.raises(exc, match=match):
            from_dict({**good, **change})
    with pytest.raises(ValueError, match="needs field.* source_origin"):
        from_dict({k: v for k, v in good.items() if k != "source_origin"})
    with pytest.raises(ValueError, match="missing field 'kind'"):
        from_dict({k: v for k, v in good.items() if k != "kind"})
    with pytest.raises(TypeError, match="mapping"):
        from_dict([("kind", "FanBeam2D")])
    vec = FanBeam2D(ANG, 40, 1.0, 40.0, 20.0, "flat", (16, 16)).as_vector_geometry().to_dict()
    vec["vectors"][1][4] = float("nan")
    with pytest.raises(ValueError, match=r"vectors\[1, 4\]"):
        from_dict(vec)


def test_numpy_scalars_accepted_everywhere():
    g = FanBeam2D(np.float32(0.5), np.int32(40), np.float32(1.0), np.float64(40.0), np.int64(20), np.str_("arc"),
                  (np.int64(16), np.int16(16)), np.float32(1.0), np.float32(0.0), check_coverage=np.bool_(True))
    assert g.det_count == 40 and g.detector == "arc" and g.image_shape == (16, 16)
    assert ParallelBeam2D(ANG, np.float32(16.0), 1.0, (8, 8)).det_count == 16  # integral floats, like 16.0
    assert ConeBeam3D(ANG, np.array([40, 40]), np.array([1.0, 1.0]), 40.0, 20.0, np.int64(16), 1.0,
                      det_offset=np.zeros(2)).det_shape == (40, 40)
    with pytest.raises(ValueError, match="det_count"):
        ParallelBeam2D(ANG, True, 1.0, (8, 8))
    with pytest.raises(ValueError, match="det_count"):
        ParallelBeam2D(ANG, np.float32(16.5), 1.0, (8, 8))


# ---- phantoms: bad input and sizes --------------------------------------------------------------------------

def test_phantom_bad_input_and_absurd_sizes():
    ell = shepp_logan_ellipses(8.0, 2)
    with pytest.raises(ValueError, match="GiB"):
        rasterize(ell, (1 << 20, 1 << 20), 1.0)  # 8 TiB: refused before allocating
    with pytest.raises(ValueError, match="GiB"):
        rasterize(ell, (64, 64), 1.0, supersample=1 << 16)
    g = ConeBeam3D(ANG, (40, 40), 1.0, 40.0, 20.0, (16, 16, 16), 1.0)
    with pytest.raises(ValueError, match="GiB"):
        analytic_sinogram([Ellipsoid(1.0, (2.0, 2.0, 2.0))], g, subsamples=1000)
    with pytest.raises(ValueError, match="subsamples"):
        analytic_sinogram([Ellipsoid(1.0, (2.0, 2.0, 2.0))], g, subsamples=0)
    with pytest.raises(ValueError, match="chunk"):
        analytic_sinogram([Ellipsoid(1.0, (2.0, 2.0, 2.0))], g, chunk=0)
    with pytest.raises(ValueError, match="image_shape"):
        rasterize(ell, (64, 0), 1.0)
    with pytest.raises(ValueError, match="voxel_size"):
        rasterize(ell, (64, 64), np.nan)
    with pytest.raises(ValueError, match="semi-axes"):
        Ellipse(1.0, ("a", 1.0))
    with pytest.raises(ValueError, match="centre"):
        Ellipse(1.0, (1.0, 1.0), (np.inf, 0.0))
    with pytest.raises(ValueError, match="radius"):
        shepp_logan_ellipses("big")
    # min_axis > 0.5 used to fail inside numpy ("high - low < 0"); now the message names min_axis
    with pytest.raises(ValueError, match="min_axis"):
        random_ellipses(0, 3, 2, 10.0, min_axis=1.5)
    with pytest.raises(ValueError, match="count"):
        random_ellipses(0, -1, 2, 10.0)
    assert random_ellipses(0, 0, 2, 10.0) == []


def test_rasterize_blocks_and_analytic_chunks_change_nothing(monkeypatch):
    """Rows in blocks (rasterize) and views in chunks (analytic_sinogram) bound the memory; the
    results are bitwise those of one block / one chunk."""
    import recon.ct.phantom as ph

    ell = random_ellipses(1, 5, 2, 7.0)
    ell3 = random_ellipses(2, 3, 3, 7.0)
    g = FanBeam2D(np.linspace(0, 2 * np.pi, 37, endpoint=False), 40, 1.0, 40.0, 20.0, "arc", (16, 16), 1.0)
    whole = (rasterize(ell, (33, 17), 0.7, supersample=3), rasterize(ell3, (5, 9, 7), 1.5, supersample=2),
             analytic_sinogram(ell, g, subsamples=3, chunk=1000))
    monkeypatch.setattr(ph, "_BLOCK_BYTES", 1)  # one row / one view at a time
    assert np.array_equal(whole[0], rasterize(ell, (33, 17), 0.7, supersample=3))
    assert np.array_equal(whole[1], rasterize(ell3, (5, 9, 7), 1.5, supersample=2))
    assert np.array_equal(whole[2], analytic_sinogram(ell, g, subsamples=3))


def test_check_allocation_against_the_memory_limit(monkeypatch):
    from recon import _memory
    from recon.geometry import _checks

    monkeypatch.setenv("RECON_MAX_MEMORY", "100M")
    _checks.check_allocation("f", 80 << 20, "x")
    with pytest.raises(ValueError, match=r"f: y needs about 200 MiB, more than the 100 MiB allowed \(RECON_MAX_MEMORY\)"):
        _checks.check_allocation("f", 200 << 20, "y")
    monkeypatch.undo()
    assert _memory.memory_limit()[0] > 0
