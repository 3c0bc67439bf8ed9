"""Real-time 3D by signature matching (MRSIGMA: Feng et al., MRM 2020).

Offline, the respiratory-resolved 4D set (XD-GRASP's ``(B, z, y, x)`` images) is the dictionary.
Each motion state gets a **simulated signature**: what the scanner would measure at the k-space centre
of any in-plane spoke along kz, i.e. the coil-weighted SI projection profile
``p_b[c, z] = sum_{y,x} S_c(z, y, x) x_b(z, y, x) / sqrt(Ny Nx)`` (the 2D NUFFT at ``k = 0`` of each
slice's coil images, the same quantity :func:`recon.mri.dynamic.gating.si_profiles` reads from the
data). Online, a short segment of new readouts (the angles acquired within ``window_s``, at most
300 ms: one or two stack-of-stars angles) gives its own profile (the mean over its angles of the
inverse kz FFT of the spokes' centre samples, in the dictionary's whitened and compressed coils), and
the dictionary entry nearest to it (complex l2 distance over coils and z) is returned: its volume, its
bin, a continuous motion state (the position between the best bin and its nearer neighbour, by
projecting onto the segment between their signatures), the matching respiratory signal value, and a
confidence ``max(0, 1 - r^2 / spread^2)`` where ``r`` is the distance to the match and ``spread`` the
RMS distance of the dictionary's signatures from their mean: 1 for a perfect match, 0 for a segment
no more like its match than the states are like each other (a state outside the dictionary, such as a
deep breath). Matching costs one small FFT and ``B`` distances: well under a millisecond.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class SignatureDictionary:
    """The 4D set as a dictionary: ``volumes`` ``(B, Z, Ny, Nx)``, ``signatures`` ``(B, C, Z)`` complex,
    ``states`` ``(B,)`` the respiratory signal of each state, ``coil_matrix`` the whitening/compression
    of the file's coils (None: none), ``spread`` (see the module docstring)."""

    volumes: np.ndarray
    signatures: np.ndarray
    states: np.ndarray
    coil_matrix: np.ndarray | None
    spread: float

    @property
    def n_states(self) -> int:
        return self.signatures.shape[0]


@dataclass
class Match:
    """One matched segment: ``bin``, continuous ``state`` (bin units), respiratory ``signal``,
    ``confidence`` in [0, 1], relative ``residual`` ``r / ||p||``, the ``volume`` (a view into the
    dictionary), ``time_s`` of the segment (its last readout) and the matching time ``elapsed_ms``."""

    bin: int
    state: float
    signal: float
    confidence: float
    residual: float
    volume: np.ndarray
    time_s: float
    elapsed_ms: float


def build_dictionary(images, maps, *, states=None, coil_matrix=None) -> SignatureDictionary:
    """The dictionary of a 4D set ``images`` ``(B, Z, Ny, Nx)`` with its coil ``maps`` ``(Z, C, Ny, Nx)``
    (module docstring); ``states`` the respiratory signal of each bin (default ``0 .. B-1``)."""
    images = np.asarray(images)
    maps = np.asarray(maps)
    if images.ndim != 4 or maps.ndim != 4 or maps.shape[0] != images.shape[1] or maps.shape[2:] != images.shape[2:]:
        raise ValueError(f"images (B, Z, Ny, Nx) and maps (Z, C, Ny, Nx) do not match: {images.shape}, {maps.shape}")
    if images.shape[0] < 2:
        raise ValueError("a signature dictionary needs at least two motion states")
    ny, nx = images.shape[2:]
    sig = np.einsum("zcyx,bzyx->bcz", maps, images, optimize=True) / math.sqrt(ny * nx)
    states = np.arange(images.shape[0], dtype=np.float64) if states is None else np.asarray(states, dtype=np.float64)
    if states.shape != (images.shape[0],) or not np.all(np.isfinite(states)):
        raise ValueError(f"states must be {images.shape[0]} finite values, got {states.shape}")
    spread = float(np.sqrt(np.mean(np.sum(np.abs(sig - sig.mean(0)) ** 2, axis=(1, 2)))))
    return SignatureDictionary(images, sig.astype(np.complex128), states, coil_matrix, spread)


