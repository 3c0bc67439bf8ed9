"""Irregular free-breathing motion traces and the bellows signal that would record them.

Each breath follows Lujan et al.'s model (Med Phys 1999), ``d(u) = A cos^(2n)(pi (w(u) - 1/2))``
over the breath's phase ``u`` in [0, 1): zero at end expiration, the peak ``A`` at end inspiration,
a long end-expiratory dwell (``n = 3``), and a faster inspiration than expiration (``w(u) = u^0.8``).
Breath by breath the period and amplitude vary (relative jitter), a slow baseline drift is added,
deep breaths (amplitude and period scaled up) and coughs (short, sharp) occur now and then. The
trace is the superior-inferior (SI) displacement of the diaphragm in mm (positive = inferior); the
anterior-posterior (AP) displacement is ``ap_ratio`` times it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BreathingTrace:
    """A motion trace sampled every ``dt_s`` from t = 0: ``si_mm`` (inferior displacement), the AP
    displacement ``ap_ratio * si_mm`` (anterior); ``breath_starts_s`` (end-expiration times),
    ``events`` per breath ('normal', 'deep', 'cough')."""

    dt_s: float
    si_mm: np.ndarray
    ap_ratio: float = 0.3
    breath_starts_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    events: list = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.dt_s * (len(self.si_mm) - 1)

    def _interp(self, values, times_s):
        t = np.asarray(times_s, dtype=np.float64)
        if not np.all(np.isfinite(t)):
            raise ValueError("times_s contains NaN or Inf")
        return np.interp(t, np.arange(len(values)) * self.dt_s, values)

    def si(self, times_s) -> np.ndarray:
        """SI displacement (mm) at ``times_s`` (linear interpolation; held constant past the ends)."""
        return self._interp(self.si_mm, times_s)

    def ap(self, times_s) -> np.ndarray:
        """AP displacement (mm, anterior) at ``times_s``."""
        return self.ap_ratio * self.si(times_s)


def _breath_shape(u, power: int = 3, skew: float = 0.8):
    return np.cos(np.pi * (np.clip(u, 0.0, 1.0) ** skew - 0.5)) ** (2 * power)


def breathing_trace(duration_s: float, *, seed: int = 0, period_s: float = 4.0, amplitude_mm: float = 12.0,
                    period_jitter: float = 0.12, amplitude_jitter: float = 0.12, drift_mm: float = 1.5,
                    deep_every: int = 7, deep_factor: float = 1.7, cough_every: int = 0, ap_ratio: float = 0.3,
                    dt_s: float = 0.005) -> BreathingTrace:
    """An irregular breathing trace of ``duration_s`` seconds (module docstring).

    ``period_jitter``/``amplitude_jitter``: relative standard deviations breath to breath;
    ``drift_mm``: standard deviation of the slow baseline drift (periods of 20-60 s);
    ``deep_every``: one deep breath (amplitude x ``deep_factor``, period x 1.4) every that many
    breaths, the first among breaths 2 .. ``deep_every - 1`` (0: none); ``cough_every``: on average
    one cough (0.8 s, 0.6 x amplitude) per that many breaths (default none).
    """
    for name, v in (("duration_s", duration_s), ("period_s", period_s), ("dt_s", dt_s)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number, got {v}")
    for name, v in (("amplitude_mm", amplitude_mm), ("period_jitter", period_jitter), ("drift_mm", drift_mm),
                    ("amplitude_jitter", amplitude_jitter)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    rng = np.random.default_rng(seed)
    n = int(math.ceil(duration_s / dt_s)) + 1
    t = np.arange(n) * dt_s
    si = np.zeros(n)
    starts, events = [], []
    # first breath starts at a random phase before t = 0
    t0 = -rng.uniform(0, period_s)
    deep_offset = int(rng.integers(2, max(deep_every, 3))) if deep_every else -1
    k = 0
    while t0 < duration_s:
        kind = "normal"
        if deep_every and k % deep_every == deep_offset % deep_every:
            kind = "deep"
        elif cough_every and rng.random() < 1.0 / cough_every:
            kind = "cough"
        T = period_s * max(0.5, 1.0 + period_jitter * rng.standard_normal())
        A = amplitude_mm * max(0.3, 1.0 + amplitude_jitter * rng.standard_normal())
        if kind == "deep":
            T, A = T * 1.4, A * deep_factor
        elif kind == "cough":
            T, A = 0.8, 0.6 * amplitude_mm
        sel = (t >= t0) & (t < t0 + T)
        si[sel] = A * _breath_shape((t[sel] - t0) / T)
        starts.append(t0)
        events.append(kind)
        t0 += T
        k += 1
    if drift_mm > 0:  # three slow sinusoids (periods 20-60 s, random phases): standard deviation drift_mm
        periods, phases = rng.uniform(20.0, 60.0, 3), rng.uniform(0, 2 * np.pi, 3)
        si += drift_mm * np.sqrt(2.0 / 3.0) * sum(np.sin(2 * np.pi * t / p + f) for p, f in zip(periods, phases))
    return BreathingTrace(float(dt_s), si, float(ap_ratio), np.asarray(starts), events)


def bellows_signal(trace: BreathingTrace, times_s, *, seed: int = 0, delay_s: float = 0.15, noise: float = 0.02,
                   drift: float = 0.05):
    """What a respiratory bellows would record at ``times_s``: the belt follows the abdominal wall
    (``delay_s`` behind the diaphragm), with a saturating response, noise (relative std ``noise``)
    and a drift of its own (relative std ``drift``). Returns uint32 values around 2048 (12-bit,
    like scanner physiology logs)."""
    rng = np.random.default_rng(seed + 7)
    t = np.asarray(times_s, dtype=np.float64)
    s = trace.si(t - delay_s)
    span = float(np.percentile(trace.si_mm, 99) - np.percentile(trace.si_mm, 1)) or 1.0
    x = np.tanh(1.2 * s / span)                               # belt saturation
    x = x + drift * np.sin(2 * np.pi * t / 97.0 + rng.uniform(0, 2 * np.pi))
    x = x + noise * rng.standard_normal(t.shape)
    return np.clip(np.rint(2048 + 1200 * x), 0, 4095).astype(np.uint32)
