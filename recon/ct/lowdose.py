"""Low-dose CT simulation and the matching statistical (PWLS) weights.

Model (per detector reading, pre-log):

    counts = Poisson(I0 * exp(-p)) + Normal(0, electronic_noise_std^2)

with ``p`` the noiseless line integral (unitless: attenuation in 1/mm times length in mm) and ``I0``
the blank-scan (air) photon count per reading. Post-log data ``p_noisy = log(I0 / counts)``; counts
below ``min_count`` (default 0.5 photons, covering zero and negative readings, which electronic
noise can produce) are clipped to ``min_count`` before the log, so ``p_noisy <= log(I0 / min_count)``
is always finite.

Variance of the post-log data (delta method): ``Var(p_noisy) ~ (lambda + sigma_e^2) / lambda^2`` with
``lambda`` the mean count; estimated from the measured counts, the PWLS weights are
``w = counts^2 / (counts + sigma_e^2)`` (counts clipped at ``min_count`` like the log).
"""

from __future__ import annotations

import numpy as np

from .. import _array

__all__ = ["DEFAULT_MIN_COUNT", "as_float_array", "post_log_variance", "pwls_weights", "simulate_low_dose"]

#: Counts below this value (photons) are clipped before the log transform.
DEFAULT_MIN_COUNT = 0.5


def as_float_array(x, name: str) -> np.ndarray:
    """``x`` (numpy array, torch tensor, number or nested list) as a float64 numpy array, checked: real
    (TypeError naming ``name`` otherwise) and finite (ValueError). The input check of the dose,
    counts and weight functions of :mod:`recon.ct`."""
    if not _array.is_array(x) and not isinstance(x, (list, tuple, int, float, np.number)):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    a = _array.to_numpy(x) if _array.is_array(x) else np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real array, got dtype {a.dtype}")
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or Inf")
    return a


def _check_positive(name: str, value, allow_zero=False) -> None:
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)) or (np.any(v < 0) if allow_zero else np.any(v <= 0)):
        raise ValueError(f"{name}: expected {'non-negative' if allow_zero else 'positive'} finite values, got {value!r}")


def _wrap(arr: np.ndarray, ref, dtype):
    out = np.ascontiguousarray(arr.astype(dtype, copy=False))
    return _array.like(out, ref)


def simulate_low_dose(sinogram, I0, electronic_noise_std: float = 0.0, seed=None,
                      min_count: float = DEFAULT_MIN_COUNT):
    """Simulate a low-dose scan of noiseless line integrals.

    Parameters
    ----------
    sinogram : array (any shape), noiseless line integrals (unitless); numpy or CPU torch.
    I0 : positive scalar or array broadcastable to ``sinogram``: incident photons per reading.
    electronic_noise_std : standard deviation of the additive Gaussian electronic noise (photons).
    seed : int, ``numpy.random.Generator`` or None.
    min_count : counts below this (photons; default 0.5) are clipped before the log.

    Returns
    -------
    (noisy_sinogram, counts): post-log line integrals ``log(I0 / max(counts, min_count))`` in the
    input's dtype (float32 for integer input) and the raw pre-log counts (float64, may be <= 0 when
    electronic noise is present), both of the input's array kind (numpy or torch).
    """
    p = as_float_array(sinogram, "sinogram")
    _check_positive("I0", I0)
    _check_positive("electronic_noise_std", electronic_noise_std, allow_zero=True)
    _check_positive("min_count", min_count)
    i0 = np.broadcast_to(np.asarray(I0, dtype=np.float64), p.shape)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mean = i0 * np.exp(-p)
    if not np.all(np.isfinite(mean)) or np.any(mean > 1e15):
        raise ValueError("I0 * exp(-sinogram) overflows: check the sinogram's units (line integrals) and I0")
    counts = rng.poisson(mean).astype(np.float64)
    if electronic_noise_std > 0:
        counts += rng.normal(0.0, float(electronic_noise_std), size=p.shape)
    noisy = np.log(i0 / np.maximum(counts, min_count))
    dt = _array.dtype_name(sinogram) if _array.is_array(sinogram) else "float64"
    dt = dt if dt in ("float32", "float64") else "float32"
    return _wrap(noisy, sinogram, dt), _wrap(counts, sinogram, np.float64)


def pwls_weights(counts, electronic_noise_std: float = 0.0, min_count: float = DEFAULT_MIN_COUNT):
    """Statistical weights ``1 / Var(post-log data) = c^2 / (c + sigma_e^2)``, ``c = max(counts, min_count)``.

    ``counts`` are the raw pre-log readings (photons, as returned by :func:`simulate_low_dose`);
    returns float32 weights of the same shape and array kind (unit: 1 / variance of line integrals).
    """
    c = as_float_array(counts, "counts")
    _check_positive("electronic_noise_std", electronic_noise_std, allow_zero=True)
    _check_positive("min_count", min_count)
    c = np.maximum(c, min_count)
    w = c * c / (c + float(electronic_noise_std) ** 2)
    return _wrap(w, counts, np.float32)


def post_log_variance(mean_counts, electronic_noise_std: float = 0.0):
    """Model variance ``(lambda + sigma_e^2) / lambda^2`` of post-log data for mean counts ``lambda``."""
    lam = as_float_array(mean_counts, "mean_counts")
    if np.any(lam <= 0):
        raise ValueError("mean_counts: expected positive values")
    return (lam + float(electronic_noise_std) ** 2) / lam ** 2