def segment_profile(centre) -> np.ndarray:
    """Profile ``(C, Z)`` of a segment from its spokes' centre samples ``(C, n, Z)`` (kz from -Z/2)."""
    from ..coils import centered_fft

    c = np.asarray(centre).mean(axis=1)
    return c if c.shape[-1] == 1 else centered_fft(c, (1,), inverse=True)


def match(dictionary: SignatureDictionary, centre, *, time_s: float = float("nan"), raw_coils: bool = False) -> Match:
    """Match a segment given by its spokes' k-space centre samples ``(C, n, Z)`` (module docstring).
    ``raw_coils``: the samples are in the file's coils (apply the dictionary's coil matrix first)."""
    t0 = time.perf_counter()
    centre = np.asarray(centre)
    if raw_coils and dictionary.coil_matrix is not None:
        centre = np.tensordot(dictionary.coil_matrix, centre, axes=(1, 0))
    B, C, Z = dictionary.signatures.shape
    if centre.ndim != 3 or centre.shape[0] != C or centre.shape[2] != Z or centre.shape[1] < 1:
        raise ValueError(f"segment centre samples must be (coils={C}, spokes >= 1, partitions={Z}), got {centre.shape}")
    if not np.all(np.isfinite(centre)):
        raise ValueError("segment data contain NaN or Inf")
    p = segment_profile(centre)
    d2 = np.sum(np.abs(dictionary.signatures - p[None]) ** 2, axis=(1, 2))
    b = int(np.argmin(d2))
    state, r2 = float(b), float(d2[b])
    for nb in (b - 1, b + 1):                       # the nearer neighbour: position on the segment between
        if 0 <= nb < B:
            e = dictionary.signatures[nb] - dictionary.signatures[b]
            den = float(np.sum(np.abs(e) ** 2))
            if den > 0:
                t = min(max(float(np.real(np.vdot(e, p - dictionary.signatures[b]))) / den, 0.0), 0.5)
                r2_t = float(np.sum(np.abs(p - dictionary.signatures[b] - t * e) ** 2))
                if r2_t < r2 - 1e-15 * max(r2, 1.0):
                    state, r2 = b + (nb - b) * t, r2_t
    lo = int(math.floor(state))
    frac = state - lo
    signal = float(dictionary.states[lo] if frac == 0 else (1 - frac) * dictionary.states[lo] + frac * dictionary.states[lo + 1])
    conf = max(0.0, 1.0 - r2 / dictionary.spread**2) if dictionary.spread > 0 else 0.0
    pn = float(np.sqrt(np.sum(np.abs(p) ** 2)))
    return Match(b, state, signal, conf, math.sqrt(r2) / pn if pn > 0 else float("inf"), dictionary.volumes[b],
                 float(time_s), 1e3 * (time.perf_counter() - t0))


def segments(data, window_s: float = 0.3) -> list:
    """Consecutive groups of angles of ``data`` (time order) whose readouts all fall within
    ``window_s`` of the group's first readout (at least one angle each)."""
    if not (math.isfinite(window_s) and 0 < window_s <= 0.3 + 1e-9):
        raise ValueError(f"window_s must lie in (0, 0.3] s (MRSIGMA segments are short), got {window_s}")
    start, end = data.times_s.min(axis=1), data.times_s.max(axis=1)
    out, a = [], 0
    while a < data.n_angles:
        b = a + 1
        while b < data.n_angles and end[b] - start[a] <= window_s:
            b += 1
        out.append(np.arange(a, b))
        a = b
    return out


def match_segments(dictionary: SignatureDictionary, data, *, window_s: float = 0.3) -> list:
    """Match every segment (:func:`segments`) of :class:`~recon.mri.dynamic.data.SpokeData` ``data``
    (processed like the dictionary's data: the same whitening and compression)."""
    from .gating import centre_sample

    centre_idx = centre_sample(data.spokes)
    out = []
    for seg in segments(data, window_s):
        c = data.kspace[:, seg][..., centre_idx]                  # (C, n, Z)
        out.append(match(dictionary, c, time_s=float(data.times_s[seg].max())))
    return out
