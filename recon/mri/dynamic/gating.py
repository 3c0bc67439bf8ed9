"""Respiratory self-gating from golden-angle data (Feng et al., XD-GRASP, MRM 2016).

For every angle, the k-space centre of its spoke at every kz partition (``k_inplane = 0``) is a line
along kz; its inverse FFT is the coil-weighted projection of the slab onto z, the superior-inferior
(SI) profile (2D radial: ``Z = 1``, the k-space centre itself). The diaphragm moving up and down
changes these profiles over time. The signal is extracted as in XD-GRASP:

1. features: the magnitudes of each coil's profile, each coil normalised by its mean level, band-pass
   filtered in time (``band_hz``, default 0.01-1 Hz; zero-phase Butterworth). The low edge only removes
   trends slower than 100 s: baseline drift of the diaphragm is motion too (XD-GRASP's 0.1 Hz edge
   removed it and cost the correlation with the true trace of the bundled sample 0.999 -> 0.93);
2. coil clustering (Zhang et al., MRM 2016): each coil's own first principal component; the coils
   whose component correlates (``|r| >= cluster_threshold``) with that of the most central coil (the
   one correlating best with all) form the cluster used;
3. PCA over the cluster's features: the first component is the respiratory signal;
4. its sign: correlated positively with the bellows when the data have one, otherwise so that the
   distribution is skewed towards high values (breathing dwells at end expiration, so end expiration
   is low and inspiration high); it is scaled so that its 5th and 95th percentiles are 0 and 1.

With a bellows waveform in the data, the correlation of the two (bellows band-passed the same way,
at the angles' times) is reported. ``source="bellows"`` uses the bellows itself as the signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RespiratorySignal:
    """One respiratory value per angle (``signal`` ``(A,)``, 0 end expiration .. 1 end inspiration for
    the 5th..95th percentiles) at ``times_s`` ``(A,)``; ``coils`` the coil cluster used; ``bellows``
    the band-passed bellows at the same times (None without one) and ``bellows_correlation``."""

    signal: np.ndarray
    times_s: np.ndarray
    source: str
    coils: list = field(default_factory=list)
    bellows: np.ndarray | None = None
    bellows_correlation: float | None = None
    explained_variance: float | None = None

    def at(self, times_s) -> np.ndarray:
        """The signal interpolated at other times (e.g. every readout)."""
        return np.interp(np.asarray(times_s, dtype=np.float64), self.times_s, self.signal)


def bandpass(x, dt_s: float, band_hz=(0.01, 1.0), order: int = 2, axis: int = 0) -> np.ndarray:
    """Zero-phase Butterworth band-pass of ``x`` sampled every ``dt_s`` along ``axis``; the upper edge is
    dropped when at or above Nyquist, the lower one when ``band_hz[0]`` is 0 or the record too short."""
    from scipy.signal import butter, sosfiltfilt

    lo, hi = float(band_hz[0]), float(band_hz[1])
    if not (0 <= lo < hi):
        raise ValueError(f"band_hz must satisfy 0 <= low < high, got {band_hz}")
    nyq = 0.5 / dt_s
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    duration = n * dt_s
    use_lo = lo > 0 and duration * lo >= 1.0  # at least one period of the lower edge
    use_hi = hi < 0.95 * nyq
    if not (use_lo or use_hi):
        return x - x.mean(axis=axis, keepdims=True)
    if use_lo and use_hi:
        sos = butter(order, [lo / nyq, hi / nyq], btype="bandpass", output="sos")
    elif use_lo:
        sos = butter(order, lo / nyq, btype="highpass", output="sos")
    else:
        sos = butter(order, hi / nyq, btype="lowpass", output="sos")
    padlen = min(n - 1, 3 * (2 * len(sos) + 1) * 4)
    y = sosfiltfilt(sos, x, axis=axis, padlen=padlen)
    return y if use_lo else y - y.mean(axis=axis, keepdims=True)


def centre_sample(spokes) -> int:
    """Index of the readout sample nearest ``k = 0`` (on average over the spokes ``(A, S, 2)``)."""
    return int(np.argmin(np.linalg.norm(np.asarray(spokes), axis=-1).mean(axis=0)))


def si_profiles(data) -> np.ndarray:
    """SI projection profiles ``(C, A, Z)`` complex of :class:`recon.mri.dynamic.data.SpokeData`: the
    sample nearest ``k = 0`` of every spoke along kz, inverse-FFT'd along kz (2D: the centre itself)."""
    from ..coils import centered_fft

    c = data.kspace[..., centre_sample(data.spokes)]                      # (C, A, Z)
    return c if c.shape[-1] == 1 else centered_fft(c, (2,), inverse=True)


def _first_pc(F):
    """First principal component scores (A,) of features ``F`` (A, n), and the variance fraction."""
    F = F - F.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(F, full_matrices=False)
    total = float((s**2).sum())
    return u[:, 0] * s[0], (float(s[0] ** 2) / total if total > 0 else 0.0)


def _uniform_times(times):
    """(dt, uniform grid) of increasing sample times (angles are nearly equally spaced)."""
    t = np.asarray(times, dtype=np.float64)
    dt = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    if not dt > 0:
        raise ValueError("respiratory signal: the angles' time stamps do not increase")
    return dt, t[0] + dt * np.arange(int(round((t[-1] - t[0]) / dt)) + 1)


