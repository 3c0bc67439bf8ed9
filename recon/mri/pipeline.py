"""The MRI reconstruction pipeline: raw data in, images out, driven by a plain config.

::

    from recon.io import read_raw
    from recon.mri import ReconConfig, reconstruct

    raw = read_raw("scan.h5")                                  # fastMRI or ISMRMRD
    res = reconstruct(raw, ReconConfig(method="cs", iters=40))
    res.volume            # float32 (n, H, W) magnitudes, cropped to the recon matrix: what `recon mri` writes
    res.images[0]         # complex image of the first unit (slice or volume), before cropping
    res.recons[0].history # the solver's history; res.info: the parameters used

    res = reconstruct(kspace, ReconConfig(method="sense"), coord=coord, im_shape=(256, 256))   # arrays

For each unit of reconstruction (``raw.slices``: a slice or a 3D volume per group of counters, see
``recon.io.raw``): noise prewhitening from the file's noise scans, SVD coil compression, coil maps
(ESPIRiT, low-resolution or Walsh; from the fully sampled centre, or the gridded centre of
non-Cartesian data) and the method of ``recon.mri.recon`` (zero-filled, CG-SENSE, compressed
sensing). ``ReconConfig.retrospective`` undersamples fully sampled Cartesian data with fastMRI's
masks and scores the result (NMSE, PSNR, SSIM) against the fully sampled zero-filled image.

Arrays: numpy in gives numpy out; a torch tensor in gives torch tensors out on its device, computed
there (prewhitening, compression, maps and the methods are torch-native; only plan-time facts such as
trajectories, the calibration box and scalars are read on the host).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from .. import _array
from ..ops.backend import param_like
from ..ops.linear import cast_param
from .coils import host
from .recon import METHODS, REGULARIZERS

MAP_METHODS = ("espirit", "lowres", "walsh")
MASK_TYPES = ("random", "equispaced", "equispaced_fraction")


@dataclass
class RetrospectiveMask:
    """Undersample fully sampled Cartesian data with a fastMRI mask (``fastmri_data.masks``):
    ``kind`` random | equispaced | equispaced_fraction, acceleration ``accel``, fully sampled
    centre fraction ``center_fraction`` (default ``0.32 / accel``), unit ``i`` drawn with seed
    ``seed + i``."""

    kind: str = "random"
    accel: float = 4.0
    center_fraction: float | None = None
    seed: int = 0


@dataclass
class ReconConfig:
    """What to reconstruct and how (the options of ``recon mri``; see docs/mri.md).

    ``method`` zf | sense | cs; ``regularizer`` wavelet | tv (cs); ``wavelet`` a PyWavelets
    orthogonal wavelet; ``lam`` relative regularisation weight and ``iters`` the iteration cap (the
    solvers stop earlier on convergence; None: the method's default, ``recon.mri.recon.DEFAULT_LAMBDA``
    / ``DEFAULT_ITERS``); ``maps`` espirit |
    lowres | walsh; ``calib_width`` calibration width (None: 24 Cartesian, ``2 round(spokes/pi)``
    radial); ``crop`` ESPIRiT eigenvalue threshold (None: 0.95 Cartesian, 0.8 non-Cartesian);
    ``virtual_coils`` SVD coil compression; ``prewhiten`` with the data's noise scans;
    ``density_weights`` (non-Cartesian weighted least squares); ``nufft_tol``; ``slices`` which units
    (None all, an int, a sequence of ints, or a string 'i', 'i,j', 'a:b'); ``retrospective`` a
    ``RetrospectiveMask``; ``progress`` (None: bars when stderr is a terminal and not ``quiet``).
    """

    method: str = "sense"
    regularizer: str = "wavelet"
    wavelet: str = "haar"
    lam: float | None = None
    iters: int | None = None
    maps: str = "espirit"
    calib_width: int | None = None
    crop: float | None = None
    virtual_coils: int | None = None
    prewhiten: bool = True
    density_weights: bool = True
    nufft_tol: float = 1e-4
    slices: object = None
    retrospective: RetrospectiveMask | None = None
    progress: bool | None = None
    quiet: bool = False

    def validate(self) -> ReconConfig:
        """Raise ValueError (naming the field and its ``recon mri`` option) for a bad value; returns self."""
        _choice("method", self.method, METHODS)
        _choice("regularizer", self.regularizer, REGULARIZERS)
        _choice("maps", self.maps, MAP_METHODS)
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            _bad("lam", f"must be finite and >= 0, got {self.lam}")
        for name in ("iters", "calib_width", "virtual_coils"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or int(v) != v or v < 1):
                _bad(name, f"must be an integer >= 1, got {v}")
        if self.crop is not None and not 0 <= self.crop <= 1:
            _bad("crop", f"must lie in [0, 1], got {self.crop}")
        if not (math.isfinite(self.nufft_tol) and 0 < self.nufft_tol < 1):
            _bad("nufft_tol", f"must lie in (0, 1), got {self.nufft_tol}")
        r = self.retrospective
        if r is not None:
            _choice("retrospective.kind", r.kind, MASK_TYPES)
            if not (math.isfinite(r.accel) and r.accel >= 1):
                _bad("retrospective.accel", f"must be a finite number >= 1, got {r.accel}")
            if r.center_fraction is not None and not 0 < r.center_fraction <= 1:
                _bad("retrospective.center_fraction", f"must lie in (0, 1], got {r.center_fraction}")
        return self


#: config field -> the ``recon mri`` option that sets it (named in error messages)
OPTION = {"method": "--method", "regularizer": "--regularizer", "maps": "--maps", "lam": "--lam", "iters": "--iters",
          "calib_width": "--calib-width", "virtual_coils": "--virtual-coils", "crop": "--crop",
          "nufft_tol": "--nufft-tol", "slices": "--slices", "retrospective.kind": "--retrospective-mask",
          "retrospective.accel": "--accel", "retrospective.center_fraction": "--center-fraction"}


def _bad(name, msg, options=None):
    """ValueError naming the config field and the ``recon mri`` option (``options``, default OPTION) setting it."""
    options = OPTION if options is None else options
    raise ValueError(f"{name} ({options[name]}) {msg}" if name in options else f"{name} {msg}")


def _choice(name, v, choices, options=None):
    if v not in choices:
        _bad(name, f"must be one of {', '.join(choices)}; got {v!r}", options)


@dataclass
class ReconResult:
    """What ``reconstruct`` returns.

    ``images``: complex image per unit (``im_shape``, numpy or torch like the input); ``volume``:
    float32 magnitudes ``(n, H, W)`` (3D units contribute their z slices), centre-cropped to the
    recon matrix; ``recons``: the ``recon.mri.recon.Recon`` of each unit (maps, history, info);
    ``indices``/``index``: which units (positions in ``raw.slices``, and their counters);
    ``info``: the parameters used (first unit) and its iteration count; ``reference``/``metrics``:
    with a retrospective mask, the fully sampled reference volume (like ``volume``) and NMSE/PSNR/SSIM.
    """

    images: list
    volume: object
    recons: list
    indices: list
    index: list
    info: dict
    reference: object = None
    metrics: dict | None = None
    elapsed_s: float = 0.0

    @property
    def histories(self) -> list:
        return [r.history for r in self.recons]


def parse_slices(spec, n: int) -> list[int]:
    """Unit indices from ``spec`` (None: all; an int; a sequence; 'i', 'i,j', 'a:b'), each in range."""
    if spec is None:
        return list(range(n))
    try:
        if isinstance(spec, str):
            if ":" in spec:
                a, b = spec.split(":", 1)
                idx = list(range(n))[slice(int(a) if a else None, int(b) if b else None)]
            else:
                idx = [int(v) for v in spec.split(",")]
        elif isinstance(spec, (int, np.integer)):
            idx = [int(spec)]
        else:
            idx = [int(v) for v in spec]
    except (ValueError, TypeError):
        _bad("slices", f"expected 'i', 'i,j' or 'a:b', got {spec!r}")
    for i in idx:
        if not -n <= i < n:
            _bad("slices", f"index {i} out of range for {n} slices")
    if not idx:
        _bad("slices", f"{spec!r} selects no slice")
    return [i % n for i in idx]


def centre_crop(img, crop):
    """Centre crop of the last two axes to ``crop`` (h, w); ``crop=None`` leaves ``img`` as is."""
    if crop is None:
        return img
    sl = tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(img.shape[-2:], crop))
    return img[(Ellipsis,) + sl]


def default_calib_width(kspace_shape, cartesian: bool, im_shape) -> int:
    """Calibration width: 24 (Cartesian); non-Cartesian, the Nyquist-sampled centre of radial or
    spiral readouts through the centre, ``2 round(n_readouts / pi)`` cycles/FOV, within [8, 32]."""
    if cartesian:
        return 24
    n_readouts = int(np.prod(kspace_shape[1:-1])) if len(kspace_shape) > 2 else 1
    w = int(round(n_readouts / np.pi)) * 2
    return int(min(max(w, 8), 32, min(im_shape)))


def _times_power_of_two(x, e: int):
    """``x * 2**e`` in ``x``'s own precision (numpy or torch), in two exact steps so that neither
    factor leaves the float32 range (``2**133`` does)."""
    a = e // 2
    return (x * float(2.0 ** a)) * float(2.0 ** (e - a))


def reconstruct_unit(sl, config: ReconConfig, *, noise=None, noise_scale: float = 1.0, mask=None, maps=None):
    """One unit (a ``recon.io.RawSlice``): prewhiten, compress, estimate maps, reconstruct.
    Returns a :class:`recon.mri.recon.Recon` (image like ``sl.kspace``: numpy, or torch on its device)."""
    from . import coils, noise as noise_mod
    from .recon import data_scale, reconstruct as run_method

    k = sl.kspace
    if noise is not None and config.prewhiten:
        k, _ = noise_mod.prewhiten(k, noise, scale=noise_scale)
    if config.virtual_coils is not None and config.virtual_coils < k.shape[0]:
        k, _, _ = coils.coil_compress(k, config.virtual_coils)
    # extreme but finite magnitudes (1e-30, 1e30) would under/overflow in squares and sums (maps,
    # norms): the data are brought near 1 by a power of two (exact) and the image scaled back
    scale = data_scale(k)
    if scale != 1.0:
        k = _times_power_of_two(k, -math.frexp(scale)[1] + 1)
    cw = config.calib_width or default_calib_width(tuple(k.shape), sl.coord is None, sl.im_shape)
    extra = {"wave": config.wavelet} if config.method == "cs" and config.regularizer == "wavelet" else {}
    r = run_method(k, config.method, coord=sl.coord, im_shape=sl.im_shape, mask=mask, maps=maps,
                   map_method=config.maps, calib_width=cw, crop=config.crop, regularizer=config.regularizer,
                   lam=config.lam, max_iter=config.iters, density_weights=config.density_weights,
                   nufft_tol=config.nufft_tol, progress=False if config.quiet else config.progress, **extra)
    if scale != 1.0:
        with np.errstate(over="ignore"):
            r.image = _times_power_of_two(r.image, math.frexp(scale)[1] - 1)
        if not _array.all_finite(r.image):
            raise ValueError(f"the reconstructed image exceeds the float32 range (k-space magnitudes up to "
                             f"~{scale:.3g}): scale the data down")
        if "scale" in r.info:
            r.info["scale"] = r.info["scale"] * scale
    return r


def reconstruct(data, config: ReconConfig | None = None, *, coord=None, mask=None, maps=None, im_shape=None,
                noise=None, noise_scale: float = 1.0) -> ReconResult:
    """Reconstruct ``data`` by ``config`` (default ``ReconConfig()``: CG-SENSE).

    ``data``: a ``recon.io.RawData`` (every unit in ``raw.slices`` selected by ``config.slices``,
    prewhitened with the data's own noise scans), or one unit's k-space as an array: Cartesian
    ``(coil, *im_shape)`` (``mask`` optional, default the non-zero pattern), or non-Cartesian
    ``(coil, *sample_shape)`` with ``coord`` ``(*sample_shape, d)`` in cycles/FOV and
    ``im_shape``. ``maps`` (coil sensitivities) skip the map estimation; ``noise`` ``(coil, n)``
    prewhitens array input. See :class:`ReconResult`.
    """
    from ..io.raw import RawData, RawSlice

    config = replace(config or ReconConfig()).validate()
    t0 = time.perf_counter()
    if isinstance(data, RawData):
        if maps is not None or coord is not None or mask is not None or im_shape is not None:
            raise ValueError("coord, mask, maps and im_shape are for array input; RawData carries its own")
        units, crop = data.slices, data.crop
        noise, noise_scale = data.noise, data.noise_scale
    elif _array.is_array(data):
        if coord is None:
            shape = tuple(data.shape[1:])
            if im_shape is not None and tuple(im_shape) != shape:
                raise ValueError(f"im_shape {tuple(im_shape)} does not match the Cartesian k-space {tuple(data.shape)}")
        else:
            if im_shape is None:
                raise ValueError("non-Cartesian k-space needs im_shape")
            shape = tuple(int(n) for n in im_shape)
        units, crop = [RawSlice(data, coord, shape)], None
    else:
        raise TypeError(f"data: expected a recon.io.RawData or a k-space array, got {type(data).__name__}")
    idx = parse_slices(config.slices, len(units))
    masks, reference = {}, None
    if config.retrospective is not None:
        if not isinstance(data, RawData) and mask is not None:
            raise ValueError("give either mask or config.retrospective, not both")
        reference, masks = _retrospective(units, idx, crop, config.retrospective)
    show = config.progress if config.progress is not None else (
        not config.quiet and bool(getattr(sys.stderr, "isatty", lambda: False)()))
    from tqdm.auto import tqdm

    recons, images = [], []
    for i in (idx if (len(idx) == 1 or not show) else tqdm(idx, desc="slices", leave=False)):
        sl = units[i]
        m = masks.get(i, mask)
        if i in masks:
            m = param_like(m, sl.kspace)
            sl = RawSlice(cast_param(sl.kspace * m, np.complex64), None, sl.im_shape, sl.index)
        r = reconstruct_unit(sl, config, noise=noise, noise_scale=noise_scale, mask=m, maps=maps)
        recons.append(r)
        images.append(r.image)
    xp = _array.xp_of(images[0])
    mags = [centre_crop(abs(im), crop) for im in images]
    volume = xp.concatenate([m if m.ndim == 3 else m[None] for m in mags], axis=0)
    info = dict(recons[0].info)
    if recons[0].history is not None:
        info["iterations"] = recons[0].history.n_iter
    metrics = None
    if reference is not None:
        from fastmri_data.metrics import nmse, psnr, ssim

        ref_h, vol_h = host(reference), host(volume)  # scoring is host-side (fastmri_data.metrics)
        metrics = {"NMSE": nmse(ref_h, vol_h), "PSNR": psnr(ref_h, vol_h), "SSIM": ssim(ref_h, vol_h)}
        info.update({k.lower(): float(v) for k, v in metrics.items()})
    return ReconResult(images, volume, recons, idx, [dict(units[i].index) for i in idx], info, reference, metrics,
                       time.perf_counter() - t0)


def _retrospective(units, idx, crop, spec: RetrospectiveMask):
    """(reference volume (n, h, w) like the k-space, {unit: mask (numpy)}) for a retrospective
    undersampling."""
    from fastmri_data.masks import create_mask_for_mask_type

    from .coils import sampling_mask
    from .recon import zero_filled

    refs, masks = [], {}
    for i in idx:
        sl = units[i]
        if sl.coord is not None:
            raise ValueError("retrospective masks (--retrospective-mask) need Cartesian data (this is non-Cartesian)")
        k = sl.kspace if _array.is_array(sl.kspace) else np.asarray(sl.kspace)
        if k.ndim != 3:
            raise ValueError("retrospective masks (--retrospective-mask) support 2D slices (coil, ky, kx) only")
        w = k.shape[-1]
        cf = spec.center_fraction if spec.center_fraction is not None else min(0.32 / spec.accel, 1.0)
        if spec.accel > w:
            _bad("retrospective.accel", f"{spec.accel:g} exceeds the {w} phase-encode lines: no line would be kept")
        if round(w * cf) < 1:
            what = "retrospective.center_fraction" if spec.center_fraction is not None else "retrospective.accel"
            _bad(what, f"leaves no fully sampled centre line: {w} phase-encode lines x centre fraction {cf:g} "
                       f"(accel {spec.accel:g}) rounds to 0")
        sampled = float(sampling_mask(k).sum()) / math.prod(k.shape[1:])
        if sampled < 0.8:
            raise ValueError(f"retrospective masks (--retrospective-mask) need fully sampled data; only "
                             f"{100 * sampled:.1f} % of this k-space is non-zero (it is already undersampled)")
        mf = create_mask_for_mask_type(spec.kind, [cf], [spec.accel], seed=spec.seed)
        m, _ = mf(k.shape, seed=spec.seed + i)  # (1, 1, W): phase encode last
        masks[i] = np.broadcast_to(m[0], k.shape[1:]).astype(np.float32)
        refs.append(centre_crop(zero_filled(k).magnitude, crop))
    return _array.stack(refs, 0), masks


__all__ = ["ReconConfig", "RetrospectiveMask", "ReconResult", "reconstruct", "reconstruct_unit", "parse_slices",
           "centre_crop", "default_calib_width", "OPTION"]
