"""``recon mri``: reconstruct fastMRI or ISMRMRD raw data files (Cartesian or non-Cartesian).

::

    recon mri INPUT -o OUTPUT [--method zf|sense|cs] [--format h5|nifti|dicom|png] ...
    recon mri --sample cardiac-radial -o out/ --method cs --format png
    recon mri FULLY_SAMPLED.h5 --retrospective-mask random --accel 8 [--center-fraction 0.08] [--seed 0]

The input format is recognised by content (an HDF5 file with ``kspace`` + ``ismrmrd_header`` is
fastMRI, one with ``/dataset/data`` + ``/dataset/xml`` is ISMRMRD), never by the file name.
See docs/mri.md for every option and the models behind the methods.

This module only parses the arguments, builds a ``recon.mri.ReconConfig``, reads the file
(``recon.io.read_raw``), calls the pipeline (``recon.mri.reconstruct``) and writes the outputs
(atomically, never over the input, existing outputs only with ``--overwrite``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from .. import batch

FORMATS = ("h5", "nifti", "dicom", "png")
#: --method when none is given without --dynamic (with it: recon.mri.dynamic's xdgrasp)
STATIC_DEFAULT_METHOD = "sense"
_EXT = {"h5": ".h5", "nifti": ".nii.gz", "dicom": "", "png": ".png"}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..data import SAMPLES

    p = sub.add_parser(
        "mri", help="reconstruct MRI raw data (fastMRI HDF5 or ISMRMRD)",
        description="Reconstruct MRI raw data (fastMRI multicoil/singlecoil HDF5 or ISMRMRD HDF5; "
                    "Cartesian or radial/spiral) by zero-filling, CG-SENSE or compressed sensing. "
                    "See docs/mri.md.")
    p.add_argument("input", nargs="*", help="raw data file (format detected from its content); several files, "
                                            "folders or globs: a batch into the folder -o (docs/batch.md)")
    p.add_argument("-o", "--output", help="output file, or a folder (then named after the input and method)")
    p.add_argument("--sample", choices=sorted(SAMPLES), help="use a bundled data set instead of INPUT (real, or the simulated 4D sample)")
    p.add_argument("--list-samples", action="store_true", help="list the bundled samples and exit")
    p.add_argument("--method", choices=("zf", "sense", "cs", "net", "xdgrasp"), default=None,
                   help="zero-filled, CG-SENSE (default), compressed sensing, or an unrolled network (recon.nets); "
                        "with --dynamic respiratory: xdgrasp (default), sense or zf on the binned data")
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
    net = p.add_argument_group("method net (unrolled networks, docs/nets.md)")
    net.add_argument("--weights", default=None, help="shipped weights name or a .safetensors path "
                     "(default modl-cartesian or modl-radial by the data's trajectory)")
    net.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--prior", default=None,
                   help="a previous, registered image of the same patient on the output grid (reconstruction HDF5, "
                        "NIfTI, DICOM or .npy): an input of prior models (--method net) and the PICCS-like term of "
                        "--dynamic")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never the input)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    from .dynamic.command import add_arguments

    add_arguments(p)
    batch.add_arguments(p)
    p.set_defaults(func=run)
    return p


def config_from_args(args):
    """The ``recon.mri.ReconConfig`` of parsed ``recon mri`` arguments (validated)."""
    from .pipeline import ReconConfig, RetrospectiveMask

    retro = None
    if args.retrospective_mask is not None:
        retro = RetrospectiveMask(args.retrospective_mask, args.accel, args.center_fraction, args.seed)
    return ReconConfig(method=args.method or STATIC_DEFAULT_METHOD, regularizer=args.regularizer,
                       wavelet=args.wavelet, lam=args.lam, iters=args.iters, maps=args.maps,
                       calib_width=args.calib_width, crop=args.crop,
                       virtual_coils=args.virtual_coils, prewhiten=not args.no_prewhiten,
                       density_weights=not args.no_density_weights, nufft_tol=args.nufft_tol, slices=args.slices,
                       retrospective=retro, quiet=args.quiet, weights=args.weights, device=args.device).validate()


# ---- output ---------------------------------------------------------------------------------------


def _stem(src: str) -> str:
    """The input's file name without its raw-data extension (names the outputs in a folder)."""
    stem = os.path.basename(src)
    for suf in (".h5", ".hdf5", ".mrd"):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    return stem


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


def _write(path, fmt, volume, raw, unit_ndim, args, info):
    from .. import io as rio

    if fmt == "h5":
        attrs = {"method": args.method, "recon_version": _version()}
        attrs.update({k: v for k, v in info.items() if isinstance(v, (int, float, str))})
        rio.write_fastmri_reconstruction(path, volume, attrs=attrs)
    elif fmt == "nifti":
        rio.write_nifti(path, volume, raw.voxel_size_mm)
    elif fmt == "dicom":
        rio.write_dicom_series(path, volume, raw.voxel_size_mm, series_description=f"recon mri {args.method}",
                               acquisition_type="2D" if unit_ndim == 2 else "3D")
    elif fmt == "png":
        rio.write_png(path, volume)
    return path


