"""A 3D abdominal phantom that breathes: analytic shapes with soft edges, evaluated at any motion state.

Coordinates are in mm, axes ``(z, y, x)`` like recon's images: ``z`` superior-inferior (``+z``
superior), ``y`` anterior-posterior (``+y`` posterior,
so that image row 0 is anterior), ``x`` left-right; the body is centred at the
origin. A motion state is the superior-inferior displacement ``si_mm`` of the diaphragm (0 at end
expiration, positive = inferior, i.e. inspiration) and an anterior-posterior displacement ``ap_mm``.
Each organ moves rigidly by ``weight * (-si_mm, -ap_mm, 0)`` (liver, lesion and diaphragm 1, spleen
0.9, stomach 0.8, kidneys 0.5, heart 0.3; body wall, spine and vessels static), so the lung/liver
interface (the right hemidiaphragm) is the moving edge.

Anatomy (painted in this order, each structure replacing what lies under it): body (subcutaneous fat
0.85 around a 0.3 muscle/bowel cavity), spine (0.12) with cord (0.45), aorta (1.0) and IVC (0.9),
liver (0.65, its own +-8 % texture), a lesion in the liver (0.95, radius 9 mm), spleen (0.55),
stomach (0.15), kidneys (0.8), lungs (0.05) above a two-domed diaphragm, heart (0.55). A static +-5 %
texture multiplies everything and a smooth static phase (B0-like, up to +-0.4 pi) makes it complex.

Edges: every inside/outside test is a smooth step ``0.5 erfc(d / (sqrt 2 sigma))`` of the signed
distance ``d`` in voxel units (``sigma = edge_voxels``, default 0.5 voxel per axis), so the image is
close to band-limited on its grid and changes smoothly with the motion state (sub-voxel motion is
seen as partial volume, as in a real scan). The image lives on the grid it is evaluated on: the "true
image" of a state is :meth:`AbdomenPhantom.image` on the reconstruction grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erfc

#: (name, intensity, centre (z, y, x) mm, semi-axes (z, y, x) mm, motion weight)
ELLIPSOIDS = (
    ("liver", 0.65, (-10.0, -5.0, -55.0), (75.0, 95.0, 85.0), 1.0),
    ("lesion", 0.95, (-5.0, -20.0, -60.0), (9.0, 9.0, 9.0), 1.0),
    ("spleen", 0.55, (-5.0, 20.0, 95.0), (50.0, 40.0, 30.0), 0.9),
    ("stomach", 0.15, (0.0, -40.0, 60.0), (40.0, 40.0, 40.0), 0.8),
    ("kidney_r", 0.8, (-45.0, 50.0, -70.0), (50.0, 25.0, 28.0), 0.5),
    ("kidney_l", 0.8, (-45.0, 50.0, 70.0), (50.0, 25.0, 28.0), 0.5),
)
#: diaphragm domes: (top z mm at end expiration, centre x mm, x half-width mm, y half-width mm, depth mm)
DOMES = ((25.0, -65.0, 90.0, 100.0, 40.0), (15.0, 65.0, 90.0, 100.0, 40.0))
HEART = (0.55, (60.0, -20.0, 15.0), (45.0, 55.0, 60.0), 0.3)
#: body and cavity ellipses (y, x semi-axes mm), spine/vessels (y, x centre, radius, intensity)
BODY, CAVITY = (115.0, 160.0), (103.0, 148.0)
CYLINDERS = (("spine", 80.0, 0.0, 16.0, 0.12), ("cord", 80.0, 0.0, 6.0, 0.45),
             ("aorta", 55.0, 12.0, 10.0, 1.0), ("ivc", 45.0, -22.0, 11.0, 0.9))


@dataclass
class Grid:
    """Voxel centres of an image: ``shape`` (z, y, x), ``voxel_mm`` (dz, dy, dx), centred on
    ``centre_mm`` (voxel ``n // 2`` along each axis sits at the centre, recon's convention)."""

    shape: tuple
    voxel_mm: tuple
    centre_mm: tuple = (0.0, 0.0, 0.0)

    def axes(self):
        return [c + (np.arange(n) - n // 2) * v for n, v, c in zip(self.shape, self.voxel_mm, self.centre_mm)]

    def points(self):
        """``(z, y, x)`` coordinate arrays broadcast to ``shape`` (float32 views)."""
        az, ay, ax = (a.astype(np.float32) for a in self.axes())
        return az[:, None, None], ay[None, :, None], ax[None, None, :]


def _soft(d_vox, sigma):
    """Inside weight (1 deep inside, 0 outside) of a signed distance in voxels (negative inside)."""
    return (0.5 * erfc(d_vox / (np.sqrt(2.0) * sigma))).astype(np.float32)


def _ellipsoid_distance(z, y, x, centre, semi, vox):
    """Approximate signed distance (voxels) to an ellipsoid surface: ``(rho - 1) / |grad rho|`` with the
    gradient taken in voxel units."""
    u = [(c - c0) / a for c, c0, a in zip((z, y, x), centre, semi)]
    rho = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2) + np.float32(1e-6)
    g2 = sum((ui / a * v) ** 2 for ui, a, v in zip(u, semi, vox)) / rho**2
    return (rho - 1.0) / np.sqrt(g2 + np.float32(1e-12))


def _ellipse_distance(y, x, centre, semi, vox):
    u = [(c - c0) / a for c, c0, a in zip((y, x), centre, semi)]
    rho = np.sqrt(u[0] ** 2 + u[1] ** 2) + np.float32(1e-6)
    g2 = sum((ui / a * v) ** 2 for ui, a, v in zip(u, semi, vox)) / rho**2
    return (rho - 1.0) / np.sqrt(g2 + np.float32(1e-12))


def _texture(rng, n_waves: int, wavelength_mm: tuple, amplitude: float):
    """A smooth random field as a sum of plane waves: (frequencies (n, 3) cycles/mm, phases, amplitude)."""
    lam = rng.uniform(*wavelength_mm, n_waves)
    dirs = rng.standard_normal((n_waves, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return dirs / lam[:, None], rng.uniform(0, 2 * np.pi, n_waves), amplitude * np.sqrt(2.0 / n_waves)


def _eval_texture(tex, z, y, x):
    f, ph, a = tex
    out = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), dtype=np.float32)
    for (fz, fy, fx), p in zip(f, ph):
        out += np.cos(np.float32(2 * np.pi) * (np.float32(fz) * z + np.float32(fy) * y + np.float32(fx) * x)
                      + np.float32(p))
    return np.float32(a) * out


class AbdomenPhantom:
    """The breathing abdomen (module docstring). ``seed`` draws the textures and the phase field;
    ``lesion`` False leaves the lesion out (a prior image that differs from the truth);
    ``slab_mm`` (z_min, z_max) limits the signal to an excited slab (3D stack-of-stars), None for none."""

    def __init__(self, seed: int = 0, *, lesion: bool = True, slab_mm=None, edge_voxels: float = 0.5):
        rng = np.random.default_rng(seed)
        self.lesion = bool(lesion)
        self.slab_mm = None if slab_mm is None else (float(slab_mm[0]), float(slab_mm[1]))
        self.edge_voxels = float(edge_voxels)
        if not self.edge_voxels > 0:
            raise ValueError(f"edge_voxels must be > 0, got {edge_voxels}")
        self._tex_body = _texture(rng, 24, (12.0, 60.0), 0.05)
        self._tex_liver = _texture(rng, 24, (8.0, 40.0), 0.08)
        self._phase = _texture(rng, 6, (250.0, 600.0), 0.4 * np.pi)

    def image(self, grid: Grid, si_mm: float = 0.0, ap_mm: float = 0.0) -> np.ndarray:
        """Complex64 image ``grid.shape`` of the state (``si_mm`` inferior, ``ap_mm`` anterior displacement)."""
        z, y, x = grid.points()
        vox = tuple(float(v) for v in grid.voxel_mm)
        s = self.edge_voxels
        shape = np.broadcast_shapes(z.shape, y.shape, x.shape)
        img = np.zeros(shape, dtype=np.float32)

        def paint(mask, value):
            nonlocal img
            img = img + mask * (np.float32(value) - img)

        def moved(w):
            return z + np.float32(w * si_mm), y + np.float32(w * ap_mm), x

        # static body
        paint(_soft(_ellipse_distance(y, x, (0.0, 0.0), BODY, vox[1:]), s), 0.85)
        cavity = _soft(_ellipse_distance(y, x, (0.0, 0.0), CAVITY, vox[1:]), s)
        paint(cavity, 0.3)
        for _, cy, cx, r, val in CYLINDERS:
            paint(_soft(_ellipse_distance(y, x, (cy, cx), (r, r), vox[1:]), s), val)
        # organs below the diaphragm
        for name, val, c, a, w in ELLIPSOIDS:
            if name == "lesion" and not self.lesion:
                continue
            mz, my, mx = moved(w)
            m = _soft(_ellipsoid_distance(mz, my, mx, c, a, vox), s)
            if name == "liver":
                paint(m, val * (1.0 + _eval_texture(self._tex_liver, mz, my, mx)))
            else:
                paint(m, val)
        # lungs above the moving diaphragm, inside the cavity
        mz, my, mx = moved(1.0)
        surf = np.maximum(*[top - depth * (((mx - xc) / ax) ** 2 + (my / ay) ** 2)
                            for top, xc, ax, ay, depth in DOMES])
        paint(cavity * _soft((surf - mz) / vox[0], s), 0.05)
        val, c, a, w = HEART
        mz, my, mx = moved(w)
        paint(_soft(_ellipsoid_distance(mz, my, mx, c, a, vox), s), val)
        img *= 1.0 + _eval_texture(self._tex_body, z, y, x)
        if self.slab_mm is not None:
            lo, hi = self.slab_mm
            img *= _soft((lo - z) / vox[0], s) * _soft((z - hi) / vox[0], s)
        phase = _eval_texture(self._phase, z, y, x)
        return (img * np.exp(1j * phase)).astype(np.complex64)

    @staticmethod
    def diaphragm_z_mm(x_mm: float, y_mm: float, si_mm: float = 0.0, ap_mm: float = 0.0) -> float:
        """Height (z, mm) of the lung/liver interface at the column (y, x) in the given state."""
        yy = y_mm + ap_mm
        return max(top - depth * (((x_mm - xc) / ax) ** 2 + (yy / ay) ** 2) for top, xc, ax, ay, depth in DOMES) - si_mm

    @staticmethod
    def lesion_centre_mm(si_mm: float = 0.0, ap_mm: float = 0.0) -> tuple:
        """Centre (z, y, x) mm and radius of the lesion in a state."""
        _, _, c, a, w = ELLIPSOIDS[1]
        return (c[0] - w * si_mm, c[1] - w * ap_mm, c[2]), a[0]


def coil_maps(grid: Grid, n_coils: int = 8, *, seed: int = 0) -> np.ndarray:
    """Smooth complex coil sensitivities ``(n_coils, *grid.shape)`` complex64 of surface coils around
    the body (anterior and posterior rows, spread in x and z), normalised to unit root-sum-of-squares
    at every voxel (so that SENSE with estimated maps reconstructs the phantom's own intensities)."""
    if isinstance(n_coils, bool) or int(n_coils) != n_coils or n_coils < 1:
        raise ValueError(f"n_coils must be a positive integer, got {n_coils}")
    n_coils = int(n_coils)
    rng = np.random.default_rng(seed + 1)
    z, y, x = grid.points()
    zmax = float(np.abs(grid.axes()[0]).max()) or 1.0
    maps = []
    for c in range(n_coils):
        side = -1.0 if c % 2 == 0 else 1.0                     # anterior (-y) / posterior
        k = c // 2
        n_cols = max((n_coils + 1) // 2, 1)
        px = -150.0 + 300.0 * (k + 0.5) / n_cols
        pz = (0.6 * zmax) * (1 if (k % 2 == 0) else -1) if n_coils > 2 else 0.0
        py = side * 150.0
        r2 = (z - pz) ** 2 + (y - py) ** 2 + (x - px) ** 2
        mag = 1.0 / (1.0 + r2 / np.float32(140.0**2)) ** 1.5
        phase = rng.uniform(-np.pi, np.pi) + np.float32(2 * np.pi / 600.0) * (
            rng.standard_normal() * z + rng.standard_normal() * y + rng.standard_normal() * x)
        maps.append(np.broadcast_to(mag * np.exp(1j * phase), grid.shape))
    maps = np.stack(maps).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    return maps
