"""Analytic CT reconstruction: ramp filters, FBP (parallel, fan flat/arc), FDK (cone), Parker weights.

Geometry and units follow :mod:`recon.geometry` (mm, radians, line integrals unitless); the
reconstruction is in the image's attenuation units (1/mm): a disk of attenuation ``mu`` comes back
as ``mu``. FBP/FDK need the analytic parameters (angles, distances) of :class:`ParallelBeam2D`,
:class:`FanBeam2D` and :class:`ConeBeam3D`; vector geometries and helical orbits are refused with
a ValueError (use the iterative methods on :class:`recon.ops.Projector`).

Filtering (frequency domain). Every detector row is zero-padded to the next power of two
``>= 2 * bins`` (``padding=True``; otherwise no padding, i.e. circular convolution) and multiplied
by the DFT of the *exact spatial samples* of the band-limited ramp (Kak & Slaney (3.29)),
``h[0] = 1/(4 d^2)``, ``h[k odd] = -1/(pi^2 k^2 d^2)``, ``h[k even] = 0``, times ``d`` (the
sampling interval, so the discrete convolution approximates the integral). Building the ramp from
its spatial samples, rather than as ``|f|`` on the DFT grid, gives the DC term right (no offset).
Windows (``nu`` = frequency / Nyquist, zero above ``cutoff``): ``ram-lak`` 1, ``shepp-logan``
``sinc(nu / (2 cutoff))``, ``cosine`` ``cos(pi nu / (2 cutoff))``, ``hann``
``(1 + cos(pi nu / cutoff)) / 2``.

Weights (per ray, before filtering): fan/cone flat detectors the cosine weight
``D / sqrt(D^2 + s^2 [+ t^2])`` with ``(s, t)`` the bin position scaled to the rotation axis and
``D`` the source-origin distance; equiangular (arc) detectors ``D cos(gamma)`` with the ramp kernel
``(gamma / sin gamma)^2 h(gamma)`` sampled in fan angle. Redundancy: full scans (>= 2 pi) weight
every ray 1/2; fan/cone short scans (range >= pi + 2 * fan half-angle, detected from the angles)
use Parker weights (with the fan half-angle widened to ``(range - pi) / 2`` for over-scans); shorter
(limited-angle) scans get weight 1 (the reconstruction is then incomplete, not rescaled) and an
:class:`IncompleteCoverageWarning`. Angle sets with no angular range (one view, or all views at one
angle) are refused (ValueError: degenerate coverage). Each view is weighted by its angular interval
(``|d beta|``, central differences over the sorted angles).

Backprojection: a voxel-driven, *weighted* backprojector in C++/OpenMP
(``recon._core.ct_backproject_*``, csrc/ct/backproject.cpp): each voxel centre is projected onto
the detector, the filtered data are linearly interpolated there and multiplied by the analytic
distance weight: ``1/U^2`` (flat fan, FDK; ``U`` = source-to-voxel distance along the central ray
over the source-origin distance), ``1/L^2`` (arc; ``L`` the source-voxel distance, mm) or 1
(parallel). This backprojector is analytic and unmatched: it is NOT the adjoint of
:class:`recon.ops.Projector` (use ``Projector.adjoint`` for that); it is used for all geometries,
parallel included, because linear interpolation at the voxel's own detector position is the
accurate discretisation of the FBP integral.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from .. import _array
from ..geometry import ConeBeam3D, FanBeam2D, Geometry, ParallelBeam2D
from ..geometry._checks import check_allocation, count, flag, positive

__all__ = ["FILTERS", "IncompleteCoverageWarning", "angular_coverage", "ramp_kernel", "filter_response", "filter_sinogram",
           "parker_weight", "parker_weights", "redundancy_weights", "fbp", "fdk"]


class IncompleteCoverageWarning(UserWarning):
    """FBP/FDK of angles that cover less than complete data (180 deg for parallel beams, a short
    scan of 180 deg + the fan angle for fan/cone beams): the image misses part of the object's
    Fourier transform (limited-angle artefacts) and is not rescaled."""

#: Filter names accepted by :func:`fbp` / :func:`fdk`.
FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")
_ALIASES = {"ramlak": "ram-lak", "ram_lak": "ram-lak", "ramp": "ram-lak", "shepp_logan": "shepp-logan",
            "shepplogan": "shepp-logan", "hanning": "hann", "cos": "cosine"}


# ---- filters -------------------------------------------------------------------------------------

def _filter_name(name) -> str:
    if not isinstance(name, str):
        raise ValueError(f"filter: expected one of {FILTERS}, got {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FILTERS:
        raise ValueError(f"filter: unknown filter {name!r}; expected one of {FILTERS}")
    return key


def _check_cutoff(cutoff) -> float:
    try:
        c = float(cutoff)
    except (TypeError, ValueError):
        raise ValueError(f"cutoff: expected a number in (0, 1], got {cutoff!r}") from None
    if not (0.0 < c <= 1.0):
        raise ValueError(f"cutoff: expected a number in (0, 1] (fraction of the Nyquist frequency), got {cutoff!r}")
    return c


def padded_length(n: int, padding: bool = True) -> int:
    """FFT length for ``n`` detector bins: the next power of two ``>= 2 n`` (``padding``) or ``n``."""
    n = count("padded_length", "detector bins", n)
    if not padding:
        return int(n)
    return 1 << int(math.ceil(math.log2(max(2 * int(n), 2))))


def ramp_kernel(n_pad: int, spacing: float, arc: bool = False, support: int | None = None) -> np.ndarray:
    """Spatial samples (circular order, length ``n_pad``) of the band-limited ramp, 1/spacing^2.

    ``h[0] = 1/(4 d^2)``, ``h[k odd] = -1/(pi k d)^2``, even ``k != 0``: 0. ``arc=True`` gives the
    equiangular kernel ``(k d / sin(k d))^2 h[k]`` (``d`` in radians) for ``|k d| < pi``; ``support``
    zeroes lags ``|k| > support`` (used for the arc kernel).
    """
    k = np.fft.fftfreq(n_pad, d=1.0 / n_pad).round().astype(np.int64)  # 0, 1, ..., -1
    h = np.zeros(n_pad, dtype=np.float64)
    h[0] = 1.0 / (4.0 * spacing * spacing)
    odd = (k % 2) != 0
    h[odd] = -1.0 / (math.pi * k[odd] * spacing) ** 2
    if arc:
        g = k * spacing
        ok = (np.abs(g) < math.pi * (1 - 1e-9)) & (k != 0)
        fac = np.ones(n_pad)
        fac[ok] = (g[ok] / np.sin(g[ok])) ** 2
        h = h * fac
        h[(np.abs(g) >= math.pi * (1 - 1e-9))] = 0.0
    if support is not None:
        h[np.abs(k) > support] = 0.0
    return h


def filter_response(n_det: int, spacing: float, filter: str = "ram-lak", cutoff: float = 1.0,
                    padding: bool = True, arc: bool = False) -> np.ndarray:
    """Real frequency response (length :func:`padded_length`) that filters one detector row.

    ``real(ifft(fft(row, n_pad) * H))[:n_det]`` is ``spacing * (row conv h)`` windowed; unit
    1/spacing (e.g. 1/mm^2 times mm of data spacing gives 1/mm per unit of data).
    """
    name = _filter_name(filter)
    c = _check_cutoff(cutoff)
    spacing = positive("filter_response", "spacing", spacing)
    n_pad = padded_length(n_det, padding)
    h = ramp_kernel(n_pad, spacing, arc=arc, support=(n_det - 1) if arc else None)
    H = np.real(np.fft.fft(h)) * spacing
    nu = np.abs(np.fft.fftfreq(n_pad)) * 2.0  # 0 .. 1 (Nyquist)
    x = nu / c
    if name == "ram-lak":
        w = np.ones_like(nu)
    elif name == "shepp-logan":
        w = np.sinc(x / 2.0)  # numpy sinc(t) = sin(pi t)/(pi t)
    elif name == "cosine":
        w = np.cos(0.5 * math.pi * x)
    else:  # hann
        w = 0.5 * (1.0 + np.cos(math.pi * x))
    w = np.where(nu <= c, w, 0.0)
    return H * w


def filter_sinogram(sino: np.ndarray, spacing: float, filter: str = "ram-lak", cutoff: float = 1.0,
                    padding: bool = True, arc: bool = False) -> np.ndarray:
    """Filter a numpy array along its last axis (detector bins) with :func:`filter_response`."""
    n = sino.shape[-1]
    H = filter_response(n, spacing, filter, cutoff, padding, arc)
    n_pad = H.size
    F = np.fft.rfft(sino, n=n_pad, axis=-1)
    F *= H[: n_pad // 2 + 1]
    out = np.fft.irfft(F, n=n_pad, axis=-1)[..., :n]
    return out


# ---- angles, redundancy, Parker ----------------------------------------------------------------------

def parker_weight(beta, gamma, delta: float):
    """Parker's short-scan weight for source angle ``beta`` in ``[0, pi + 2 delta]`` and fan angle
    ``gamma`` in ``[-delta, delta]`` (radians), both measured in the sense of rotation, so that the
    conjugate of ray ``(beta, gamma)`` is ``(beta + pi + 2 gamma, -gamma)`` and the two weights sum
    to 1. Zero outside ``[0, pi + 2 delta]``."""
    b = np.asarray(beta, dtype=np.float64)
    g = np.asarray(gamma, dtype=np.float64)
    b, g = np.broadcast_arrays(b, g)
    w = np.zeros(b.shape)
    eps = 1e-12
    r1 = (b >= 0) & (b < 2 * delta - 2 * g)
    r2 = (b >= 2 * delta - 2 * g) & (b <= math.pi - 2 * g)
    r3 = (b > math.pi - 2 * g) & (b <= math.pi + 2 * delta)
    w[r1] = np.sin(0.25 * math.pi * b[r1] / np.maximum(delta - g[r1], eps)) ** 2
    w[r2] = 1.0
    w[r3] = np.sin(0.25 * math.pi * (math.pi + 2 * delta - b[r3]) / np.maximum(delta + g[r3], eps)) ** 2
    return w


def _source_angles(geometry: Geometry):
    """Rotation-sense-normalised source (view) angles beta (radians, start 0), the sense (+1 ccw,
    -1 cw) and the order that sorts them."""
    vec = geometry.vectors()
    # parallel: angle of the ray direction; fan/cone: angle of the source position (x, y)
    phi = np.arctan2(vec[:, 1], vec[:, 0])
    # unwrap in the order the angles are given (they need not be sorted)
    order = np.argsort(geometry.angles, kind="stable")
    ph = np.unwrap(phi[order])
    sense = 1.0 if ph.size < 2 or ph[-1] >= ph[0] else -1.0
    beta_sorted = sense * (ph - ph[0])
    beta = np.empty_like(beta_sorted)
    beta[order] = beta_sorted
    return beta, sense, order


def _angle_intervals(beta: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per-view angular interval |d beta| (central differences over the sorted angles)."""
    b = beta[order]
    n = b.size
    if n == 1:
        return np.array([math.pi])
    d = np.empty(n)
    d[1:-1] = np.abs(b[2:] - b[:-2]) / 2.0
    d[0] = abs(b[1] - b[0])
    d[-1] = abs(b[-1] - b[-2])
    out = np.empty(n)
    out[order] = d
    return out


