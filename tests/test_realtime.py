"""2D real-time radial frames (``recon.mri.realtime``): the analytic radial density against the
area it must cover, sliding windows (which spokes, when due, maps spokes), gridding frames equal to
recon's zero-filled reconstruction, the first SENSE frame equal to ``cg_sense`` with the same maps
and weights, warm starts that help on a static object, prewhitening, numpy == torch, raw
acquisitions in (units, discards, noise, calibration pre-scan, navigators), the bundled radial
cardiac data, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from recon.io import read_raw
from recon.io.mrd import (
    ACQ_HEAD_DTYPE,
    ACQ_IS_NAVIGATION_DATA,
    ACQ_IS_NOISE_MEASUREMENT,
    ACQ_IS_PARALLEL_CALIBRATION,
    flag,
)
from recon.mri.realtime import (
    RealtimeConfig,
    RealtimeReconstructor,
    RealtimeSession,
    radial_density,
    reconstruct_realtime,
)
from recon.mri.trajectory import radial_2d, spiral_2d

N = 32


def _data(rng, n_spokes=20, coils=4, samples=2 * N, noise=1e-3):
    from fastmri_data import simulate_coil_maps
    from recon.mri.simulate import simulate_noncartesian, textured_phantom

    img = textured_phantom(1, N, N)[0]
    maps = simulate_coil_maps((N, N), num_coils=coils)
    coord = radial_2d(n_spokes, samples, N)
    y = simulate_noncartesian(img, maps, coord, noise_std=noise * float(np.abs(img).max()), seed=1)
    return img, maps, coord, y


def _frames(rt, y, coord):
    out = []
    for j in range(coord.shape[0]):
        out += [rt.reconstruct(w) for w in rt.add(y[:, j], coord[j])]
    return out


def _nrmse(x, truth):
    x, t = np.abs(x), np.abs(truth)
    s = (x * t).sum() / (x * x).sum()
    return float(np.linalg.norm(s * x - t) / np.linalg.norm(t))


# ---- density ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("full", [True, False])
def test_radial_density_covers_the_disc(full):
    from recon.mri.dcf import pipe_menon_dcf

    n, R = 101, 128
    coord = radial_2d(n, R, 64, golden=False)
    if not full:
        coord = coord[:, R // 2:]  # centre-out halves
    w = radial_density(coord)
    r = np.linalg.norm(coord, axis=-1)
    nyquist = n / np.pi if full else n / (2 * np.pi)
    dk = 0.5
    for J in (0, 3, 20, int(nyquist / dk) - 1):  # inside: the area of the disc they cover, (cycles/FOV)^2
        rho = (J + 0.5) * dk
        assert abs(w[r < rho].sum() / (np.pi * rho**2) - 1) < 1e-3
    assert np.allclose(w[r > 1.01 * nyquist], 0.5, rtol=1e-5) and np.all(w <= 0.5 * (1 + 1e-5))  # beyond: dk = 64/128
    assert w.shape == coord.shape[:-1] and w.dtype == np.float32
    # close to Pipe-Menon on an undersampled golden-angle window
    c = radial_2d(24, 128, 64)
    p = pipe_menon_dcf(c, (64, 64))
    assert np.linalg.norm(radial_density(c) - p) / np.linalg.norm(p) < 0.3


def test_radial_density_is_none_for_other_trajectories():
    assert radial_density(spiral_2d(4, 200, 32)) is None
    c = radial_2d(4, 16, 32)
    c[1, 3] += 2.0  # a sample off its line
    assert radial_density(c) is None
    assert radial_density(np.zeros((3, 8, 2))) is None


# ---- windows ----------------------------------------------------------------------------------------------


def test_windows_slide_over_the_spokes(rng):
    _, _, coord, y = _data(rng, n_spokes=23)
    rt = RealtimeReconstructor((N, N), RealtimeConfig(spokes_per_frame=4, window=10, method="zf"))
    wins = []
    for j in range(23):
        wins += rt.add(y[:, j], coord[j], time_stamp=100 + j, info=j)
    assert [(w.index, w.first_spoke, w.last_spoke) for w in wins] == [(0, 0, 9), (1, 4, 13), (2, 8, 17), (3, 12, 21)]
    for w in wins:
        np.testing.assert_array_equal(w.coord, coord[w.first_spoke:w.last_spoke + 1])
        np.testing.assert_array_equal(w.samples, y[:, w.first_spoke:w.last_spoke + 1])
        assert w.time_stamp == 100 + w.last_spoke and w.info == w.last_spoke
    # several spokes at once give the same windows
    rt2 = RealtimeReconstructor((N, N), RealtimeConfig(spokes_per_frame=4, window=10, method="zf"))
    wins2 = rt2.add(y[:, :11], coord[:11]) + rt2.add(y[:, 11:], coord[11:])
    assert [(w.index, w.first_spoke) for w in wins2] == [(w.index, w.first_spoke) for w in wins]
    # SENSE waits for the spokes its maps come from
    rt3 = RealtimeReconstructor((N, N), RealtimeConfig(spokes_per_frame=4, window=10, maps_spokes=16))
    assert [w.index for j in range(23) for w in rt3.add(y[:, j], coord[j])] == [2, 3]


def test_bad_spokes_and_configs_raise_clear_errors(rng):
    _, _, coord, y = _data(rng, n_spokes=4)
    rt = RealtimeReconstructor((N, N), RealtimeConfig(spokes_per_frame=2, window=2, method="zf"))
    rt.add(y[:, 0], coord[0])
    with pytest.raises(ValueError, match="coils"):
        rt.add(y[:2, 1], coord[1])
    with pytest.raises(ValueError, match="NaN"):
        rt.add(y[:, 1] * np.nan, coord[1])
    with pytest.raises(ValueError, match="exceeds the matrix"):
        rt.add(y[:, 1], coord[1] * 3)
    with pytest.raises(ValueError, match="do not match"):
        rt.add(y[:, 1], np.zeros((5, 3)))
    with pytest.raises(TypeError, match="complex"):
        rt.add(y[:, 1].real, coord[1])
    for bad, match in (({"spokes_per_frame": 0}, "spokes_per_frame"), ({"window": 2, "spokes_per_frame": 3}, "window"),
                       ({"method": "cs"}, "method"), ({"maps": "magic"}, "maps"), ({"lam": -1.0}, "lam"),
                       ({"nufft_tol": 2.0}, "nufft_tol"), ({"dcf": "voronoi"}, "dcf"), ({"iters": 1.5}, "iters")):
        with pytest.raises(ValueError, match=match):
            RealtimeConfig(**bad).validate()
    with pytest.raises(ValueError, match="2D"):
        RealtimeReconstructor((4, N, N))


# ---- frames -------------------------------------------------------------------------------------------------


def test_gridding_frame_equals_recon_zero_filled(rng):
    from recon.mri.dcf import pipe_menon_dcf
    from recon.mri.recon import zero_filled

    _, _, coord, y = _data(rng, n_spokes=12)
    cfg = RealtimeConfig(spokes_per_frame=12, window=12, method="zf", dcf="pipe-menon", virtual_coils=None,
                         nufft_tol=1e-6)
    f = _frames(RealtimeReconstructor((N, N), cfg), y, coord)[0]
    ref = zero_filled(y, coord=coord, im_shape=(N, N), dcf=pipe_menon_dcf(coord, (N, N)), tol=1e-6).image
    np.testing.assert_allclose(np.abs(f.image), np.abs(ref), rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # the analytic radial density makes a frame close to it
    g = _frames(RealtimeReconstructor((N, N), RealtimeConfig(spokes_per_frame=12, window=12, method="zf",
                                                             virtual_coils=None)), y, coord)[0]
    assert _nrmse(g.image, ref) < 0.1


def test_first_sense_frame_equals_cg_sense_with_its_maps(rng):
    from recon.mri.recon import cg_sense

    _, _, coord, y = _data(rng, n_spokes=16)
    cfg = RealtimeConfig(spokes_per_frame=16, window=16, first_iters=8, virtual_coils=None, nufft_tol=1e-6,
                         lam=1e-3)
    rt = RealtimeReconstructor((N, N), cfg)
    f = _frames(rt, y, coord)[0]
    assert f.iterations == 8 and f.method == "sense" and f.index == 0
    ref = cg_sense(y, rt.maps, coord=coord, dcf=radial_density(coord), lam=1e-3, max_iter=8, tol=0, nufft_tol=1e-6)
    np.testing.assert_allclose(f.image, ref.image, rtol=0, atol=2e-3 * np.abs(ref.image).max())


def test_warm_started_frames_improve_on_a_static_object(rng):
    img, _, coord, y = _data(rng, n_spokes=60, noise=0)
    cfg = {"spokes_per_frame": 6, "window": 12, "iters": 2, "first_iters": 2, "virtual_coils": None, "nufft_tol": 1e-5}
    warm = _frames(RealtimeReconstructor((N, N), RealtimeConfig(**cfg)), y, coord)
    assert [f.index for f in warm] == list(range(9)) and all(f.iterations == 2 for f in warm)
    errs = [_nrmse(f.image, img) for f in warm]
    assert errs[-1] < 0.8 * errs[0]  # 2 steps per frame, accumulated over frames
    zf = _frames(RealtimeReconstructor((N, N), RealtimeConfig(**dict(cfg, method="zf"))), y, coord)
    assert errs[-1] < _nrmse(zf[-1].image, img)


def test_prewhitening_equals_whitened_data(rng):
    from recon.mri.noise import noise_covariance, whitening_matrix

    _, _, coord, y = _data(rng, n_spokes=10)
    mix = (np.eye(4) + 0.4 * rng.standard_normal((4, 4))).astype(np.complex64)
    noise = mix @ (rng.standard_normal((4, 500)) + 1j * rng.standard_normal((4, 500))).astype(np.complex64)
    cfg = RealtimeConfig(spokes_per_frame=10, window=10, virtual_coils=None, first_iters=4)
    a = _frames(RealtimeReconstructor((N, N), cfg, noise=noise, noise_scale=2.0), y, coord)[0]
    W = whitening_matrix(noise_covariance(noise), 2.0).astype(np.complex64)
    b = _frames(RealtimeReconstructor((N, N), cfg), np.tensordot(W, y, axes=(1, 0)).astype(np.complex64), coord)[0]
    np.testing.assert_allclose(a.image, b.image, atol=1e-4 * np.abs(b.image).max())


def test_numpy_equals_torch(rng):
    torch = pytest.importorskip("torch")
    _, _, coord, y = _data(rng, n_spokes=14)
    cfg = RealtimeConfig(spokes_per_frame=2, window=10, virtual_coils=3, first_iters=3)
    a = _frames(RealtimeReconstructor((N, N), cfg), y, coord)
    b = _frames(RealtimeReconstructor((N, N), cfg, device=torch.device("cpu")), y, coord)
    assert len(a) == len(b) == 3 and all(torch.is_tensor(f.image) for f in b)
    for fa, fb in zip(a, b):
        np.testing.assert_allclose(fb.image.numpy(), fa.image, atol=1e-4 * np.abs(fa.image).max())


# ---- raw acquisitions in ------------------------------------------------------------------------------------


def _header(units="normalized", recon=None):
    from recon.io import build_ismrmrd_header

    return build_ismrmrd_header((N, N, 1), (N, N, 1.0), recon or (N, N, 1), (N, N, 1.0), trajectory="radial",
                                trajectory_params={"trajectory_units": units} if units else None)


def _acq(samples, coord_img, *, units="normalized", flags=0, pre=0, post=0, slice_=0, dwell=5.0, stamp=0):
    """One acquisition as a file stores it: ISMRMRD (kx, ky) order, in ``units``."""
    t = coord_img[:, ::-1] / (N if units == "normalized" else 1)
    if pre or post:
        t = np.concatenate([np.zeros((pre, 2)), t, np.zeros((post, 2))]).astype(np.float32)
        samples = np.concatenate([np.zeros((samples.shape[0], pre)), samples,
                                  np.zeros((samples.shape[0], post))], axis=1).astype(np.complex64)
    h = np.zeros((), ACQ_HEAD_DTYPE)
    h["number_of_samples"], h["active_channels"], h["trajectory_dimensions"] = t.shape[0], samples.shape[0], 2
    h["discard_pre"], h["discard_post"], h["flags"], h["sample_time_us"] = pre, post, flags, dwell
    h["idx"]["slice"], h["acquisition_time_stamp"] = slice_, stamp
    return h, np.ascontiguousarray(t, np.float32), np.ascontiguousarray(samples, np.complex64)


def test_session_reads_raw_acquisitions_like_the_reconstructor(rng):
    _, _, coord, y = _data(rng, n_spokes=12)
    cfg = RealtimeConfig(spokes_per_frame=4, window=8, method="zf", virtual_coils=None)
    ref = _frames(RealtimeReconstructor((N, N), cfg), y, coord)
    for units in ("normalized", "cycles_per_fov", None):  # declared, or detected from the first spoke
        s = RealtimeSession(_header(units), cfg)
        nav = _acq(y[:, 0], coord[0], units=units or "normalized", flags=flag(ACQ_IS_NAVIGATION_DATA))
        assert s.add(*nav) == [] and s.skipped == 1
        frames = []
        for j in range(12):
            frames += [s.reconstruct(w) for w in s.add(*_acq(y[:, j], coord[j], units=units or "normalized",
                                                             pre=2 * (j % 2), post=j % 3, stamp=10 * j))]
        assert [f.index for f in frames] == [f.index for f in ref]
        for a, b in zip(frames, ref):
            np.testing.assert_allclose(a.image, b.image, atol=1e-5 * np.abs(b.image).max())
        assert frames[-1].time_stamp == 110 and int(frames[-1].info["acquisition_time_stamp"]) == 110


def test_session_noise_calibration_and_errors(rng):
    _, _, coord, y = _data(rng, n_spokes=12)
    noise = (rng.standard_normal((4, 64)) + 1j * rng.standard_normal((4, 64))).astype(np.complex64)
    s = RealtimeSession(_header(), RealtimeConfig(spokes_per_frame=4, window=8, virtual_coils=None))
    h, t, d = _acq(noise, np.zeros((64, 2), np.float32), flags=flag(ACQ_IS_NOISE_MEASUREMENT), dwell=10.0)
    s.add(h, t, d)
    for j in range(4):  # a calibration pre-scan: the maps come from it, frames need no maps spokes
        assert s.add(*_acq(y[:, j], coord[j], flags=flag(ACQ_IS_PARALLEL_CALIBRATION))) == []
    rt = s.reconstructors[0]
    assert rt.noise.shape == (4, 64) and rt.noise_scale == 2.0 and len(rt._calib) == 4
    frames = [s.reconstruct(w) for j in range(4, 12) for w in s.add(*_acq(y[:, j], coord[j]))]
    assert [f.index for f in frames] == [0]
    with pytest.raises(ValueError, match="2D trajectories"):
        h, t, d = _acq(y[:, 0], coord[0])
        s.add(h, t[:, :1], d)
    with pytest.raises(ValueError, match="3D"):
        from recon.io import build_ismrmrd_header

        RealtimeSession(build_ismrmrd_header((N, N, 4), (N, N, 4.0), (N, N, 4), (N, N, 4.0)))


def test_bundled_radial_cardiac_data():
    from recon.data import path

    raw = read_raw(path("cardiac-radial"))
    res = reconstruct_realtime(raw, RealtimeConfig(spokes_per_frame=5, window=15, method="zf"))
    assert res.frames.shape == (3, 256, 256) and res.magnitude.shape == (3, 256, 256)
    assert res.spokes.tolist() == [[0, 14], [5, 19], [10, 24]]
    assert np.isfinite(res.magnitude).all() and res.magnitude.max() > 0
    # the heart sits in the middle: brighter centre than corners
    m = res.magnitude[-1]
    assert m[96:160, 96:160].mean() > 3 * m[:32, :32].mean()
    assert res.info["window"] == 15
    with pytest.raises(ValueError, match="no frame"):
        reconstruct_realtime(raw, RealtimeConfig(spokes_per_frame=30, method="zf"))
    with pytest.raises(ValueError, match="slice_index 3"):
        reconstruct_realtime(raw, RealtimeConfig(method="zf"), slice_index=3)
