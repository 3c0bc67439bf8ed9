"""The 4D pipeline and ``recon mri --dynamic respiratory`` on a file the simulator writes: outputs (HDF5,
NIfTI 4D, DICOM with temporal positions, GIF/strip/plot), per-readout signal and bins, one-line errors;
MRSIGMA signature matching; the bundled sample's registration."""

import os

import h5py
import numpy as np
import pytest

from recon.cli import main
from recon.data import path as sample_path
from recon.io import read_raw
from recon.mri.dynamic import (DynamicConfig, ScanConfig, build_dictionary, match_segments, reconstruct_dynamic,
                               simulate, simulation_from_raw, spokes_from_raw)
from recon.mri.dynamic.gating import correlation
from recon.mri.dynamic.mrsigma import match, segments
from recon.mri.dynamic.simulate import SAMPLE_CONFIG
from test_cli import _run_cli

CFG = ScanConfig(matrix=(6, 32, 32), fov_mm=(90.0, 360.0, 360.0), n_angles=72, oversampling=1, n_coils=3,
                 tr_ms=40.0, noise=0.01, seed=2)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("dyn")
    path = simulate(CFG).write(d / "free_breathing.h5")
    return path


@pytest.fixture(scope="module")
def result(small):
    return reconstruct_dynamic(read_raw(small), DynamicConfig(bins=4, iters=4, quiet=True))


def test_pipeline_result(small, result):
    raw = read_raw(small)
    R = CFG.n_angles * CFG.matrix[0]
    assert result.images.shape == (4, 6, 32, 32) and result.images.dtype == np.complex64
    assert result.volume.shape == (4, 6, 32, 32) and result.volume.dtype == np.float32
    assert result.respiratory_signal.shape == (R,) and result.bin_index.shape == (R,)
    # per readout in file order: an angle's bin repeated over its partitions, the file's time stamps
    expect = np.empty(R, dtype=np.int64)
    expect[result.data.readout] = result.bins.index[:, None]
    assert np.array_equal(result.bin_index, expect)
    angle = raw.counters["kspace_encode_step_1"]                # the file's angle counter agrees
    assert all(len(set(angle[result.data.readout[a]])) == 1 for a in range(CFG.n_angles))
    stamps = raw.acquisitions.head["acquisition_time_stamp"][raw.imaging]
    assert np.allclose(result.readout_time_s, (stamps - stamps.min()) * 2.5e-3)
    _, si, _ = simulation_from_raw(raw)
    assert correlation(result.respiratory_signal, si) > 0.9
    assert set(np.unique(result.bin_index)) <= {-1, 0, 1, 2, 3}
    assert result.info["method"] == "xdgrasp" and result.info["bellows_correlation"] > 0.8
    assert result.bins.ranges.shape == (4, 2) and np.all(np.diff(result.bins.ranges[:, 0]) > 0)


@pytest.mark.parametrize("method", ["sense", "zf"])
def test_pipeline_baselines(small, method):
    r = reconstruct_dynamic(read_raw(small), DynamicConfig(bins=4, method=method, sense_iters=3, quiet=True))
    assert r.images.shape == (4, 6, 32, 32) and np.all(np.isfinite(r.images)) and r.info["method"] == method


@pytest.mark.parametrize("field, value, match", [
    ("bins", 0, "--bins"), ("method", "cs", "--method"), ("gating", "cardiac", "--gating"),
    ("alpha", 2.0, "--prior-weight"), ("lam_t", float("nan"), "--lam-t"), ("band_hz", (1.0, 0.5), "band_hz"),
    ("virtual_coils", 0, "--virtual-coils"), ("signal", "ecg", "--signal"),
])
def test_config_errors(field, value, match):
    with pytest.raises(ValueError, match=match):
        DynamicConfig(**{field: value}).validate()


def test_more_bins_than_spokes(small):
    with pytest.raises(ValueError, match=r"bins \(--bins\) = 500 exceeds the 72 angles"):
        reconstruct_dynamic(read_raw(small), DynamicConfig(bins=500, quiet=True))