def _fan_angles(geometry: Geometry) -> np.ndarray:
    """World fan angle (ccw from the central ray, radians) of every detector column at view 0."""
    vec = geometry.vectors()[0]
    if isinstance(geometry, ConeBeam3D):
        s, d, u = vec[0:2], vec[3:5], vec[6:8]
        n = geometry.det_cols
    else:
        s, d, u = vec[0:2], vec[2:4], vec[4:6]
        n = geometry.det_count
    idx = np.arange(n) - (n - 1) / 2.0
    c = -s / np.linalg.norm(s)
    if isinstance(geometry, FanBeam2D) and geometry.detector == "arc":
        R = geometry.source_det
        c0 = (d - s) / R
        uh = u / np.linalg.norm(u)
        g = idx * geometry.det_spacing / R
        dirs = np.cos(g)[:, None] * c0 + np.sin(g)[:, None] * uh
    else:
        dirs = d[None, :] + idx[:, None] * u[None, :] - s[None, :]
    cross = c[0] * dirs[:, 1] - c[1] * dirs[:, 0]
    dot = dirs @ c
    return np.arctan2(cross, dot)


def _scan_kind(geometry: Geometry, short_scan=None, fn: str = "fbp"):
    """('full' | 'short' | 'limited', info dict) for the geometry's angles; ``info["complete"]``:
    the angles cover complete data (parallel: 180 deg; fan/cone: a short scan or more)."""
    if isinstance(short_scan, np.bool_):
        short_scan = bool(short_scan)
    if short_scan not in (None, True, False):
        raise ValueError(f"short_scan: expected None, True or False, got {short_scan!r}")
    beta, sense, order = _source_angles(geometry)
    rng = float(beta.max() - beta.min())
    if geometry.n_views < 2 or not rng > 1e-9:
        raise ValueError(f"{fn}: the angular coverage is degenerate: the {geometry.n_views} view(s) span "
                         f"{math.degrees(rng):.3g} deg; analytic reconstruction needs views over a positive "
                         "angular range (complete data: 180 deg for a parallel beam, 180 deg + the fan angle "
                         "for fan and cone beams)")
    db = _angle_intervals(beta, order)
    step = float(np.median(db))
    info = {"beta": beta, "sense": sense, "order": order, "dbeta": db, "range": rng, "step": step}
    if rng + step >= 2 * math.pi * (1 - 1e-6):
        kind = "full"
        info["complete"] = True
    elif isinstance(geometry, ParallelBeam2D):
        kind = "limited"  # [0, pi) or less: every line measured at most once
        info["complete"] = rng + step >= math.pi * (1 - 1e-6)
        info["need"] = math.pi
    else:
        gam = _fan_angles(geometry)
        delta = float(np.max(np.abs(gam)))
        info["gamma"] = sense * gam
        info["delta"] = delta
        enough = rng >= math.pi + 2 * delta - 0.5 * step
        kind = "short" if enough else "limited"
        info["complete"] = enough
        info["need"] = math.pi + 2 * delta
    if short_scan is True:
        if isinstance(geometry, ParallelBeam2D):
            raise ValueError("short_scan=True: Parker weights apply to fan/cone beams only")
        if kind != "short":
            raise ValueError(f"short_scan=True but the angles span {math.degrees(rng):.2f} deg: a short scan "
                             f"needs pi + 2 * fan half-angle = "
                             f"{math.degrees(math.pi + 2 * info.get('delta', 0.0)):.2f} deg and less than 360 deg")
    elif short_scan is False and kind == "short":
        kind = "limited"
    return kind, info


