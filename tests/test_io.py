"""recon.io: ISMRMRD read/write (cross-checked with the ismrmrd package), image writers."""

import shutil
import subprocess

import h5py
import numpy as np
import pytest

from fastmri_data.header import parse_ismrmrd_header
from recon.io import IsmrmrdFormatError, read_ismrmrd, write_ismrmrd


def _crandn(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _radial(na, nr):
    ang = np.arange(na) * np.pi / na
    r = np.arange(nr) - nr // 2
    return np.stack([r[None] * np.sin(ang[:, None]), r[None] * np.cos(ang[:, None])], -1)


# ---- ISMRMRD: Cartesian ----------------------------------------------------------------------------

def test_ismrmrd_cartesian_roundtrip_multislice_noise_mask(tmp_path):
    rng = np.random.default_rng(0)
    k = _crandn(rng, 3, 4, 16, 12)  # (slice, coil, ky, kx)
    noise = _crandn(rng, 2, 4, 50)
    mask = np.zeros(16, bool)
    mask[::3] = True
    mask[6:10] = True
    p = write_ismrmrd(tmp_path / "c.h5", k, noise=noise, mask=mask, fov_mm=(5.0, 200.0, 150.0), noise_dwell_time_us=7.5)
    d = read_ismrmrd(p)
    assert d.is_cartesian and d.trajectory_type == "cartesian"
    assert d.kspace.shape == (1, 1, 1, 1, 1, 3, 4, 1, 16, 12) and d.kspace.dtype == np.complex64
    ks = d.kspace[0, 0, 0, 0, 0, :, :, 0]
    np.testing.assert_array_equal(ks[:, :, mask], k[:, :, mask])
    assert np.all(ks[:, :, ~mask] == 0)
    np.testing.assert_array_equal(d.mask[0, 0, 0, 0, 0, :, 0], np.broadcast_to(mask, (3, 16)))
    np.testing.assert_array_equal(d.noise, np.concatenate(list(noise), axis=1))
    assert d.noise_dwell_time_us == 7.5 and d.dwell_time_us == 5.0
    assert d.matrix_size == (12, 16, 1) and d.image_shape == (16, 12)
    assert d.voxel_size_mm == (5.0, 12.5, 12.5)
    assert d.num_slices == 3
    np.testing.assert_array_equal(d.slice_kspace(2)[:, 0], ks[2])
    np.testing.assert_array_equal(d.kspace_by_slice()[:, :, 0], ks)
    # slice positions follow the slice thickness
    assert [d.slice_geometry[s]["position"][2] for s in range(3)] == [-5.0, 0.0, 5.0]


def test_ismrmrd_3d_cartesian_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    k = _crandn(rng, 1, 2, 6, 8, 10)
    d = read_ismrmrd(write_ismrmrd(tmp_path / "c3.h5", k))
    assert d.image_shape == (6, 8, 10)
    np.testing.assert_array_equal(d.kspace[0, 0, 0, 0, 0, 0], k[0])


def test_ismrmrd_written_file_reads_with_ismrmrd_package(tmp_path):
    ismrmrd = pytest.importorskip("ismrmrd", reason="ismrmrd package (the `test` extra) not installed")
    rng = np.random.default_rng(2)
    k = _crandn(rng, 2, 3, 8, 10)
    p = str(write_ismrmrd(tmp_path / "c.h5", k, noise=_crandn(rng, 3, 20)))
    ds = ismrmrd.Dataset(p, "dataset", False)
    try:
        hdr = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        assert (hdr.encoding[0].encodedSpace.matrixSize.x, hdr.encoding[0].encodedSpace.matrixSize.y) == (10, 8)
        n = ds.number_of_acquisitions()
        assert n == 1 + 2 * 8
        noise = ds.read_acquisition(0)
        assert noise.isFlagSet(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        for i in range(1, n):
            a = ds.read_acquisition(i)
            np.testing.assert_array_equal(a.data, k[a.idx.slice, :, a.idx.kspace_encode_step_1])
        assert ds.read_acquisition(n - 1).isFlagSet(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    finally:
        ds.close()


def test_ismrmrd_package_written_file_reads(tmp_path):
    """An independent writer (the ismrmrd package) with asymmetric echo, reversed lines, averages,
    partial Fourier counters, calibration-only and navigator acquisitions."""
    ismrmrd = pytest.importorskip("ismrmrd", reason="ismrmrd package (the `test` extra) not installed")
    from fastmri_data.header import build_ismrmrd_header

    rng = np.random.default_rng(3)
    nx, ny, nc = 16, 12, 2
    full = _crandn(rng, 2, nc, ny, nx)  # (average, coil, ky, kx)
    # partial Fourier: lines ky 2..11 acquired, counters 0..9 with centre 4 (ky = e1 + 6 - 4)
    xml = build_ismrmrd_header((nx, ny, 1), (160.0, 120.0, 5.0),
                               limits={"kspace_encoding_step_1": (0, 9, 4), "average": (0, 1, 0)})
    p = str(tmp_path / "pkg.h5")
    ds = ismrmrd.Dataset(p, "dataset", True)
    ds.write_xml_header(xml)
    echo_start = 3  # samples 3..15 acquired: 13 samples with centre_sample 5 -> kx = 8 - 5 = 3
    for avg in range(2):
        for e1 in range(10):
            ky = e1 + 2
            data = full[avg, :, ky, echo_start:]
            a = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data[:, ::-1] if e1 % 2 else data))
            a.center_sample = 8 - echo_start
            a.idx.kspace_encode_step_1 = e1
            a.idx.average = avg
            if e1 % 2:
                a.setFlag(ismrmrd.ACQ_IS_REVERSE)
            ds.append_acquisition(a)
    nav = ismrmrd.Acquisition.from_array(_crandn(rng, nc, 13))
    nav.setFlag(ismrmrd.ACQ_IS_NAVIGATION_DATA)
    ds.append_acquisition(nav)
    cal = ismrmrd.Acquisition.from_array(_crandn(rng, nc, 13))
    cal.setFlag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    cal.idx.kspace_encode_step_1 = 4
    cal.center_sample = 5
    ds.append_acquisition(cal)
    ds.close()
    d = read_ismrmrd(p)
    k = d.kspace[0, 0, 0, 0, :, 0, :, 0]  # (average, coil, ky, kx)
    expect = np.zeros_like(full)
    expect[:, :, 2:, echo_start:] = full[:, :, 2:, echo_start:]
    np.testing.assert_array_equal(k, expect)
    np.testing.assert_allclose(d.slice_kspace(0)[:, 0], expect.mean(axis=0), rtol=1e-6)
    assert d.calibration is not None and np.count_nonzero(d.calibration) == nc * 13
    assert np.count_nonzero(d.calibration[0, 0, 0, 0, 0, 0, :, 0, 6]) == nc * 13
    assert d.noise is None


# ---- ISMRMRD: non-Cartesian ---------------------------------------------------------------------

@pytest.mark.parametrize("units", ["normalized", "cycles_per_fov"])
def test_ismrmrd_radial_roundtrip(tmp_path, units):
    rng = np.random.default_rng(4)
    na, nr = 10, 32
    coord = _radial(na, nr)
    s = _crandn(rng, 2, 3, na, nr)
    noise = _crandn(rng, 3, 40)
    p = write_ismrmrd(tmp_path / "r.h5", samples=s, trajectory=coord, image_shape=(32, 32), noise=noise,
                      trajectory_units=units)
    d = read_ismrmrd(p)
    assert not d.is_cartesian and d.trajectory_type == "radial" and d.trajectory_units == units
    assert d.samples.shape == (2 * na, 3, nr) and d.trajectory.shape == (2 * na, nr, 2)
    assert d.num_slices == 2
    for sl in range(2):
        ss, tt = d.slice_samples(sl)
        np.testing.assert_array_equal(ss, s[sl])
        np.testing.assert_allclose(tt, coord, atol=1e-5)
    np.testing.assert_array_equal(d.noise, noise)


def test_ismrmrd_trajectory_units_auto_and_axis_order(tmp_path):
    """A trajectory written by the ismrmrd package in Gadgetron's [-0.5, 0.5] units and (kx, ky)
    order reads as cycles/FOV in (ky, kx) order, scaled by the encoded matrix (x=20, y=10)."""
    ismrmrd = pytest.importorskip("ismrmrd", reason="ismrmrd package (the `test` extra) not installed")
    from fastmri_data.header import build_ismrmrd_header

    p = str(tmp_path / "t.h5")
    ds = ismrmrd.Dataset(p, "dataset", True)
    ds.write_xml_header(build_ismrmrd_header((20, 10, 1), (200.0, 100.0, 5.0), trajectory="spiral"))
    tr = np.stack([np.linspace(-0.5, 0.5, 8), np.linspace(0.25, -0.25, 8)], -1).astype(np.float32)  # (kx, ky)
    a = ismrmrd.Acquisition.from_array(np.ones((1, 8), np.complex64), trajectory=tr)
    ds.append_acquisition(a)
    ds.close()
    d = read_ismrmrd(p)
    assert d.trajectory_units == "normalized" and d.trajectory_type == "spiral"
    np.testing.assert_allclose(d.trajectory[0, :, 1], tr[:, 0] * 20, atol=1e-6)
    np.testing.assert_allclose(d.trajectory[0, :, 0], tr[:, 1] * 10, atol=1e-6)
    d2 = read_ismrmrd(p, trajectory_units="cycles_per_fov")
    np.testing.assert_allclose(d2.trajectory[0, :, 1], tr[:, 0], atol=1e-7)


# ---- ISMRMRD: errors ----------------------------------------------------------------------------

def test_ismrmrd_truncated_and_mislabelled(tmp_path):
    rng = np.random.default_rng(5)
    p = write_ismrmrd(tmp_path / "c.h5", _crandn(rng, 2, 3, 16, 16))
    raw = open(p, "rb").read()
    t = tmp_path / "trunc.h5"
    t.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IsmrmrdFormatError) as ei:
        read_ismrmrd(t)
    assert "\n" not in str(ei.value)
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as hf:
        hf.create_dataset("kspace", data=np.zeros((2, 4, 4), np.complex64))
    with pytest.raises(IsmrmrdFormatError, match="not an ISMRMRD file"):
        read_ismrmrd(bad)
    with h5py.File(bad, "w") as hf:
        hf.create_group("dataset").create_dataset("xml", data=np.array([b"<notismrmrd/>"]))
        hf["dataset"].create_dataset("data", data=np.zeros(3))
    with pytest.raises(IsmrmrdFormatError):
        read_ismrmrd(bad)
    txt = tmp_path / "x.h5"
    txt.write_text("not hdf5")
    with pytest.raises(IsmrmrdFormatError):
        read_ismrmrd(txt)
    with pytest.raises(FileNotFoundError):
        read_ismrmrd(tmp_path / "missing.h5")
    assert issubclass(IsmrmrdFormatError, ValueError)


