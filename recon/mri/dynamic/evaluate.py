"""Scoring motion-resolved images against the simulator's truth (tests and benchmarks/run_4d.py).

- :func:`bin_truth`: the true image of each bin, the phantom at the bin's mean true displacement
  (the average over the readouts the bin holds);
- :func:`psnr`: PSNR of magnitudes after the least-squares scale ``a = <|x|, |t|> / <|x|, |x|>`` (so a
  global intensity factor, e.g. of density-compensated gridding, does not count), peak ``max |t|``;
- :func:`edge_position`: the sub-voxel position (voxels along z) where a column's magnitude profile
  crosses halfway between its two levels, searched in a window around the truth's edge: the
  diaphragm-like lung/liver interface;
- :func:`lesion_contrast`: the lesion's mean magnitude minus that of the liver around it (is a lesion
  that a prior image lacks kept?).
"""

from __future__ import annotations

import numpy as np


def psnr(x, truth) -> float:
    """PSNR (dB) of ``|x|`` against ``|truth|`` after the least-squares scale (module docstring)."""
    a, t = np.abs(np.asarray(x, dtype=np.complex128)), np.abs(np.asarray(truth, dtype=np.complex128))
    if a.shape != t.shape:
        raise ValueError(f"psnr: shapes differ, {a.shape} and {t.shape}")
    den = float((a * a).sum())
    scale = float((a * t).sum()) / den if den > 0 else 0.0
    mse = float(((scale * a - t) ** 2).mean())
    peak = float(t.max())
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def bin_truth(sim_config, bins, si_per_angle, ap_ratio: float, *, lesion=None) -> tuple[np.ndarray, np.ndarray]:
    """``(truth (B, Z, Ny, Nx) complex64 (2D: Z = 1), mean SI displacement (B,))`` of each bin (module docstring);
    ``si_per_angle`` the true displacement of each binned angle (its readouts' mean)."""
    from .simulate import _phantom, state_image

    ph = _phantom(sim_config, lesion)
    si_b = np.array([float(np.mean(si_per_angle[bins.index == b])) for b in range(bins.n_bins)])
    imgs = np.stack([state_image(sim_config, s, ap_ratio * s, phantom=ph) for s in si_b])
    return (imgs if imgs.ndim == 4 else imgs[:, None]), si_b


def edge_position(profile, guess: float, half_window: int = 4) -> float:
    """Where the magnitude ``profile`` (1D, along z) crosses halfway between its low and high level
    within ``guess +- half_window`` voxels (linear interpolation between voxels); NaN if it does not."""
    p = np.abs(np.asarray(profile)).astype(np.float64)
    n = p.size
    lo_i, hi_i = max(int(np.floor(guess)) - half_window, 0), min(int(np.ceil(guess)) + half_window, n - 1)
    seg = p[lo_i:hi_i + 1]
    if seg.size < 3:
        return float("nan")
    level = 0.5 * (seg.min() + seg.max())
    above = seg >= level
    crossings = np.flatnonzero(above[1:] != above[:-1])
    if crossings.size == 0:
        return float("nan")
    best = min(crossings, key=lambda i: abs(lo_i + i + 0.5 - guess))
    a, b = seg[best], seg[best + 1]
    return float(lo_i + best + (level - a) / (b - a))


def diaphragm_column(sim_config) -> tuple[int, int]:
    """``(y, x)`` image column through the top of the right hemidiaphragm (the moving edge): a column
    along z of the stack of stars, or along the rows (SI) of the coronal 2D slice (then ``y`` is 0)."""
    from .phantom import DOMES

    _, xc, _, _, _ = DOMES[0]
    nx, fx = sim_config.matrix[-1], sim_config.fov_mm[-1]
    ny = sim_config.matrix[1] if sim_config.kind == "stack-of-stars" else 1
    return ny // 2, int(round(xc / (fx / nx))) + nx // 2


def edge_errors(images, truths, sim_config, si_b, ap_ratio: float) -> np.ndarray:
    """Per bin, the edge position error (voxels along SI) of ``images`` against ``truths`` at the
    diaphragm column, both ``(B, Z, Ny, Nx)`` (2D: ``Z = 1``, rows SI); the search is centred on the
    phantom's known edge."""
    from .phantom import AbdomenPhantom

    y, x = diaphragm_column(sim_config)
    n_si, f_si = sim_config.matrix[0], sim_config.fov_mm[0]
    v = f_si / n_si
    nx, fx = sim_config.matrix[-1], sim_config.fov_mm[-1]
    xm = (x - nx // 2) * fx / nx
    if sim_config.kind == "stack-of-stars":
        ym = (y - sim_config.matrix[1] // 2) * sim_config.fov_mm[1] / sim_config.matrix[1]
    else:
        ym = sim_config.plane_y_mm
    out = []
    for b, s in enumerate(si_b):
        z_mm = AbdomenPhantom.diaphragm_z_mm(xm, ym, s, ap_ratio * s)
        if sim_config.kind == "stack-of-stars":
            guess, prof_t, prof_x = z_mm / v + n_si // 2, truths[b][:, y, x], images[b][:, y, x]
        else:  # rows run from superior (row 0) down: row r sits at z = (n - 1 - r - n // 2) v
            guess, prof_t, prof_x = n_si - 1 - n_si // 2 - z_mm / v, truths[b][0, :, x], images[b][0, :, x]
        out.append(edge_position(prof_x, guess) - edge_position(prof_t, guess))
    return np.asarray(out)


def lesion_contrast(image, truth, sim_config, si_mm: float, ap_mm: float, z_slices=slice(None)) -> float:
    """Mean magnitude inside the lesion minus that of a shell of liver around it (1.6 to 2.6 radii), of
    ``image`` (stack of stars, ``(Z, Ny, Nx)`` or the slices ``z_slices`` of it) first scaled to ``truth``
    (same shape) by least squares; the lesion where it sits in the state ``si_mm``/``ap_mm``."""
    from .phantom import AbdomenPhantom, Grid

    if sim_config.kind != "stack-of-stars":
        raise ValueError("lesion_contrast: needs a stack-of-stars (3D) simulation")
    (cz, cy, cx), r = AbdomenPhantom.lesion_centre_mm(si_mm, ap_mm)
    vox = tuple(f / n for f, n in zip(sim_config.fov_mm, sim_config.matrix))
    z, y, x = Grid(tuple(sim_config.matrix), vox).points()
    dist = np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)[z_slices]
    t, a = np.abs(np.asarray(truth)), np.abs(np.asarray(image))
    if a.shape != t.shape or a.shape != dist.shape:
        raise ValueError(f"lesion_contrast: image {a.shape}, truth {t.shape} and slices {dist.shape} differ")
    a = a * (a * t).sum() / (a * a).sum()
    inside, shell = dist < r, (dist > 1.6 * r) & (dist < 2.6 * r)
    return float(a[inside].mean() - a[shell].mean())