def angular_coverage(geometry: Geometry) -> dict:
    """How completely the views of a :class:`ParallelBeam2D`, :class:`FanBeam2D` or :class:`ConeBeam3D`
    cover the angles: ``{"complete": bool, "covered_deg": range plus one step, "needed_deg": 180 for a
    parallel beam, 180 + the fan angle for fan/cone beams (360 when the scan is full), "kind": "full" |
    "short" | "limited"}`` (the rule behind :class:`IncompleteCoverageWarning`)."""
    _require_analytic(geometry, "angular_coverage")
    kind, info = _scan_kind(geometry, None, "angular_coverage")
    need = info.get("need", 2 * math.pi)
    return {"complete": bool(info["complete"]), "covered_deg": math.degrees(info["range"] + info["step"]),
            "needed_deg": math.degrees(need), "kind": kind}


def parker_weights(geometry: Geometry) -> np.ndarray:
    """Parker weights ``(n_angles, det_count)`` (fan) or ``(n_angles, cols)`` (cone) of a short scan.

    Raises ValueError when the angles are not a short scan (range ``>= pi + 2 delta`` and
    ``< 2 pi`` with ``delta`` the fan half-angle). Over-scans use ``delta' = (range - pi) / 2``.
    """
    if not isinstance(geometry, (FanBeam2D, ConeBeam3D)):
        raise ValueError("parker_weights: expected a FanBeam2D or ConeBeam3D geometry")
    kind, info = _scan_kind(geometry, short_scan=True, fn="parker_weights")
    delta = max(info["delta"], 0.5 * (info["range"] - math.pi))
    return parker_weight(info["beta"][:, None], info["gamma"][None, :], delta)