def test_write_ismrmrd_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_ismrmrd(tmp_path / "a.h5", np.zeros((4, 4)))  # not complex, wrong ndim
    with pytest.raises(ValueError):
        write_ismrmrd(tmp_path / "a.h5", np.full((2, 4, 4), np.nan, np.complex64))
    with pytest.raises(ValueError):
        write_ismrmrd(tmp_path / "a.h5", samples=np.zeros((2, 3, 4), np.complex64), trajectory=np.zeros((3, 4, 2)))
    with pytest.raises(ValueError):
        write_ismrmrd(tmp_path / "a.h5")


def test_header_parse_matches_builder():
    from fastmri_data.header import build_ismrmrd_header

    xml = build_ismrmrd_header((640, 368, 1), (280.0, 200.0, 4.5), (320, 320, 1), (140.0, 140.0, 4.5),
                               limits={"kspace_encoding_step_1": (0, 330, 165)}, receiver_channels=15)
    h = parse_ismrmrd_header(xml)
    assert h.encoded_matrix == (640, 368, 1) and h.recon_matrix == (320, 320, 1)
    assert h.encoded_fov_mm == (280.0, 200.0, 4.5) and h.receiver_channels == 15
    # fastMRI: padding_left = 368 // 2 - 165 = 19; padding_right = 19 + 330 + 1 = 350
    assert h.padding == (19, 350)