def _version():
    from .. import __version__

    return __version__


# ---- the command --------------------------------------------------------------------------------


def run(args) -> int:
    """``recon mri``: one input here (:func:`run_file`), several through ``recon.batch``."""
    return batch.run_cli(args, BATCH)


def planned_outputs(args) -> tuple[list, list]:
    """(files, folders) that :func:`run_file` writes for ``args`` (one input)."""
    if args.dynamic is not None:
        from .dynamic.command import planned_outputs as dynamic_outputs

        outs = dynamic_outputs(args, _stem(args.input))
        return outs["files"], outs["folders"]
    static = argparse.Namespace(**{**vars(args), "method": args.method or STATIC_DEFAULT_METHOD})
    out_path, fmt, preview = _resolve_output(static, _stem(args.input))
    outs = _planned_outputs(out_path, fmt, preview, args.retrospective_mask is not None)
    return outs["files"], outs["folders"]


def run_file(args) -> dict:
    """One input (or ``--sample``): read, reconstruct, write; returns the output and metrics."""
    from ..data import list_samples, path as sample_path

    if args.list_samples:
        print("\n".join(list_samples()))
        return {}
    if args.sample and args.input:
        raise ValueError("give INPUT or --sample, not both")
    src = sample_path(args.sample) if args.sample else args.input
    if src is None:
        raise ValueError("no input: give a raw data file or --sample NAME (see --list-samples)")
    if args.dynamic is not None:
        from .dynamic.command import run_dynamic

        return run_dynamic(args, src, _stem(src))
    if args.method is None:
        args.method = STATIC_DEFAULT_METHOD
    if args.method == "xdgrasp":
        raise ValueError("--method xdgrasp needs --dynamic respiratory (motion-resolved data)")
    if args.output is None and args.retrospective_mask is None:
        raise ValueError("give -o OUTPUT (a file or a folder)")
    config = config_from_args(args)
    with batch.one_line_warnings(args.quiet):
        return _run_static(args, src, config)


def _run_static(args, src: str, config) -> dict:
    """The static (per slice) reconstruction of :func:`run_file`."""
    from ..io import OutputSet, check_outputs, read_raw, write_png
    from .pipeline import parse_slices, read_prior, reconstruct

    t0 = time.perf_counter()
    raw = read_raw(src)
    parse_slices(config.slices, len(raw.slices))  # a bad --slices fails before anything is written or computed
    out_path, fmt, preview = _resolve_output(args, _stem(src))
    outputs = _planned_outputs(out_path, fmt, preview, args.retrospective_mask is not None)
    check_outputs(outputs["files"], outputs["folders"], inputs=[src] + ([args.prior] if args.prior else []),
                  overwrite=args.overwrite, hint="pass --overwrite to replace it")
    res = reconstruct(raw, config, prior=None if args.prior is None else read_prior(args.prior))
    volume = np.asarray(res.volume, dtype=np.float32)
    elapsed = time.perf_counter() - t0
    if res.metrics is not None:
        m = res.metrics
        print(f"{args.method} ({args.retrospective_mask} mask, {args.accel:g}x): NMSE {m['NMSE']:.4g}  "
              f"PSNR {m['PSNR']:.2f} dB  SSIM {m['SSIM']:.4f}")
    if out_path is not None:
        with OutputSet(overwrite=args.overwrite) as outs:
            tmp = outs.folder(out_path, _DICOM_FILE) if fmt == "dicom" else outs.file(out_path)
            _write(tmp, fmt, volume, raw, len(raw.slices[res.indices[0]].im_shape), args, res.info)
            if preview != out_path:
                write_png(outs.file(preview), volume)
            if res.reference is not None:
                write_png(outs.file(_reference_png(preview)), res.reference)
        if not args.quiet:
            shape = "x".join(map(str, volume.shape[1:]))
            print(f"wrote {out_path} ({volume.shape[0]} slice{'s' * (volume.shape[0] != 1)} of {shape}, "
                  f"{args.method}, {elapsed:.1f} s); preview {preview}")
    return {"method": args.method, "output": out_path or "", "metrics": res.metrics or {}}


#: how ``recon mri`` runs many inputs (``recon.batch``): raw data files by extension in folders and globs
BATCH = batch.CliSpec("mri", run_file, planned_outputs,
                      accept=lambda path: path.lower().endswith((".h5", ".hdf5", ".mrd")), path_options=("prior",),
                      shared_inputs=lambda args: [args.prior] if getattr(args, "prior", None) else [])
