"""Raw detector counts to line integrals, and the PWLS weights that go with them.

Log model (per reading): ``p = -log((I - dark) / (I0 - dark))`` with ``I`` the measured counts, ``I0``
the blank (air) scan and ``dark`` the dark-field offset (all in the detector's units, e.g. photons).
Readings with ``I - dark`` below ``min_count`` (default 0.5, as :func:`recon.ct.simulate_low_dose`;
this covers zero and negative readings, which electronic noise produces in photon-starved rays)
are clipped to ``min_count`` before the log, with one :class:`CountsClippedWarning` saying how many;
so ``p <= log((I0 - dark) / min_count)`` stays finite. NaN or Inf anywhere, or a blank not above the
dark level, is a ValueError.

Weights: the post-log variance of a reading with mean count ``lambda`` (after dark subtraction) is
``(lambda + sigma_e^2) / lambda^2``, so PWLS weights are :func:`recon.ct.pwls_weights` of the
dark-subtracted counts (:func:`weights_from_counts`), or of the expected counts ``I0 exp(-p)`` when only
line integrals and the incident photons are known (:func:`weights_from_line_integrals`, e.g. from
DICOM-CT-PD's PhotonStatistics).
"""

from __future__ import annotations

import warnings

import numpy as np

from .lowdose import DEFAULT_MIN_COUNT, as_float_array, pwls_weights

__all__ = ["CountsClippedWarning", "counts_to_line_integrals", "weights_from_counts", "weights_from_line_integrals"]


class CountsClippedWarning(UserWarning):
    """Some readings were at or below ``min_count`` after dark subtraction and were clipped."""


def _level(name: str, value, shape) -> np.ndarray:
    a = as_float_array(value, name)
    try:
        return np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"{name}: shape {a.shape} does not broadcast to the counts' shape {shape}") from None


def counts_to_line_integrals(counts, blank, dark=0.0, *, min_count: float = DEFAULT_MIN_COUNT) -> np.ndarray:
    """Line integrals (float32, the counts' shape) ``-log((counts - dark) / (blank - dark))``.

    ``counts``: raw readings (any shape, numpy or torch); ``blank``: I0, a number or an array
    broadcastable to ``counts`` (a blank scan per bin or per element); ``dark``: likewise (default 0).
    Readings below ``min_count`` after dark subtraction are clipped (one warning with their number).
    """
    c = as_float_array(counts, "counts")
    i0 = _level("blank", blank, c.shape)
    dk = _level("dark", dark, c.shape)
    if not (np.isfinite(min_count) and min_count > 0):
        raise ValueError(f"min_count: expected a positive number, got {min_count!r}")
    span = i0 - dk
    bad = int(np.count_nonzero(span <= 0))
    if bad:
        raise ValueError(f"blank: {bad} reading(s) of the blank scan are not above the dark level (blank - dark <= 0)")
    net = c - dk
    low = net < min_count
    n_low = int(np.count_nonzero(low))
    if n_low:
        n_nonpos = int(np.count_nonzero(net <= 0))
        warnings.warn(f"counts_to_line_integrals: {n_low} of {net.size} readings ({100.0 * n_low / net.size:.3g} %) "
                      f"were below {min_count} after dark subtraction ({n_nonpos} zero or negative) and were "
                      f"clipped to {min_count}", CountsClippedWarning, stacklevel=2)
    return np.log(span / np.maximum(net, min_count)).astype(np.float32)


def weights_from_counts(counts, dark=0.0, electronic_noise_std: float = 0.0,
                        min_count: float = DEFAULT_MIN_COUNT) -> np.ndarray:
    """PWLS weights (float32) of data made by :func:`counts_to_line_integrals`:
    :func:`recon.ct.pwls_weights` of ``counts - dark`` (clipped at ``min_count`` like the log)."""
    c = as_float_array(counts, "counts")
    return pwls_weights(c - _level("dark", dark, c.shape), electronic_noise_std, min_count)


def weights_from_line_integrals(line_integrals, blank, electronic_noise_std: float = 0.0,
                                min_count: float = DEFAULT_MIN_COUNT) -> np.ndarray:
    """PWLS weights (float32) from line integrals and the incident photons ``blank`` (I0 after dark
    subtraction; number or broadcastable array): :func:`recon.ct.pwls_weights` of the expected counts
    ``blank * exp(-line_integrals)``."""
    p = as_float_array(line_integrals, "line_integrals")
    i0 = _level("blank", blank, p.shape)
    if np.any(i0 <= 0):
        raise ValueError("blank: the incident photons must be positive")
    return pwls_weights(i0 * np.exp(-p), electronic_noise_std, min_count)