def test_prior_file(tmp_path, small, result):
    np.save(tmp_path / "prior.npy", result.volume[1])
    r = reconstruct_dynamic(read_raw(small), DynamicConfig(bins=4, iters=3, prior=str(tmp_path / "prior.npy"),
                                                           quiet=True))
    assert r.info["alpha"] == 0.5 and np.all(np.isfinite(r.images))
    np.save(tmp_path / "bad.npy", result.volume[1, :3])
    with pytest.raises(ValueError, match="--prior"):
        reconstruct_dynamic(read_raw(small), DynamicConfig(prior=str(tmp_path / "bad.npy"), quiet=True))


# ---- the command line --------------------------------------------------------------------------------

def test_cli_h5_and_previews(tmp_path, small, capsys):
    assert main(["mri", str(small), "--dynamic", "respiratory", "--bins", "4", "--iters", "3",
                 "-o", str(tmp_path) + "/"]) == 0
    base = tmp_path / "free_breathing_xdgrasp_4d"
    for suffix in (".h5", ".gif", "_strip.png", "_signal.png"):
        assert (tmp_path / (base.name + suffix)).is_file(), suffix
    assert "4 bins of 6x32x32" in capsys.readouterr().out
    with h5py.File(str(base) + ".h5", "r") as f:
        assert f["reconstruction"].shape == (4, 6, 32, 32) and f["reconstruction"].dtype == np.float32
        R = CFG.n_angles * 6
        assert f["respiratory_signal"].shape == (R,) and f["bin_index"].shape == (R,)
        assert f["bin_ranges"].shape == (4, 2)
        assert (f["bin_index"][()] < 0).sum() == 6 * f.attrs["rejected_angles"]
        assert f.attrs["method"] == "xdgrasp" and f.attrs["bins"] == 4 and f.attrs["axes"] == "bins, z, y, x"
    from PIL import Image

    gif = Image.open(str(base) + ".gif")
    assert gif.n_frames == 2 * 4 - 2                          # expiration -> inspiration -> back
    # refuses to overwrite without --overwrite
    assert main(["mri", str(small), "--dynamic", "respiratory", "--bins", "4", "-o", str(tmp_path) + "/",
                 "-q"]) == 1


def test_cli_nifti_and_dicom(tmp_path, small):
    from recon.io import read_nifti

    assert main(["mri", str(small), "--dynamic", "respiratory", "--bins", "3", "--method", "zf",
                 "-o", str(tmp_path / "x.nii.gz"), "-q"]) == 0
    vol, vs, _, _ = read_nifti(tmp_path / "x.nii.gz")
    assert vol.shape == (3, 6, 32, 32) and np.allclose(vs, (15.0, 11.25, 11.25))
    assert main(["mri", str(small), "--dynamic", "respiratory", "--bins", "3", "--method", "zf",
                 "--format", "dicom", "-o", str(tmp_path / "series"), "-q"]) == 0
    import pydicom

    files = sorted((tmp_path / "series").iterdir())
    assert len(files) == 3 * 6
    ds = [pydicom.dcmread(f) for f in files]
    assert sorted(int(d.TemporalPositionIdentifier) for d in ds) == [1] * 6 + [2] * 6 + [3] * 6
    assert {int(d.NumberOfTemporalPositions) for d in ds} == {3}
    assert len({d.SeriesInstanceUID for d in ds}) == 1 and len({int(d.InstanceNumber) for d in ds}) == 18
    assert "respiratory bin" in ds[0].ImageComments


def test_cli_batch_names_the_dynamic_outputs(tmp_path, small, capsys):
    """Two scans through recon.batch: every output the dynamic branch writes is planned (so
    --skip-existing recognises a finished scan and skips it)."""
    import shutil

    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("a.h5", "b.h5"):
        shutil.copy(small, scans / name)
    args = ["mri", str(scans), "--dynamic", "respiratory", "--bins", "3", "--method", "zf", "-o",
            str(tmp_path / "out") + "/", "-q"]
    assert main(args) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix != ".csv")
    assert written == sorted(f"{s}_zf_4d{x}" for s in "ab" for x in (".h5", ".gif", "_strip.png", "_signal.png"))
    assert main(args[:-1] + ["--skip-existing"]) == 0
    assert "0 reconstructed, 2 skipped, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--method", "xdgrasp"], "needs --dynamic respiratory"),
    (["--dynamic", "respiratory", "--slices", "0"], "--slices does not apply"),
    (["--dynamic", "respiratory", "--bins", "1000"], "--bins) = 1000 exceeds"),
    (["--dynamic", "respiratory", "--method", "cs"], "--method"),
])
def test_cli_errors_are_one_line(tmp_path, small, args, message):
    p = _run_cli(["mri", str(small), "-o", str(tmp_path / "out") + "/"] + args, tmp_path)
    assert p.returncode == 1 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---- MRSIGMA --------------------------------------------------------------------------------------------