def redundancy_weights(geometry: Geometry, short_scan=None, *, fn: str = "redundancy_weights"):
    """Per-ray redundancy weights ``(n_angles, bins)`` (or ``None`` where uniform) and per-view
    angular intervals, plus the scan kind: ``(weights_or_None, scalar, dbeta, kind)``. Warns
    (:class:`IncompleteCoverageWarning`) when the angles cover less than complete data."""
    _require_analytic(geometry, fn)
    kind, info = _scan_kind(geometry, short_scan, fn)
    if not info["complete"]:
        warnings.warn(f"{fn}: the angles cover {math.degrees(info['range'] + info['step']):.4g} deg (their "
                      f"range plus one step), less than the {math.degrees(info['need']):.4g} deg of complete data: the "
                      "image is incomplete (limited-angle artefacts) and not rescaled; iterative methods "
                      "(recon.ct.pwls_tv) do better", IncompleteCoverageWarning, stacklevel=3)
    if kind == "full":
        return None, 0.5, info["dbeta"], kind
    if kind == "short":
        delta = max(info["delta"], 0.5 * (info["range"] - math.pi))
        w = parker_weight(info["beta"][:, None], info["gamma"][None, :], delta)
        return w, 1.0, info["dbeta"], kind
    return None, 1.0, info["dbeta"], kind