def _filter_irregular(x, times, band_hz):
    """Band-pass ``x`` (A, ...) sampled at ``times`` via a uniform grid (linear interpolation)."""
    dt, grid = _uniform_times(times)
    flat = x.reshape(x.shape[0], -1)
    on_grid = np.stack([np.interp(grid, times, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    f = bandpass(on_grid, dt, band_hz)
    back = np.stack([np.interp(times, grid, f[:, j]) for j in range(f.shape[1])], axis=1)
    return back.reshape(x.shape)


def _normalise(s):
    lo, hi = np.percentile(s, [5, 95])
    return (s - lo) / (hi - lo) if hi > lo else s - lo


def _skew(s):
    s = s - s.mean()
    sd = s.std()
    return float((s**3).mean() / sd**3) if sd > 0 else 0.0


def bellows_at(raw, times_s, *, tick_ms: float = 2.5, t0_ticks: float | None = None):
    """The respiratory bellows of ``raw`` (``WAVEFORM_RESPIRATORY``, first channel) at ``times_s`` (s
    from the first imaging readout, or from ``t0_ticks``), or None when the file has none."""
    from ...io.mrd import WAVEFORM_RESPIRATORY

    if raw.waveforms is None or not len(raw.waveforms):
        return None
    w = raw.waveforms.select(WAVEFORM_RESPIRATORY)
    if not len(w):
        return None
    t, v = [], []
    for h, d in zip(w.head, w.data):
        n = int(h["number_of_samples"])
        if n == 0 or d.size == 0:
            continue
        t.append(float(h["time_stamp"]) * tick_ms / 1000.0 + np.arange(n) * float(h["sample_time_us"]) * 1e-6)
        v.append(d[0].astype(np.float64))
    if not t:
        return None
    t, v = np.concatenate(t), np.concatenate(v)
    order = np.argsort(t, kind="stable")
    if t0_ticks is None:
        stamps = raw.acquisitions.head["acquisition_time_stamp"][raw.imaging]
        t0_ticks = float(stamps.min())
    t = t[order] - t0_ticks * tick_ms / 1000.0
    return np.interp(np.asarray(times_s, dtype=np.float64), t, v[order])


def respiratory_signal(data, *, band_hz=(0.01, 1.0), cluster_threshold: float = 0.8, bellows=None,
                       source: str = "self") -> RespiratorySignal:
    """The respiratory signal of :class:`recon.mri.dynamic.data.SpokeData` (module docstring).

    ``bellows``: the bellows values at the angles' times (:func:`bellows_at`) or None; ``source``
    ``"self"`` (self-gating, default) or ``"bellows"``."""
    if source not in ("self", "bellows"):
        raise ValueError(f"source must be 'self' or 'bellows', got {source!r}")
    if not 0 <= cluster_threshold <= 1:
        raise ValueError(f"cluster_threshold must lie in [0, 1], got {cluster_threshold}")
    times = data.angle_times_s
    if times.size < 4:
        raise ValueError(f"{data.label}: {times.size} angles are too few for a respiratory signal (need >= 4)")
    bell = None
    if bellows is not None:
        bellows = np.asarray(bellows, dtype=np.float64)
        if bellows.shape != times.shape or not np.all(np.isfinite(bellows)):
            raise ValueError(f"bellows must be finite, one value per angle {times.shape}, got {bellows.shape}")
        bell = _filter_irregular(bellows[:, None], times, band_hz)[:, 0]
    if source == "bellows":
        if bell is None:
            raise ValueError(f"{data.label}: source='bellows' but the data have no respiratory waveform")
        return RespiratorySignal(_normalise(bell), times, "bellows", [], bell, 1.0, None)
    prof = np.abs(si_profiles(data))                                      # (C, A, Z)
    level = prof.mean(axis=(1, 2), keepdims=True)
    prof = prof / np.where(level > 0, level, 1.0)
    feats = _filter_irregular(np.transpose(prof, (1, 0, 2)), times, band_hz)  # (A, C, Z)
    C = feats.shape[1]
    pcs = np.stack([_first_pc(feats[:, c])[0] for c in range(C)])         # (C, A)
    coils = list(range(C))
    if C > 1:
        r = np.abs(np.corrcoef(pcs))
        r = np.nan_to_num(r, nan=0.0)
        centre = int(np.argmax(r.sum(axis=1)))
        coils = [int(c) for c in np.flatnonzero(r[centre] >= cluster_threshold)] or [centre]
    s, frac = _first_pc(feats[:, coils].reshape(times.size, -1))
    sign = (1.0 if np.corrcoef(s, bell)[0, 1] >= 0 else -1.0) if bell is not None else (1.0 if _skew(s) >= 0 else -1.0)
    s = _normalise(sign * s)
    corr = float(np.corrcoef(s, bell)[0, 1]) if bell is not None else None
    return RespiratorySignal(s, times, "self", coils, bell, corr, frac)


def correlation(a, b) -> float:
    """Pearson correlation of two equally long series (NaN-free)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"correlation: need two series of equal length >= 2, got {a.shape} and {b.shape}")
    r = np.corrcoef(a, b)[0, 1]
    return float(r) if math.isfinite(r) else 0.0
