"""``recon mri``: reconstruct fastMRI or ISMRMRD raw data files (Cartesian or non-Cartesian).

::

    recon mri INPUT -o OUTPUT [--method zf|sense|cs] [--format h5|nifti|dicom|png] ...
    recon mri --sample cardiac-radial -o out/ --method cs --format png
    recon mri FULLY_SAMPLED.h5 --retrospective-mask random --accel 8 [--center-fraction 0.08] [--seed 0]

The input format is recognised by content (an HDF5 file with ``kspace`` + ``ismrmrd_header`` is
fastMRI, one with ``/dataset/data`` + ``/dataset/xml`` is ISMRMRD), never by the file name.
See docs/mri.md for every option and the models behind the methods.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

FORMATS = ("h5", "nifti", "dicom", "png")
_EXT = {"h5": ".h5", "nifti": ".nii.gz", "dicom": "", "png": ".png"}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..data import SAMPLES

    p = sub.add_parser(
        "mri", help="reconstruct MRI raw data (fastMRI HDF5 or ISMRMRD)",
        description="Reconstruct MRI raw data (fastMRI multicoil/singlecoil HDF5 or ISMRMRD HDF5; "
                    "Cartesian or radial/spiral) by zero-filling, CG-SENSE or compressed sensing. "
                    "See docs/mri.md.")
    p.add_argument("input", nargs="?", help="raw data file (format detected from its content)")
    p.add_argument("-o", "--output", help="output file, or a folder (then named after the input and method)")
    p.add_argument("--sample", choices=sorted(SAMPLES), help="use a bundled real data set instead of INPUT")
    p.add_argument("--list-samples", action="store_true", help="list the bundled samples and exit")
    p.add_argument("--method", choices=("zf", "sense", "cs"), default="sense",
                   help="zero-filled, CG-SENSE (default), or compressed sensing")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="output format (default: from the output's extension, else h5)")
    p.add_argument("--regularizer", choices=("wavelet", "tv"), default="wavelet", help="CS regulariser (default wavelet)")
    p.add_argument("--wavelet", default="haar", help="orthogonal wavelet of the CS regulariser, a PyWavelets name (default haar)")
    p.add_argument("--lam", type=float, default=None,
                   help="regularisation weight, relative (defaults: sense 1e-3, wavelet 3e-3, tv 2e-3)")
    p.add_argument("--iters", type=int, default=None, help="iterations (defaults: sense 30, wavelet 60, tv 150)")
    p.add_argument("--maps", choices=("espirit", "lowres", "walsh"), default="espirit",
                   help="coil sensitivity estimation (default espirit)")
    p.add_argument("--calib-width", type=int, default=None,
                   help="calibration region width (Cartesian default 24; radial default ~2*spokes/pi)")
    p.add_argument("--crop", type=float, default=None,
                   help="ESPIRiT eigenvalue threshold (default 0.95 Cartesian, 0.8 non-Cartesian)")
    p.add_argument("--virtual-coils", type=int, default=None, help="SVD coil compression to this many coils")
    p.add_argument("--slices", default=None, help="slice indices to reconstruct, e.g. '3' or '0:4' (default all)")
    p.add_argument("--no-prewhiten", action="store_true", help="ignore noise scans (ISMRMRD)")
    p.add_argument("--no-density-weights", action="store_true",
                   help="non-Cartesian: plain instead of density-weighted least squares")
    p.add_argument("--nufft-tol", type=float, default=1e-4, help="NUFFT accuracy (default 1e-4)")
    p.add_argument("--retrospective-mask", choices=("random", "equispaced", "equispaced_fraction"), default=None,
                   help="undersample a fully sampled Cartesian file and report NMSE/PSNR/SSIM against it")
    p.add_argument("--accel", type=float, default=4.0, help="acceleration of --retrospective-mask (default 4)")
    p.add_argument("--center-fraction", type=float, default=None,
                   help="fully sampled centre fraction (default 0.08 for 4x, 0.04 for 8x: 0.32/accel)")
    p.add_argument("--seed", type=int, default=0, help="seed of the retrospective mask (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never the input)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=run)
    return p


# ---- reading ------------------------------------------------------------------------------------


@dataclass
class RawSlice:
    kspace: np.ndarray            # (c, *im_shape) Cartesian or (c, *sample_shape) non-Cartesian
    coord: np.ndarray | None      # (*sample_shape, d) cycles/FOV, or None
    im_shape: tuple


@dataclass
class RawData:
    kind: str                     # 'fastmri' | 'ismrmrd'
    slices: list
    crop: tuple | None            # in-plane (y, x) crop of the images (readout oversampling), or None
    voxel_mm: tuple               # (dz, dy, dx)
    noise: np.ndarray | None = None
    noise_scale: float = 1.0
    reference: np.ndarray | None = None
    geometry: dict = field(default_factory=dict)

    @property
    def cartesian(self) -> bool:
        return self.slices[0].coord is None


def detect_format(path: str) -> str:
    """'fastmri' or 'ismrmrd' from the file's content; ValueError otherwise (one line)."""
    from ..io.files import check_input_file
    from ..io.hdf5 import member, open_h5

    path = check_input_file(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head != b"\x89HDF\r\n\x1a\n":
        raise ValueError(f"{path}: not an HDF5 file (expected fastMRI or ISMRMRD HDF5 raw data)")
    with open_h5(path, ValueError) as hf:
        try:
            keys = set(hf.keys())
            if "kspace" in keys:
                return "fastmri"
            for k in ["dataset"] + sorted(keys - {"dataset"}):  # ISMRMRD files may name their group differently
                g = member(hf, k, ValueError, path) if k in keys else None
                if hasattr(g, "keys") and "data" in g and ("xml" in g or k == "dataset"):
                    return "ismrmrd"
        except (OSError, RuntimeError, KeyError) as exc:
            raise ValueError(f"{path}: not a readable HDF5 file (truncated or corrupt?): "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    raise ValueError(f"{path}: HDF5 file is neither fastMRI (no 'kspace') nor ISMRMRD (no '/dataset/data'); "
                     f"has {sorted(keys)}")


def _check_kspace_values(k, path):
    if not np.isfinite(k).all():
        raise ValueError(f"{path}: k-space contains NaN or Inf")
    if not np.any(k):
        raise ValueError(f"{path}: k-space is all zero")


def read_fastmri_raw(path) -> RawData:
    from fastmri_data import read_fastmri

    vol = read_fastmri(path)
    k = vol.kspace
    if k.ndim == 3:  # singlecoil
        k = k[:, None]
    _check_kspace_values(k, path)
    h, w = k.shape[-2:]
    rx, ry, _ = vol.header.recon_matrix
    crop = (min(rx, h), min(ry, w)) if (rx < h or ry < w) and rx > 0 and ry > 0 else None
    ex, ey, ez = vol.header.encoded_fov_mm
    dy, dx = ex / h, ey / w  # image (H, W): H along ISMRMRD x (readout)
    slices = [RawSlice(np.ascontiguousarray(k[s]), None, (h, w)) for s in range(k.shape[0])]
    ref = vol.target if vol.target is not None else None
    return RawData("fastmri", slices, crop, (float(ez) if ez > 0 else 1.0, dy, dx), reference=ref)


def read_ismrmrd_raw(path) -> RawData:
    from ..io import read_ismrmrd

    d = read_ismrmrd(path)
    slices = []
    vz, vy, vx = d.voxel_size_mm
    if d.is_cartesian:
        for s in range(d.num_slices):
            k = d.slice_kspace(s)  # (coil, kz, ky, kx)
            if k.shape[1] == 1:
                k = k[:, 0]
            _check_kspace_values(k, path)
            slices.append(RawSlice(np.ascontiguousarray(k), None, tuple(k.shape[1:])))
    else:
        im_shape = tuple(d.image_shape)
        for s in range(d.num_slices):
            smp, traj = d.slice_samples(s)
            if smp.shape[1] == 0:
                continue
            _check_kspace_values(smp, path)
            traj = np.asarray(traj, dtype=np.float32)
            half = np.asarray(im_shape, dtype=np.float32) / 2
            if traj.shape[-1] != len(im_shape):
                raise ValueError(f"{path}: {traj.shape[-1]}-D trajectory for a {len(im_shape)}-D matrix {im_shape}")
            if (np.abs(traj) > half * 1.001).any():
                raise ValueError(f"{path}: trajectory exceeds the encoded matrix (|k| > N/2 cycles/FOV)")
            slices.append(RawSlice(smp, np.clip(traj, -half, half), im_shape))
    if not slices:
        raise ValueError(f"{path}: no imaging data")
    ex, ey, ez = d.header.encoded_matrix
    rx, ry, rz = d.header.recon_matrix
    ish = slices[0].im_shape
    crop = None
    if 0 < rx < ish[-1] or 0 < ry < ish[-2]:
        crop = (min(ry, ish[-2]) if ry > 0 else ish[-2], min(rx, ish[-1]) if rx > 0 else ish[-1])
    scale = 1.0
    if d.noise is not None and d.noise_dwell_time_us and d.dwell_time_us:
        scale = float(d.noise_dwell_time_us) / float(d.dwell_time_us)
    return RawData("ismrmrd", slices, crop, (vz, vy, vx), noise=d.noise, noise_scale=scale,
                   geometry=d.slice_geometry)


def read_raw(path) -> RawData:
    kind = detect_format(path)
    return read_fastmri_raw(path) if kind == "fastmri" else read_ismrmrd_raw(path)


# ---- helpers ------------------------------------------------------------------------------------


def _parse_slices(spec, n):
    if spec is None:
        return list(range(n))
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            idx = list(range(n))[slice(int(a) if a else None, int(b) if b else None)]
        else:
            idx = [int(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"--slices: expected 'i', 'i,j' or 'a:b', got {spec!r}") from None
    for i in idx:
        if not -n <= i < n:
            raise ValueError(f"--slices: index {i} out of range for {n} slices")
    if not idx:
        raise ValueError(f"--slices {spec!r} selects no slice")
    return [i % n for i in idx]


def _centre_crop(img, crop):
    if crop is None:
        return img
    sl = tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(img.shape[-2:], crop))
    return img[(Ellipsis,) + sl]


def _default_calib_width(sl: RawSlice) -> int:
    if sl.coord is None:
        return 24
    # Nyquist-sampled centre of a radial/spiral acquisition: readouts through the centre, pi*r spacing
    n_readouts = int(np.prod(sl.kspace.shape[1:-1])) if sl.kspace.ndim > 2 else 1
    w = int(round(n_readouts / np.pi)) * 2  # Nyquist radius n/pi, in whole cycles/FOV
    return int(min(max(w, 8), 32, min(sl.im_shape)))


def _resolve_output(args, stem):
    """(path, format, preview_png_path) for the reconstruction output.

    A folder (existing, ending in '/', or a name without extension) receives
    ``<input stem>_<method>.<ext>`` (DICOM: a sub-folder of that name); a file name picks the format
    from its extension unless --format says otherwise (they must agree). DICOM output to a name
    without extension writes the series into that folder."""
    out, fmt = args.output, args.format
    if out is None:
        return None, None, None
    low = out.lower()
    ext_fmt = ("h5" if low.endswith((".h5", ".hdf5")) else "nifti" if low.endswith((".nii", ".nii.gz"))
               else "png" if low.endswith(".png") else None)
    folder = out.endswith(("/", os.sep)) or os.path.isdir(out) or (ext_fmt is None and not os.path.splitext(out)[1])
    series = (fmt == "dicom" and not out.endswith(("/", os.sep))
              and (not os.path.isdir(out) or _is_dicom_series(out)))  # a new folder, or a series written before
    if folder and not series:
        fmt = fmt or "h5"
        os.makedirs(out, exist_ok=True)
        base = os.path.join(out, f"{stem}_{args.method}")
        path = base + _EXT[fmt]
        return path, fmt, (path if fmt == "png" else base + ".png")
    if fmt == "dicom":
        if ext_fmt is not None:
            raise ValueError(f"--format dicom writes a folder; got the file name {out!r}")
        return out, fmt, out.rstrip("/" + os.sep) + ".png"
    if ext_fmt is None:
        raise ValueError(f"--output {out!r}: unknown extension; use .h5, .nii, .nii.gz, .png or a folder")
    if fmt is not None and fmt != ext_fmt:
        raise ValueError(f"--format {fmt} does not match the output name {out!r}")
    fmt = ext_fmt
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if fmt == "png":
        return out, fmt, out
    base = out[: -len(".nii.gz")] if low.endswith(".nii.gz") else os.path.splitext(out)[0]
    return out, fmt, base + ".png"


def _DICOM_FILE(name: str) -> bool:
    return name.endswith(".dcm")


def _is_dicom_series(folder: str) -> bool:
    names = os.listdir(folder)
    return bool(names) and all(_DICOM_FILE(n) for n in names)


def _reference_png(preview: str) -> str:
    return preview[: -len(".png")] + "_reference.png"


def _planned_outputs(out_path, fmt, preview, has_reference) -> dict:
    """Every file and folder a run will write: {'files': [...], 'folders': [...]}."""
    if out_path is None:
        return {"files": [], "folders": []}
    files = [preview] + ([_reference_png(preview)] if has_reference else [])
    if fmt == "dicom":
        return {"files": files, "folders": [out_path]}
    return {"files": list(dict.fromkeys([out_path] + files)), "folders": []}


def _write(path, fmt, volume, raw: RawData, args, info):
    from .. import io as rio

    if fmt == "h5":
        attrs = {"method": args.method, "recon_version": _version()}
        attrs.update({k: v for k, v in info.items() if isinstance(v, (int, float, str))})
        rio.write_fastmri_reconstruction(path, volume, attrs=attrs)
    elif fmt == "nifti":
        rio.write_nifti(path, volume, raw.voxel_mm)
    elif fmt == "dicom":
        rio.write_dicom_series(path, volume, raw.voxel_mm, series_description=f"recon mri {args.method}",
                               acquisition_type="2D" if volume.ndim == 3 and len(raw.slices[0].im_shape) == 2 else "3D")
    elif fmt == "png":
        rio.write_png(path, volume)
    return path


def _version():
    from .. import __version__

    return __version__


def _progress(args):
    return (not args.quiet) and bool(getattr(sys.stderr, "isatty", lambda: False)())


# ---- the command --------------------------------------------------------------------------------


def reconstruct_slice(sl: RawSlice, args, noise=None, noise_scale=1.0, mask=None):
    """One slice: prewhiten, compress, estimate maps, reconstruct. Returns a :class:`recon.mri.recon.Recon`."""
    from . import coils, noise as noise_mod
    from .recon import reconstruct

    k = sl.kspace
    if noise is not None and not args.no_prewhiten:
        k, _ = noise_mod.prewhiten(k, noise, scale=noise_scale)
    if args.virtual_coils is not None:
        if not 1 <= args.virtual_coils:
            raise ValueError(f"--virtual-coils must be >= 1, got {args.virtual_coils}")
        if args.virtual_coils < k.shape[0]:
            k, _, _ = coils.coil_compress(k, args.virtual_coils)
    cw = args.calib_width or _default_calib_width(sl)
    extra = {"wave": args.wavelet} if args.method == "cs" and args.regularizer == "wavelet" else {}
    return reconstruct(k, args.method, coord=sl.coord, im_shape=sl.im_shape, mask=mask, map_method=args.maps,
                       calib_width=cw, crop=args.crop, regularizer=args.regularizer, lam=args.lam, max_iter=args.iters,
                       density_weights=not args.no_density_weights, nufft_tol=args.nufft_tol,
                       progress=False if args.quiet else None, **extra)


def run(args) -> int:
    import warnings

    from ..data import list_samples, path as sample_path

    if args.list_samples:
        print("\n".join(list_samples()))
        return 0
    if args.sample and args.input:
        raise ValueError("give INPUT or --sample, not both")
    src = sample_path(args.sample) if args.sample else args.input
    if src is None:
        raise ValueError("no input: give a raw data file or --sample NAME (see --list-samples)")
    if args.output is None and args.retrospective_mask is None:
        raise ValueError("give -o OUTPUT (a file or a folder)")
    if args.iters is not None and args.iters < 1:
        raise ValueError(f"--iters must be >= 1, got {args.iters}")
    if args.lam is not None and not args.lam >= 0:
        raise ValueError(f"--lam must be >= 0, got {args.lam}")

    def _warn(message, category, filename, lineno, file=None, line=None):
        if not args.quiet:
            print(f"recon: warning: {str(message).splitlines()[0]}", file=sys.stderr)

    warnings.showwarning = _warn
    t0 = time.perf_counter()
    raw = read_raw(src)
    idx = _parse_slices(args.slices, len(raw.slices))
    stem = os.path.basename(src)
    for suf in (".h5", ".hdf5", ".mrd"):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    out_path, fmt, preview = _resolve_output(args, stem)
    outputs = _planned_outputs(out_path, fmt, preview, args.retrospective_mask is not None)
    from ..io.files import check_outputs

    check_outputs(outputs["files"], outputs["folders"], inputs=[src], overwrite=args.overwrite,
                  hint="pass --overwrite to replace it")

    # retrospective undersampling
    masks = [None] * len(raw.slices)
    reference = None
    if args.retrospective_mask is not None:
        reference, masks = _retrospective(raw, idx, args)

    from tqdm.auto import tqdm

    results = []
    it = idx if (len(idx) == 1 or not _progress(args)) else tqdm(idx, desc="slices", leave=False)
    for i in it:
        sl = raw.slices[i]
        if masks[i] is not None:
            sl = RawSlice((sl.kspace * masks[i]).astype(np.complex64), None, sl.im_shape)
        results.append(reconstruct_slice(sl, args, raw.noise, raw.noise_scale, masks[i] if masks[i] is not None else None))
    mags = [_centre_crop(np.abs(r.image).astype(np.float32), raw.crop) for r in results]
    volume = np.concatenate([m if m.ndim == 3 else m[None] for m in mags], axis=0)
    info = dict(results[0].info)
    if results[0].history is not None:
        info["iterations"] = results[0].history.n_iter
    elapsed = time.perf_counter() - t0

    metrics = None
    if reference is not None:
        from fastmri_data.metrics import nmse, psnr, ssim

        metrics = {"NMSE": nmse(reference, volume), "PSNR": psnr(reference, volume), "SSIM": ssim(reference, volume)}
        print(f"{args.method} ({args.retrospective_mask} mask, {args.accel:g}x): NMSE {metrics['NMSE']:.4g}  "
              f"PSNR {metrics['PSNR']:.2f} dB  SSIM {metrics['SSIM']:.4f}")
        info.update({k.lower(): float(v) for k, v in metrics.items()})
    if out_path is not None:
        from ..io import OutputSet, write_png

        with OutputSet(overwrite=args.overwrite) as outs:
            tmp = outs.folder(out_path, _DICOM_FILE) if fmt == "dicom" else outs.file(out_path)
            _write(tmp, fmt, volume, raw, args, info)
            if preview != out_path:
                write_png(outs.file(preview), volume)
            if reference is not None:
                write_png(outs.file(_reference_png(preview)), reference)
        if not args.quiet:
            shape = "x".join(map(str, volume.shape[1:]))
            print(f"wrote {out_path} ({volume.shape[0]} slice{'s' * (volume.shape[0] != 1)} of {shape}, "
                  f"{args.method}, {elapsed:.1f} s); preview {preview}")
    return 0


def _retrospective(raw: RawData, idx, args):
    """(reference volume (slices, h, w), per-slice masks) for --retrospective-mask."""
    from fastmri_data.masks import create_mask_for_mask_type

    if not raw.cartesian:
        raise ValueError("--retrospective-mask needs Cartesian data (this file is non-Cartesian)")
    if not args.accel >= 1:
        raise ValueError(f"--accel must be >= 1, got {args.accel}")
    cf = args.center_fraction if args.center_fraction is not None else min(0.32 / args.accel, 1.0)
    if not 0 < cf <= 1:
        raise ValueError(f"--center-fraction must lie in (0, 1], got {cf}")
    refs, masks = [], [None] * len(raw.slices)
    for i in idx:
        k = raw.slices[i].kspace
        if k.ndim != 3:
            raise ValueError("--retrospective-mask supports 2D slices (coil, ky, kx) only")
        sampled = np.mean(np.any(k != 0, axis=0))
        if sampled < 0.8:
            raise ValueError(f"--retrospective-mask needs fully sampled data; only {100 * sampled:.1f} % of this "
                             "file's k-space is non-zero (it is already undersampled)")
        mf = create_mask_for_mask_type(args.retrospective_mask, [cf], [args.accel], seed=args.seed)
        m, _ = mf(k.shape, seed=args.seed + i)  # (1, 1, W): phase encode last
        masks[i] = np.broadcast_to(m[0], k.shape[1:]).astype(np.float32)
        from .recon import zero_filled

        refs.append(_centre_crop(np.abs(zero_filled(k).image), raw.crop))
    return np.stack(refs).astype(np.float32), masks
