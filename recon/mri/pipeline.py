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
#: the methods of :func:`reconstruct`: those of ``recon.mri.recon`` and ``net`` (an unrolled network,
#: provided by ``recon.nets``: see :func:`register_net`)
PIPELINE_METHODS = METHODS + ("net",)
DEVICES = ("cpu", "cuda")
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
    Method ``net`` (an unrolled network, ``recon.nets``): ``weights`` a shipped name or a weights
    path (None: ``modl-cartesian`` or ``modl-radial`` by the data's trajectory), ``device`` cpu |
    cuda[:i], ``batch_size`` slices per network call.
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
    weights: str | None = None
    device: str = "cpu"
    batch_size: int = 4

    def validate(self) -> ReconConfig:
        """Raise ValueError (naming the field and its ``recon mri`` option) for a bad value; returns self."""
        _choice("method", self.method, PIPELINE_METHODS)
        if self.weights is not None and self.method != "net":
            _bad("weights", f"is used by method net, not {self.method}")
        if not (isinstance(self.device, str) and self.device.split(":")[0] in DEVICES):
            _bad("device", f"must be cpu, cuda or cuda:N, got {self.device!r}")
        if isinstance(self.batch_size, bool) or int(self.batch_size) != self.batch_size or self.batch_size < 1:
            _bad("batch_size", f"must be an integer >= 1, got {self.batch_size}")
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
          "retrospective.accel": "--accel", "retrospective.center_fraction": "--center-fraction",
          "weights": "--weights", "device": "--device", "prior": "--prior"}


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


def _prepare_kspace(sl, config: ReconConfig, noise, noise_scale: float):
    """A unit's k-space prewhitened, coil-compressed and brought near 1 by a power of two, and that
    scale (the image is multiplied back by :func:`_scale_back`)."""
    from . import coils, noise as noise_mod
    from .recon import data_scale

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
    return k, scale


def _scale_back(r, scale: float):
    """The :class:`recon.mri.recon.Recon` ``r`` of data scaled by :func:`_prepare_kspace`, in the data's scale."""
    if scale != 1.0:
        with np.errstate(over="ignore"):
            r.image = _times_power_of_two(r.image, math.frexp(scale)[1] - 1)
        if not _array.all_finite(r.image):
            raise ValueError(f"the reconstructed image exceeds the float32 range (k-space magnitudes up to "
                             f"~{scale:.3g}): scale the data down")
        if "scale" in r.info:
            r.info["scale"] = r.info["scale"] * scale
    return r


def reconstruct_unit(sl, config: ReconConfig, *, noise=None, noise_scale: float = 1.0, mask=None, maps=None):
    """One unit (a ``recon.io.RawSlice``): prewhiten, compress, estimate maps, reconstruct.
    Returns a :class:`recon.mri.recon.Recon` (image like ``sl.kspace``: numpy, or torch on its device)."""
    from .recon import reconstruct as run_method

    if config.method == "net":
        return reconstruct_units_net([sl], config, noise=noise, noise_scale=noise_scale, masks=[mask], maps=maps)[0]
    k, scale = _prepare_kspace(sl, config, noise, noise_scale)
    cw = config.calib_width or default_calib_width(tuple(k.shape), sl.coord is None, sl.im_shape)
    extra = {"wave": config.wavelet} if config.method == "cs" and config.regularizer == "wavelet" else {}
    r = run_method(k, config.method, coord=sl.coord, im_shape=sl.im_shape, mask=mask, maps=maps,
                   map_method=config.maps, calib_width=cw, crop=config.crop, regularizer=config.regularizer,
                   lam=config.lam, max_iter=config.iters, density_weights=config.density_weights,
                   nufft_tol=config.nufft_tol, progress=False if config.quiet else config.progress, **extra)
    return _scale_back(r, scale)


# ---- the learned method ------------------------------------------------------------------------
# The networks live in recon.nets, a layer above the pipelines (ARCHITECTURE.md): importing recon.nets
# registers the runner of method 'net' here (the `recon` command imports it for --method net).

_NET_RUNNER = None


def register_net(runner):
    """Install the runner of ``method='net'``: ``runner(items, config) -> [Recon]``, ``items`` dicts
    with ``kspace``, ``coord``, ``im_shape``, ``mask``, ``maps``, ``prior`` (one per unit; the
    runner batches them). Called by ``recon.nets`` when it is imported."""
    global _NET_RUNNER
    _NET_RUNNER = runner


def reconstruct_units_net(units, config: ReconConfig, *, noise=None, noise_scale: float = 1.0, masks=None,
                          maps=None, priors=None) -> list:
    """Method ``net`` on several units at once (batched by the runner): each unit prewhitened and
    compressed as for the other methods; ``masks``/``priors`` one per unit (or None)."""
    if _NET_RUNNER is None:
        raise ValueError("method net (--method net) is provided by recon.nets: import recon.nets first "
                         "(it needs torch and safetensors: pip install 'recon[nets]')")
    items, scales = [], []
    for j, sl in enumerate(units):
        k, scale = _prepare_kspace(sl, config, noise, noise_scale)
        items.append({"kspace": k, "coord": sl.coord, "im_shape": tuple(sl.im_shape),
                      "mask": None if masks is None else masks[j], "maps": maps,
                      "prior": None if priors is None else priors[j]})
        scales.append(scale)
    return [_scale_back(r, s) for r, s in zip(_NET_RUNNER(items, config), scales)]


