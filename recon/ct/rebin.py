"""Helical rebinning: a helical scan on a cylindrical (or flat) multi-row detector, flying focal spot
included (:class:`recon.io.dicom_ct_pd.HelicalScan`), to 2D fan-beam sinograms of transaxial slices
that :func:`recon.ct.fbp` (or the iterative methods) reconstruct.

Method: single-slice rebinning (SSRB) with 180- or 360-degree linear interpolation in z.

1. **Row selection (SSRB).** For the slice at scanner height ``z_s`` and a measured view ``k`` (focal
   spot ``S`` at height ``z_S``), the ray of column ``c`` is taken at the detector row where the ray
   crosses ``z_s`` at its in-plane midpoint (its point nearest the rotation axis, ray parameter
   ``lambda*`` from ``S``): row height ``z_P = z_S + (z_s - z_S) / lambda*``, linear interpolation
   between rows; rays whose row falls outside the detector have no data. The value is scaled by
   ``|D_xy| / |D|`` (the cosine of the ray's inclination), the ratio of the in-plane to the 3D path
   length through a z-invariant object.
2. **Fan-to-fan resampling.** Every measured in-plane ray, through the real (flying) focal spot, is
   the ray ``(t', gamma')`` of the nominal fan geometry (source on the circle of radius rho0, the
   detector's own fan angles): ``gamma' = asin(s / rho0)``, ``t' = theta - pi/2 + gamma'`` for a line
   at distance ``s`` from the axis with direction angle ``theta``. Each focal-spot position (a group
   of views with the same in-plane shift) is resampled bilinearly (in view and column) onto the
   output rays ``(t_j, gamma_i)``; the same output ray is also found as the complementary ray
   ``(t_j + pi - 2 gamma_i, -gamma_i)``.
3. **z interpolation.** Among the candidates (every turn, direct rays, and with ``interpolation=
   "180"`` the complementary ones, every focal-spot position), the nearest one with its source below
   the slice and the nearest above are interpolated linearly in source height ``z_S``; with data on
   one side only, that side's nearest is used. ``"360"`` uses direct rays only (more z blur, no
   mixing of the two sides of the fan).

The output geometry is a :class:`recon.geometry.FanBeam2D` with the scan's nominal geometry
(``source_origin = rho0``, ``origin_det = d0 - rho0``, ``detector = "arc"`` for a cylindrical
detector, the detector's spacing and central element as ``det_offset``), view angles
``t_j = t_0 + 2 pi j / n_angles`` over one turn (recon's angle ``t = phi0 + pi/2``,
:mod:`recon.io.dicom_ct_pd`). The in-plane world frame is the scanner's (x, y); the slice's
scanner z is reported.

Accuracy (tests/test_rebin.py): the error of SSRB grows with the cone angle and the object's
z-gradient; with 16 rows (cone half-angle ~0.6 deg at the rotation axis) and pitch 1 the rebinned
sinograms of an ellipsoid phantom match the exact fan-beam line integrals of its slice within the
bounds stated there. Advanced single-slice rebinning (ASSR, tilted planes) is not implemented.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from ..geometry import FanBeam2D
from ..geometry._checks import check_allocation
from ..io.dicom_ct_pd import HelicalScan
from .phantom import _as_list, chord_lengths

__all__ = ["RebinnedSlices", "nominal_fan_geometry", "rebin_ssrb", "scan_line_integrals"]

INTERPOLATIONS = ("180", "360")
#: Angles (radians) within this of the first / last view still count as measured (rounding).
_ANGLE_EPS = 1e-9


@dataclasses.dataclass
class RebinnedSlices:
    """Fan-beam sinograms of transaxial slices: ``sinograms`` ``(n_slices, n_angles, cols)`` float32
    line integrals, ``geometry`` (:class:`FanBeam2D`, shared), ``z`` (scanner z of each slice, mm),
    ``coverage`` (fraction of each slice's rays that had data; missing rays are 0)."""

    sinograms: np.ndarray
    geometry: FanBeam2D
    z: np.ndarray
    coverage: np.ndarray


def nominal_fan_geometry(scan: HelicalScan, n_angles: int | None = None, image_shape=None, voxel_size=1.0,
                         *, check_coverage: bool = True) -> FanBeam2D:
    """The 2D fan geometry of the scan's nominal focal-spot circle and detector, ``n_angles`` views
    (default: views per rotation) over one turn starting at the first view's angle."""
    d = scan.detector
    rho = _constant_radius(scan)
    n = scan.estimated_views_per_rotation() if n_angles is None else int(n_angles)
    if n < 2:
        raise ValueError(f"rebin: n_angles must be at least 2, got {n_angles!r}")
    t0 = float(scan.unwrapped_angles()[0]) + math.pi / 2
    angles = t0 + 2 * math.pi * np.arange(n) / n
    offset = ((d.cols - 1) / 2.0 - d.central_element[0]) * d.col_spacing
    return FanBeam2D(angles, d.cols, d.col_spacing, rho, d.radius - rho,
                     "arc" if d.shape == "CYLINDRICAL" else "flat", image_shape, voxel_size, offset,
                     check_coverage=check_coverage)


def _constant_radius(scan: HelicalScan) -> float:
    r = scan.radius
    if np.ptp(r) > 1e-6 * r.max():
        raise ValueError("rebin: DetectorFocalCenterRadialDistance changes from view to view "
                         f"({r.min():.6g} to {r.max():.6g} mm); rebinning needs a circular orbit")
    return float(r[0])


# ---- per focal-spot position: the in-plane rays -------------------------------------------------------------

@dataclasses.dataclass
class _Spot:
    """The views sharing one in-plane focal spot position and their rays' nominal fan coordinates."""

    views: np.ndarray        # view indices (ascending)
    phi: np.ndarray          # unwrapped phi0 of those views
    gamma: np.ndarray        # (cols,) nominal fan angle of each column's ray
    delta: np.ndarray        # (cols,) t' - (phi0 + pi/2)
    lam: np.ndarray          # (cols,) in-plane midpoint parameter lambda* from the focal spot
    dxy: np.ndarray          # (cols,) in-plane length |D_xy| from the focal spot to the element (mm)


def _spots(scan: HelicalScan) -> list[_Spot]:
    d = scan.detector
    rho = _constant_radius(scan)
    a, b = d.in_plane()
    phi_all = scan.unwrapped_angles()
    key = np.round(scan.ffs_angle, 12) + 1j * np.round(scan.ffs_radius, 9)
    out = []
    for k in np.unique(key):
        views = np.flatnonzero(key == k)
        dphi, drho = float(scan.ffs_angle[views[0]]), float(scan.ffs_radius[views[0]])
        # world frame at phi0 = 0: F = (rho, 0), e = (-1, 0), w = (0, 1)
        sx, sy = (rho + drho) * math.cos(dphi), (rho + drho) * math.sin(dphi)
        Dx, Dy = rho - a - sx, b - sy
        L = np.hypot(Dx, Dy)
        ux, uy = Dx / L, Dy / L
        s = sx * uy - sy * ux
        if np.any(np.abs(s) >= rho):
            raise ValueError("rebin: a ray passes outside the focal-spot circle; the fan is too wide")
        g = np.arcsin(s / rho)
        delta = np.angle(np.exp(1j * (np.arctan2(uy, ux) - math.pi + g)))
        lam = -(sx * Dx + sy * Dy) / (L * L)
        if np.any(np.diff(g) <= 0):
            raise ValueError("rebin: the detector columns' fan angles are not increasing")
        out.append(_Spot(views, phi_all[views], g, delta, lam, L))
    return out


def _rows_to_slice(scan: HelicalScan, spot: _Spot, sel: np.ndarray, zs: float):
    """SSRB for the views ``spot.views[sel]``: per (view, column) the in-plane line integral at
    height ``zs`` (float64) and whether the detector had it."""
    d = scan.detector
    views = spot.views[sel]
    zS = scan.z[views] + scan.ffs_z[views]  # (n,)
    rise = (zs - zS)[:, None] / spot.lam[None, :]  # z_P - z_S (mm), (n, cols)
    row = d.central_element[1] + (scan.ffs_z[views][:, None] + rise) / d.row_spacing
    valid = (row >= -1e-9) & (row <= d.rows - 1 + 1e-9)
    r0 = np.clip(np.floor(row), 0, max(d.rows - 2, 0)).astype(np.intp)
    fr = np.clip(row - r0, 0.0, 1.0)
    P = scan.projections[views]  # (n, rows, cols)
    cols = np.arange(d.cols)[None, :]
    n = np.arange(views.size)[:, None]
    lo = P[n, r0, cols]
    hi = P[n, np.minimum(r0 + 1, d.rows - 1), cols]
    val = (1.0 - fr) * lo + fr * hi
    val *= spot.dxy[None, :] / np.sqrt(spot.dxy[None, :] ** 2 + rise ** 2)
    return np.where(valid, val, 0.0), valid, zS


def _candidates(spot: _Spot, v, valid, zS, phi_sel, t, gamma_out, complementary: bool):
    """Values, validity and source heights of every turn's (direct or complementary) ray matching the
    output rays ``(t_j, gamma_i)``: arrays ``(turns, n_angles, cols)``."""
    g = -gamma_out if complementary else gamma_out
    c = np.interp(g, spot.gamma, np.arange(spot.gamma.size), left=np.nan, right=np.nan)  # (cols,)
    delta = np.interp(np.nan_to_num(c), np.arange(spot.gamma.size), spot.delta)
    tt = t[:, None] + (math.pi - 2 * gamma_out[None, :] if complementary else 0.0)
    phi = tt - math.pi / 2 - delta[None, :]  # (n_angles, cols), modulo 2 pi
    order = np.argsort(phi_sel)
    ps = phi_sel[order]
    m_lo = math.floor((ps[0] - phi.max()) / (2 * math.pi))
    m_hi = math.ceil((ps[-1] - phi.min()) / (2 * math.pi))
    cidx = np.nan_to_num(c)
    c0 = np.clip(np.floor(cidx), 0, max(spot.gamma.size - 2, 0)).astype(np.intp)
    fc = np.clip(cidx - c0, 0.0, 1.0)
    c1 = np.minimum(c0 + 1, spot.gamma.size - 1)
    col_ok = np.isfinite(c)
    vals, oks, zs = [], [], []
    for m in range(m_lo, m_hi + 1):
        target = phi + 2 * math.pi * m
        inside = (target >= ps[0] - _ANGLE_EPS) & (target <= ps[-1] + _ANGLE_EPS) & col_ok[None, :]
        if not inside.any():
            continue
        # neighbouring views in angle order -> positions in the selection
        pos = np.interp(target, ps, np.arange(ps.size, dtype=np.float64))  # clamped at the ends
        p0 = np.clip(np.floor(pos), 0, max(ps.size - 2, 0)).astype(np.intp)
        fp = np.clip(pos - p0, 0.0, 1.0)
        p1 = np.minimum(p0 + 1, ps.size - 1)
        k0, k1 = order[p0], order[p1]
        val = 0.0
        ok = inside.copy()
        for kk, wk in ((k0, 1.0 - fp), (k1, fp)):
            for cc, wc in ((c0, 1.0 - fc), (c1, fc)):
                w = wk * wc[None, :]
                val = val + w * v[kk, cc[None, :]]
                ok &= valid[kk, cc[None, :]] | (w == 0)
        vals.append(val)
        oks.append(ok)
        zs.append((1.0 - fp) * zS[k0] + fp * zS[k1])
    return vals, oks, zs


def rebin_ssrb(scan: HelicalScan, z, *, image_shape=None, voxel_size=1.0, n_angles: int | None = None,
               interpolation: str = "180", check_coverage: bool = True) -> RebinnedSlices:
    """Rebin a helical (or axial) scan to fan-beam sinograms of the transaxial slices at scanner
    heights ``z`` (mm; a number or a 1D array) by single-slice rebinning (module docstring).

    ``image_shape``/``voxel_size``: the 2D image grid of the returned :class:`FanBeam2D` (for
    reconstruction; its coverage rule applies unless ``check_coverage=False``); ``n_angles``: views of
    the output over one turn (default the scan's views per rotation); ``interpolation``: ``"180"``
    (direct and complementary rays) or ``"360"`` (direct rays only). Slices missing some rays
    (too close to the scan's ends) get 0 there and a warning naming them.
    """
    if not isinstance(scan, HelicalScan):
        raise TypeError(f"rebin_ssrb: scan must be a HelicalScan, got {type(scan).__name__}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"rebin_ssrb: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    zz = np.atleast_1d(np.asarray(z, dtype=np.float64))
    if zz.ndim != 1 or zz.size == 0 or not np.all(np.isfinite(zz)):
        raise ValueError(f"rebin_ssrb: z must be finite slice heights (mm), got {z!r}")
    if image_shape is None:
        image_shape = (2 * scan.detector.cols, 2 * scan.detector.cols)
        check_coverage = False
    geom = nominal_fan_geometry(scan, n_angles, image_shape, voxel_size, check_coverage=check_coverage)
    d = scan.detector
    n_out = geom.n_views
    check_allocation("rebin_ssrb", 4.0 * zz.size * n_out * d.cols + 64.0 * n_out * d.cols * 8,
                     f"{zz.size} slices of {n_out} x {d.cols} rays")
    spots = _spots(scan)
    gamma_out = d.fan_angles()
    t = geom.angles
    h = d.row_heights()
    reach = max(abs(h.min()), abs(h.max())) + float(np.max(np.abs(scan.ffs_z)))
    lam_max = max(float(s.lam.max()) for s in spots)
    out = np.zeros((zz.size, n_out, d.cols), dtype=np.float32)
    coverage = np.zeros(zz.size)
    kinds = (False, True) if interpolation == "180" else (False,)
    for iz, zs in enumerate(zz):
        vals, oks, dzs = [], [], []
        for spot in spots:
            zS_all = scan.z[spot.views] + scan.ffs_z[spot.views]
            sel = np.flatnonzero(np.abs(zS_all - zs) <= reach * lam_max + 1e-9)
            if sel.size < 2:
                continue
            v, valid, zS = _rows_to_slice(scan, spot, sel, zs)
            for comp in kinds:
                a, b, c = _candidates(spot, v, valid, zS, spot.phi[sel], t, gamma_out, comp)
                vals += a
                oks += b
                dzs += [x - zs for x in c]
        if not vals:
            continue
        V, OK, DZ = np.stack(vals), np.stack(oks), np.stack(dzs)
        below = np.where(OK & (DZ <= 0), DZ, -np.inf)
        above = np.where(OK & (DZ > 0), DZ, np.inf)
        il, iu = below.argmax(axis=0)[None], above.argmin(axis=0)[None]
        zl, zu = np.take_along_axis(below, il, 0)[0], np.take_along_axis(above, iu, 0)[0]
        vl, vu = np.take_along_axis(V, il, 0)[0], np.take_along_axis(V, iu, 0)[0]
        hl, hu = np.isfinite(zl), np.isfinite(zu)
        both = hl & hu
        with np.errstate(invalid="ignore", divide="ignore"):
            wl = np.where(both, zu / (zu - zl), hl.astype(np.float64))
        wu = np.where(both, 1.0 - wl, hu & ~hl)
        res = np.where(hl, wl * np.where(hl, vl, 0.0), 0.0) + np.where(hu, wu * np.where(hu, vu, 0.0), 0.0)
        out[iz] = res
        coverage[iz] = float(np.mean(hl | hu))
    short = np.flatnonzero(coverage < 1.0)
    if short.size:
        warnings.warn(f"rebin_ssrb: {short.size} slice(s) lack data for some rays (e.g. z = {zz[short[0]]:.6g} mm, "
                      f"{100 * (1 - coverage[short[0]]):.3g} % missing); they lie too close to the scan's ends",
                      UserWarning, stacklevel=2)
    return RebinnedSlices(out, geom, zz, coverage)


def scan_line_integrals(ellipsoids, scan: HelicalScan, chunk: int = 16) -> np.ndarray:
    """Exact line integrals ``(views, rows, cols)`` (float64) of a sum of ellipsoids (scanner frame,
    mm, 1/mm) along the rays of ``scan`` (from the focal spot to each element's centre): the
    projections of a simulated helical scan, e.g. for :func:`recon.io.dicom_ct_pd.write_dicom_ct_pd`."""
    ellipsoids = _as_list(ellipsoids, 3)
    d = scan.detector
    out = np.zeros((scan.n_views, d.rows, d.cols))
    for start in range(0, scan.n_views, chunk):
        sl = slice(start, min(start + chunk, scan.n_views))
        origin, direction = scan.rays(sl)
        acc = np.zeros(origin.shape[:-1])
        for e in ellipsoids:
            acc += e.value * chord_lengths(e, origin, direction, True)
        out[sl] = acc
    return out
