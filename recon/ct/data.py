"""Loaders for the real CT data bundled with recon (``recon/data/ct``; sources and licenses in its
README.md and LICENSE).

* :func:`load_htc2022` - measured X-ray CT of a phantom from the Helsinki Tomography Challenge 2022
  (CC BY 4.0): fan-beam mid-slice, flat detector, limited angle (0-60 deg in 0.5 deg steps).
* :func:`load_pet_transmission` - a real PET transmission scan (CTI ECAT EXACT 921; MIRTdata, MIT):
  blank and transmission counts, parallel beam, 192 angles over 180 deg; low-count Poisson data
  with PWLS weights.

Both return ``(sinogram, geometry[, weights])`` in recon's conventions (:mod:`recon.ct.geometry`):
sinogram ``(angles, bins)`` float32 line integrals, lengths in mm, so reconstructions come out in 1/mm.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .geometry import FanBeam2D, ParallelBeam2D
from .lowdose import DEFAULT_MIN_COUNT

__all__ = ["SAMPLES", "data_dir", "load_sample", "list_samples", "load_htc2022", "load_pet_transmission", "load_pet_transmission_counts",
           "pet_transmission_geometry", "HTC2022_FILE", "PET_BLANK_FILE", "PET_COUNTS_FILE"]

HTC2022_FILE = "htc2022_ta_fanbeam_60deg.mat"
PET_BLANK_FILE = "pet_transmission_blank.mat"
PET_COUNTS_FILE = "pet_transmission_counts.mat"

#: HTC2022 scanner geometry for reference (the loader reads the file's own ``parameters`` struct).
HTC2022_SOURCE_ORIGIN_MM = 410.66
HTC2022_SOURCE_DETECTOR_MM = 553.74
HTC2022_DET_COUNT = 560
HTC2022_DET_SPACING_MM = 0.2
HTC2022_EFFECTIVE_PIXEL_MM = 0.14832232  # det spacing / magnification at the rotation axis

#: PET transmission geometry (CTI ECAT EXACT 921).
PET_BINS = 160
PET_ANGLES = 192
PET_BIN_MM = 3.375
PET_START_DEG = -15.0


def data_dir() -> Path:
    """Directory of the bundled CT data (inside the installed package)."""
    return Path(__file__).resolve().parent.parent / "data" / "ct"


def _loadmat(path: Path):
    import scipy.io

    if not path.is_file():
        raise FileNotFoundError(f"bundled CT data file missing: {path} (reinstall recon)")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as e:  # corrupt or not a MAT file
        raise ValueError(f"cannot read {path.name} as a MATLAB file: {e}") from None


def _scalar(struct, name: str) -> float:
    try:
        return float(np.asarray(struct[name][0, 0]).ravel()[0])
    except Exception:
        raise ValueError(f"HTC2022 file: parameters.{name} missing or not a number") from None


def load_htc2022(image_size: int = 256, voxel_size: float | None = None, path=None):
    """The HTC2022 limited-angle fan-beam sinogram and its geometry.

    Geometry (from the file's ``parameters``; equal to the challenge's own ASTRA ``fanflat``
    set-up in HelTomo): source-origin 410.66 mm, source-detector 553.74 mm (origin-detector
    143.08 mm), 560 bins of 0.2 mm on a flat detector, view angles ``parameters.angles`` (0 to 60
    deg in 0.5 deg steps) used as recon/ASTRA angles in radians without sign change; the
    sinogram's bin order is the detector's ``u`` direction. The default image is 256 x 256 with
    voxel ``0.14832232 * 512 / image_size`` mm (the challenge's 512 x 512 grid at the effective
    pixel size: a 75.9 mm field of view for the 70 mm phantom disk).

    Returns ``(sinogram (121, 560) float32, FanBeam2D)``.
    """
    n = int(image_size)
    if n < 8:
        raise ValueError(f"image_size: expected an integer >= 8, got {image_size!r}")
    vs = HTC2022_EFFECTIVE_PIXEL_MM * 512 / n if voxel_size is None else float(voxel_size)
    if not (math.isfinite(vs) and vs > 0):
        raise ValueError(f"voxel_size: expected a positive number (mm), got {voxel_size!r}")
    p = Path(path) if path is not None else data_dir() / HTC2022_FILE
    mat = _loadmat(p)
    key = next((k for k in ("CtDataLimited", "CtDataFull", "CtData") if k in mat), None)
    if key is None:
        raise ValueError(f"{p.name}: no CtDataLimited/CtDataFull struct")
    st = mat[key][0, 0]
    sino = np.asarray(st["sinogram"], dtype=np.float64)
    par = st["parameters"][0, 0]
    dso = _scalar(par, "distanceSourceOrigin")
    dsd = _scalar(par, "distanceSourceDetector")
    ds = _scalar(par, "pixelSizePost")
    ndet = int(_scalar(par, "numDetectorsPost"))
    angles_deg = np.asarray(par["angles"], dtype=np.float64).ravel()
    if sino.ndim != 2 or sino.shape != (angles_deg.size, ndet):
        raise ValueError(f"{p.name}: sinogram shape {sino.shape} does not match {angles_deg.size} angles x {ndet} bins")
    if not np.all(np.isfinite(sino)):
        raise ValueError(f"{p.name}: sinogram contains NaN or Inf")
    geom = FanBeam2D(np.deg2rad(angles_deg), ndet, ds, dso, dsd - dso, "flat", (n, n), vs)
    return np.ascontiguousarray(sino, dtype=np.float32), geom


def load_pet_transmission_counts(path=None):
    """Raw PET transmission data: ``(blank, counts)``, each ``(192, 160)`` (angles, bins) float64
    counts (the files store ``(bins, angles)``; transposed here)."""
    d = Path(path) if path is not None else data_dir()
    arrs = []
    for name in (PET_BLANK_FILE, PET_COUNTS_FILE):
        m = _loadmat(d / name)
        if "test" not in m:
            raise ValueError(f"{name}: variable 'test' missing")
        a = np.asarray(m["test"], dtype=np.float64)
        if a.shape != (PET_BINS, PET_ANGLES):
            raise ValueError(f"{name}: expected shape ({PET_BINS}, {PET_ANGLES}), got {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"{name}: counts must be finite and non-negative")
        arrs.append(np.ascontiguousarray(a.T))
    blank, counts = arrs
    if np.any(blank <= 0):
        raise ValueError(f"{PET_BLANK_FILE}: blank scan has non-positive entries")
    return blank, counts


def pet_transmission_geometry(image_size: int = 128, voxel_size: float | None = None) -> ParallelBeam2D:
    """Parallel-beam geometry of the ECAT EXACT 921 transmission sinogram: 160 bins of 3.375 mm,
    192 angles ``-15 deg + k * 180/192 deg``; image ``image_size``^2 with voxel
    ``540 / image_size`` mm by default (the 540 mm detector width)."""
    n = int(image_size)
    if n < 8:
        raise ValueError(f"image_size: expected an integer >= 8, got {image_size!r}")
    vs = PET_BINS * PET_BIN_MM / n if voxel_size is None else float(voxel_size)
    if not (math.isfinite(vs) and vs > 0):
        raise ValueError(f"voxel_size: expected a positive number (mm), got {voxel_size!r}")
    angles = np.deg2rad(PET_START_DEG + np.arange(PET_ANGLES) * 180.0 / PET_ANGLES)
    return ParallelBeam2D(angles, PET_BINS, PET_BIN_MM, (n, n), vs)


def load_pet_transmission(image_size: int = 128, voxel_size: float | None = None,
                          min_count: float = DEFAULT_MIN_COUNT, path=None):
    """The real PET transmission scan as ``(sinogram, geometry, weights)``.

    ``sinogram = log(blank / max(counts, min_count))``: line integrals of the 511 keV attenuation
    (unitless), ``(192, 160)`` (angles, bins) float32; ``min_count`` (0.5 counts) clips zero-count
    rays. ``geometry``: :func:`pet_transmission_geometry`. ``weights``: Poisson PWLS weights of the
    post-log data, ``1 / Var(log(blank / counts)) ~ counts`` (no electronic noise; counts clipped at
    ``min_count``), float32. Raw counts: :func:`load_pet_transmission_counts`.
    """
    if not (math.isfinite(min_count) and min_count > 0):
        raise ValueError(f"min_count: expected a positive number, got {min_count!r}")
    geom = pet_transmission_geometry(image_size, voxel_size)
    blank, counts = load_pet_transmission_counts(path)
    c = np.maximum(counts, min_count)
    sino = np.log(blank / c)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return f32(sino), geom, f32(c)


#: short name -> one-line description of the bundled CT samples (``recon ct --sample NAME``)
SAMPLES = {
    "htc2022": "measured fan-beam CT of an acrylic disk with holes, limited angle 0-60 deg, 121 views x 560 bins "
               "(Helsinki Tomography Challenge 2022, CC BY 4.0); 256 x 256 grid, unit weights",
    "pet-transmission": "real PET transmission scan (CTI ECAT EXACT 921, 511 keV), 192 views over 180 deg x 160 "
                        "bins, low-count Poisson data with PWLS weights (MIRTdata, MIT); 128 x 128 grid",
}


def list_samples() -> list[str]:
    """Lines 'name: description' for the bundled CT samples."""
    return [f"{k}: {v}" for k, v in SAMPLES.items()]


def load_sample(name: str):
    """A bundled sample as :class:`recon.ct.CTData` (sinogram, geometry, weights; water value 0.0193/mm
    for HU outputs, which only approximates these data's energies)."""
    from .pipeline import CTData

    if name == "htc2022":
        sino, geom = load_htc2022()
        weights = None
    elif name == "pet-transmission":
        sino, geom, weights = load_pet_transmission()
    else:
        raise ValueError(f"unknown CT sample {name!r}; known: {', '.join(SAMPLES)}")
    return CTData(sinogram=sino, geometry=geom, weights=weights, source=f"sample {name}",
                  info={"format": "sample", "sample": name})
