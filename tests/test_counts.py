"""Counts to line integrals and the matching PWLS weights (recon/ct/counts.py), against known values."""

import math

import numpy as np
import pytest

from recon.ct import pwls_weights, simulate_low_dose
from recon.ct.counts import (
    CountsClippedWarning,
    counts_to_line_integrals,
    weights_from_counts,
    weights_from_line_integrals,
)


def test_known_values():
    p = np.array([[0.0, 0.5, 2.0], [1.0, 3.0, 0.25]])
    I0 = 1000.0
    np.testing.assert_allclose(counts_to_line_integrals(I0 * np.exp(-p), I0), p, atol=1e-6)
    # dark subtraction: I = dark + (I0 - dark) exp(-p)
    dark = np.array([10.0, 20.0, 5.0])  # per bin
    blank = np.array([1000.0, 2000.0, 500.0])
    I = dark + (blank - dark) * np.exp(-p)
    out = counts_to_line_integrals(I, blank, dark)
    assert out.dtype == np.float32 and out.shape == p.shape
    np.testing.assert_allclose(out, p, atol=1e-6)


def test_zero_and_negative_counts_are_clipped_and_counted():
    c = np.array([100.0, 0.0, -3.0, 0.2, 50.0, 1000.0])
    with pytest.warns(CountsClippedWarning, match=r"3 of 6 readings \(50 %\) were below 0.5 .* \(2 zero or negative\)"):
        p = counts_to_line_integrals(c, 1000.0)
    np.testing.assert_allclose(p, np.log(1000.0 / np.array([100.0, 0.5, 0.5, 0.5, 50.0, 1000.0])), rtol=1e-6)
    assert np.all(np.isfinite(p)) and p.max() == pytest.approx(math.log(2000.0))
    # after dark subtraction: 12 - 10 = 2 is fine, 10 - 10 = 0 is clipped
    with pytest.warns(CountsClippedWarning, match="1 of 2"):
        p = counts_to_line_integrals(np.array([12.0, 10.0]), 110.0, 10.0)
    np.testing.assert_allclose(p, [math.log(50.0), math.log(200.0)], rtol=1e-6)


def test_agrees_with_the_low_dose_simulation():
    rng_p = np.random.default_rng(1).uniform(0, 10, (20, 30))  # up to exp(-10) I0 = 0.45 photons
    noisy, counts = simulate_low_dose(rng_p, 1e4, electronic_noise_std=3.0, seed=2)
    assert np.any(counts < 0.5)  # photon-starved rays: both clip them to 0.5 the same way
    with pytest.warns(CountsClippedWarning):
        p = counts_to_line_integrals(counts, 1e4)
    np.testing.assert_allclose(p, noisy, rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="counts: contains NaN or Inf"):
        counts_to_line_integrals(np.array([1.0, np.nan]), 10.0)
    with pytest.raises(ValueError, match="blank: contains NaN or Inf"):
        counts_to_line_integrals(np.array([1.0, 2.0]), np.array([10.0, np.inf]))
    with pytest.raises(ValueError, match="dark: contains NaN"):
        counts_to_line_integrals(np.array([1.0, 2.0]), 10.0, np.nan)
    with pytest.raises(ValueError, match="1 reading.* not above the dark level"):
        counts_to_line_integrals(np.array([1.0, 2.0]), np.array([10.0, 4.0]), 4.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        counts_to_line_integrals(np.ones((3, 4)), np.ones(3) * 10)
    with pytest.raises(ValueError, match="min_count"):
        counts_to_line_integrals(np.ones(3), 10.0, min_count=0.0)
    with pytest.raises(TypeError, match="counts"):
        counts_to_line_integrals("lots", 10.0)


def test_weights():
    c = np.array([[0.0, 5.0, 100.0], [1e4, 20.0, 3.0]])
    dark = 2.0
    np.testing.assert_allclose(weights_from_counts(c, dark, 4.0), pwls_weights(c - dark, 4.0))
    # sigma_e = 0: the weight of a reading is its (clipped) count
    np.testing.assert_allclose(weights_from_counts(c, dark), np.maximum(c - dark, 0.5), rtol=1e-6)
    p = np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(weights_from_line_integrals(p, 1e5), 1e5 * np.exp(-p), rtol=1e-6)
    I0 = np.array([1e5, 5e4, 2e4])  # per column (bowtie), e.g. DICOM-CT-PD PhotonStatistics
    w = weights_from_line_integrals(np.tile(p, (4, 1)), I0, 5.0)
    lam = I0 * np.exp(-p)
    np.testing.assert_allclose(w[2], lam ** 2 / (lam + 25.0), rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        weights_from_line_integrals(p, 0.0)