# ---- image outputs -------------------------------------------------------------------------------

def _volume(rng, shape=(4, 10, 12)):
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (100 * np.exp(-((y - shape[1] / 2) ** 2 + (x - shape[2] / 3) ** 2) / 20) * (1 + z)
            + rng.random(shape)).astype(np.float32)


def test_fastmri_reconstruction_roundtrip(tmp_path):
    from recon.io import read_fastmri_reconstruction, write_fastmri_reconstruction

    rng = np.random.default_rng(0)
    v = _crandn(rng, 3, 8, 8)
    p = write_fastmri_reconstruction(tmp_path / "r.h5", v, attrs={"acquisition": "AXT2"})
    with h5py.File(p, "r") as hf:
        assert list(hf.keys()) == ["reconstruction"] and hf["reconstruction"].dtype == np.float32
        assert hf.attrs["acquisition"] == "AXT2"
    np.testing.assert_array_equal(read_fastmri_reconstruction(p), np.abs(v))
    with pytest.raises(ValueError):
        write_fastmri_reconstruction(tmp_path / "x.h5", np.zeros((2, 2, 2, 2)))


def _sagittal():
    # x -> anterior (-Y in LPS), y -> inferior (-Z), z -> patient left (+X): a sagittal stack
    return np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def test_nifti_affine_roundtrip(tmp_path):
    nib = pytest.importorskip("nibabel")
    from recon.io import read_nifti, write_nifti

    rng = np.random.default_rng(1)
    v = _volume(rng)
    p = write_nifti(tmp_path / "a.nii.gz", v, (3.0, 1.5, 1.25))
    img = nib.load(p)
    assert img.shape == (12, 10, 4)  # (x, y, z)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    np.testing.assert_allclose(img.header.get_zooms()[:3], (1.25, 1.5, 3.0))
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    # voxel [k, j, i] = [2, 3, 4]: LPS = origin + (4 dx, 3 dy, 2 dz), origin puts index n//2 at 0
    lps = np.array([(4 - 6) * 1.25, (3 - 5) * 1.5, (2 - 2) * 3.0])
    np.testing.assert_allclose(img.affine @ [4, 3, 2, 1], np.r_[-lps[0], -lps[1], lps[2], 1])
    np.testing.assert_array_equal(np.asarray(img.dataobj)[4, 3, 2], v[2, 3, 4])
    vol, vs, d, o = read_nifti(p)
    np.testing.assert_array_equal(vol, v)
    np.testing.assert_allclose(vs, (3.0, 1.5, 1.25))
    np.testing.assert_allclose(d, np.eye(3), atol=1e-7)
    # oblique/sagittal orientation and explicit origin round trip; complex -> magnitude
    origin = np.array([10.0, -20.0, 30.0])
    p2 = write_nifti(tmp_path / "b.nii", v * 1j, (2.0, 1.0, 0.5), direction=_sagittal(), origin_mm=origin)
    assert nib.aff2axcodes(nib.load(p2).affine) == ("A", "I", "L")
    vol, vs, d, o = read_nifti(p2)
    np.testing.assert_allclose(vol, np.abs(v * 1j))
    np.testing.assert_allclose(vs, (2.0, 1.0, 0.5), rtol=1e-6)
    np.testing.assert_allclose(d, _sagittal(), atol=1e-6)
    np.testing.assert_allclose(o, origin, atol=1e-5)
    # 4D (t, z, y, x)
    p3 = write_nifti(tmp_path / "c.nii", np.stack([v, 2 * v]), (3.0, 1.5, 1.25), time_step_s=0.5)
    assert nib.load(p3).shape == (12, 10, 4, 2) and nib.load(p3).header.get_zooms()[3] == 0.5
    np.testing.assert_array_equal(read_nifti(p3)[0][1], 2 * v)
    with pytest.raises(ValueError):
        write_nifti(tmp_path / "d.nii", v, (0.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        write_nifti(tmp_path / "d.nii", v, (1.0, 1.0, 1.0), direction=np.ones((3, 3)))


def _dciodvfy_errors(path):
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")]


def test_dicom_series_roundtrip_and_geometry(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    nib = pytest.importorskip("nibabel")
    from recon.io import read_dicom_series, write_dicom_series, write_nifti

    rng = np.random.default_rng(2)
    v = _volume(rng) - 5.0  # some negative values: intercept < 0
    origin = np.array([10.0, -20.0, 30.0])
    paths = write_dicom_series(tmp_path / "dcm", v, (3.0, 1.5, 1.25), direction=_sagittal(), origin_mm=origin,
                               series_description="test", echo_time_ms=4.2, field_strength_t=3.0)
    assert len(paths) == 4
    dss = [pydicom.dcmread(p) for p in paths]
    assert all(ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.Modality == "MR" for ds in dss)
    assert len({ds.SOPInstanceUID for ds in dss}) == 4 and len({ds.SeriesInstanceUID for ds in dss}) == 1
    assert dss[0].pixel_array.dtype == np.uint16 and dss[0].pixel_array.shape == (10, 12)
    assert [float(s) for s in dss[0].PixelSpacing] == [1.5, 1.25] and float(dss[0].SliceThickness) == 3.0
    slope = float(dss[0].RescaleSlope)
    vol, vs, d, o = read_dicom_series(tmp_path / "dcm")
    np.testing.assert_allclose(vol, v, atol=slope / 2 + 1e-6)
    np.testing.assert_allclose(vs, (3.0, 1.5, 1.25), rtol=1e-9)
    np.testing.assert_allclose(d, _sagittal(), atol=1e-9)
    np.testing.assert_allclose(o, origin, atol=1e-9)
    # DICOM and NIfTI put every voxel at the same place: pixel (row j, col i) of slice k at
    # IPP_k + i dx IOP_row + j dy IOP_col (LPS) equals the NIfTI affine's (i, j, k) after LPS -> RAS
    aff = nib.load(write_nifti(tmp_path / "n.nii", v, (3.0, 1.5, 1.25), direction=_sagittal(), origin_mm=origin)).affine
    for k, j, i in [(0, 0, 0), (3, 9, 11), (2, 4, 7)]:
        ds = dss[k]
        iop = np.asarray(ds.ImageOrientationPatient, float)
        p_lps = np.asarray(ds.ImagePositionPatient, float) + i * 1.25 * iop[:3] + j * 1.5 * iop[3:]
        np.testing.assert_allclose((aff @ [i, j, k, 1])[:3], p_lps * [-1, -1, 1], atol=1e-6)
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed: DICOM IOD validation not run")
    for p in paths:
        assert _dciodvfy_errors(p) == [], p


def test_dicom_rejects_bad_input(tmp_path):
    from recon.io import write_dicom_series

    with pytest.raises(ValueError):
        write_dicom_series(tmp_path, np.zeros((2, 3, 4, 5)), (1, 1, 1))
    with pytest.raises(ValueError):
        write_dicom_series(tmp_path, np.full((2, 3, 4), np.nan), (1, 1, 1))
    with pytest.raises(ValueError):
        write_dicom_series(tmp_path, np.zeros((2, 3, 4)), (1, -1, 1))


def test_png_and_montage(tmp_path):
    from PIL import Image

    from recon.io import montage, write_png

    rng = np.random.default_rng(3)
    v = _volume(rng, (5, 10, 12)).astype(np.complex64)
    m = montage(np.abs(v), ncols=3, pad=1)
    assert m.shape == (2 * 10 + 1, 3 * 12 + 2)
    np.testing.assert_array_equal(m[11:21, 13:25], np.abs(v[4]))
    p = write_png(tmp_path / "m.png", v, ncols=3)
    im = np.asarray(Image.open(p))
    assert im.shape == m.shape and im.dtype == np.uint8
    assert len(np.unique(im)) > 50 and im.max() == 255 and im.min() == 0
    p2 = write_png(tmp_path / "s.png", v[0])
    assert np.asarray(Image.open(p2)).shape == (10, 12)
    with pytest.raises(ValueError):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 2, 2)))


