"""Self-gating (SI profiles, PCA, coil clustering), the bellows, binning against known traces, bad input."""

import numpy as np
import pytest

from recon.data import path as sample_path
from recon.io import read_raw
from recon.mri.dynamic import (ScanConfig, bin_signal, breathing_trace, respiratory_signal, simulate,
                               simulation_from_raw, spokes_from_raw)
from recon.mri.dynamic.gating import bandpass, bellows_at, correlation, si_profiles


@pytest.fixture(scope="module")
def sample():
    raw = read_raw(sample_path("abdomen-4d-sos"))
    return raw, spokes_from_raw(raw)


def test_si_profiles_are_coil_weighted_projections_onto_z():
    # noise-free, no motion: the kz line at k = 0, inverse FFT'd, is sum_{y,x} S_c x / sqrt(Ny Nx)
    cfg = ScanConfig(matrix=(8, 24, 24), fov_mm=(80.0, 360.0, 360.0), n_angles=3, n_coils=3, noise=0.0,
                     breathing={"amplitude_mm": 0.0, "drift_mm": 0.0})
    sim = simulate(cfg)
    img = sim.truth(0.0)
    ref = (sim.maps * img).sum(axis=(-2, -1)) / 24.0                         # (C, Z)
    from recon.mri.dynamic.data import SpokeData

    k = np.moveaxis(sim.samples.reshape(3, 8, 3, -1), 2, 0)                   # (C, A, Z, S)
    data = SpokeData(k, sim.coord.reshape(3, 8, -1, 3)[:, 0, :, 1:], np.arange(8) - 4.0,
                     sim.times_s.reshape(3, 8), np.arange(24).reshape(3, 8), (8, 24, 24), (10.0, 15.0, 15.0))
    prof = si_profiles(data)                                                   # (C, A, Z)
    for a in range(3):
        assert np.allclose(prof[:, a], ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_self_gating_follows_the_true_trace_on_the_sample(sample):
    raw, data = sample
    _, si, _ = simulation_from_raw(raw)
    true = si[data.readout].mean(axis=1)
    bell = bellows_at(raw, data.angle_times_s)
    sig = respiratory_signal(data, bellows=bell)
    assert correlation(sig.signal, true) >= 0.95                            # target of the issue
    assert sig.bellows_correlation > 0.9 and sig.coils                        # compared with the bellows
    assert np.isclose(np.percentile(sig.signal, 5), 0) and np.isclose(np.percentile(sig.signal, 95), 1)
    b = respiratory_signal(data, bellows=bell, source="bellows")
    assert b.source == "bellows" and correlation(b.signal, true) > 0.85
    # the sign does not depend on the bellows: the skewness rule orients it the same way
    assert correlation(respiratory_signal(data).signal, sig.signal) > 0.999


def test_self_gating_2d_radial_from_the_kspace_centre():
    cfg = ScanConfig(kind="radial-2d", matrix=(32, 48), fov_mm=(240.0, 360.0), n_angles=500, n_coils=4,
                     tr_ms=40.0, noise=0.01)
    sim = simulate(cfg)
    from recon.mri.dynamic.data import SpokeData

    order = np.arange(500)
    data = SpokeData(np.moveaxis(sim.samples, 0, 1)[:, :, None], sim.coord, np.zeros(1), sim.times_s[:, None],
                     order[:, None], (1, 32, 48), (8.0, 7.5, 7.5))
    sig = respiratory_signal(data)
    assert correlation(sig.signal, sim.si_mm) >= 0.95


def test_bandpass_keeps_the_band():
    t = np.arange(0, 100, 0.1)
    x = np.sin(2 * np.pi * 0.25 * t) + 3 * np.sin(2 * np.pi * 0.003 * t) + np.sin(2 * np.pi * 3.0 * t)
    y = bandpass(x, 0.1, (0.05, 1.0))
    assert correlation(y[100:-100], np.sin(2 * np.pi * 0.25 * t)[100:-100]) > 0.99


def _trace_signal(seed=2, duration=120.0, dt=0.2):
    tr = breathing_trace(duration, seed=seed, drift_mm=0.0)
    t = np.arange(0, duration, dt)
    return tr, t, tr.si(t)


def test_amplitude_bins_of_a_known_trace():
    tr, t, s = _trace_signal()
    bins = bin_signal(s, t, 6, reject=False)
    c = bins.counts
    assert c.sum() == t.size and c.max() - c.min() <= 1                     # equal count
    for b in range(5):                                                       # ordered: expiration .. inspiration
        assert s[bins.index == b].max() <= s[bins.index == b + 1].min()
    assert np.allclose(bins.ranges[:, 0], [s[bins.index == b].min() for b in range(6)])
    w = bin_signal(s, t, 6, edges="equal-width", reject=False)
    edges = np.linspace(s.min(), s.max(), 7)
    expect = np.clip(np.floor((s - s.min()) / (s.max() - s.min()) * 6), 0, 5).astype(int)
    assert np.array_equal(w.index, expect) and np.allclose(np.diff(edges), edges[1] - edges[0])


def test_deep_breaths_are_rejected():
    tr, t, s = _trace_signal(seed=4, duration=160.0)
    bins = bin_signal(s, t, 4)
    starts = tr.breath_starts_s
    normal_peak = np.median([tr.si(np.linspace(a, b, 50)).max() for a, b, e in zip(starts, starts[1:], tr.events)
                             if e == "normal"])
    n_deep = 0
    for a, b, e in zip(starts, starts[1:], tr.events):
        if not (t[0] + 1 < a and b < t[-1] - 1):
            continue                                                          # whole breaths only
        inside = (t > a + 0.3) & (t < b - 0.3)
        rejected = np.mean(bins.index[inside] < 0)
        if e == "normal":
            assert rejected == 0, f"normal breath at {a:.1f} s rejected"
        elif tr.si(np.linspace(a, b, 50)).max() > 1.4 * normal_peak:         # a clearly deep breath
            n_deep += 1
            assert rejected == 1, f"deep breath at {a:.1f} s kept"
    assert n_deep >= 3 and len(bins.rejected_breaths) == n_deep
    assert bin_signal(s, t, 4, reject=False).index.min() == 0


def test_phase_bins_follow_the_breaths():
    tr, t, s = _trace_signal(seed=5)
    bins = bin_signal(s, t, 5, method="phase", edges="equal-width", reject=False)
    assert bins.method == "phase" and np.all(bins.ranges[:, 1] <= 1.0)
    # end expiration (phase 0) falls where the trace is near its minimum; mid-phase near inspiration
    lo = s < np.percentile(s, 15)
    assert np.mean(np.isin(bins.index[lo], [0, 4])) > 0.8
    assert np.mean(s[bins.index == 2]) > np.mean(s[bins.index == 0]) + 3.0


@pytest.mark.parametrize("bad, match", [
    (dict(signal=[0.0, np.nan, 1.0, 2.0]), "NaN"),
    (dict(n_bins=10), "exceeds"),
    (dict(signal=[1.0], times_s=[0.0]), "at least two"),
    (dict(n_bins=0), "n_bins"),
    (dict(method="cardiac"), "method"),
    (dict(edges="log"), "edges"),
    (dict(times_s=[0.0, 0.0, 1.0, 2.0]), "increasing"),
])
def test_binning_bad_input(bad, match):
    kw = dict(signal=[0.0, 1.0, 0.5, 0.2], times_s=[0.0, 1.0, 2.0, 3.0], n_bins=2)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        bin_signal(kw.pop("signal"), kw.pop("times_s"), **kw)


def test_no_time_stamps_and_a_single_spoke(tmp_path):
    raw = read_raw(sample_path("abdomen-4d-sos"))
    raw.acquisitions.head["acquisition_time_stamp"][:] = 0
    with pytest.raises(ValueError, match="time stamp"):
        spokes_from_raw(raw)
    cfg = ScanConfig(kind="radial-2d", matrix=(16, 16), fov_mm=(240.0, 240.0), n_angles=1, n_coils=2)
    raw1 = read_raw(simulate(cfg).write(tmp_path / "one.h5"))
    raw1.acquisitions.head["acquisition_time_stamp"][0] = 5   # a time stamp, but still one spoke
    with pytest.raises(ValueError, match="single spoke"):
        spokes_from_raw(raw1)


def test_non_finite_kspace_is_refused():
    raw = read_raw(sample_path("abdomen-4d-sos"))
    raw.samples[7, 1, 3] = np.nan
    with pytest.raises(ValueError, match=r"k-space samples contain NaN or Inf \(imaging readout 7 and 0 more\)"):
        spokes_from_raw(raw)