def test_signature_of_a_dictionary_state_matches_itself(result):
    D = build_dictionary(result.images, result.maps)
    for b in range(D.n_states):
        # the profile is the inverse kz FFT of the centre samples: undo it to feed match() its own signature
        from recon.mri.coils import centered_fft

        centre = centered_fft(D.signatures[b], (1,))[:, None]                 # (C, 1, Z)
        m = match(D, centre)
        assert m.bin == b and m.state == b and m.confidence > 0.999 and m.residual < 1e-6
        assert m.volume is D.volumes[b] or np.shares_memory(m.volume, D.volumes)


def test_segments_are_short():
    from recon.mri.dynamic.data import SpokeData

    t = np.arange(40 * 4).reshape(40, 4) * 0.05                             # angles of 0.2 s
    data = SpokeData(np.zeros((1, 40, 4, 8), np.complex64), np.zeros((40, 8, 2), np.float32), np.arange(4) - 2.0,
                     t, np.arange(160).reshape(40, 4), (4, 8, 8), (1.0, 1.0, 1.0))
    segs = segments(data, 0.3)
    assert all(t[s].max() - t[s].min() <= 0.3 + 1e-9 for s in segs) and np.array_equal(np.concatenate(segs),
                                                                                        np.arange(40))
    with pytest.raises(ValueError, match="0.3"):
        segments(data, 1.0)


def test_mrsigma_on_new_data_of_the_sample():
    raw = read_raw(sample_path("abdomen-4d-sos"))
    data = spokes_from_raw(raw)
    _, si, _ = simulation_from_raw(raw)
    n_train = int(0.7 * data.n_angles)
    train, new = data.subset(np.arange(n_train)), data.subset(np.arange(n_train, data.n_angles))
    from recon.mri.dynamic import bin_signal, respiratory_signal
    from recon.mri.dynamic import xdgrasp as xd

    sig = respiratory_signal(train)
    bins = bin_signal(sig.signal, sig.times_s, 6)
    maps = xd.estimate_maps(train, method="lowres")                          # quick maps: matching is the point
    rec = xd.xdgrasp_bins(xd.bin_data(train, bins), maps, iters=6, cg_iters=2)
    si_train = si[train.readout].mean(axis=1)
    si_bins = np.array([si_train[bins.index == b].mean() for b in range(6)])
    D = build_dictionary(rec.images, maps, states=si_bins, coil_matrix=train.coil_matrix)
    matches = match_segments(D, new)
    true = np.array([si[new.readout[new.times_s.max(axis=1) <= m.time_s + 1e-9]].mean(axis=1)[-1] for m in matches])
    est = np.array([m.signal for m in matches])
    inside = true < si_bins.max() + 1.0                                     # states the dictionary holds
    assert correlation(est[inside], true[inside]) > 0.9
    assert np.median(np.abs(est[inside] - true[inside])) < 2.0             # mm
    assert np.median([m.elapsed_ms for m in matches]) < 150.0
    assert np.mean([m.confidence for m in np.array(matches)[~inside]] or [0]) < \
        np.mean([m.confidence for m in np.array(matches)[inside]])


def test_bundled_sample_is_registered_and_small():
    from recon.data import SAMPLES, list_samples

    assert "abdomen-4d-sos" in SAMPLES and any("abdomen-4d-sos" in s for s in list_samples())
    p = sample_path("abdomen-4d-sos")
    assert os.path.getsize(p) < 6_000_000
    raw = read_raw(p)
    cfg, si, _ = simulation_from_raw(raw)
    assert cfg == SAMPLE_CONFIG and si.shape == (128 * 12,) and np.ptp(si) > 15.0   # a deep breath