def test_geometry_from_ismrmrd(tmp_path):
    from recon.io import geometry_from_ismrmrd

    rng = np.random.default_rng(4)
    d = read_ismrmrd(write_ismrmrd(tmp_path / "g.h5", _crandn(rng, 3, 2, 8, 10), fov_mm=(4.0, 16.0, 20.0)))
    direction, origin = geometry_from_ismrmrd(d.slice_geometry, (3, 8, 10), d.voxel_size_mm)
    np.testing.assert_allclose(direction, np.eye(3))
    # slice 0 is centred at z = -4 mm; voxel (y, x) = (4, 5) sits on its centre
    np.testing.assert_allclose(origin, [-5 * 2.0, -4 * 2.0, -4.0])


def test_ismrmrd_corrupted_bytes_raise_only_format_errors(tmp_path):
    import warnings

    rng = np.random.default_rng(6)
    raw = open(write_ismrmrd(tmp_path / "c.h5", _crandn(rng, 2, 2, 8, 8), noise=_crandn(rng, 2, 8)), "rb").read()
    raised = 0
    for seed in range(25):
        r = np.random.default_rng(seed)
        b = bytearray(raw)
        for pos in r.integers(0, len(b), 50):
            b[pos] = r.integers(0, 256)
        p = tmp_path / f"c{seed}.h5"
        p.write_bytes(bytes(b))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read_ismrmrd(p)
        except IsmrmrdFormatError as exc:
            assert "\n" not in str(exc)
            raised += 1
    assert raised > 0


