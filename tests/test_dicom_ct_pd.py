"""DICOM-CT-PD reader and writer (recon/io/dicom_ct_pd.py): round trips, tag handling, hostile files,
flying focal spot, the vector form on a virtual flat detector."""

import dataclasses
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from recon.ct import Ellipsoid, analytic_sinogram
from recon.ct.rebin import scan_line_integrals
from recon.io.dicom_ct_pd import (
    TAGS,
    CylindricalDetector,
    DicomCtPdWarning,
    HelicalScan,
    read_dicom_ct_pd,
    write_dicom_ct_pd,
)


def small_scan(n=24, rows=6, cols=40, ffs=True, seed=0):
    det = CylindricalDetector(rows, cols, 2.0, 1.5, 1085.6, ((cols - 1) / 2 + 0.25, (rows - 1) / 2))
    rng = np.random.default_rng(seed)
    ang = 0.3 - np.arange(n) * 2 * np.pi / 12  # decreasing, wraps past -pi
    z = 40.0 + 0.8 * np.arange(n)
    alt = np.tile([-1.0, 1.0], n // 2)
    extra = {"ffs_angle": alt * 7e-4, "ffs_z": alt * 0.3, "ffs_radius": alt * 1.2, "ffs_mode": "FFSXYZ"} if ffs else {}
    return HelicalScan(rng.uniform(0.0, 6.0, (n, rows, cols)).astype(np.float32), ang, z, 595.0, det,
                       views_per_rotation=12, water_attenuation=0.0201,
                       photon_statistics=rng.uniform(1e4, 2e5, (n, cols)), info={"kvp": 120.0}, **extra)


def assert_same_scan(a: HelicalScan, b: HelicalScan):
    d = b.detector
    assert (a.detector.rows, a.detector.cols, a.detector.shape) == (d.rows, d.cols, d.shape)
    for name in ("col_spacing", "row_spacing", "radius"):
        assert getattr(a.detector, name) == pytest.approx(getattr(d, name), rel=1e-6)
    assert a.detector.central_element == pytest.approx(d.central_element, abs=1e-4)
    for name in ("angles", "z", "radius", "ffs_angle", "ffs_z", "ffs_radius"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-6, err_msg=name)
    # per view, the values come back within half a quantisation step (slope / 2)
    step = (b.projections.max(axis=(1, 2)) - np.minimum(b.projections.min(axis=(1, 2)), 0)) / 65535
    err = np.abs(a.projections - b.projections).max(axis=(1, 2))
    assert np.all(err <= 0.5 * step * 1.001 + 1e-6)
    assert a.ffs_mode == b.ffs_mode and a.views_per_rotation == b.views_per_rotation
    assert a.water_attenuation == pytest.approx(b.water_attenuation)


@pytest.mark.parametrize("explicit", [False, True])
def test_round_trip(tmp_path, explicit):
    scan = small_scan()
    paths = write_dicom_ct_pd(tmp_path, scan, explicit_vr=explicit)
    assert len(paths) == scan.n_views and all(os.path.isfile(p) for p in paths)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = read_dicom_ct_pd(tmp_path)
    assert_same_scan(back, scan)
    np.testing.assert_allclose(back.photon_statistics, scan.photon_statistics, rtol=1e-6)
    assert back.info["kvp"] == 120.0 and back.info["projection_type"] == "HELICAL"
    # the published layout: Rows = detector columns, private values as float32 / uint16
    ds = pydicom.dcmread(paths[0])
    assert (ds.Rows, ds.Columns) == (scan.detector.cols, scan.detector.rows)
    ce = ds[TAGS["DetectorCentralElement"][0]].value
    raw = np.frombuffer(ce, "<f4") if isinstance(ce, bytes) else np.asarray(ce)
    np.testing.assert_allclose(raw, np.array(scan.detector.central_element) + 1.0)  # 1-based in the file
    # file order does not matter: InstanceNumber orders the views
    shuffled = list(reversed(paths))
    assert_same_scan(read_dicom_ct_pd(shuffled), scan)


def test_write_refuses_to_overwrite(tmp_path):
    scan = small_scan(n=4)
    write_dicom_ct_pd(tmp_path, scan)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dicom_ct_pd(tmp_path, scan)
    write_dicom_ct_pd(tmp_path, scan, overwrite=True)


def _edit(paths, fn):
    for p in paths:
        ds = pydicom.dcmread(p)
        fn(ds)
        ds.save_as(p)


def test_missing_optional_tags_get_defaults_and_one_warning_each(tmp_path):
    scan = small_scan(n=6)
    paths = write_dicom_ct_pd(tmp_path, scan)
    optional = ["DetectorShape", "FlyingFocalSpotMode", "SourceAngularPositionShift", "SourceAxialPositionShift",
                "SourceRadialDistanceShift", "NumberofSourceAngularSteps", "WaterAttenuationCoefficient",
                "PhotonStatistics", "TypeofProjectionData"]

    def drop(ds):
        for name in optional:
            del ds[TAGS[name][0]]
    _edit(paths, drop)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        back = read_dicom_ct_pd(tmp_path)
    msgs = [str(w.message) for w in rec if issubclass(w.category, DicomCtPdWarning)]
    for name in optional:
        assert sum(name in m for m in msgs) == 1, (name, msgs)
    assert back.detector.shape == "CYLINDRICAL" and back.ffs_mode == "FFSNONE"
    assert not back.ffs_angle.any() and not back.ffs_z.any() and not back.ffs_radius.any()
    assert back.views_per_rotation is None and back.estimated_views_per_rotation() == 12
    assert back.water_attenuation == 0.0193 and back.photon_statistics is None


@pytest.mark.parametrize("name", ["NumberofDetectorRows", "DetectorElementTransverseSpacing",
                                  "DetectorFocalCenterAngularPosition", "ConstantRadialDistance",
                                  "DetectorCentralElement"])
def test_missing_required_tag(tmp_path, name):
    paths = write_dicom_ct_pd(tmp_path, small_scan(n=4))
    _edit(paths[1:2], lambda ds: ds.__delitem__(TAGS[name][0]))
    with pytest.raises(ValueError, match=rf"{os.path.basename(paths[1])}.*required tag {name}"):
        read_dicom_ct_pd(tmp_path)


def _set(tag, vr, value):
    def fn(ds):
        ds.add_new(tag, vr, value)
    return fn


@pytest.mark.parametrize("edit, match", [
    (_set(0x7029100B, "CS", "SPHERICAL"), "DetectorShape .* 'SPHERICAL' is not supported"),
    (_set(0x7033100E, "CS", "FFSQ"), "FlyingFocalSpotMode .* 'FFSQ' is unknown"),
    (_set(0x70291010, "US", 60000), "outside the limits"),
    (_set(0x70311001, "FL", float("nan")), "DetectorFocalCenterAngularPosition .* NaN"),
    (_set(0x70311033, "FL", [1.0]), "DetectorCentralElement .* must hold 2"),
    (_set(0x70411001, "OB", b"\x01\x02zz"), "WaterAttenuationCoefficient .* not a decimal"),
    (lambda ds: setattr(ds, "Rows", 1000), "Rows x Columns = 1000"),
    (lambda ds: setattr(ds, "PixelData", ds.PixelData[:100]), "truncated pixel data"),
    (lambda ds: setattr(ds, "RescaleSlope", "0"), "bad RescaleSlope"),
])
def test_bad_values_are_clear_errors(tmp_path, edit, match):
    paths = write_dicom_ct_pd(tmp_path, small_scan(n=4))
    _edit(paths, edit)
    with pytest.raises(ValueError, match=match):
        read_dicom_ct_pd(tmp_path)


def test_inconsistent_detector_and_bad_files(tmp_path):
    paths = write_dicom_ct_pd(tmp_path / "a", small_scan(n=4))
    _edit(paths[2:3], _set(0x70291002, "FL", 2.5))
    with pytest.raises(ValueError, match="DetectorElementTransverseSpacing .* differs from the first"):
        read_dicom_ct_pd(tmp_path / "a")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all" * 10)
    with pytest.raises(ValueError, match="not a readable DICOM file"):
        read_dicom_ct_pd(junk)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(Path(paths[0]).read_bytes()[:600])
    with pytest.raises(ValueError):
        read_dicom_ct_pd(cut)
    with pytest.raises(FileNotFoundError):
        read_dicom_ct_pd(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files"):
        read_dicom_ct_pd(tmp_path / "empty")


def test_scan_validation():
    det = CylindricalDetector(4, 8, 1.0, 1.0, 1000.0, (3.5, 1.5))
    with pytest.raises(ValueError, match="projections must have shape"):
        HelicalScan(np.zeros((3, 4, 9)), np.zeros(3), np.zeros(3), 500.0, det)
    with pytest.raises(ValueError, match="ffs_mode"):
        HelicalScan(np.zeros((3, 4, 8)), np.zeros(3), np.zeros(3), 500.0, det, ffs_mode="XY")
    with pytest.raises(ValueError, match="z must have one value per view"):
        HelicalScan(np.zeros((3, 4, 8)), np.zeros(3), np.zeros(2), 500.0, det)
    with pytest.raises(ValueError, match="shape must be one of"):
        CylindricalDetector(4, 8, 1.0, 1.0, 1000.0, (3.5, 1.5), "SPHERICAL")
    with pytest.raises(ValueError, match="rows must be an integer"):
        CylindricalDetector(100000, 8, 1.0, 1.0, 1000.0, (3.5, 1.5))


def test_flying_focal_spot_positions():
    scan = small_scan()
    S, F = scan.source_positions(), scan.focal_centres()
    r = scan.radius + scan.ffs_radius
    a = scan.angles + scan.ffs_angle
    np.testing.assert_allclose(S, np.stack([r * np.cos(a), r * np.sin(a), scan.z + scan.ffs_z], 1), atol=1e-12)
    np.testing.assert_allclose(np.hypot(F[:, 0], F[:, 1]), 595.0)
    # the detector belongs to the focal centre: every element lies on the cylinder around F's axis line
    P = scan.element_positions()
    dist = np.hypot(P[..., 0] - F[:, None, None, 0], P[..., 1] - F[:, None, None, 1])
    np.testing.assert_allclose(dist, scan.detector.radius, rtol=1e-12)
    # the central element's ray from F passes through the rotation axis
    c0, _r0 = scan.detector.central_element
    assert scan.detector.column_at(1.0, 0.0) == pytest.approx(c0)
    origin, direction = scan.rays(slice(0, 3))
    np.testing.assert_allclose(origin[:, 0, 0], S[:3])
    np.testing.assert_allclose(np.linalg.norm(direction, axis=-1), 1.0)


@pytest.mark.parametrize("shape", ["CYLINDRICAL", "FLAT"])
def test_vector_form_on_a_virtual_flat_detector(shape):
    """flat_projections (interpolated from exact cylinder projections) agree with the exact line
    integrals of the ConeVec3D from to_geometry, flying focal spot included."""
    rows, cols, n = 9, 64, 30
    det = CylindricalDetector(rows, cols, 1.8, 1.6, 1085.6, ((cols - 1) / 2 + 0.25, 4.0), shape)
    ang = np.arange(n) * 2 * np.pi / 30
    alt = np.tile([-1.0, 1.0], n // 2)
    scan = HelicalScan(np.zeros((n, rows, cols), np.float32), ang, 5.0 + 0.3 * np.arange(n), 595.0, det,
                       ffs_angle=alt * 1e-3, ffs_z=alt * 0.4, ffs_radius=alt * 2.0, ffs_mode="FFSXYZ")
    ells = [Ellipsoid(0.02, (40, 30, 30), (0, 0, 9.0), 0.3), Ellipsoid(0.01, (8, 10, 6), (10, -5, 12.0), 1.0)]
    scan.projections[:] = scan_line_integrals(ells, scan)
    g = scan.to_geometry((16, 48, 48), 2.0)
    zc = 0.5 * (scan.z.min() + scan.z.max())
    shifted = [dataclasses.replace(e, centre=(e.centre[0], e.centre[1], e.centre[2] - zc)) for e in ells]
    exact = analytic_sinogram(shifted, g)
    flat = scan.flat_projections()
    inner = np.s_[:, 1:-1, 1:-1]  # the outermost flat pixels may fall past the real detector's edge
    err = np.linalg.norm(flat[inner] - exact[inner]) / np.linalg.norm(exact[inner])
    # cylinder: bilinear resampling error; flat: the virtual detector is the real one
    assert err < (1e-3 if shape == "CYLINDRICAL" else 1e-6), err  # measured 1.2e-4 / 3e-8
    assert math.isclose(scan.pitch, 0.3 * 30, rel_tol=1e-9)
