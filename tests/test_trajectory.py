"""Trajectory generators: shapes, dtypes, ranges in cycles/FOV, angles and densities."""

import math

import numpy as np
import pytest

from recon.mri import trajectory as T


def _in_range(coord, N):
    half = np.asarray(N, dtype=np.float64) / 2
    return bool(np.all(np.abs(coord) <= half + 1e-6))


@pytest.mark.parametrize("golden", [True, False])
def test_radial_2d(golden):
    c = T.radial_2d(13, 64, (40, 32), golden=golden)
    assert c.shape == (13, 64, 2) and c.dtype == np.float32
    assert _in_range(c, (40, 32))
    # full spokes through the centre: sample n/2 is the origin, first sample at -N/2 along the spoke
    assert np.allclose(c[:, 32], 0)
    r = np.hypot(c[..., 0] / 40, c[..., 1] / 32)
    assert np.allclose(r[:, 0], 0.5, atol=1e-6)
    phi = np.arctan2(c[:, -1, 0] / 40, c[:, -1, 1] / 32) % math.pi
    if golden:
        d = np.diff(T.radial_angles(13))
        assert np.allclose(np.mod(d, math.pi), np.mod(T.GOLDEN_ANGLE, math.pi))
        assert np.allclose(np.sort(phi), np.sort(T.radial_angles(13)), atol=1e-5)
    else:
        assert np.allclose(phi, np.arange(13) * math.pi / 13, atol=1e-5)


def test_golden_angle_value():
    assert abs(math.degrees(T.GOLDEN_ANGLE) - 111.24611797) < 1e-6


def test_golden_angle_windows_cover_kspace_evenly():
    """Any window of consecutive golden-angle spokes has no angular gap much larger than uniform."""
    phi = T.radial_angles(200)
    for start in (0, 37, 101):
        w = np.sort(phi[start:start + 21])
        gaps = np.diff(np.r_[w, w[0] + math.pi])
        assert gaps.max() < 2.7 * math.pi / 21


def test_stack_of_stars():
    c = T.stack_of_stars(5, 32, 6, (6, 16, 16))
    assert c.shape == (6, 5, 32, 3) and c.dtype == np.float32
    assert _in_range(c, (6, 16, 16))
    assert np.array_equal(np.unique(c[..., 0]), np.arange(-3, 3))  # integer kz partitions
    assert np.allclose(c[0, ..., 1:], c[3, ..., 1:])  # same in-plane spokes
    rot = T.stack_of_stars(5, 32, 2, (2, 16, 16), rotate_partitions=True)
    assert not np.allclose(rot[0, ..., 1:], rot[1, ..., 1:])


def test_koosh_ball():
    c = T.koosh_ball(300, 40, (20, 24, 28))
    assert c.shape == (300, 40, 3) and _in_range(c, (20, 24, 28))
    d = c[:, 0] / (-0.5 * np.asarray([20, 24, 28]))  # first sample sits at -N/2 along the direction
    assert np.allclose(np.linalg.norm(d, axis=-1), 1, atol=1e-5)
    assert np.all(d[:, 0] >= -1e-6)  # upper hemisphere of directions
    # golden means spread directions uniformly: mean cos(polar) ~ 1/2 and the azimuths are balanced
    assert abs(d[:, 0].mean() - 0.5) < 0.02
    assert np.hypot(d[:, 1].sum(), d[:, 2].sum()) / len(d) < 0.05


def test_spiral_variable_density():
    N = 64
    c = T.spiral_2d(8, 2000, N, alpha=2.0)
    assert c.shape == (8, 2000, 2) and _in_range(c, (N, N))
    r = np.hypot(*np.moveaxis(c, -1, 0))
    assert r[:, 0].max() < 1e-6 and np.allclose(r[:, -1], N / 2, rtol=1e-4)
    # sample density per unit area falls with radius (variable density)
    hist, edges = np.histogram(r.ravel(), bins=[0, 8, 16, 24, 32])
    dens = hist / (np.pi * np.diff(edges**2))
    assert np.all(np.diff(dens) < 0)
    # Nyquist at the edge: neighbouring interleaves <= 1 cycle/FOV apart (edge_undersampling=1)
    u = T.spiral_2d(8, 20000, N, alpha=1.0)
    ru = np.hypot(*np.moveaxis(u[0], -1, 0))
    turn = int(np.argmin(np.abs(ru - 0.9 * N / 2)))
    ang = np.unwrap(np.arctan2(u[0, :, 0], u[0, :, 1]))
    nxt = int(np.argmin(np.abs(ang - ang[turn] - 2 * math.pi)))
    assert (ru[nxt] - ru[turn]) / 8 <= 1.0 + 1e-3


def test_from_cycles_per_sample():
    k = np.array([[0.5, -0.25], [-0.5, 0.0]])
    c = T.from_cycles_per_sample(k, (64, 32))
    assert np.allclose(c, [[32, -8], [-32, 0]])
    with pytest.raises(ValueError):
        T.from_cycles_per_sample(k * 3, (64, 32))
    with pytest.raises(ValueError):
        T.from_cycles_per_sample(k, (64, 32, 2))


def test_respiratory_bins():
    t = np.linspace(0, 20, 400)
    s = np.sin(2 * math.pi * t / 4)
    bins = T.respiratory_bins(s, 4)
    assert len(bins) == 4 and sorted(np.concatenate(bins).tolist()) == list(range(400))
    assert s[bins[0]].max() <= s[bins[1]].min() + 1e-12  # amplitude-ordered
    ph = T.respiratory_bins(s, 4, "phase")
    assert sorted(np.concatenate(ph).tolist()) == list(range(400))
    assert all(abs(len(b) - 100) < 15 for b in ph)
    with pytest.raises(ValueError):
        T.respiratory_bins(s, 4, "bogus")
    with pytest.raises(ValueError):
        T.respiratory_bins([1.0, np.nan, 2.0], 2)


@pytest.mark.parametrize("call", [
    lambda: T.radial_2d(0, 10, 8),
    lambda: T.radial_2d(4, 10, (8, 8, 8)),
    lambda: T.stack_of_stars(3, 8, 0, (4, 8, 8)),
    lambda: T.spiral_2d(4, 100, 32, alpha=0.5),
    lambda: T.koosh_ball(10, 8, (8, 8)),
])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


def test_trajectories_feed_the_nufft():
    from recon.ops import Nufft

    for coord, shape in ((T.radial_2d(4, 16, 8), (8, 8)), (T.spiral_2d(2, 50, 8), (8, 8)),
                         (T.koosh_ball(5, 8, 6), (6, 6, 6)), (T.stack_of_stars(3, 8, 4, (4, 6, 6)), (4, 6, 6))):
        op = Nufft(coord, shape, tol=1e-4)
        assert op.oshape == coord.shape[:-1]
