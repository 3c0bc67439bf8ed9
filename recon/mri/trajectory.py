"""Non-Cartesian k-space trajectories in the NUFFT convention of :mod:`recon.conventions`.

Every generator returns float32 coordinates in cycles per field of view ("grid units"), shape
``(..., M, d)``, each axis inside ``[-N/2, N/2]``, with the last axis ordered like the image axes:
``(ky, kx)`` for 2D images ``(y, x)`` and ``(kz, ky, kx)`` for 3D images ``(z, y, x)``.
A trajectory given in cycles per sample (``[-0.5, 0.5]``, as in many scanner files) becomes this
convention by multiplying with the matrix size (:func:`from_cycles_per_sample`).

Angles: a spoke at azimuth ``phi`` points along ``(ky, kx) = (sin phi, cos phi)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Golden angle for radial spokes over 180 degrees: pi / phi (~111.246 deg), Winkelmann et al. 2007.
GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0
#: 2D golden means for 3D radial ("koosh ball") sampling (Chan et al., MRM 2009): the eigenvector of
#: the 3x3 Fibonacci-like matrix, phi1 ~ 0.4656, phi2 ~ 0.6823.
GOLDEN_MEANS_3D = (0.465571231876768, 0.682327803828019)


def _check_pos_int(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _check_size(N, d, name="N"):
    if np.isscalar(N):
        N = (N,) * d
    N = tuple(N)
    if len(N) != d:
        raise ValueError(f"{name} must be an int or {d} ints, got {N}")
    return tuple(_check_pos_int(n, name) for n in N)


def spoke_positions(n_samples: int, N: int) -> np.ndarray:
    """Sample positions along a full spoke through the centre: ``(i - n_samples/2) * N / n_samples``
    for ``i = 0..n_samples-1`` (cycles/FOV), so ``[-N/2, N/2)`` with the centre sampled when
    ``n_samples`` is even. ``n_samples = 2N`` is the usual 2x readout oversampling."""
    n_samples = _check_pos_int(n_samples, "n_samples")
    return ((np.arange(n_samples) - n_samples / 2.0) * (float(N) / n_samples)).astype(np.float64)


def radial_angles(n_spokes: int, golden: bool = True, offset: int = 0) -> np.ndarray:
    """Spoke azimuths in radians: golden-angle increments (``(i + offset) * GOLDEN_ANGLE mod pi``) or,
    with ``golden=False``, uniform over ``[0, pi)`` (``i * pi / n_spokes``)."""
    n_spokes = _check_pos_int(n_spokes, "n_spokes")
    i = np.arange(n_spokes, dtype=np.float64)
    if golden:
        return np.mod((i + offset) * GOLDEN_ANGLE, math.pi)
    return i * math.pi / n_spokes


def radial_2d(n_spokes: int, n_samples: int, N, golden: bool = True, *, offset: int = 0) -> np.ndarray:
    """2D radial trajectory, shape ``(n_spokes, n_samples, 2)`` as ``(ky, kx)`` in cycles/FOV.

    ``N`` is the image size (int or ``(Ny, Nx)``); spokes are full diameters with
    :func:`spoke_positions` and :func:`radial_angles` (golden angle by default, so any contiguous
    window of spokes covers k-space nearly uniformly: the basis of sliding-window/4D binning).
    ``offset`` starts the golden-angle sequence at spoke ``offset`` (for later frames).
    """
    Ny, Nx = _check_size(N, 2)
    phi = radial_angles(n_spokes, golden, offset)
    r = spoke_positions(n_samples, 1.0)  # in units of the matrix size
    ky = np.sin(phi)[:, None] * r[None, :] * Ny
    kx = np.cos(phi)[:, None] * r[None, :] * Nx
    return np.stack([ky, kx], axis=-1).astype(np.float32)


def stack_of_stars(n_spokes: int, n_samples: int, n_partitions: int, N, golden: bool = True, *,
                   rotate_partitions: bool = False) -> np.ndarray:
    """3D stack-of-stars: 2D radial in-plane, Cartesian partitions along z.

    Shape ``(n_partitions, n_spokes, n_samples, 3)`` as ``(kz, ky, kx)``; ``N = (Nz, Ny, Nx)`` with
    ``Nz == n_partitions`` for a fully sampled kz (integer kz in ``[-Nz/2, Nz/2)``). With
    ``rotate_partitions`` each partition's spokes continue the golden-angle sequence instead of
    repeating the same angles.
    """
    n_partitions = _check_pos_int(n_partitions, "n_partitions")
    Nz, Ny, Nx = _check_size(N, 3)
    kz = (np.arange(n_partitions) - n_partitions // 2) * (Nz / n_partitions)
    out = np.empty((n_partitions, n_spokes, n_samples, 3), dtype=np.float32)
    for p in range(n_partitions):
        off = p * n_spokes if rotate_partitions else 0
        out[p, :, :, 1:] = radial_2d(n_spokes, n_samples, (Ny, Nx), golden, offset=off)
        out[p, :, :, 0] = kz[p]
    return out


def koosh_ball(n_spokes: int, n_samples: int, N) -> np.ndarray:
    """3D radial ("koosh ball") with 2D golden-means spoke directions (Chan et al., MRM 2009).

    Full spokes through the centre; spoke ``m`` has direction with ``cos(polar) = m*phi1 mod 1`` and
    azimuth ``2*pi*(m*phi2 mod 1)`` (upper hemisphere; the full diameter covers the other half).
    Shape ``(n_spokes, n_samples, 3)`` as ``(kz, ky, kx)``, ``N = (Nz, Ny, Nx)`` or an int.
    """
    n_spokes = _check_pos_int(n_spokes, "n_spokes")
    Nz, Ny, Nx = _check_size(N, 3)
    m = np.arange(n_spokes, dtype=np.float64)
    cos_t = np.mod(m * GOLDEN_MEANS_3D[0], 1.0)
    sin_t = np.sqrt(1.0 - cos_t**2)
    az = 2.0 * math.pi * np.mod(m * GOLDEN_MEANS_3D[1], 1.0)
    d = np.stack([cos_t, sin_t * np.sin(az), sin_t * np.cos(az)], axis=-1)  # (kz, ky, kx) unit vectors
    r = spoke_positions(n_samples, 1.0)
    out = d[:, None, :] * r[None, :, None] * np.asarray([Nz, Ny, Nx], dtype=np.float64)
    return out.astype(np.float32)


def spiral_2d(n_interleaves: int, n_samples: int, N, *, alpha: float = 2.0,
              edge_undersampling: float = 1.0) -> np.ndarray:
    """Variable-density spiral-out, shape ``(n_interleaves, n_samples, 2)`` as ``(ky, kx)``.

    Each interleaf follows ``k(t) = kmax * t**alpha * exp(i * 2*pi*n_turns*t)``, ``t`` in ``[0, 1]``
    uniformly sampled, rotated by ``2*pi*j/n_interleaves``. ``alpha > 1`` packs turns densely near the
    centre (variable density); ``alpha = 1`` is an Archimedean (uniform-density) spiral. The number of
    turns makes the radial spacing between neighbouring interleaves at the edge equal to
    ``edge_undersampling`` grid units (1.0 = Nyquist at the edge, 2.0 = twofold undersampled there).
    Samples are uniform in the parameter, not a gradient-limited time-optimal design.
    """
    n_interleaves = _check_pos_int(n_interleaves, "n_interleaves")
    n_samples = _check_pos_int(n_samples, "n_samples")
    Ny, Nx = _check_size(N, 2)
    if not alpha >= 1.0:
        raise ValueError(f"alpha must be >= 1, got {alpha}")
    if not edge_undersampling > 0:
        raise ValueError(f"edge_undersampling must be > 0, got {edge_undersampling}")
    kmax = 0.5 * (1.0 - 1e-6)  # in units of the matrix size (strictly inside +-N/2)
    # dk/dturn at t=1 is kmax*alpha/n_turns (in matrix units); n_interleaves interleaves share the
    # annulus, so the spacing between neighbours is kmax*alpha/(n_turns*n_interleaves) * max(N).
    n_turns = kmax * alpha * max(Ny, Nx) / (n_interleaves * edge_undersampling)
    t = np.linspace(0.0, 1.0, n_samples)
    r = kmax * t**alpha
    out = np.empty((n_interleaves, n_samples, 2), dtype=np.float64)
    for j in range(n_interleaves):
        ph = 2.0 * math.pi * (n_turns * t + j / n_interleaves)
        out[j, :, 0] = r * np.sin(ph) * Ny
        out[j, :, 1] = r * np.cos(ph) * Nx
    return out.astype(np.float32)


def from_cycles_per_sample(k, N: Sequence[int]) -> np.ndarray:
    """Convert coordinates in cycles per sample (``[-0.5, 0.5]``, last axis ordered like the image
    axes) to cycles/FOV by multiplying each axis with the matrix size ``N``."""
    k = np.asarray(k, dtype=np.float64)
    N = np.asarray(tuple(N), dtype=np.float64)
    if k.shape[-1] != N.size:
        raise ValueError(f"trajectory has {k.shape[-1]} axes but the matrix size has {N.size}")
    if np.abs(k).max(initial=0.0) > 0.5 + 1e-6:
        raise ValueError(f"coordinates in cycles/sample must lie in [-0.5, 0.5], got max |k| = {np.abs(k).max()}")
    return np.clip(k * N, -N / 2, N / 2).astype(np.float32)


def respiratory_bins(signal, n_bins: int, method: str = "amplitude") -> list[np.ndarray]:
    """Group readouts (spokes) into respiratory motion states for 4D (XD-GRASP-style) reconstruction.

    ``signal``: one respiratory surrogate value per readout (e.g. the k-space centre's magnitude or a
    bellows trace). ``method='amplitude'`` sorts readouts by amplitude and cuts them into ``n_bins``
    equally populated bins (bin 0 = lowest amplitude, typically end-expiration or inspiration
    depending on the surrogate's sign); ``'phase'`` uses the phase of the analytic signal (Hilbert
    transform), bins of equal phase width over ``[-pi, pi)``. Returns a list of index arrays.
    """
    s = np.asarray(signal, dtype=np.float64).ravel()
    n_bins = _check_pos_int(n_bins, "n_bins")
    if s.size < n_bins:
        raise ValueError(f"need at least n_bins={n_bins} readouts, got {s.size}")
    if not np.isfinite(s).all():
        raise ValueError("respiratory signal contains NaN or Inf")
    if method == "amplitude":
        order = np.argsort(s, kind="stable")
        return [np.sort(part) for part in np.array_split(order, n_bins)]
    if method == "phase":
        from scipy.signal import hilbert

        ph = np.angle(hilbert(s - s.mean()))
        edges = np.linspace(-math.pi, math.pi, n_bins + 1)
        idx = np.clip(np.digitize(ph, edges) - 1, 0, n_bins - 1)
        return [np.flatnonzero(idx == b) for b in range(n_bins)]
    raise ValueError(f"method must be 'amplitude' or 'phase', got {method!r}")
