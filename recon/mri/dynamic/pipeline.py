"""The respiratory-resolved (4D) MRI pipeline: raw golden-angle data in, motion states out.

::

    from recon.io import read_raw
    from recon.mri.dynamic import DynamicConfig, reconstruct_dynamic

    res = reconstruct_dynamic(read_raw("scan.h5"), DynamicConfig(bins=6, method="xdgrasp"))
    res.images           # complex64 (bins, z, y, x): bin 0 end expiration .. bin 5 end inspiration
    res.volume           # float32 magnitudes (bins, z, y, x), cropped to the recon matrix
    res.respiratory_signal, res.bin_index    # one value per imaging readout (file order); -1 rejected
    res.bins.ranges      # each bin's signal range; res.info: parameters, bellows correlation, timings

Steps: the spokes in time order (prewhitened, coil-compressed: :mod:`recon.mri.dynamic.data`), the
respiratory signal (self-gating or bellows: :mod:`~recon.mri.dynamic.gating`), the bins
(:mod:`~recon.mri.dynamic.binning`), coil maps from all spokes, and the method
(:mod:`~recon.mri.dynamic.xdgrasp`): ``xdgrasp``, or the binned baselines ``sense`` and ``zf``.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .. import pipeline as static_pipeline
from . import binning
from . import xdgrasp as xd

METHODS = ("xdgrasp", "sense", "zf")
MODES = ("respiratory",)
SIGNALS = ("self", "bellows")
MAP_METHODS = ("espirit", "lowres", "walsh")


@dataclass
class DynamicConfig:
    """How to bin and reconstruct (the ``recon mri --dynamic`` options; docs/dynamic.md).

    ``bins`` motion states; ``gating`` amplitude | phase; ``bin_edges`` equal-count | equal-width;
    ``reject_outliers`` deep breaths and coughs get bin -1 (``outlier_threshold`` robust standard
    deviations); ``signal`` self (self-gating) | bellows; ``band_hz`` the signal's band-pass;
    ``method`` xdgrasp | sense | zf; ``lam_t``/``lam_s`` XD-GRASP's relative temporal/spatial weights,
    ``iters`` its iterations (ADMM, or PDHG with ``solver='pdhg'``); ``prior`` an image file (NIfTI,
    HDF5 ``reconstruction``, .npy; on the recon grid, already registered) or array ``(z, y, x)``
    with weight ``alpha``; ``virtual_coils`` SVD coil compression (None: keep all);
    ``maps``/``calib_width``/``crop`` coil maps from all spokes; ``tick_ms`` the time stamps' tick.
    """

    mode: str = "respiratory"
    bins: int = 6
    method: str = "xdgrasp"
    gating: str = "amplitude"
    bin_edges: str = "equal-count"
    reject_outliers: bool = True
    outlier_threshold: float = 3.0
    signal: str = "self"
    band_hz: tuple = (0.01, 1.0)
    lam_t: float = xd.DEFAULT_LAM_T
    lam_s: float = xd.DEFAULT_LAM_S
    iters: int | None = None
    solver: str = "admm"
    prior: object = None
    alpha: float = 0.5
    virtual_coils: int | None = None
    maps: str = "espirit"
    calib_width: int | None = None
    crop: float | None = None
    prewhiten: bool = True
    nufft_tol: float = 1e-4
    sense_lam: float = 1e-3
    sense_iters: int = 15
    tick_ms: float = 2.5
    progress: bool | None = None
    quiet: bool = False

    def validate(self) -> DynamicConfig:
        """ValueError naming the field (and its ``recon mri`` option) for a bad value; returns self."""
        _choice("mode", self.mode, MODES)
        _choice("method", self.method, METHODS)
        _choice("gating", self.gating, binning.METHODS)
        _choice("bin_edges", self.bin_edges, binning.EDGES)
        _choice("signal", self.signal, SIGNALS)
        _choice("solver", self.solver, xd.SOLVERS)
        _choice("maps", self.maps, MAP_METHODS)
        for name in ("bins", "iters", "virtual_coils", "calib_width", "sense_iters"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                _bad(name, f"must be an integer >= 1, got {v!r}")
        for name in ("lam_t", "lam_s", "sense_lam"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                _bad(name, f"must be a finite number >= 0, got {v!r}")
        for name in ("outlier_threshold", "tick_ms"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                _bad(name, f"must be a positive number, got {v!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 <= self.alpha <= 1):
            _bad("alpha", f"must lie in [0, 1], got {self.alpha!r}")
        if self.crop is not None and not 0 <= self.crop <= 1:
            _bad("crop", f"must lie in [0, 1], got {self.crop}")
        if not (math.isfinite(self.nufft_tol) and 0 < self.nufft_tol < 1):
            _bad("nufft_tol", f"must lie in (0, 1), got {self.nufft_tol}")
        lo, hi = (tuple(self.band_hz) + (None, None))[:2]
        if len(tuple(self.band_hz)) != 2 or not (0 <= lo < hi and math.isfinite(hi)):
            _bad("band_hz", f"must be (low, high) Hz with 0 <= low < high, got {self.band_hz!r}")
        return self


#: config field -> the ``recon mri`` option that sets it (named in error messages)
OPTION = {"mode": "--dynamic", "bins": "--bins", "method": "--method", "gating": "--gating",
          "bin_edges": "--bin-edges", "signal": "--signal", "lam_t": "--lam-t", "lam_s": "--lam-s",
          "iters": "--iters", "solver": "--solver", "alpha": "--prior-weight", "virtual_coils": "--virtual-coils",
          "maps": "--maps", "calib_width": "--calib-width", "crop": "--crop", "nufft_tol": "--nufft-tol",
          "outlier_threshold": "--outlier-threshold", "prior": "--prior"}


_bad = functools.partial(static_pipeline._bad, options=OPTION)
_choice = functools.partial(static_pipeline._choice, options=OPTION)


@dataclass
class DynamicResult:
    """What :func:`reconstruct_dynamic` returns (module docstring). ``signal``: the respiratory
    signal per angle (:class:`~recon.mri.dynamic.gating.RespiratorySignal`); ``bins``
    (:class:`~recon.mri.dynamic.binning.Bins`); ``respiratory_signal``/``bin_index``/``readout_time_s``
    one value per imaging readout in file order; ``data`` the spokes used and ``maps`` ``(z, C, y, x)``
    (for :mod:`~recon.mri.dynamic.mrsigma`); ``voxel_mm`` (dz, dy, dx)."""

    images: np.ndarray
    volume: np.ndarray
    signal: object
    bins: object
    respiratory_signal: np.ndarray
    bin_index: np.ndarray
    readout_time_s: np.ndarray
    data: object
    maps: np.ndarray
    voxel_mm: tuple
    info: dict = field(default_factory=dict)
    histories: list = field(default_factory=list)
    elapsed_s: float = 0.0


def per_readout(data, values):
    """One value per imaging readout in file order from values per angle ``(A,)`` (repeated for the
    angle's readouts) or per readout ``(A, Z)`` (``data.readout``'s layout)."""
    v = np.asarray(values)
    if v.shape == (data.n_angles,):
        v = np.repeat(v[:, None], data.readout.shape[1], axis=1)
    if v.shape != data.readout.shape:
        raise ValueError(f"per_readout: values of shape {v.shape}, expected ({data.n_angles},) or {data.readout.shape}")
    out = np.empty(data.n_readouts, dtype=v.dtype)
    out[data.readout.ravel()] = v.ravel()
    return out


def load_prior(prior, shape):
    """A prior image ``shape`` (z, y, x) from an array or a file (NIfTI, HDF5 with ``reconstruction``
    or ``prior``, .npy); ValueError naming the option for a wrong shape or non-finite values."""
    if isinstance(prior, (str, bytes)) or hasattr(prior, "__fspath__"):
        import os

        path = os.fspath(prior)
        low = path.lower()
        if low.endswith((".nii", ".nii.gz")):
            from ...io import read_nifti

            arr = read_nifti(path)[0]
        elif low.endswith(".npy"):
            from ...io import check_input_file

            arr = np.load(check_input_file(path), allow_pickle=False)
        else:
            arr = _read_h5_prior(path)
    else:
        arr = np.asarray(prior)
    arr = np.squeeze(arr) if arr.ndim > len(shape) else arr
    if arr.ndim == len(shape) - 1 and shape[0] == 1:
        arr = arr[None]
    if tuple(arr.shape) != tuple(shape):
        _bad("prior", f"must be an image of the reconstruction's shape {tuple(shape)} (registered to it), got "
                      f"{tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        _bad("prior", "contains NaN or Inf")
    return arr


def _read_h5_prior(path):
    from ...io import check_input_file
    from ...io.hdf5 import member, open_h5

    path = check_input_file(path)
    with open_h5(path, ValueError) as hf:
        for key in ("prior", "reconstruction"):
            ds = member(hf, key, ValueError, path) if key in hf else None
            if ds is not None and hasattr(ds, "shape"):
                arr = ds[()]
                return arr[arr.shape[0] // 2] if arr.ndim == 4 else arr   # a 4D result: its middle state
    raise ValueError(f"{path}: no 'prior' or 'reconstruction' dataset for --prior")


def _scale_prior(prior, avg):
    """The prior in the units and phase of the motion-averaged image ``avg`` (z, y, x): its magnitude
    scaled to match ``avg``'s 99th percentile, ``avg``'s phase where the prior is real."""
    p = np.abs(prior) if not np.iscomplexobj(prior) else prior
    s_p, s_a = np.percentile(np.abs(p), 99), np.percentile(np.abs(avg), 99)
    if not s_p > 0:
        _bad("prior", "is zero")
    p = p * (s_a / s_p)
    if not np.iscomplexobj(prior):
        p = p * np.exp(1j * np.angle(avg))
    return p.astype(np.complex64)


def reconstruct_dynamic(raw, config: DynamicConfig | None = None) -> DynamicResult:
    """Respiratory-resolved reconstruction of a ``recon.io.RawData`` (golden-angle radial or stack of
    stars) by ``config`` (default :class:`DynamicConfig`). See the module docstring."""
    from ...io.raw import RawData
    from ..pipeline import centre_crop
    from .data import spokes_from_raw
    from .gating import bellows_at, respiratory_signal

    config = replace(config or DynamicConfig()).validate()
    if not isinstance(raw, RawData):
        raise TypeError(f"raw: expected a recon.io.RawData, got {type(raw).__name__}")
    t0 = time.perf_counter()
    timings = {}
    data = spokes_from_raw(raw, tick_ms=config.tick_ms, virtual_coils=config.virtual_coils,
                           prewhiten=config.prewhiten)
    if config.bins > data.n_angles:
        _bad("bins", f"= {config.bins} exceeds the {data.n_angles} angles (spokes) of {data.label}")
    t1 = time.perf_counter()
    bell = bellows_at(raw, data.angle_times_s, tick_ms=config.tick_ms)
    sig = respiratory_signal(data, band_hz=config.band_hz, bellows=bell, source=config.signal)
    bins = binning.bin_signal(sig.signal, sig.times_s, config.bins, method=config.gating, edges=config.bin_edges,
                              reject=config.reject_outliers, outlier_threshold=config.outlier_threshold)
    t2 = time.perf_counter()
    timings["gating_s"] = t2 - t1
    maps = xd.estimate_maps(data, method=config.maps, calib_width=config.calib_width, crop=config.crop,
                            tol=config.nufft_tol)
    t3 = time.perf_counter()
    timings["maps_s"] = t3 - t2
    bd = xd.bin_data(data, bins, tol=config.nufft_tol)
    progress = config.progress if config.progress is not None else None
    if config.quiet:
        progress = False
    if config.method == "zf":
        rec = xd.zero_filled_bins(bd, maps)
    elif config.method == "sense":
        rec = xd.cg_sense_bins(bd, maps, lam=config.sense_lam, iters=config.sense_iters, progress=progress)
    else:
        prior = None
        if config.prior is not None:
            prior = load_prior(config.prior, data.im_shape)
            avg = xd.zero_filled_bins(xd.bin_data(data, _one_bin(bins), tol=config.nufft_tol), maps).images[0]
            prior = _scale_prior(prior, avg)
        rec = xd.xdgrasp_bins(bd, maps, lam_t=config.lam_t, lam_s=config.lam_s,
                         iters=config.iters or xd.DEFAULT_ITERS, solver=config.solver,
                         periodic=config.gating == "phase", prior=prior, alpha=config.alpha, progress=progress)
    timings["recon_s"] = time.perf_counter() - t3
    images = rec.images
    crop = raw.crop
    volume = np.ascontiguousarray(centre_crop(np.abs(images), crop)).astype(np.float32)
    info = dict(rec.info, method=config.method, mode=config.mode, bins=config.bins, gating=config.gating,
                bin_edges=config.bin_edges, signal=config.signal, coils=data.n_coils, angles=data.n_angles,
                rejected_angles=int((bins.index < 0).sum()), rejected_breaths=len(bins.rejected_breaths))
    if sig.bellows_correlation is not None:
        info["bellows_correlation"] = sig.bellows_correlation
    info.update(timings)
    elapsed = time.perf_counter() - t0
    info["elapsed_s"] = elapsed
    return DynamicResult(images, volume, sig, bins, per_readout(data, sig.at(data.times_s)),
                         per_readout(data, bins.index), per_readout(data, data.times_s), data, maps, data.voxel_mm,
                         info, rec.histories, elapsed)


def _one_bin(bins):
    """Every angle in one bin: gridding it gives the motion-averaged image."""
    return binning.Bins(np.zeros_like(bins.index), 1, bins.method, bins.edges, np.zeros((1, 2)), bins.value,
                        bins.breath, [])


__all__ = [
    "METHODS",
    "MODES",
    "OPTION",
    "DynamicConfig",
    "DynamicResult",
    "load_prior",
    "per_readout",
    "reconstruct_dynamic",
]
