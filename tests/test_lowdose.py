"""Low-dose simulation: count statistics against the Poisson + Gaussian model, the log clip, and the
PWLS weights against the post-log variance model."""

import numpy as np
import pytest

from recon.ct import post_log_variance, pwls_weights, simulate_low_dose
from recon.ct.lowdose import DEFAULT_MIN_COUNT

M = 200_000


@pytest.mark.parametrize("I0,sigma", [(1000.0, 0.0), (1000.0, 8.0), (50.0, 3.0)])
def test_counts_mean_and_variance(I0, sigma):
    """mean(counts) = I0 exp(-p) and var(counts) = I0 exp(-p) + sigma^2 (seeded): the mean within 4
    standard errors, the variance within 4 standard errors of the sample variance (~1.3 %)."""
    p = np.full(M, 1.3, np.float32)
    _, counts = simulate_low_dose(p, I0, electronic_noise_std=sigma, seed=123)
    lam = I0 * np.exp(-1.3)
    var = lam + sigma ** 2
    assert abs(counts.mean() - lam) < 4 * np.sqrt(var / M)
    # standard error of the sample variance ~ var * sqrt(2/(M-1)) (Gaussian approx; Poisson excess
    # kurtosis 1/lam is negligible here)
    assert abs(counts.var() - var) < 4 * var * np.sqrt(2.0 / (M - 1)) * (1 + 1 / lam)
    if sigma == 0:
        assert np.all(counts == np.round(counts)) and counts.min() >= 0


def test_seed_reproducible_and_shapes():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 4, (30, 40)).astype(np.float32)
    a, ca = simulate_low_dose(p, 1e4, 5.0, seed=7)
    b, cb = simulate_low_dose(p, 1e4, 5.0, seed=7)
    c, _ = simulate_low_dose(p, 1e4, 5.0, seed=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(a, c)
    assert a.shape == p.shape and a.dtype == np.float32 and ca.dtype == np.float64
    # per-reading I0 (bowtie) broadcasts
    i0 = np.linspace(1e3, 1e4, 40)
    n, cn = simulate_low_dose(p, i0, seed=1)
    assert n.shape == p.shape
    # high dose: the noisy data approach the truth
    hi, _ = simulate_low_dose(p, 1e9, seed=2)
    assert np.abs(hi - p).max() < 0.02


def test_log_clip_never_nan_or_inf():
    """Zero and negative counts (very attenuating rays, electronic noise) are clipped at min_count
    = 0.5 photons: the data stay finite and at most log(I0 / 0.5)."""
    p = np.full(10_000, 25.0)  # exp(-25) * 100: essentially zero photons
    for sigma in (0.0, 10.0):
        noisy, counts = simulate_low_dose(p, 100.0, sigma, seed=3)
        assert np.all(np.isfinite(noisy))
        assert noisy.max() <= np.log(100.0 / DEFAULT_MIN_COUNT) + 1e-6
        if sigma > 0:
            assert (counts < 0).any()  # negative readings did occur and were handled
        else:
            assert (counts == 0).mean() > 0.99
    w = pwls_weights(counts, 10.0)
    assert np.all(np.isfinite(w)) and np.all(w > 0)


@pytest.mark.parametrize("lam,sigma", [(400.0, 0.0), (400.0, 10.0), (2000.0, 20.0)])
def test_weights_match_post_log_variance(lam, sigma):
    """Var(log(I0/counts)) over many readings matches (lam + sigma^2) / lam^2 within 3 % (delta
    method; exact to O(1/lam^2)), and the mean PWLS weight matches 1 / that variance within 3 %."""
    I0 = 1e4
    p = np.full(M, np.log(I0 / lam))
    noisy, counts = simulate_low_dose(p, I0, sigma, seed=11)
    model = post_log_variance(lam, sigma)
    assert abs(noisy.var() / model - 1) < 0.03
    w = pwls_weights(counts, sigma)
    assert abs(w.astype(np.float64).mean() * model - 1) < 0.03
    # the formula itself
    c = np.array([0.0, 0.2, 1.0, 37.0, 1e4])
    cc = np.maximum(c, DEFAULT_MIN_COUNT)
    np.testing.assert_allclose(pwls_weights(c, sigma), cc ** 2 / (cc + sigma ** 2), rtol=1e-6)


def test_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    p = torch.full((5, 6), 0.5, dtype=torch.float32)
    noisy, counts = simulate_low_dose(p, 1e3, 2.0, seed=0)
    assert isinstance(noisy, torch.Tensor) and noisy.dtype == torch.float32
    assert isinstance(counts, torch.Tensor) and counts.dtype == torch.float64
    w = pwls_weights(counts, 2.0)
    assert isinstance(w, torch.Tensor) and w.shape == (5, 6)
    ref, _ = simulate_low_dose(p.numpy(), 1e3, 2.0, seed=0)
    np.testing.assert_array_equal(noisy.numpy(), ref)


def test_bad_input():
    p = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="I0"):
        simulate_low_dose(p, -10.0)
    with pytest.raises(ValueError, match="I0"):
        simulate_low_dose(p, 0.0)
    with pytest.raises(ValueError, match="I0"):
        simulate_low_dose(p, np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="I0"):
        simulate_low_dose(p, np.nan)
    with pytest.raises(ValueError, match="electronic_noise_std"):
        simulate_low_dose(p, 100.0, electronic_noise_std=-1.0)
    bad = p.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        simulate_low_dose(bad, 100.0)
    with pytest.raises(ValueError, match="overflow"):
        simulate_low_dose(np.full(3, -60.0), 100.0)
    with pytest.raises(TypeError):
        simulate_low_dose("sinogram", 100.0)
    with pytest.raises(TypeError):
        simulate_low_dose(np.zeros(3, complex), 100.0)
    with pytest.raises(ValueError, match="NaN"):
        pwls_weights(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="electronic_noise_std"):
        pwls_weights(np.ones(3), -2.0)
    with pytest.raises(ValueError, match="mean_counts"):
        post_log_variance(np.array([0.0]))
