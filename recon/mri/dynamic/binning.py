"""Respiratory binning: motion states from a respiratory signal, with outlier breaths rejected.

The signal (one value per angle, high = inspiration) is cut into breaths at its end-expiration
minima (``scipy.signal.find_peaks`` on ``-signal``, at least 0.4 of the dominant period apart and
prominent by a third of the signal's 5-95 % range). Then:

- **amplitude** binning: bin ``b`` holds the angles whose signal lies in the ``b``-th interval of the
  accepted angles' range, bin 0 = end expiration (lowest), bin ``n - 1`` = end inspiration;
  ``edges="equal-count"`` cuts at quantiles (equally filled bins, XD-GRASP's choice),
  ``"equal-width"`` at equal steps of amplitude;
- **phase** binning: the phase of an angle is the fraction of its breath elapsed (0 at end
  expiration; angles before the first or after the last minimum use the median period); bins are
  equal phase intervals (``"equal-width"``) or phase quantiles (``"equal-count"``).

Outliers (``reject=True``): breaths whose peak lies more than ``outlier_threshold`` robust standard
deviations (1.4826 MAD) above the median peak (deep breaths), and breaths shorter than half or
longer than twice the median period (coughs, pauses) get bin -1. Equal-count bins hold the same
number of angles to within one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

METHODS = ("amplitude", "phase")
EDGES = ("equal-count", "equal-width")


@dataclass
class Bins:
    """A binning of ``A`` angles: ``index`` ``(A,)`` bin of each angle (-1 rejected); ``ranges``
    ``(n_bins, 2)`` each bin's interval of the binned quantity (signal for amplitude, phase in [0, 1)
    for phase binning); ``value`` ``(A,)`` that quantity per angle; ``breath`` ``(A,)`` breath number
    (-1 before the first end expiration); ``rejected_breaths`` the numbers of rejected breaths."""

    index: np.ndarray
    n_bins: int
    method: str
    edges: str
    ranges: np.ndarray
    value: np.ndarray
    breath: np.ndarray
    rejected_breaths: list = field(default_factory=list)

    def members(self, b: int) -> np.ndarray:
        """Angles of bin ``b`` (indices, in time order)."""
        return np.flatnonzero(self.index == b)

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.index[self.index >= 0], minlength=self.n_bins)


def _dominant_period(s, dt):
    """Dominant period (s) of a signal sampled every ``dt`` (peak of its spectrum above 0.05 Hz)."""
    f = np.fft.rfftfreq(s.size, dt)
    p = np.abs(np.fft.rfft(s - s.mean()))
    ok = (f >= 0.05) & (f <= 2.0)
    if not ok.any():
        return s.size * dt
    return 1.0 / f[ok][np.argmax(p[ok])]


def breath_minima(signal, times_s) -> np.ndarray:
    """Indices of the end-expiration minima of a respiratory signal (module docstring)."""
    from scipy.signal import find_peaks

    s = np.asarray(signal, dtype=np.float64)
    t = np.asarray(times_s, dtype=np.float64)
    dt = float(np.median(np.diff(t)))
    period = _dominant_period(s, dt)
    lo, hi = np.percentile(s, [5, 95])
    idx, _ = find_peaks(-s, distance=max(1, int(0.4 * period / dt)), prominence=max((hi - lo) / 3.0, 1e-12))
    return idx


def _check(signal, times_s, n_bins, method, edges):
    s = np.asarray(signal, dtype=np.float64).ravel()
    t = np.asarray(times_s, dtype=np.float64).ravel()
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins}")
    if method not in METHODS:
        raise ValueError(f"binning method must be one of {METHODS}, got {method!r}")
    if edges not in EDGES:
        raise ValueError(f"bin edges must be one of {EDGES}, got {edges!r}")
    if s.shape != t.shape:
        raise ValueError(f"signal {s.shape} and times_s {t.shape} differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("respiratory signal contains NaN or Inf")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise ValueError("times_s must be finite and increasing")
    if s.size < 2:
        raise ValueError(f"{s.size} spoke(s): binning needs at least two")
    if int(n_bins) > s.size:
        raise ValueError(f"n_bins = {n_bins} exceeds the {s.size} spokes (angles) to bin")
    return s, t, int(n_bins)


def bin_signal(signal, times_s, n_bins: int = 6, *, method: str = "amplitude", edges: str = "equal-count",
               reject: bool = True, outlier_threshold: float = 3.0) -> Bins:
    """Bin angles by their respiratory ``signal`` at ``times_s`` (module docstring)."""
    s, t, n_bins = _check(signal, times_s, n_bins, method, edges)
    if not (math.isfinite(outlier_threshold) and outlier_threshold > 0):
        raise ValueError(f"outlier_threshold must be a positive number, got {outlier_threshold}")
    minima = breath_minima(s, t)
    breath = np.searchsorted(minima, np.arange(s.size), side="right") - 1    # -1 before the first minimum
    rejected = []
    if reject and minima.size >= 4:
        starts, ends = minima[:-1], minima[1:]
        peaks = np.array([s[a:b].max() for a, b in zip(starts, ends)])
        periods = t[ends] - t[starts]
        med, mad = np.median(peaks), 1.4826 * np.median(np.abs(peaks - np.median(peaks)))
        med_p = np.median(periods)
        spread = max(mad, 0.05 * (np.percentile(s, 95) - np.percentile(s, 5)))
        bad = (peaks > med + outlier_threshold * spread) | (periods < 0.5 * med_p) | (periods > 2.0 * med_p)
        rejected = [int(i) for i in np.flatnonzero(bad)]
    keep = ~np.isin(breath, rejected)
    if method == "amplitude":
        value = s
    else:
        value = _phase(t, minima)
    index = np.full(s.size, -1, dtype=np.int64)
    if keep.sum() < n_bins:
        raise ValueError(f"only {int(keep.sum())} spokes remain after rejecting outlier breaths, fewer than "
                         f"n_bins = {n_bins}")
    v = value[keep]
    if method == "phase" and edges == "equal-width":
        cuts = np.linspace(0.0, 1.0, n_bins + 1)
        lab = np.clip(np.floor(v * n_bins).astype(np.int64), 0, n_bins - 1)
    elif edges == "equal-width":
        cuts = np.linspace(v.min(), v.max(), n_bins + 1)
        lab = np.clip(np.floor((v - v.min()) / max(v.max() - v.min(), 1e-300) * n_bins).astype(np.int64), 0, n_bins - 1)
    else:  # equal count: rank order, split into n_bins nearly equal parts
        order = np.argsort(v, kind="stable")
        lab = np.empty(v.size, dtype=np.int64)
        for b, part in enumerate(np.array_split(order, n_bins)):
            lab[part] = b
        cuts = None
    index[keep] = lab
    ranges = np.zeros((n_bins, 2))
    for b in range(n_bins):
        m = index == b
        if cuts is not None and not m.any():
            ranges[b] = cuts[b], cuts[b + 1]
        elif m.any():
            ranges[b] = value[m].min(), value[m].max()
        else:
            ranges[b] = np.nan
    return Bins(index, n_bins, method, edges, ranges, value, breath, rejected)


def _phase(t, minima):
    """Phase in [0, 1) of every sample: elapsed fraction of its breath between end-expiration minima."""
    phase = np.zeros(t.size)
    if minima.size < 2:
        raise ValueError("phase binning needs at least two end-expiration minima (two breaths) in the signal")
    period = float(np.median(np.diff(t[minima])))
    for a, b in zip(minima[:-1], minima[1:]):
        phase[a:b] = (t[a:b] - t[a]) / (t[b] - t[a])
    phase[: minima[0]] = 1.0 - (t[minima[0]] - t[: minima[0]]) / period
    phase[minima[-1]:] = (t[minima[-1]:] - t[minima[-1]]) / period
    return np.mod(phase, 1.0)
