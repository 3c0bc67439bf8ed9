"""The CT reconstruction pipeline: raw data in, an image out, driven by a plain config.

::

    from recon.ct import ReconConfig, load, read_prior, reconstruct

    data = load("scan.npy", geometry="scan.json")              # or a DICOM-CT-PD folder, or sample="htc2022"
    res = reconstruct(data, ReconConfig(method="pwls-tv"))
    res.image            # float32 (z, y, x) attenuation in 1/mm; res.voxel_size (dz, dy, dx) mm
    res.direction, res.origin   # LPS placement (recon.io.geometry's CT convention)
    res.info             # the parameters used (beta, iterations, subsets, ...)

    prior = read_prior("planning_ct/", mu_water=data.mu_water)
    res = reconstruct(data, ReconConfig(method="piccs"), prior=prior)
    res.registration.summary(); res.change   # the transform found; the change map (noise units)

Inputs (:func:`load`; the format is found from the content): a plain sinogram file (``.npy``,
HDF5/``.mat``, TIFF) with a geometry file (:mod:`recon.io.sinogram`; raw counts become line integrals
by the log model with the blank/dark of the file or ``blank``, and PWLS gets its weights from the
counts); a DICOM-CT-PD projection series (a folder or a file; :mod:`recon.io.dicom_ct_pd`); a bundled
sample (:data:`recon.ct.data.SAMPLES`).

Methods (``ReconConfig.method``): ``fbp`` (FBP; FDK for circular cone beams), ``fdk``, ``sirt``,
``os-sart``, ``pwls-tv``, ``piccs`` (with a prior image) and ``net`` (a learned primal-dual network of
``recon.nets``, optionally with a prior image; provided by ``recon.nets``, which registers it here with
:func:`register_net` when imported, as the ``recon`` command does for ``--method net``). Helical DICOM-CT-PD scans are rebinned to fan-beam slices
(:func:`recon.ct.rebin_ssrb`) and reconstructed slice by slice, or (``helical="cone"``, iterative
methods) reconstructed as one volume in the scan's own cone-beam vector geometry
(:meth:`recon.io.dicom_ct_pd.HelicalScan.to_geometry`), started from the rebinned FBP.

PICCS (docs/ct.md): the prior is registered (rigid by default, SimpleITK) to a first FBP of the new
data placed on the reconstruction grid, resampled onto it (voxels outside the prior's field of view
get no prior: ``alpha = 0`` there) and, by default, made change-aware (:mod:`recon.ct.change`):
where the data disagree with the prior, ``alpha`` drops to 0 and ``beta`` to ``keep x beta``.

Limited-angle data (less than complete angular coverage) are reported once, as one
:class:`recon.ct.IncompleteCoverageWarning`, whatever the method.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ..geometry import ConeBeam3D, FanBeam2D, Geometry, ParallelBeam2D
from ..io.dicom_ct_pd import DEFAULT_WATER_ATTENUATION, HelicalScan
from .fbp import FILTERS, IncompleteCoverageWarning

__all__ = ["METHODS", "SOLVERS", "REGISTRATIONS", "HELICAL", "DEFAULT_ITERS", "PICCS_BETA_SCALE", "OPTION",
           "ReconConfig", "CTData",
           "CTResult", "load", "reconstruct", "slice_heights"]

METHODS = ("fbp", "fdk", "sirt", "os-sart", "pwls-tv", "piccs", "net")
SOLVERS = ("os", "fista", "pdhg")
REGISTRATIONS = ("rigid", "affine", "none")
HELICAL = ("rebin", "cone")
#: iterations when ``iters`` is None: per method, and for pwls-tv/piccs per solver
DEFAULT_ITERS = {"sirt": 50, "os-sart": 10, "os": 12, "fista": 100, "pdhg": 100}
#: PICCS's default beta: this times PWLS-TV's (:func:`recon.ct.default_beta`); with ``alpha = 0.9`` the
#: PSNR-best pair on the tuning slice (docs/ct.md): a registered prior carries most of the image
PICCS_BETA_SCALE = 8.0
_ANALYTIC = (ParallelBeam2D, FanBeam2D, ConeBeam3D)


# ---- the config -------------------------------------------------------------------------------------

@dataclass
class ReconConfig:
    """What to reconstruct and how (the options of ``recon ct``; docs/ct.md).

    ``method`` (:data:`METHODS`); ``filter``/``cutoff`` of FBP/FDK and of every FBP the pipeline takes
    (start images, registration target); ``iters`` (None: :data:`DEFAULT_ITERS`); ``beta`` (None:
    :func:`recon.ct.default_beta`); ``alpha`` PICCS weight in [0, 1]; ``change_aware`` PICCS lowers
    ``alpha`` and ``beta`` where the data disagree with the prior; ``register`` rigid | affine | none;
    ``solver`` of pwls-tv/piccs (os | fista | pdhg; an alpha map needs os); ``subsets`` (os-sart and
    the os solver; None: about 30 views each); ``image_size``/``voxel_size`` (mm) the image grid of
    DICOM-CT-PD scans (default: 512 pixels over the scan's field of view) or a replacement of a
    geometry file's; ``z`` helical slice heights (scanner z, mm): a number, a sequence or
    ``"start:stop:step"`` (default: the fully covered part of the scan at the detector row spacing);
    ``helical`` rebin | cone; ``quiet``/``progress`` (None: bars on a terminal); method ``net``:
    ``weights`` (a shipped name or a weights path; None: ``lpd-fan``), ``device`` (cpu | cuda[:i]),
    ``batch_size`` (slices per network call).
    """

    method: str = "fbp"
    filter: str = "hann"
    cutoff: float = 1.0
    iters: int | None = None
    beta: float | None = None
    alpha: float = 0.9
    change_aware: bool = True
    register: str = "rigid"
    solver: str = "os"
    subsets: int | None = None
    image_size: int | None = None
    voxel_size: float | None = None
    z: object = None
    helical: str = "rebin"
    quiet: bool = False
    progress: bool | None = None
    weights: str | None = None
    device: str = "cpu"
    batch_size: int = 4

    def validate(self) -> ReconConfig:
        """Check every field (ValueError naming the field and its ``recon ct`` option); returns self."""
        _choice("method", self.method, METHODS)
        if self.weights is not None and self.method != "net":
            _bad("weights", f"is used by method net, not {self.method}")
        if not (isinstance(self.device, str) and self.device.split(":")[0] in ("cpu", "cuda")):
            _bad("device", f"must be cpu, cuda or cuda:N, got {self.device!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            _bad("batch_size", f"must be an integer >= 1, got {self.batch_size!r}")
        _choice("filter", str(self.filter).lower(), FILTERS)
        _choice("register", self.register, REGISTRATIONS)
        _choice("solver", self.solver, SOLVERS)
        _choice("helical", self.helical, HELICAL)
        if not (_number(self.cutoff) and 0 < self.cutoff <= 1):
            _bad("cutoff", f"must lie in (0, 1], got {self.cutoff!r}")
        for name in ("iters", "subsets", "image_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                _bad(name, f"must be an integer >= 1, got {v!r}")
        if self.image_size is not None and self.image_size > 8192:
            _bad("image_size", f"must be at most 8192, got {self.image_size}")
        if self.beta is not None and not (_number(self.beta) and self.beta >= 0):
            _bad("beta", f"must be a finite number >= 0, got {self.beta!r}")
        if not (_number(self.alpha) and 0 <= self.alpha <= 1):
            _bad("alpha", f"must lie in [0, 1], got {self.alpha!r}")
        if self.voxel_size is not None and not (_number(self.voxel_size) and self.voxel_size > 0):
            _bad("voxel_size", f"must be a positive number (mm), got {self.voxel_size!r}")
        if self.method == "piccs" and self.change_aware and self.solver != "os":
            _bad("solver", f"{self.solver!r} cannot take the change-aware PICCS maps: use os, or turn "
                           "change awareness off (--no-change-aware)")
        return self


#: config field -> the ``recon ct`` option that sets it (named in error messages)
OPTION = {"method": "--method", "filter": "--filter", "cutoff": "--cutoff", "iters": "--iters", "beta": "--beta",
          "alpha": "--alpha", "register": "--register", "solver": "--solver", "subsets": "--subsets",
          "image_size": "--image-size", "voxel_size": "--voxel-size", "z": "--z", "helical": "--helical",
          "change_aware": "--no-change-aware", "weights": "--weights", "device": "--device"}


def _bad(name, msg):
    raise ValueError(f"{name} ({OPTION[name]}) {msg}" if name in OPTION else f"{name} {msg}")


def _choice(name, v, choices):
    if v not in choices:
        _bad(name, f"must be one of {', '.join(choices)}; got {v!r}")


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.number)) and math.isfinite(v)


# ---- the data ---------------------------------------------------------------------------------------

@dataclass
class CTData:
    """CT raw data ready to reconstruct: ``sinogram`` (line integrals, ``geometry.sino_shape``) with its
    ``geometry`` and PWLS ``weights`` (None: unit weights), or a helical/axial ``scan``
    (DICOM-CT-PD); ``mu_water`` (1/mm, for HU), ``kvp``, ``source`` (where it came from), ``info``."""

    sinogram: np.ndarray | None = None
    geometry: Geometry | None = None
    weights: np.ndarray | None = None
    scan: HelicalScan | None = None
    mu_water: float = DEFAULT_WATER_ATTENUATION
    kvp: float | None = None
    source: str = ""
    info: dict = field(default_factory=dict)


def load(path=None, *, geometry=None, blank=None, sample: str | None = None) -> CTData:
    """Read CT raw data (module docstring): ``path`` a sinogram file (with ``geometry``: a geometry
    file, a :class:`recon.geometry.Geometry` or a description dict) or a DICOM-CT-PD folder/file; or
    ``sample`` (a name of :data:`recon.ct.data.SAMPLES`). ``blank``: the blank scan I0 (a number or an
    array file name) of raw counts; it makes the data counts unless the geometry file says
    ``units: line_integrals`` (then it only gives the PWLS weights)."""
    from ..io.dicom import is_dicom
    from ..io.dicom_ct_pd import read_dicom_ct_pd
    from ..io.files import check_input_file
    from ..io.sinogram import read_array, read_geometry_file, read_sinogram
    from .counts import counts_to_line_integrals, weights_from_counts, weights_from_line_integrals
    from .data import load_sample

    if sample is not None:
        if path is not None:
            raise ValueError("give a data file or a sample, not both")
        return load_sample(sample)
    if path is None:
        raise ValueError("no input: give a data file or folder, or a sample")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path}")
    if not os.path.isdir(path):
        check_input_file(path)
    if is_dicom(path):
        if geometry is not None:
            raise ValueError(f"{path}: DICOM-CT-PD data carry their geometry; --geometry is for plain sinograms")
        scan = read_dicom_ct_pd(path)
        return CTData(scan=scan, mu_water=scan.water_attenuation, kvp=scan.info.get("kvp"), source=path,
                      info={"format": "DICOM-CT-PD"})
    if geometry is None:
        raise ValueError(f"{path}: a plain sinogram needs a geometry file (--geometry GEOM.json)")
    units = None
    if isinstance(geometry, (str, os.PathLike)):
        _, fields = read_geometry_file(geometry)
        units = fields.get("units")
    if blank is not None and units is None:
        units = "counts"
    data = read_sinogram(path, geometry, units=units)
    if isinstance(blank, (str, os.PathLike)):
        blank = read_array(blank).astype(np.float64)
    i0 = data.blank if blank is None else blank
    weights = None
    if data.units == "counts":
        if i0 is None:
            raise ValueError(f"{path}: raw counts need the blank scan I0 (--blank, or 'blank' in the geometry file)")
        dark = 0.0 if data.dark is None else data.dark
        p = counts_to_line_integrals(data.sinogram, i0, dark)
        weights = weights_from_counts(data.sinogram, dark)
    else:
        p = data.sinogram
        if i0 is not None:
            weights = weights_from_line_integrals(p, np.asarray(i0, dtype=np.float64) - (data.dark or 0.0))
    return CTData(sinogram=p, geometry=data.geometry, weights=weights, source=path,
                  info={"format": "sinogram", "units": data.units})


# ---- the result -------------------------------------------------------------------------------------

@dataclass
class CTResult:
    """What :func:`reconstruct` returns: ``image`` ``(z, y, x)`` float32 in 1/mm, ``voxel_size``
    ``(dz, dy, dx)`` mm, ``direction``/``origin`` (LPS placement, :func:`recon.io.geometry.centred_origin`),
    ``mu_water``/``kvp`` (for HU outputs), ``info`` (the parameters used), ``histories`` (one per
    reconstructed unit, iterative methods), and for PICCS ``registration`` (:class:`recon.ct.Registration`
    or None), ``prior`` (registered, on the grid), ``change`` (change map, noise units), ``alpha``."""

    image: np.ndarray
    voxel_size: tuple
    direction: np.ndarray
    origin: np.ndarray
    mu_water: float
    kvp: float | None
    info: dict
    histories: list = field(default_factory=list)
    registration: object = None
    prior: np.ndarray | None = None
    change: np.ndarray | None = None
    alpha: np.ndarray | None = None
    elapsed_s: float = 0.0


# ---- helical scans: slices and grids ----------------------------------------------------------------

def slice_heights(scan: HelicalScan, spec=None) -> np.ndarray:
    """Scanner z (mm) of the slices to reconstruct from ``scan``: ``spec`` a number, a sequence or
    ``"start:stop:step"`` (stop included when it falls on the step), or None: the part of the scan
    every ray of a 180-degree rebinning covers (the focal-centre z range shrunk by half the
    detector's z coverage at the rotation axis), at the detector's row spacing at the axis."""
    d = scan.detector
    rho = float(np.median(scan.radius))
    step_iso = d.row_spacing * rho / d.radius
    if spec is None:
        half = 0.5 * d.rows * step_iso
        lo, hi = float(scan.z.min()) + half, float(scan.z.max()) - half
        if hi < lo:
            return np.array([0.5 * (float(scan.z.min()) + float(scan.z.max()))])
        n = int(math.floor((hi - lo) / step_iso + 1e-9)) + 1
        return lo + step_iso * np.arange(n) + 0.5 * ((hi - lo) - step_iso * (n - 1))
    if isinstance(spec, str):
        try:
            parts = [float(v) for v in spec.split(":")]
        except ValueError:
            _bad("z", f"expected a number or 'start:stop:step' in mm, got {spec!r}")
        if len(parts) == 1:
            return np.array(parts)
        if len(parts) != 3 or not parts[2] > 0 or parts[1] < parts[0]:
            _bad("z", f"expected 'start:stop:step' with stop >= start and step > 0 (mm), got {spec!r}")
        n = int(math.floor((parts[1] - parts[0]) / parts[2] + 1e-9)) + 1
        if n > 4096:
            _bad("z", f"{spec!r} gives {n} slices (at most 4096)")
        return parts[0] + parts[2] * np.arange(n)
    z = np.atleast_1d(np.asarray(spec, dtype=np.float64))
    if z.ndim != 1 or z.size == 0 or not np.all(np.isfinite(z)):
        _bad("z", f"expected finite slice heights (mm), got {spec!r}")
    return z


def _helical_grid(scan: HelicalScan, config: ReconConfig):
    """``(n, voxel_size)`` of the slices of a helical scan: ``image_size`` (default 512) pixels over
    the scan's field of view (the circle its fan covers) unless ``voxel_size`` is given."""
    d = scan.detector
    gmax = float(np.max(np.abs(d.fan_angles())))
    fov = 2.0 * float(np.median(scan.radius)) * math.sin(gmax)
    n = config.image_size or (512 if config.voxel_size is None else int(math.ceil(fov / config.voxel_size)))
    vs = config.voxel_size or fov / n
    return int(n), float(vs)


def _with_grid(geometry: Geometry, config: ReconConfig) -> Geometry:
    """``geometry`` with the image grid of ``config.image_size``/``voxel_size`` when they are given
    (the field of view kept when only the size changes)."""
    if config.image_size is None and config.voxel_size is None:
        return geometry
    desc = geometry.to_dict()
    shape = list(desc["image_shape"])
    vs = np.broadcast_to(np.asarray(desc.get("voxel_size", 1.0), dtype=np.float64), (len(shape),))
    n = config.image_size
    if n is not None:
        fov = vs[-1] * shape[-1]
        new_vs = config.voxel_size or fov / n
        shape = shape[:-2] + [n, n]
        vs = np.r_[vs[:-2], [new_vs, new_vs]]
    else:
        vs = np.r_[vs[:-2], [config.voxel_size, config.voxel_size]]
    desc["image_shape"], desc["voxel_size"] = shape, [float(v) for v in vs]
    from ..geometry import from_dict

    return from_dict(desc)


# ---- reconstruction ---------------------------------------------------------------------------------

@dataclass
class _Unit:
    """One reconstruction problem: a geometry, its sinogram and weights (2D slice or 3D volume)."""

    geometry: Geometry
    sinogram: np.ndarray
    weights: np.ndarray | None
    start: np.ndarray | None = None  # a first image (the rebinned FBP for the cone mode)
    crop: slice | None = None  # the slices of the result (the cone mode reconstructs more)


def _coverage_warning(geometry: Geometry, source: str) -> None:
    """One IncompleteCoverageWarning for limited-angle data (FBP-capable geometries)."""
    from .fbp import angular_coverage

    if isinstance(geometry, _ANALYTIC):
        cov = angular_coverage(geometry)
        if not cov["complete"]:
            warnings.warn(f"{source or 'the data'}: the angles cover {cov['covered_deg']:.4g} deg, less than the "
                          f"{cov['needed_deg']:.4g} deg of complete data: limited-angle data (FBP shows streaks; "
                          "the iterative methods fill in what the TV prior can)", IncompleteCoverageWarning,
                          stacklevel=3)


def _units(data: CTData, config: ReconConfig):
    """``(units, image_shape per unit, voxel_size (dz, dy, dx), centre z (mm))``."""
    from .rebin import rebin_ssrb

    if data.scan is None:
        if data.sinogram is None or data.geometry is None:
            raise ValueError("CTData: needs a sinogram with its geometry, or a scan")
        g = _with_grid(data.geometry, config)
        vs = np.broadcast_to(np.asarray(g.voxel_size, dtype=np.float64), (g.ndim,))
        vs3 = (1.0,) + tuple(vs) if g.ndim == 2 else tuple(vs)
        return [_Unit(g, data.sinogram, data.weights)], vs3, 0.0
    scan = data.scan
    n, vs = _helical_grid(scan, config)
    z = slice_heights(scan, config.z)
    dz = float(np.median(np.diff(z))) if z.size > 1 else scan.detector.row_spacing * float(
        np.median(scan.radius)) / scan.detector.radius
    zc = 0.5 * float(z.min() + z.max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteCoverageWarning)
        reb = rebin_ssrb(scan, z, image_shape=(n, n), voxel_size=vs)
    weights = None
    if scan.photon_statistics is not None and scan.photon_statistics.shape[1] == scan.detector.cols:
        from .counts import weights_from_line_integrals

        i0 = np.mean(scan.photon_statistics, axis=0)
        weights = [weights_from_line_integrals(s, i0[None, :]) for s in reb.sinograms]
    if config.helical == "cone" and config.method in ("sirt", "os-sart", "pwls-tv", "piccs"):
        units, zc_volume = _cone_unit(scan, z, n, vs, dz, config)
        return units, (dz, vs, vs), zc_volume
    units = [_Unit(reb.geometry, s, None if weights is None else weights[i]) for i, s in enumerate(reb.sinograms)]
    return units, (dz, vs, vs), zc


def _cone_unit(scan: HelicalScan, z: np.ndarray, n: int, vs: float, dz: float, config: ReconConfig):
    """The helical scan as one cone-beam problem (``[_Unit]``) in its own vector geometry
    (:meth:`HelicalScan.to_geometry`, data on the virtual flat detector). Every ray of the data must
    cross only reconstructed voxels, so the volume spans the slices ``z`` extended (in steps of
    ``dz``) over the z range the rays reach inside the field of view; the result is cropped back to
    ``z`` (``_Unit.crop``). Started from the rebinned FBP of every slice of that volume. Flat-detector
    pixels whose rays miss the real detector get weight 0 (also for SIRT/OS-SART, which have no
    weights: their data there are the projections of the start image). Returns
    ``(units, z centre of the volume)``."""
    from .counts import weights_from_line_integrals
    from .fbp import fbp
    from .rebin import rebin_ssrb

    d = scan.detector
    rho = float(np.median(scan.radius))
    reach = 0.5 * d.rows * d.row_spacing * (rho + 0.5 * n * vs * math.sqrt(2.0)) / d.radius
    below = int(math.ceil(max(0.0, z.min() - (scan.z.min() - reach)) / dz))
    above = int(math.ceil(max(0.0, (scan.z.max() + reach) - z.max()) / dz))
    zz = np.r_[z.min() - dz * np.arange(below, 0, -1), z, z.max() + dz * np.arange(1, above + 1)]
    if zz.size > 4 * max(z.size, 64):
        raise ValueError(f"helical cone mode: the rays of this scan reach {zz.size} slices of {dz:.3g} mm; "
                         "reconstruct a shorter part of the scan or use --helical rebin")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the slices beyond the scan's ends lack rays: only a start image
        reb = rebin_ssrb(scan, zz, image_shape=(n, n), voxel_size=vs, check_coverage=False)
        start = np.asarray(fbp(reb.sinograms, reb.geometry, config.filter, config.cutoff), dtype=np.float32)
    zc = 0.5 * float(zz.min() + zz.max())
    g = scan.to_geometry((zz.size, n, n), (dz, vs, vs), z_centre=zc)
    p = scan.flat_projections()
    # flat-detector pixels whose rays miss the real detector hold no data: weight 0
    seen = dataclasses.replace(scan, projections=np.ones_like(scan.projections)).flat_projections() > 0.999
    w = np.ones_like(p)
    if scan.photon_statistics is not None and scan.photon_statistics.shape[1] == d.cols:
        w = weights_from_line_integrals(p, scan.photon_statistics[:, None, :])
    w = np.where(seen, w, 0.0).astype(np.float32)
    return [_Unit(g, p, w, np.maximum(start, 0.0), crop=slice(below, below + z.size))], zc


def _first_image(unit: _Unit, config: ReconConfig) -> np.ndarray:
    """A first image of a unit: its FBP (the given start for the cone mode, 4 OS-SART passes when the
    geometry has no FBP)."""
    from ..ops import Projector
    from .fbp import fbp
    from .iterative import default_subsets, os_sart

    if unit.start is not None:
        return unit.start
    if isinstance(unit.geometry, _ANALYTIC):
        return np.asarray(fbp(unit.sinogram, unit.geometry, config.filter, config.cutoff), dtype=np.float32)
    x, _ = os_sart(Projector(unit.geometry), unit.sinogram, 4, default_subsets(unit.geometry.n_views), progress=False)
    return np.asarray(x, dtype=np.float32)


def _prior_on_grid(prior, first, vs3, direction, origin, config: ReconConfig):
    """The prior registered to ``first`` (``(z, y, x)``) and resampled onto its grid:
    ``(prior image, covered, registration or None)``."""
    from .prior import PriorImage
    from .registration import register_prior, resample_prior

    if not isinstance(prior, PriorImage):
        raise TypeError(f"prior: expected a recon.ct.PriorImage (recon.ct.read_prior), got {type(prior).__name__}")
    moving = prior
    if first.shape[0] == 1 and prior.image.shape[0] > 1:
        # a 2D reconstruction: the prior's slice at the reconstruction's plane (header placement), in 2D
        sl, cov = resample_prior(prior, first.shape, vs3, direction=direction, origin=origin)
        if not cov.any():
            raise ValueError("prior: its field of view does not reach the reconstructed slice (check its position)")
        moving = PriorImage(sl, vs3, direction, origin, prior.source)
    reg = None
    if config.register != "none":
        reg = register_prior(moving, first, vs3, target_direction=direction, target_origin=origin,
                             transform=config.register)
    img, covered = resample_prior(moving, first.shape, vs3, direction=direction, origin=origin, registration=reg)
    if not covered.any():
        raise ValueError("prior: after placement it covers none of the reconstruction grid")
    return img, covered, reg


_NET_RUNNER = None


def register_net(runner):
    """Install the runner of ``method='net'``: ``runner(units, config, priors) -> ([image], info)``
    (``units`` with ``geometry``, ``sinogram``, ``weights``; ``priors`` registered prior images on the
    units' grids or None; ``info`` the weights used, for the result's ``info``). Called by ``recon.nets`` when it is imported (the networks are a layer above)."""
    global _NET_RUNNER
    _NET_RUNNER = runner


def _net_runner():
    if _NET_RUNNER is None:
        raise ValueError("method net (--method net) is provided by recon.nets: import recon.nets first "
                         "(it needs torch and safetensors: pip install 'recon[nets]')")
    return _NET_RUNNER


def reconstruct(data: CTData, config: ReconConfig | None = None, *, prior=None) -> CTResult:
    """Reconstruct ``data`` (:func:`load`) by ``config`` (default ``ReconConfig()``: Hann FBP); ``prior``
    (a :class:`recon.ct.PriorImage`, :func:`recon.ct.read_prior`) for ``piccs`` and ``net``. See the module
    docstring and :class:`CTResult`."""
    from tqdm.auto import tqdm

    from ..io.geometry import centred_origin

    config = replace(config or ReconConfig()).validate()
    if not isinstance(data, CTData):
        raise TypeError(f"data: expected a recon.ct.CTData (recon.ct.load), got {type(data).__name__}")
    runner = _net_runner() if config.method == "net" else None
    if config.method == "piccs" and prior is None:
        raise ValueError("method piccs needs a prior image (--prior)")
    if config.method not in ("piccs", "net") and prior is not None:
        raise ValueError(f"a prior image is used by piccs and net only, not by {config.method} (drop --prior)")
    t0 = time.perf_counter()
    show = config.progress if config.progress is not None else (
        not config.quiet and bool(getattr(sys.stderr, "isatty", lambda: False)()))
    units, vs3, zc = _units(data, config)
    _coverage_warning(units[0].geometry, data.source)
    nd = units[0].geometry.ndim
    shape3 = (len(units),) + tuple(units[0].geometry.image_shape) if nd == 2 else tuple(units[0].geometry.image_shape)
    direction = np.eye(3)
    origin = centred_origin(shape3, vs3, direction, (0.0, 0.0, zc))
    info = {"method": config.method, "units": "1/mm", "mu_water": data.mu_water}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteCoverageWarning)  # reported once above
        prior_img = covered = reg = None
        firsts = None
        if prior is not None:
            firsts = [_first_image(u, config) for u in units]
            first = np.stack(firsts) if nd == 2 else firsts[0]
            prior_img, covered, reg = _prior_on_grid(prior, first, vs3, direction, origin, config)
            if reg is not None:
                info["registration"] = reg.summary()
        images, hists, changes, alphas, changed = [], [], [], [], []
        if runner is not None:  # the network: all units at once (batched by the runner)
            priors = None if prior_img is None else [prior_img[i] if nd == 2 else prior_img for i in range(len(units))]
            if covered is not None and not covered.all():
                warnings.warn(f"the prior covers {100 * float(np.mean(covered)):.0f} % of the grid; the network sees "
                              "zeros as the prior elsewhere", stacklevel=2)
            out, net_info = runner(units, config, priors)
            images = [np.asarray(x, dtype=np.float32) for x in out]
            info.update(net_info)
        it = [] if runner is not None else units if (len(units) == 1 or not show) else tqdm(units, desc="slices",
                                                                                             leave=False)
        for i, u in enumerate(it):
            pr = None if prior_img is None else (prior_img[i] if nd == 2 else prior_img)
            cov = None if covered is None else (covered[i] if nd == 2 else covered)
            x, hist, extra = _reconstruct_unit(u, config, show and len(units) == 1, pr, cov,
                                               None if firsts is None else firsts[i])
            x = np.asarray(x, dtype=np.float32)
            images.append(x if u.crop is None else x[u.crop])
            if hist is not None:
                hists.append(hist)
            if extra.get("change") is not None:
                changes.append(extra["change"])
                changed.append(extra["changed"])
            if extra.get("alpha") is not None:
                alphas.append(extra["alpha"])
            for k, v in extra.get("info", {}).items():
                info.setdefault(k, v)
    image = np.stack(images) if nd == 2 else images[0]
    if units[0].crop is not None:  # the cone mode's volume is larger than the slices asked for
        origin = origin + direction[:, 2] * vs3[0] * units[0].crop.start
        crop = units[0].crop
        prior_img = None if prior_img is None else prior_img[crop]
        changes = [c[crop] for c in changes]
        alphas = [a[crop] for a in alphas]
    info["iterations"] = hists[0].n_iter if hists else 0
    res = CTResult(image, tuple(float(v) for v in vs3), direction, origin, data.mu_water, data.kvp, info, hists, reg,
                   prior_img, np.stack(changes) if changes and nd == 2 else (changes[0] if changes else None),
                   np.stack(alphas) if alphas and nd == 2 else (alphas[0] if alphas else None))
    if changed:
        info["changed_fraction"] = float(np.mean(changed))
    res.elapsed_s = time.perf_counter() - t0
    return res


def _reconstruct_unit(u: _Unit, config: ReconConfig, progress: bool, prior, covered, first):
    """``(image, history or None, extra)`` of one unit by ``config.method``."""
    from ..ops import Projector
    from .change import change_aware_maps, change_map
    from .fbp import fbp
    from .iterative import default_subsets, os_sart, pwls_tv, sirt

    g, p, m = u.geometry, u.sinogram, config.method
    if m in ("fbp", "fdk"):
        if m == "fdk" and not isinstance(g, ConeBeam3D):
            raise ValueError(f"method fdk needs a circular cone-beam geometry (ConeBeam3D), got {type(g).__name__}: "
                             "use fbp (fan/parallel beams, rebinned helical scans) or an iterative method")
        if not isinstance(g, _ANALYTIC):
            raise ValueError(f"method {m} needs a ParallelBeam2D, FanBeam2D or ConeBeam3D geometry, got "
                             f"{type(g).__name__}: use an iterative method (sirt, os-sart, pwls-tv)")
        return fbp(p, g, config.filter, config.cutoff), None, {"info": {"filter": config.filter,
                                                                        "cutoff": config.cutoff}}
    A = Projector(g)
    if m in ("sirt", "os-sart") and u.start is not None and u.weights is not None:
        p = np.where(u.weights > 0, p, np.asarray(A.forward(u.start)))  # no data there: the start's projection
    if m == "sirt":
        x, h = sirt(A, p, config.iters or DEFAULT_ITERS["sirt"], x0=u.start, progress=progress)
        return x, h, {}
    if m == "os-sart":
        n = config.subsets or default_subsets(g.n_views)
        x, h = os_sart(A, p, config.iters or DEFAULT_ITERS["os-sart"], n, x0=u.start, progress=progress)
        return x, h, {"info": {"subsets": n}}
    W = np.ones_like(p) if u.weights is None else u.weights
    x0 = first if first is not None else u.start
    x0 = None if x0 is None else np.maximum(x0, 0.0)
    kw = {"method": config.solver, "x0": x0, "progress": progress}
    if config.solver == "os":
        kw["n_subsets"] = config.subsets
    if m == "piccs":
        kw["beta_scale"] = PICCS_BETA_SCALE
    iters = config.iters or DEFAULT_ITERS[config.solver]
    extra: dict = {}
    if m == "piccs":
        alpha = config.alpha
        if config.change_aware:
            change = change_map(A, p, prior, W)
            alpha, beta_map = change_aware_maps(change, config.alpha)
            alpha = alpha * covered
            kw["beta_map"] = beta_map
            extra["change"], extra["changed"] = change, float(np.mean(beta_map < 1.0))
        elif not covered.all():
            if config.solver != "os":
                raise ValueError("the prior does not cover the whole grid: PICCS with partial coverage needs "
                                 "--solver os (alpha 0 where the prior has no data)")
            alpha = (config.alpha * covered).astype(np.float32)
        extra["alpha"] = alpha if _is_map(alpha) else np.full(g.image_shape, alpha, np.float32)
        kw.update(prior=prior, alpha=alpha)
    x, h = pwls_tv(A, p, W, config.beta, iters, **kw)
    extra["info"] = {"solver": config.solver, "beta": float(h.extra["beta"][0]),
                     **({"subsets": int(h.extra["n_subsets"][0]), "eps": float(h.extra["eps"][0])}
                        if config.solver == "os" else {}),
                     **({"alpha": config.alpha, "change_aware": config.change_aware} if m == "piccs" else {})}
    return x, h, extra


def _is_map(a) -> bool:
    return isinstance(a, np.ndarray) and a.ndim > 0
