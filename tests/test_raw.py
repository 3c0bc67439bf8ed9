"""Raw data in recon.io (issue #9 item 4): nothing dropped from an ISMRMRD file, one decoder for
files and streams (also fed MRD v1 bytes laid out exactly as the ismrmrd package lays them out),
views per (repetition, contrast, phase, set, slice), fastMRI in the same types, the layering of
recon.io and fastmri_data, and the pipeline ``recon.mri.reconstruct(raw | arrays, ReconConfig)``."""

import os

import numpy as np
import pytest
from isolated import run_python

import recon
from recon.io import AcquisitionDecoder, RawData, read_ismrmrd, read_raw, write_ismrmrd, write_ismrmrd_raw
from recon.io import mrd
from recon.mri import ReconConfig, RetrospectiveMask, reconstruct

ismrmrd = pytest.importorskip("ismrmrd", reason="ismrmrd package (the `test` extra) not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(recon.__file__)))
NX, NY, NC = 16, 12, 3


def _crandn(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _package_file(path, rng):
    """A Cartesian file written by the ismrmrd package: noise first, then 2 repetitions x 2 contrasts
    x 2 slices x 2 averages of 12 lines, a navigator, every header field set to something
    distinctive, and respiratory and ECG waveforms. Returns the acquisitions as written (their
    order) and the full k-space ``(rep, con, slice, avg, coil, ky, kx)``."""
    from recon.io import build_ismrmrd_header

    xml = build_ismrmrd_header((NX, NY, 1), (160.0, 120.0, 5.0), limits={
        "kspace_encoding_step_1": (0, NY - 1, NY // 2), "repetition": (0, 1, 0), "contrast": (0, 1, 0),
        "slice": (0, 1, 0), "average": (0, 1, 0)})
    ds = ismrmrd.Dataset(str(path), "dataset", True)
    ds.write_xml_header(xml)
    full = _crandn(rng, 2, 2, 2, 2, NC, NY, NX)
    written = []
    noise = ismrmrd.Acquisition.from_array(_crandn(rng, NC, 64))
    noise.setFlag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    noise.sample_time_us = 7.5
    written.append(noise)
    t = 1000
    for rep in range(2):
        for con in range(2):
            for s in range(2):
                for avg in range(2):
                    for ky in range(NY):
                        a = ismrmrd.Acquisition.from_array(full[rep, con, s, avg, :, ky])
                        a.idx.kspace_encode_step_1, a.idx.repetition, a.idx.contrast = ky, rep, con
                        a.idx.slice, a.idx.average, a.idx.user[3] = s, avg, 7 + ky
                        a.acquisition_time_stamp = t
                        a.physiology_time_stamp[0], a.physiology_time_stamp[2] = t // 10, 5
                        a.user_int[1], a.user_float[2] = -ky, 0.5 * ky
                        a.position[2], a.read_dir[0], a.phase_dir[1], a.slice_dir[2] = 2.5 * s, 1.0, 1.0, 1.0
                        a.center_sample, a.sample_time_us, a.scan_counter = NX // 2, 5.0, len(written)
                        written.append(a)
                        t += 3 if ky % 5 else -2  # time stamps out of arrival order now and then
    nav = ismrmrd.Acquisition.from_array(_crandn(rng, NC, 8))
    nav.setFlag(ismrmrd.ACQ_IS_NAVIGATION_DATA)
    nav.acquisition_time_stamp = 1
    written.insert(30, nav)
    for a in written:
        ds.append_acquisition(a)
    waves = []
    for i in range(4):
        w = ismrmrd.Waveform.from_array(rng.integers(0, 4096, (1 + i % 2, 10 + i), dtype=np.uint32),
                                        waveform_id=mrd.WAVEFORM_RESPIRATORY if i % 2 else mrd.WAVEFORM_ECG,
                                        time_stamp=1000 + 40 * i, sample_time_us=2500.0)
        ds.append_waveform(w)
        waves.append(w)
    ds.close()
    return written, waves, full


@pytest.fixture(scope="module")
def package_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("raw") / "pkg.h5"
    written, waves, full = _package_file(p, np.random.default_rng(0))
    return p, written, waves, full


def _same_raw(a: RawData, b: RawData):
    assert a.header.xml == b.header.xml
    assert a.acquisitions == b.acquisitions
    assert a.waveforms == b.waveforms
    assert len(a.slices) == len(b.slices)
    for x, y in zip(a.slices, b.slices):
        assert x.index == y.index
        np.testing.assert_array_equal(x.kspace, y.kspace)


def test_nothing_is_dropped(package_file):
    p, written, waves, full = package_file
    raw = read_ismrmrd(p)
    acq = raw.acquisitions
    assert len(acq) == len(written) == 1 + 2 * 2 * 2 * 2 * NY + 1
    for i, a in enumerate(written):  # every header field of every acquisition, data, trajectory
        assert bytes(a.getHead()) == acq.head[i].tobytes(), i
        np.testing.assert_array_equal(acq.data[i], a.data)
        assert acq.traj[i].shape == (a.number_of_samples, 0)
    assert acq["repetition"].max() == 1 and acq["contrast"].max() == 1 and acq["average"].max() == 1
    np.testing.assert_array_equal(acq["user"][1:5, 3], [7, 8, 9, 10])
    assert acq["physiology_time_stamp"].shape == (len(written), 3) and acq["user_int"][2, 1] == -1
    assert acq.has_flag(mrd.ACQ_IS_NOISE_MEASUREMENT).sum() == 1
    assert acq.has_flag(mrd.ACQ_IS_NAVIGATION_DATA).sum() == 1
    ts = acq.in_time_order()["acquisition_time_stamp"]
    assert np.all(np.diff(ts.astype(np.int64)) >= 0) and list(ts[:2]) == [0, 1]  # the noise scan, the navigator
    # waveforms with their time stamps and ids
    assert len(raw.waveforms) == 4
    for i, w in enumerate(waves):
        for name in mrd.WAVEFORM_HEAD_DTYPE.names:
            assert getattr(w, name) == raw.waveforms.head[name][i], name
        np.testing.assert_array_equal(raw.waveforms.data[i], w.data)
    resp = raw.waveforms.select(mrd.WAVEFORM_RESPIRATORY)
    assert len(resp) == 2 and list(resp.head["time_stamp"]) == [1040, 1120]
    assert raw.noise.shape == (NC, 64) and raw.noise_dwell_time_us == 7.5 and raw.noise_scale == 1.5


def test_units_per_repetition_contrast_slice_with_averages_combined(package_file):
    p, _, _, full = package_file
    raw = read_raw(p)
    units = raw.slices
    assert [tuple(u.index[k] for k in ("repetition", "contrast", "slice")) for u in units] == [
        (r, c, s) for r in range(2) for c in range(2) for s in range(2)]
    for u in units:
        r, c, s = u.index["repetition"], u.index["contrast"], u.index["slice"]
        assert u.index["phase"] == 0 and u.index["set"] == 0 and u.cartesian
        np.testing.assert_allclose(u.kspace, full[r, c, s].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert raw.slice_geometry[1]["position"][2] == 2.5


def test_file_and_stream_decode_alike(package_file):
    """The file reader, acquisitions added one by one, and MRD v1 bytes give identical RawData."""
    p, written, waves, _ = package_file
    from_file = read_ismrmrd(p)
    xml = ismrmrd.Dataset(str(p), "dataset", False).read_xml_header()
    one = AcquisitionDecoder(xml)
    raw_bytes = AcquisitionDecoder(xml)
    for a in written:
        one.add(bytes(a.getHead()), a.traj, a.data)
        assert raw_bytes.add_bytes(a.to_bytes() + b"next message") == len(a.to_bytes())
    for w in waves:
        one.add_waveform(bytes(w.getHead()), w.data)
        raw_bytes.add_waveform_bytes(w.to_bytes())
    for dec in (one, raw_bytes):
        got = dec.finish()
        assert got.source == "stream" and got.label == "<stream>"
        _same_raw(from_file, got)
    # and a file written back from the table reads the same again
    back = read_ismrmrd(write_ismrmrd_raw(p.parent / "copy.h5", from_file))
    _same_raw(from_file, back)


def test_mrd_byte_layout_equals_the_ismrmrd_package():
    rng = np.random.default_rng(1)
    a = ismrmrd.Acquisition.from_array(_crandn(rng, 4, 10), trajectory=rng.random((10, 2)).astype(np.float32))
    a.idx.kspace_encode_step_2, a.idx.phase, a.acquisition_time_stamp, a.flags = 3, 2, 123456, 1 << 24
    b = a.to_bytes()
    head, traj, data, n = mrd.acquisition_from_bytes(b)
    assert n == len(b) == 340 + 10 * 2 * 4 + 4 * 10 * 8
    np.testing.assert_array_equal(traj, a.traj)
    np.testing.assert_array_equal(data, a.data)
    assert head["idx"]["kspace_encode_step_2"][0] == 3 and head["acquisition_time_stamp"][0] == 123456
    assert mrd.acquisition_to_bytes(head, traj, data) == b
    w = ismrmrd.Waveform.from_array(np.arange(6, dtype=np.uint32).reshape(2, 3), waveform_id=2, time_stamp=9)
    wh, wd, wn = mrd.waveform_from_bytes(w.to_bytes())
    assert wn == len(w.to_bytes()) and wh["waveform_id"][0] == 2 and mrd.waveform_to_bytes(wh, wd) == w.to_bytes()
    from recon.io import IsmrmrdFormatError

    dec = AcquisitionDecoder(recon.io.build_ismrmrd_header((10, 10, 1), (1.0, 1.0, 1.0)))
    with pytest.raises(IsmrmrdFormatError, match="header declares"):
        dec.add_bytes(b[:-1])  # truncated message
    with pytest.raises(IsmrmrdFormatError, match="holds 24 floats, header says 4 channels x 10"):
        dec.add(head, traj, data[:, :3])


def test_noncartesian_units_keep_counters_apart(tmp_path):
    rng = np.random.default_rng(2)
    ang = np.arange(8) * np.pi / 8
    r = np.arange(16) - 8
    coord = np.stack([r[None] * np.sin(ang[:, None]), r[None] * np.cos(ang[:, None])], -1)
    p = write_ismrmrd(tmp_path / "r.h5", samples=_crandn(rng, 2, 3, 8, 16), trajectory=coord, image_shape=(16, 16))
    raw = read_ismrmrd(p)
    acq = raw.acquisitions
    acq.head["idx"]["repetition"][::2] = 1  # every other spoke a second repetition
    raw._v = None
    units = raw.slices
    assert [(u.index["repetition"], u.index["slice"]) for u in units] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(u.kspace.shape == (3, 4, 16) and u.coord.shape == (4, 16, 2) for u in units)


def test_fastmri_lands_in_rawdata(tmp_path):
    from fastmri_data import write_fastmri_multicoil

    from recon.mri.simulate import textured_phantom

    p = tmp_path / "k.h5"
    write_fastmri_multicoil(p, textured_phantom(3, 32, 24, seed=1), num_coils=4, readout_oversampling=2)
    raw = read_raw(p)
    assert raw.source == "fastmri" and raw.acquisitions is None and raw.is_cartesian
    assert len(raw.slices) == 3 and raw.fastmri.num_slices == 3
    s1 = raw.slices[1]
    assert s1.kspace.shape == (4, 64, 24) and s1.index == {"slice": 1} and raw.crop == (32, 24)
    assert raw.reference(1).shape == (32, 24)
    assert raw.slices[-2] is s1  # read once
    [raw.slices[i] for i in range(3)]
    assert len(raw.slices._cache) == 2  # a few slices in memory, never the volume


def test_layering_recon_io_does_not_import_fastmri_data():
    code = ("import sys, recon.io, recon.io.raw, recon.io.fastmri, recon.io.ismrmrd_header;"
            "print('fastmri_data' in sys.modules)")
    r = run_python(code, 60)
    assert r.stdout.strip() == "False", r.stderr
    for name in os.listdir(os.path.join(ROOT, "recon", "io")):
        if name.endswith(".py"):
            assert "fastmri_data" not in open(os.path.join(ROOT, "recon", "io", name)).read(), name
    import fastmri_data

    assert fastmri_data.read_fastmri is recon.io.read_fastmri
    assert fastmri_data.parse_ismrmrd_header is recon.io.parse_ismrmrd_header


# ---- the pipeline ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cart(tmp_path_factory):
    from fastmri_data import fft2c, simulate_coil_maps

    from recon.mri.simulate import textured_phantom

    img = textured_phantom(1, 32, 32, seed=3)[0]
    k = fft2c(simulate_coil_maps((32, 32), 4) * img).astype(np.complex64)
    mask = np.zeros(32, bool)
    mask[::2] = True
    mask[12:20] = True
    k = k * mask[:, None]  # phase encode (ky) lines, as write_ismrmrd masks them
    p = write_ismrmrd(tmp_path_factory.mktemp("pipe") / "c.h5", k[None], mask=mask[None, None])
    return p, k


def test_pipeline_file_and_arrays_and_cli_agree(cart, tmp_path):
    p, k = cart
    cfg = ReconConfig(method="sense", iters=8, quiet=True)
    from_file = reconstruct(read_raw(p), cfg)
    from_arrays = reconstruct(k, cfg)
    np.testing.assert_array_equal(from_file.images[0], from_arrays.images[0])
    assert from_file.volume.shape == (1, 32, 32) and from_file.volume.dtype == np.float32
    assert from_file.index == [{"repetition": 0, "contrast": 0, "phase": 0, "set": 0, "slice": 0}]
    assert from_file.info["iterations"] == 8 and from_file.histories[0].n_iter == 8
    from recon.cli import main
    from recon.io import read_fastmri_reconstruction

    assert main(["mri", str(p), "-o", str(tmp_path / "o.h5"), "--method", "sense", "--iters", "8", "-q"]) == 0
    np.testing.assert_array_equal(read_fastmri_reconstruction(tmp_path / "o.h5"), from_file.volume)


def test_pipeline_torch_in_torch_out(cart):
    torch = pytest.importorskip("torch")
    _, k = cart
    for method in ("zf", "sense"):
        cfg = ReconConfig(method=method, iters=5, quiet=True)
        ref = reconstruct(k, cfg)
        got = reconstruct(torch.from_numpy(k), cfg)
        assert isinstance(got.images[0], torch.Tensor) and got.images[0].device.type == "cpu"
        assert isinstance(got.volume, torch.Tensor) and got.volume.dtype == torch.float32
        # computed in torch: equal to float32 rounding (tests/test_mri_torch.py pins the methods)
        tol = 1e-5 * np.abs(ref.images[0]).max()
        np.testing.assert_allclose(got.images[0].numpy(), ref.images[0], rtol=0, atol=tol)
        np.testing.assert_allclose(got.volume.numpy(), ref.volume, rtol=0, atol=tol)
        assert isinstance(ref.images[0], np.ndarray)


def test_config_validation_names_field_and_option(cart):
    _, k = cart
    cases = [(dict(method="bogus"), "method (--method)"), (dict(lam=float("nan")), "lam (--lam)"),
             (dict(iters=0), "iters (--iters)"), (dict(virtual_coils=0), "virtual_coils (--virtual-coils)"),
             (dict(crop=2.0), "crop (--crop)"), (dict(nufft_tol=0.0), "nufft_tol (--nufft-tol)"),
             (dict(slices="x"), "slices (--slices)"), (dict(slices=5), "out of range"),
             (dict(retrospective=RetrospectiveMask("random", float("inf"))), "retrospective.accel (--accel)"),
             (dict(retrospective=RetrospectiveMask("bogus")), "--retrospective-mask")]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            reconstruct(k, ReconConfig(**kw))
    with pytest.raises(TypeError, match="RawData or a k-space array"):
        reconstruct([1, 2, 3])
    with pytest.raises(ValueError, match="needs im_shape"):
        reconstruct(k, coord=np.zeros((4, 2), np.float32))


def test_pipeline_arrays_with_maps_and_mask(cart):
    from recon.mri import coils
    from recon.mri import recon as R

    _, k = cart
    maps = coils.estimate_maps(k, "walsh", 16)
    mask = np.broadcast_to((np.abs(k).sum(axis=(0, 2)) > 0)[:, None], k.shape[1:])
    res = reconstruct(k, ReconConfig(method="sense", iters=6, quiet=True), maps=maps, mask=mask)
    ref = R.cg_sense(k, maps, mask=mask, max_iter=6)
    np.testing.assert_array_equal(res.images[0], ref.image)
    assert res.recons[0].maps is maps
    with pytest.raises(ValueError, match="array input"):
        reconstruct(read_raw(cart[0]), maps=maps)