def test_header_roundtrip_through_ismrmrd_schema_bindings():
    xsd = pytest.importorskip("ismrmrd.xsd", reason="ismrmrd package (the `test` extra) not installed")
    from fastmri_data.header import build_ismrmrd_header

    xml = build_ismrmrd_header((256, 128, 1), (300.0, 150.0, 6.0), (128, 128, 1), (150.0, 150.0, 6.0),
                               limits={"kspace_encoding_step_1": (0, 127, 64), "slice": (0, 9, 5)},
                               trajectory="radial", trajectory_params={"trajectory_units": "normalized", "n": 3},
                               receiver_channels=12, patient_id="p", tr_ms=3.1, te_ms=1.5, flip_angle_deg=10.0)
    hdr = xsd.CreateFromDocument(xml)
    enc = hdr.encoding[0]
    assert enc.encodingLimits.kspace_encoding_step_1.center == 64 and enc.reconSpace.matrixSize.x == 128
    assert hdr.acquisitionSystemInformation.receiverChannels == 12
    again = parse_ismrmrd_header(xsd.ToXML(hdr))  # re-serialised by the package, parsed by us
    h = parse_ismrmrd_header(xml)
    for f in ("encoded_matrix", "encoded_fov_mm", "recon_matrix", "recon_fov_mm", "limits", "trajectory",
              "trajectory_params", "receiver_channels", "patient_id", "tr_ms", "te_ms", "flip_angle_deg"):
        assert getattr(again, f) == getattr(h, f), f
