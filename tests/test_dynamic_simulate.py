"""The 4D simulator: k-space against a direct NUDFT at every readout's own motion state, the breathing
trace, the ISMRMRD file it writes (time stamps, counters, trajectories, bellows, ground truth)."""

import numpy as np
import pytest

from recon.io import read_raw
from recon.io.mrd import WAVEFORM_RESPIRATORY
from recon.mri.dynamic import ScanConfig, breathing_trace, simulate, simulation_from_raw, spokes_from_raw, state_image
from recon.mri.dynamic.breathing import bellows_signal
from recon.mri.dynamic.gating import correlation
from recon.mri.dynamic.simulate import TICK_MS


def nudft(img, coord):
    """Direct NUDFT in recon's convention (float64): y = sum_n f[n] exp(-2 pi i k.x / N) / sqrt(prod N)."""
    N = img.shape
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in N], indexing="ij")
    ph = sum(np.multiply.outer(coord[..., a].astype(np.float64), grids[a]) / N[a] for a in range(len(N)))
    return (np.exp(-2j * np.pi * ph) * img).reshape(coord.shape[:-1] + (-1,)).sum(-1) / np.sqrt(np.prod(N))


def tiny(kind="stack-of-stars", **kw):
    base = dict(kind=kind, n_coils=2, noise=0.0, nufft_tol=1e-6, seed=3)
    if kind == "stack-of-stars":  # 2 mm in-plane voxels around the right hemidiaphragm: sharp moving edges
        base.update(matrix=(6, 24, 24), fov_mm=(30.0, 48.0, 48.0), n_angles=5, tr_ms=40.0)
    else:
        base.update(matrix=(24, 24), fov_mm=(48.0, 48.0), n_angles=20, tr_ms=60.0)
    base.update(kw)
    return ScanConfig(**base)


def max_error_vs_nudft(sim, rows):
    errs = []
    for r in rows:
        img = state_image(sim.config, sim.si_mm[r], sim.ap_mm[r])
        ref = np.stack([nudft(sim.maps[c] * img, sim.coord[r]) for c in range(sim.maps.shape[0])])
        errs.append(np.linalg.norm(ref - sim.samples[r]) / np.linalg.norm(ref))
    return max(errs)


@pytest.mark.parametrize("kind", ["stack-of-stars", "radial-2d"])
def test_kspace_of_each_readout_is_the_nudft_of_its_own_state(kind):
    # exact mode: one rasterisation per readout state; the NUFFT (tol 1e-6, complex64) is the only error
    sim = simulate(tiny(kind, state_step_mm=0.0))
    rows = np.linspace(0, sim.samples.shape[0] - 1, 6).astype(int)
    assert np.ptp(sim.si_mm[rows]) > 1.0        # the readouts do sit at different motion states
    assert max_error_vs_nudft(sim, rows) < 2e-5


def test_state_grid_interpolation_error_is_negligible():
    # default: states rasterised 5 % of a voxel apart and interpolated; 2 mm voxels here, the finest of any case
    sim = simulate(tiny())
    rows = np.linspace(0, sim.samples.shape[0] - 1, 6).astype(int)
    err = max_error_vs_nudft(sim, rows)
    assert err < 3e-3
    # and the readouts do differ from a binned shortcut: one state for the whole scan is far off
    frozen = sim.samples[rows[-1]]
    img0 = state_image(sim.config, sim.si_mm[rows[0]], sim.ap_mm[rows[0]])
    other = np.stack([nudft(sim.maps[c] * img0, sim.coord[rows[-1]]) for c in range(2)])
    assert np.linalg.norm(other - frozen) / np.linalg.norm(frozen) > 30 * err


def test_breathing_trace_is_irregular_with_deep_breaths_and_drift():
    tr = breathing_trace(120.0, seed=1)
    assert "deep" in tr.events and tr.events.count("deep") <= len(tr.events) // 4
    periods = np.diff(tr.breath_starts_s)
    assert 0.05 < periods.std() / periods.mean() < 0.4
    t = np.arange(0, 120, 0.5)
    assert np.allclose(tr.ap(t), tr.ap_ratio * tr.si(t))
    bell = bellows_signal(tr, t).astype(float)
    assert bell.dtype == float and 0.8 < correlation(bell, tr.si(t - 0.15)) < 1.0
    with pytest.raises(ValueError, match="duration_s"):
        breathing_trace(float("nan"))


def test_ismrmrd_file_round_trip(tmp_path):
    cfg = tiny(noise=0.01, n_angles=8)
    sim = simulate(cfg)
    path = sim.write(tmp_path / "sim.h5")
    raw = read_raw(path)
    acq = raw.acquisitions
    assert acq.has_flag(19).sum() == 1                      # the noise scan
    img = raw.imaging
    stamps = acq.head["acquisition_time_stamp"][img]
    assert np.array_equal(stamps, np.rint(sim.times_s * 1000 / TICK_MS))
    assert np.array_equal(raw.counters["kspace_encode_step_1"], sim.angle)
    assert np.array_equal(raw.counters["kspace_encode_step_2"], sim.partition)
    assert np.allclose(raw.trajectory, sim.coord, atol=1e-4)
    assert np.array_equal(raw.samples, sim.samples)
    w = raw.waveforms.select(WAVEFORM_RESPIRATORY)
    assert len(w) >= 1 and w.head["sample_time_us"][0] == 20000
    cfg2, si, ap = simulation_from_raw(raw)
    assert cfg2 == cfg and np.allclose(si, sim.si_mm, atol=1e-4) and np.allclose(ap, sim.ap_mm, atol=1e-4)
    data = spokes_from_raw(raw, prewhiten=False)
    assert data.kspace.shape == (2, 8, 6, sim.samples.shape[-1]) and data.im_shape == (6, 24, 24)
    assert np.array_equal(data.kspace[:, 3, 2], sim.samples[3 * 6 + 2])
    assert np.allclose(data.times_s, sim.times_s.reshape(8, 6), atol=TICK_MS / 2000)


def test_config_errors():
    with pytest.raises(ValueError, match="kind"):
        ScanConfig(kind="spiral").validate()
    with pytest.raises(ValueError, match="matrix"):
        ScanConfig(matrix=(8, 8)).validate()
    with pytest.raises(ValueError, match="n_angles"):
        ScanConfig(n_angles=0).validate()
    with pytest.raises(ValueError, match="noise"):
        ScanConfig(noise=-1.0).validate()
    with pytest.raises(ValueError, match="unknown fields"):
        ScanConfig.from_json('{"bogus": 1}')