def priors_for_units(prior, idx: list, n_units: int, im_shapes: list, crop) -> list:
    """One prior image per selected unit from ``prior`` (a previous, registered magnitude image):
    ``(y, x)`` for every unit, ``(n, y, x)`` with one slice per unit of the data or per selected unit;
    each at the unit's image matrix, or at the cropped recon matrix ``crop`` (then zero-padded to the
    unit's matrix, the inverse of :func:`centre_crop`)."""
    p = np.abs(np.asarray(prior)).astype(np.float32)
    if p.ndim == 2:
        p = np.broadcast_to(p, (len(idx),) + p.shape)
    elif p.ndim == 3 and p.shape[0] == n_units and len(idx) != n_units:
        p = p[idx]
    elif p.ndim != 3 or p.shape[0] != len(idx):
        _bad("prior", f"expected one image (y, x) or one per slice ({n_units} or the {len(idx)} selected), "
                      f"got shape {p.shape}")
    out = []
    for img, shape in zip(p, im_shapes):
        shape = tuple(shape[-2:])
        if img.shape == shape:
            out.append(np.ascontiguousarray(img))
        elif crop is not None and img.shape == tuple(crop) and all(c <= n for c, n in zip(crop, shape)):
            full = np.zeros(shape, np.float32)
            full[tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(shape, crop))] = img
            out.append(full)
        else:
            _bad("prior", f"matrix {img.shape} matches neither the image matrix {shape}"
                          + (f" nor the recon matrix {tuple(crop)}" if crop is not None else "")
                          + ": register and resample it to the new scan first")
    return out


def read_prior(path) -> np.ndarray:
    """A prior image file as float32 magnitudes ``(n, y, x)``: a reconstruction HDF5
    (``reconstruction``, e.g. an earlier ``recon mri`` output, or fastMRI's ``reconstruction_rss``),
    NIfTI, a DICOM series (folder or file) or ``.npy`` (no pickles)."""
    import os

    from ..io import read_dicom_series, read_nifti
    from ..io.dicom import is_dicom
    from ..io.files import check_input_file

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"prior (--prior): no such file or folder: {path}")
    if is_dicom(path):
        vol = read_dicom_series(path if os.path.isdir(path) else [path])[0]
    else:
        check_input_file(path)
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(b"\x93NUMPY"):
            try:
                vol = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise ValueError(f"{path}: not a readable .npy file: {exc}") from None
        elif head.startswith(b"\x89HDF"):
            vol = _read_h5_image(path)
        elif path.lower().endswith((".nii", ".nii.gz")):
            vol = read_nifti(path)[0]
        else:
            raise ValueError(f"prior (--prior) {path}: not a reconstruction HDF5, NIfTI, DICOM or .npy file")
    vol = np.abs(np.asarray(vol))
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3 or min(vol.shape[1:]) < 2 or not np.all(np.isfinite(vol)):
        raise ValueError(f"prior (--prior) {path}: expected finite 2D images (n, y, x), got shape {vol.shape}")
    return vol.astype(np.float32)


def _read_h5_image(path):
    import h5py

    from ..io import FastMRIFormatError, read_fastmri_reconstruction

    try:
        return read_fastmri_reconstruction(path)
    except FastMRIFormatError:
        pass
    try:
        with h5py.File(path, "r") as hf:
            for key in ("reconstruction_rss", "reconstruction_esc"):
                if key in hf and isinstance(hf[key], h5py.Dataset) and hf[key].ndim in (2, 3):
                    return np.asarray(hf[key][()])
            keys = sorted(hf.keys())
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file: {exc}") from None
    raise ValueError(f"prior (--prior) {path}: no 'reconstruction', 'reconstruction_rss' or 'reconstruction_esc' "
                     f"image dataset (has {keys})")


def reconstruct(data, config: ReconConfig | None = None, *, coord=None, mask=None, maps=None, im_shape=None,
                noise=None, noise_scale: float = 1.0, prior=None) -> ReconResult:
    """Reconstruct ``data`` by ``config`` (default ``ReconConfig()``: CG-SENSE).

    ``data``: a ``recon.io.RawData`` (every unit in ``raw.slices`` selected by ``config.slices``,
    prewhitened with the data's own noise scans), or one unit's k-space as an array: Cartesian
    ``(coil, *im_shape)`` (``mask`` optional, default the non-zero pattern), or non-Cartesian
    ``(coil, *sample_shape)`` with ``coord`` ``(*sample_shape, d)`` in cycles/FOV and
    ``im_shape``. ``maps`` (coil sensitivities) skip the map estimation; ``noise`` ``(coil, n)``
    prewhitens array input. ``prior`` (method ``net`` with a prior model: a previous, registered
    magnitude image, :func:`priors_for_units`). See :class:`ReconResult`.
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

    if prior is not None and config.method != "net":
        _bad("prior", f"is used by method net, not {config.method}")
    recons, images = [], []
    idx_loop = idx
    if config.method == "net":  # all units at once: the runner batches them
        sel, unit_masks = [units[i] for i in idx], []
        for j, i in enumerate(idx):
            m = masks.get(i, mask)
            if i in masks:
                m = param_like(m, sel[j].kspace)
                sel[j] = RawSlice(cast_param(sel[j].kspace * m, np.complex64), None, sel[j].im_shape, sel[j].index)
            unit_masks.append(m)
        priors = None if prior is None else priors_for_units(prior, idx, len(units), [u.im_shape for u in sel], crop)
        recons = reconstruct_units_net(sel, config, noise=noise, noise_scale=noise_scale, masks=unit_masks, maps=maps,
                                       priors=priors)
        images, idx_loop = [r.image for r in recons], []
    for i in (idx_loop if (len(idx_loop) <= 1 or not show) else tqdm(idx_loop, desc="slices", leave=False)):
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
           "centre_crop", "default_calib_width", "OPTION", "PIPELINE_METHODS", "register_net", "reconstruct_units_net",
           "priors_for_units", "read_prior"]