# ---- input checks ----------------------------------------------------------------------------------

_ANALYTIC = (ParallelBeam2D, FanBeam2D, ConeBeam3D)


def _require_analytic(geometry, fn: str, kinds=_ANALYTIC):
    if not isinstance(geometry, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        got = type(geometry).__name__
        extra = ("; vector geometries and helical orbits have no analytic reconstruction here: use an iterative "
                 "method (recon.ct.sirt, os_sart, pwls_tv) on recon.ops.Projector") \
            if isinstance(geometry, Geometry) and not isinstance(geometry, _ANALYTIC) else ""
        raise ValueError(f"{fn}: needs a {names} geometry (its angles and distances), got {got}{extra}")


def _check_threads(nthreads, fn: str) -> int:
    """0 (all cores) or a thread count up to 4 x the cores (more only slows down, and far more makes
    OpenMP abort)."""
    cap = 4 * (os.cpu_count() or 1)
    if isinstance(nthreads, (bool, np.bool_)) or not isinstance(nthreads, (int, np.integer)) \
            or not 0 <= nthreads <= cap:
        raise ValueError(f"{fn}: nthreads must be an integer in [0, {cap}] (0: all cores), got {nthreads!r}")
    return int(nthreads)


def _check_sinogram(sinogram, geometry: Geometry, fn: str):
    if not _array.is_array(sinogram):
        raise TypeError(f"{fn}: sinogram must be a numpy array or torch tensor, got {type(sinogram).__name__}")
    s = _array.to_numpy(sinogram)
    if s.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: sinogram must be real (float32/float64), got dtype {s.dtype}")
    k = len(geometry.sino_shape)
    if s.ndim < k or tuple(s.shape[s.ndim - k:]) != tuple(geometry.sino_shape):
        raise ValueError(f"{fn}: sinogram shape {tuple(s.shape)} does not match the geometry: expected "
                         f"(..., {', '.join(map(str, geometry.sino_shape))})")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{fn}: sinogram contains NaN or Inf")
    dt = np.float64 if s.dtype == np.float64 else np.float32
    return s, dt


def _voxel_grid(geometry: Geometry):
    """(origin, step) in (z, y, x) order (mm) of the voxel centres; see recon.ct.geometry."""
    shp = geometry.image_shape
    vs = geometry.voxel_size
    if geometry.ndim == 2:
        (ny, nx), (vy, vx) = shp, vs
        nz, vz = 1, 0.0
    else:
        (nz, ny, nx), (vz, vy, vx) = shp, vs
    origin = np.array([-(nz - 1) / 2.0 * vz, (ny - 1) / 2.0 * vy, -(nx - 1) / 2.0 * vx])
    step = np.array([vz, -vy, vx])
    return origin, step


def _cross2(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _projective_matrices(geometry: Geometry) -> np.ndarray:
    """(n_angles, 3, 4) matrices mapping (x, y, z, 1) to (a w, b w, w): detector column/row index
    and U (see csrc/kernels/ct_backproject.h)."""
    vec = geometry.vectors()
    A = vec.shape[0]
    P = np.zeros((A, 3, 4))
    if isinstance(geometry, ParallelBeam2D):
        ray, d, u = vec[:, 0:2], vec[:, 2:4], vec[:, 4:6]
        k = _cross2(u, ray)
        centre = (geometry.det_count - 1) / 2.0
        # a = cross(r - d, ray) / cross(u, ray)
        P[:, 0, 0] = ray[:, 1] / k
        P[:, 0, 1] = -ray[:, 0] / k
        P[:, 0, 3] = -_cross2(d, ray) / k + centre
        P[:, 2, 3] = 1.0
        return P
    if isinstance(geometry, FanBeam2D):
        z = np.zeros((A, 1))
        s = np.hstack([vec[:, 0:2], z])
        d = np.hstack([vec[:, 2:4], z])
        u = np.hstack([vec[:, 4:6], z])
        v = np.tile([0.0, 0.0, 1.0], (A, 1))
        ncol, nrow = geometry.det_count, 1
    else:
        s, d, u, v = vec[:, 0:3], vec[:, 3:6], vec[:, 6:9], vec[:, 9:12]
        nrow, ncol = geometry.det_rows, geometry.det_cols
    n = np.cross(u, v)
    sgn = np.sign(np.einsum("ij,ij->i", d - s, n))
    n = n * sgn[:, None]
    vn = np.cross(v, n)
    nu_ = np.cross(n, u)
    ka = np.einsum("ij,ij->i", u, vn)
    kb = np.einsum("ij,ij->i", v, nu_)
    dsn = np.einsum("ij,ij->i", d - s, n)
    ns = np.einsum("ij,ij->i", n, s)
    Dn = -ns  # source-to-rotation-axis distance along n, times |n|
    # a * m = c_a (n.r - n.s) + e_a ((v x n).r - (v x n).s),  m = (r - s).n
    ca = np.einsum("ij,ij->i", s - d, vn) / ka
    ea = dsn / ka
    cb = np.einsum("ij,ij->i", s - d, nu_) / kb
    eb = dsn / kb
    rowa = ca[:, None] * n + ea[:, None] * vn
    rowb = cb[:, None] * n + eb[:, None] * nu_
    P[:, 0, :3] = rowa
    P[:, 0, 3] = -ca * ns - ea * np.einsum("ij,ij->i", vn, s)
    P[:, 1, :3] = rowb
    P[:, 1, 3] = -cb * ns - eb * np.einsum("ij,ij->i", nu_, s)
    P[:, 2, :3] = n
    P[:, 2, 3] = -ns
    P /= Dn[:, None, None]
    # bin indices: centre of the detector is index (N - 1) / 2
    P[:, 0, :] += (ncol - 1) / 2.0 * P[:, 2, :]
    P[:, 1, :] += (nrow - 1) / 2.0 * P[:, 2, :]
    return P


def _core():
    from .. import _core

    return _core


def _backproject_projective(q: np.ndarray, geometry: Geometry, weights: np.ndarray, nthreads: int = 0):
    """Weighted voxel-driven backprojection of filtered data ``q`` (n_angles, [rows,] cols)."""
    dt = q.dtype
    if geometry.ndim == 2:
        q3 = np.ascontiguousarray(q[:, None, :])
        out = np.zeros((1,) + tuple(geometry.image_shape), dtype=dt)
    else:
        q3 = np.ascontiguousarray(q)
        out = np.zeros(tuple(geometry.image_shape), dtype=dt)
    P = np.ascontiguousarray(_projective_matrices(geometry))
    origin, step = _voxel_grid(geometry)
    _core().ct_backproject_projective(q3, P, np.ascontiguousarray(weights, dtype=np.float64), origin, step, out,
                                      int(nthreads))
    return out[0] if geometry.ndim == 2 else out


def _backproject_arc(q: np.ndarray, geometry: FanBeam2D, weights: np.ndarray, nthreads: int = 0):
    vec = geometry.vectors()
    s = np.ascontiguousarray(vec[:, 0:2])
    c = -s / np.linalg.norm(s, axis=1, keepdims=True)
    # e: unit vector towards growing fan angle (+u): u at the central ray is perpendicular to c
    u_c = np.stack([-c[:, 1], c[:, 0]], axis=1)
    uh = vec[:, 4:6] / np.linalg.norm(vec[:, 4:6], axis=1, keepdims=True)
    sgn = np.sign(np.einsum("ij,ij->i", u_c, uh))
    e = u_c * sgn[:, None]
    frame = np.ascontiguousarray(np.hstack([c, e]))
    SD = geometry.source_det
    dgamma = geometry.det_spacing / SD
    centre = (geometry.det_count - 1) / 2.0 - (geometry.det_offset / SD) / dgamma
    origin, step = _voxel_grid(geometry)
    out = np.zeros(tuple(geometry.image_shape), dtype=q.dtype)
    _core().ct_backproject_arc2d(np.ascontiguousarray(q), s, frame, float(dgamma), float(centre),
                                 np.ascontiguousarray(weights, dtype=np.float64), origin[1:].copy(),
                                 step[1:].copy(), out, int(nthreads))
    return out


# ---- public API --------------------------------------------------------------------------------------

def fbp(sinogram, geometry: Geometry, filter: str = "ram-lak", cutoff: float = 1.0, padding: bool = True,
        *, short_scan=None, nthreads: int = 0):
    """Filtered backprojection for :class:`ParallelBeam2D` and :class:`FanBeam2D` (flat or arc);
    :class:`ConeBeam3D` dispatches to :func:`fdk`.

    Parameters
    ----------
    sinogram : array ``(..., *geometry.sino_shape)`` of line integrals (unitless), numpy or CPU
        torch, float32/float64; leading axes are a batch.
    geometry : the acquisition geometry (:mod:`recon.ct.geometry`).
    filter : ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"`` or ``"hann"``.
    cutoff : window cutoff as a fraction of the Nyquist frequency, in (0, 1].
    padding : zero-pad each row to the next power of two ``>= 2 * bins`` before the FFT.
    short_scan : None (detect from the angles), True (require Parker weights), False (never).
    nthreads : OpenMP threads of the backprojector (0: default).

    Returns
    -------
    image ``(..., *geometry.image_shape)`` in 1/mm, float32 (float64 for float64 input), same array
    kind as ``sinogram``. The backprojector is the analytic voxel-driven one (not the adjoint).
    """
    if isinstance(geometry, ConeBeam3D):
        return fdk(sinogram, geometry, filter, cutoff, padding, short_scan=short_scan, nthreads=nthreads)
    _require_analytic(geometry, "fbp", (ParallelBeam2D, FanBeam2D))
    s, dt = _check_sinogram(sinogram, geometry, "fbp")
    _filter_name(filter)
    _check_cutoff(cutoff)
    padding = flag("fbp", "padding", padding)
    nthreads = _check_threads(nthreads, "fbp")
    red, red_scalar, dbeta, kind = redundancy_weights(geometry, short_scan, fn="fbp")
    view_w = dbeta * red_scalar
    flat, out = _batch(s, geometry, dt, "fbp")
    for b, p in enumerate(flat):
        p = p.astype(np.float64)
        if red is not None:
            p = p * red
        if isinstance(geometry, ParallelBeam2D):
            q = filter_sinogram(p, geometry.det_spacing, filter, cutoff, padding)
            out[b] = _backproject_projective(q.astype(dt), geometry, view_w, nthreads)
        elif geometry.detector == "flat":
            D, SD = geometry.source_origin, geometry.source_det
            n = geometry.det_count
            s_iso = ((np.arange(n) - (n - 1) / 2.0) * geometry.det_spacing + geometry.det_offset) * D / SD
            p = p * (D / np.sqrt(D * D + s_iso ** 2))[None, :]
            q = filter_sinogram(p, geometry.det_spacing * D / SD, filter, cutoff, padding)
            out[b] = _backproject_projective(q.astype(dt), geometry, view_w, nthreads)
        else:  # arc
            D, SD = geometry.source_origin, geometry.source_det
            n = geometry.det_count
            gam = ((np.arange(n) - (n - 1) / 2.0) * geometry.det_spacing + geometry.det_offset) / SD
            p = p * (D * np.cos(gam))[None, :]
            q = filter_sinogram(p, geometry.det_spacing / SD, filter, cutoff, padding, arc=True)
            out[b] = _backproject_arc(q.astype(dt), geometry, view_w, nthreads)
    return _array.like(out.reshape(s.shape[: s.ndim - 2] + tuple(geometry.image_shape)), sinogram)


def _batch(s: np.ndarray, geometry: Geometry, dt, fn: str):
    """The input as ``(batch, *sino_shape)`` and the output ``(batch, *image_shape)`` (allocated once,
    after checking that it and the per-item work fit in memory). A zero-size batch gives an empty output."""
    k = len(geometry.sino_shape)
    batch = int(np.prod(s.shape[: s.ndim - k], dtype=np.int64))
    image = float(np.prod(geometry.image_shape, dtype=np.float64))
    rows = float(np.prod(geometry.sino_shape[:-1], dtype=np.float64))
    work = 8.0 * (4 * rows * padded_length(geometry.sino_shape[-1]) + 2 * image)  # filtering, one image
    check_allocation(fn, batch * image * np.dtype(dt).itemsize + work,
                     f"{batch} image(s) of shape {tuple(geometry.image_shape)}")
    flat = s.reshape((batch,) + tuple(geometry.sino_shape))
    return flat, np.empty((batch,) + tuple(geometry.image_shape), dtype=dt)


def fdk(sinogram, geometry: ConeBeam3D, filter: str = "ram-lak", cutoff: float = 1.0, padding: bool = True,
        *, short_scan=None, nthreads: int = 0):
    """Feldkamp-Davis-Kress reconstruction for :class:`ConeBeam3D` (circular orbit, flat detector).

    ``sinogram`` ``(..., n_angles, rows, cols)``; each detector row is cosine-weighted
    (``D / sqrt(D^2 + s^2 + t^2)`` at the rotation axis), Parker-weighted for short scans, ramp
    filtered along the columns and backprojected with the ``1/U^2`` weight by the analytic
    voxel-driven backprojector (bilinear detector interpolation; not the adjoint). Parameters and
    return as :func:`fbp`; exact in the mid-plane for a full scan, approximate (cone-beam
    artefacts) away from it.
    """
    _require_analytic(geometry, "fdk", (ConeBeam3D,))
    s, dt = _check_sinogram(sinogram, geometry, "fdk")
    _filter_name(filter)
    _check_cutoff(cutoff)
    padding = flag("fdk", "padding", padding)
    nthreads = _check_threads(nthreads, "fdk")
    red, red_scalar, dbeta, kind = redundancy_weights(geometry, short_scan, fn="fdk")
    view_w = dbeta * red_scalar
    D, SD = geometry.source_origin, geometry.source_det
    R, C = geometry.det_rows, geometry.det_cols
    sr, sc = geometry.det_spacing
    orow, ocol = geometry.det_offset
    s_iso = ((np.arange(C) - (C - 1) / 2.0) * sc + ocol) * D / SD
    t_iso = ((np.arange(R) - (R - 1) / 2.0) * sr + orow) * D / SD
    cosw = D / np.sqrt(D * D + s_iso[None, :] ** 2 + t_iso[:, None] ** 2)  # (R, C)
    flat, out = _batch(s, geometry, dt, "fdk")
    for b, p in enumerate(flat):
        p = p.astype(np.float64) * cosw[None]
        if red is not None:
            p = p * red[:, None, :]
        q = filter_sinogram(p, sc * D / SD, filter, cutoff, padding)
        out[b] = _backproject_projective(q.astype(dt), geometry, view_w, nthreads)
    return _array.like(out.reshape(s.shape[: s.ndim - 3] + tuple(geometry.image_shape)), sinogram)
