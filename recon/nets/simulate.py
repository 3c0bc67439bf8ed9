"""Training samples: augmented source images (:mod:`recon.nets.sources`) through simulated
acquisitions, fresh for every sample and epoch.

- MRI (:class:`MriTask`): a random smooth phase, smooth coil maps (radius, width, phase and
  orientation random; unit root-sum-of-squares), complex Gaussian noise, then a fastMRI mask
  (``random``, ``equispaced`` or ``equispaced_fraction``, accelerations and centre fractions paired
  as fastMRI's) or a 2D variable-density Poisson-disc mask (``poisson``, sigpy's)
  or a golden-angle radial trajectory with a random rotation (``spokes_fraction`` of the Nyquist
  ``pi/2 N`` spokes, readouts of ``2 N`` samples, Pipe-Menon density weights) simulated by recon's
  NUFFT at 1e-6 accuracy.
- CT (:class:`CtTask`): attenuation = image times a random maximum (1/mm), projected at twice the
  resolution (a finer image grid under the same detector, so the model never sees its own
  projector's exact data), Poisson counts with electronic noise at a random incident flux ``I0``
  (log-uniform between ``dose_range`` times ``full_dose``), post-log data and PWLS weights; a
  fraction ``ct_like`` of the images first mapped to CT's histogram (:func:`recon.nets.sources.ct_like`).

:class:`SimulatedDataset` is a ``torch.utils.data.Dataset`` of such samples (numpy arrays, collated by
torch's default collate); ``set_epoch(e)`` draws new samples for every epoch; item ``i`` of epoch
``e`` is a pure function of ``(seed, split, e, i)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from . import sources as src


@dataclass
class MriTask:
    """The simulated MRI acquisition (saved in the model card)."""

    trajectory: str = "cartesian"        # 'cartesian' | 'noncartesian' (golden-angle radial)
    size: int = 128                      # image matrix (square)
    coils: int = 8
    accelerations: tuple = (4, 8)
    center_fractions: tuple = (0.08, 0.04)
    mask: str = "random"                 # 'random' | 'equispaced' | 'equispaced_fraction' (fastMRI) | 'poisson' (2D)
    spokes_fraction: float = 0.125       # radial: spokes / (pi/2 N)
    noise: tuple = (0.0, 0.03)           # k-space noise std relative to the coil images' rms
    phase: float = 0.5                   # smooth phase amplitude, times pi

    @property
    def spokes(self) -> int:
        return max(1, int(round(self.spokes_fraction * math.pi / 2 * self.size)))


@dataclass
class CtTask:
    """The simulated low-dose fan-beam CT scan (saved in the model card)."""

    size: int = 128                      # image matrix (square)
    voxel_size: float = 1.5              # mm
    views: int = 180                     # over 360 degrees
    det_count: int = 0                   # 0: 1.25 x the magnified image diagonal
    source_origin: float = 500.0         # mm
    origin_det: float = 300.0            # mm
    full_dose: float = 1e5               # photons per reading at 100 % dose
    dose_range: tuple = (0.03, 0.3)      # training doses, fraction of full_dose (log-uniform)
    electronic_noise: float = 5.0        # photons (std)
    mu_range: tuple = (0.015, 0.03)      # maximum attenuation of an image, 1/mm
    ct_like: float = 0.0                 # fraction of images mapped to CT's histogram (sources.ct_like)

    def geometry(self, upsample: int = 1):
        from ..geometry import FanBeam2D

        mag = (self.source_origin + self.origin_det) / self.source_origin
        det_spacing = self.voxel_size * mag
        det = self.det_count or int(math.ceil(1.25 * math.sqrt(2) * self.size))
        angles = np.linspace(0, 2 * np.pi, self.views, endpoint=False)
        n = self.size * upsample
        return FanBeam2D(angles, det_count=det, det_spacing=det_spacing, source_origin=self.source_origin,
                         origin_det=self.origin_det, detector="flat", image_shape=(n, n),
                         voxel_size=self.voxel_size / upsample)

    def projector(self, upsample: int = 1):
        return _projector(_key(self), upsample)


def _key(task) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in dataclasses.asdict(task).items()))


@functools.lru_cache(maxsize=8)
def _projector(key, upsample):
    from ..ops import Projector

    return Projector(CtTask(**dict(key)).geometry(upsample), nthreads=torch.get_num_threads())


# ---- MRI ------------------------------------------------------------------------------------------

def _smooth_field(rng, n: int, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    p = gaussian_filter(rng.standard_normal((n, n)), sigma)
    return p / max(float(np.abs(p).max()), 1e-12)


def coil_maps(rng, n: int, coils: int) -> np.ndarray:
    """Random smooth coil maps ``(coils, n, n)`` complex64 with unit root-sum-of-squares."""
    from fastmri_data import simulate_coil_maps

    maps = simulate_coil_maps((n, n), coils, radius=rng.uniform(0.6, 1.0), width=rng.uniform(0.45, 0.8),
                              phase_cycles=rng.uniform(0.2, 0.8))
    maps = np.rot90(maps, int(rng.integers(4)), axes=(1, 2))
    if rng.uniform() < 0.5:
        maps = maps[:, :, ::-1]
    return np.ascontiguousarray(np.roll(maps, int(rng.integers(coils)), axis=0)).astype(np.complex64)


def cartesian_mask(task: MriTask, rng, n: int) -> np.ndarray:
    """A fastMRI column mask ``(1, n)`` float32 drawn with ``rng``."""
    from fastmri_data import create_mask_for_mask_type

    mf = create_mask_for_mask_type(task.mask, list(task.center_fractions), list(task.accelerations))
    mask, _ = mf((n, n), seed=int(rng.integers(2 ** 31)))
    return np.asarray(mask, dtype=np.float32).reshape(1, n)


def poisson_mask(n: int, accel: float, rng, calib: int = 16) -> np.ndarray:
    """A 2D variable-density Poisson-disc mask ``(n, n)`` float32 of about ``1/accel`` of k-space
    with a fully sampled ``calib x calib`` centre (sigpy.mri.poisson)."""
    try:
        from sigpy.mri import poisson
    except ImportError:
        raise ImportError("--mask poisson needs sigpy (pip install sigpy)") from None
    m = poisson((n, n), accel, calib=(calib, calib), dtype=np.float32, seed=int(rng.integers(2 ** 31)))
    return np.abs(m).astype(np.float32)


def sample_mask(task, rng, n: int) -> np.ndarray:
    """A Cartesian mask of the task: fastMRI columns ``(1, n)`` or Poisson-disc ``(n, n)``."""
    if task.mask == "poisson":
        return poisson_mask(n, float(rng.choice(list(task.accelerations))), rng)
    return cartesian_mask(task, rng, n)


@functools.lru_cache(maxsize=8)
def _radial_base(spokes: int, n: int):
    from ..mri.dcf import pipe_menon_dcf
    from ..mri.trajectory import radial_2d

    coord = radial_2d(spokes, 2 * n, n, golden=True).astype(np.float64)
    return coord, pipe_menon_dcf(coord.astype(np.float32), (n, n)).astype(np.float32)


def radial_trajectory(task: MriTask, rng, n: int):
    """Golden-angle radial ``coord`` ``(spokes, 2n, 2)`` (cycles/FOV) rotated by a random angle,
    and its Pipe-Menon density weights ``(spokes, 2n)`` (rotation-invariant: computed once)."""
    coord, w = _radial_base(task.spokes, n)
    a = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.clip(coord @ rot.T, -n / 2, n / 2 - 1e-3)
    return c.astype(np.float32), w.copy()


def simulate_mri(task: MriTask, target: np.ndarray, rng, *, maps=None) -> dict:
    """One MRI sample from a magnitude ``target``: dict with ``image`` (complex truth),
    ``kspace``, ``maps`` and ``mask`` or ``coord`` + ``weights``."""
    from ..mri.simulate import simulate_noncartesian

    n = target.shape[-1]
    x = (target * np.exp(1j * task.phase * np.pi * _smooth_field(rng, n, n / 8))).astype(np.complex64)
    maps = coil_maps(rng, n, task.coils) if maps is None else maps
    rms = float(np.sqrt(np.mean(np.abs(maps * x) ** 2)))
    sigma = rng.uniform(*task.noise) * rms
    out = {"image": x, "maps": maps}
    if task.trajectory == "cartesian":
        from fastmri_data import fft2c

        k = fft2c(maps * x)
        k = k + sigma * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) / np.sqrt(2)
        mask = sample_mask(task, rng, n)
        out.update(kspace=(k * mask).astype(np.complex64), mask=mask)
    elif task.trajectory == "noncartesian":
        coord, w = radial_trajectory(task, rng, n)
        k = simulate_noncartesian(x, maps, coord, sigma / np.sqrt(2), seed=int(rng.integers(2 ** 31)))
        out.update(kspace=k, coord=coord, weights=w)
    else:
        raise ValueError(f"trajectory must be 'cartesian' or 'noncartesian', got {task.trajectory!r}")
    return out


# ---- CT -------------------------------------------------------------------------------------------

def simulate_ct(task: CtTask, target: np.ndarray, rng, *, dose: float | None = None, prior=None) -> dict:
    """One CT sample from a ``target`` scaled to max 1: dict with ``image`` (attenuation, 1/mm),
    ``sinogram`` (post-log), ``weights`` (PWLS), ``dose`` (fraction of ``full_dose``) and the
    scaled ``prior`` when given."""
    from scipy import ndimage

    from ..ct import pwls_weights, simulate_low_dose

    mu = rng.uniform(*task.mu_range)
    x = (target * mu).astype(np.float32)
    fine = ndimage.zoom(x, 2, order=1).astype(np.float32)
    sino = task.projector(upsample=2).forward(fine)
    if dose is None:
        lo, hi = task.dose_range
        dose = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    noisy, counts = simulate_low_dose(sino, dose * task.full_dose, task.electronic_noise,
                                      seed=int(rng.integers(2 ** 31)))
    out = {"image": x, "sinogram": noisy.astype(np.float32),
           "weights": pwls_weights(counts, task.electronic_noise), "dose": np.float32(dose)}
    if prior is not None:
        out["prior"] = (prior * mu).astype(np.float32)
    return out


# ---- dataset -------------------------------------------------------------------------------------------

@dataclass
class DataConfig:
    """What the training images are made of (saved in the model card)."""

    sources: dict = field(default_factory=lambda: {"mni": 0.6, "ellipses": 0.25, "shepp": 0.15})
    prior: bool = False                 # make (target, prior) pairs (recon.nets.sources.prior_pair)
    varied_priors: bool = True          # 1-3 lesions, subtle ones, larger warps (prior_pair(varied=True))
    folder: str | None = None           # the 'folder' source (.npy/.dcm/.nii(.gz) images) or 'raw' (raw files)


class SimulatedDataset(torch.utils.data.Dataset):
    """``length`` simulated samples of ``task`` (an :class:`MriTask` or :class:`CtTask`) from the
    ``split`` ('train' or 'val') of the data sources (module docstring)."""

    def __init__(self, task, data: DataConfig, split: str, length: int, seed: int = 0):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if not data.sources or any(s not in src.SOURCES for s in data.sources):
            raise ValueError(f"sources must be a non-empty dict over {src.SOURCES}, got {data.sources}")
        w = np.asarray(list(data.sources.values()), dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"source weights must be >= 0 and not all zero, got {data.sources}")
        self.task, self.data, self.split, self.length, self.seed = task, data, split, int(length), int(seed)
        self.names = list(data.sources)
        self.probs = w / w.sum()
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, 1 if self.split == "val" else 0, self.epoch, int(i)])
        name = self.names[int(rng.choice(len(self.names), p=self.probs))]
        n = self.task.size
        if name == "raw":
            return self._raw_item(rng)
        img = src.augment(src.base_image(name, self.split, int(rng.integers(1 << 30)), rng, n, self.data.folder),
                          rng, n)
        if isinstance(self.task, CtTask) and self.task.ct_like > 0 and rng.uniform() < self.task.ct_like:
            img = src.ct_like(img, rng)
        prior = changed = None
        if self.data.prior:
            img, prior, changed = src.prior_pair(img, rng, varied=self.data.varied_priors)
        if isinstance(self.task, MriTask):
            out = simulate_mri(self.task, img, rng)
            if prior is not None:
                out["prior"] = prior
        else:
            out = simulate_ct(self.task, img, rng, prior=prior)
        if changed is not None:
            out["changed"] = changed
        return out

    def _raw_item(self, rng) -> dict:
        from .rawdata import raw_sample, raw_slices

        if not isinstance(self.task, MriTask):
            raise ValueError("the 'raw' source (multi-coil raw data) trains MRI models only")
        sl = raw_slices(self.data.folder, self.split)
        if not sl:
            raise ValueError(f"no 2D Cartesian raw slices in the {self.split} split of {self.data.folder!r}")
        path, unit = sl[int(rng.integers(1 << 30)) % len(sl)]
        return raw_sample(self.task, path, unit, rng, prior=self.data.prior, varied=self.data.varied_priors)

    def counts(self) -> dict:
        """Source names with the number of distinct images in this split (None: generated)."""
        return {name: src.source_size(name, self.split, self.data.folder) for name in self.names}
