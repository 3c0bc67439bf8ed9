"""Training samples from fully sampled multi-coil raw data (fastMRI HDF5 and ISMRMRD files).

:class:`RawSlices` indexes the 2D Cartesian slices of every raw file in a folder (format from the
content, :func:`recon.io.detect_format`), split by file: with two or more files every 5th file
(at least one) is validation; a single file splits its slices (every 5th is validation). Slices
are read one at a time (fastMRI lazily through :class:`recon.io.FastMRIFile`; an ISMRMRD file is
read whole, the last two kept).

:func:`raw_sample` makes one training sample of a slice the way :mod:`recon.nets.simulate` does
for images, but from the real coil images (real coils, noise and phase): the coil images
``ifft2c(kspace)`` are centre-cropped or zero-padded to the training matrix (``MriTask.size``),
randomly flipped, scaled to order one, and coil maps are estimated from their fully sampled centre
(ESPIRiT, calibration width 24, as ``recon mri`` does; cached per slice). The target is the
coil-combined complex image ``sum_c conj(S_c) x_c``; the data are the coil images' k-space under a
fresh fastMRI mask (``random``/``equispaced_fraction``), a variable-density Poisson-disc mask
(``poisson``, :func:`recon.nets.simulate.poisson_mask`) or the NUFFT of the coil images on a rotated golden-angle
radial trajectory (``MriTask.trajectory='noncartesian'``). With priors, the lesion of
:func:`recon.nets.sources.prior_pair` is added to the coil images through the maps (so the data
contain it) and the prior is the magnitude of the deformed target.
"""

from __future__ import annotations

import functools
import os

import numpy as np

RAW_SUFFIXES = (".h5", ".hdf5", ".mrd")


def is_raw_file(path: str) -> bool:
    """Whether ``path`` is fastMRI or ISMRMRD raw data (by content)."""
    from ..io import detect_format

    try:
        detect_format(path)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def _raw(path: str):
    from ..io import read_raw

    return read_raw(path)


def _is_2d_cartesian(sl) -> bool:
    return sl.coord is None and len(sl.im_shape) == 2


@functools.lru_cache(maxsize=8)
def _index(folder: str) -> tuple:
    """((file, unit) of every 2D Cartesian slice, files skipped with the reason)."""
    if not os.path.isdir(folder):
        raise ValueError(f"training folder {folder!r} does not exist")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(RAW_SUFFIXES))
    slices, skipped = [], []
    for f in files:
        if not is_raw_file(f):
            continue
        raw = _raw(f)
        units = [i for i, sl in enumerate(raw.slices) if _is_2d_cartesian(sl)]
        if not units:
            skipped.append((f, "no 2D Cartesian slices (non-Cartesian and 3D raw data cannot be the truth of a "
                               "retrospective undersampling)"))
        slices += [(f, i) for i in units]
    return tuple(slices), tuple(skipped)


def raw_slices(folder: str, split: str) -> list[tuple[str, int]]:
    """(file, slice) of the raw training data in ``folder`` in a split (module docstring)."""
    slices, _ = _index(os.path.abspath(folder))
    files = sorted({f for f, _ in slices})
    if not files:
        return []
    if len(files) == 1:
        return [sl for k, sl in enumerate(slices) if (k % 5 == 2) == (split == "val")]
    val = {f for k, f in enumerate(files) if k % 5 == 2} or {files[-1]}
    return [sl for sl in slices if (sl[0] in val) == (split == "val")]


def skipped_files(folder: str) -> list[tuple[str, str]]:
    return list(_index(os.path.abspath(folder))[1])


def read_slice(path: str, unit: int) -> np.ndarray:
    """The k-space ``(C, y, x)`` complex64 of one slice, prewhitened with the file's noise scans."""
    from ..mri.coils import host
    from ..mri.noise import prewhiten

    raw = _raw(path)
    k = host(raw.slices[unit].kspace, np.complex64)
    if raw.noise is not None:
        k, _ = prewhiten(k, raw.noise, scale=raw.noise_scale)
    return np.asarray(k, dtype=np.complex64)


@functools.lru_cache(maxsize=256)
def _coil_images(path: str, unit: int, n: int):
    """(coil images ``(C, n, n)`` scaled to order one, ESPIRiT maps) of a slice (cached)."""
    from fastmri_data import fft2c, ifft2c

    from ..mri.coils import estimate_maps, rss
    from .sources import fit_square

    x = fit_square(ifft2c(read_slice(path, unit)), n)
    x = x / max(float(np.percentile(rss(x), 99)), 1e-30)
    maps = estimate_maps(fft2c(x).astype(np.complex64), "espirit", 24, crop=0.95)
    return x.astype(np.complex64), np.asarray(maps, dtype=np.complex64)


def raw_sample(task, path: str, unit: int, rng, *, prior: bool = False, varied: bool = True) -> dict:
    """One training sample of a raw slice (module docstring): dict with ``image``, ``kspace``,
    ``maps``, ``mask`` or ``coord`` + ``weights``, and ``prior`` + ``changed`` with ``prior``."""
    from fastmri_data import fft2c

    from .simulate import radial_trajectory, sample_mask
    from .sources import prior_pair

    n = task.size
    x, maps = _coil_images(path, unit, n)
    flips = [ax for ax in (-2, -1) if rng.uniform() < 0.5]
    if flips:
        x, maps = np.flip(x, flips), np.flip(maps, flips)
    target = np.sum(np.conj(maps) * x, axis=0)
    out = {"maps": np.ascontiguousarray(maps)}
    if prior:
        mag = np.abs(target)
        mx = max(float(mag.max()), 1e-30)
        t2, p, changed = prior_pair(mag / mx, rng, varied=varied)
        delta = (t2 * mx - mag) * np.exp(1j * np.angle(target))
        x = x + maps * delta
        target = target + delta * np.sum(np.abs(maps) ** 2, axis=0)
        out.update(prior=(p * mx).astype(np.float32), changed=changed)
    out["image"] = target.astype(np.complex64)
    if task.trajectory == "cartesian":
        mask = sample_mask(task, rng, n)
        out.update(kspace=(fft2c(x) * mask).astype(np.complex64), mask=mask)
    else:
        from ..mri.simulate import simulate_noncartesian

        coord, w = radial_trajectory(task, rng, n)
        out.update(kspace=simulate_noncartesian(np.ones((n, n), np.complex64), x, coord), coord=coord, weights=w)
    return out
