"""``recon ct``: reconstruct CT raw data (plain sinograms with a geometry file, DICOM-CT-PD projection
series, or a bundled sample).

::

    recon ct SINO.npy --geometry GEOM.json -o out.h5 --method pwls-tv
    recon ct DICOM_CT_PD_FOLDER/ -o series/ --format dicom --method fbp
    recon ct SCAN.npy --geometry GEOM.json --prior PLANNING_CT/ -o out.nii.gz --method piccs
    recon ct --sample htc2022 -o out.png --method pwls-tv

The input format is recognised by content (a folder or a file starting with DICOM's preamble is
DICOM-CT-PD; anything else is a sinogram file read with ``--geometry``). This module only parses the
arguments, builds a ``recon.ct.ReconConfig``, reads the data (``recon.ct.load``) and the prior
(``recon.ct.read_prior``), calls the pipeline (``recon.ct.reconstruct``) and writes the outputs
(atomically, never over an input or into an input folder, existing outputs only with ``--overwrite``).
See docs/ct.md.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from .. import batch

FORMATS = ("h5", "nifti", "dicom", "png")
WINDOWS = ("soft-tissue", "lung", "bone", "auto")
_EXT = {"h5": ".h5", "nifti": ".nii.gz", "png": ".png"}


def add_parser(sub) -> argparse.ArgumentParser:
    from .data import SAMPLES
    from .pipeline import HELICAL, METHODS, REGISTRATIONS, SOLVERS

    p = sub.add_parser(
        "ct", help="reconstruct CT raw data (sinogram files, DICOM-CT-PD)",
        description="Reconstruct CT raw data: plain sinograms (.npy, HDF5/.mat, TIFF) with a geometry file, "
                    "DICOM-CT-PD helical projection series, or a bundled sample; FBP/FDK, SIRT, OS-SART, "
                    "PWLS-TV and PICCS with a registered, change-aware prior image. See docs/ct.md.")
    p.add_argument("input", nargs="*", help="sinogram file or DICOM-CT-PD folder/file (format from the content); "
                                            "several, a folder of them or globs: a batch into the folder -o "
                                            "(docs/batch.md)")
    p.add_argument("-o", "--output", help="output file (.h5, .nii, .nii.gz, .png), a folder for --format dicom, "
                                          "or an existing folder (then named after the input and method)")
    p.add_argument("--sample", choices=sorted(SAMPLES), help="use a bundled real data set instead of INPUT")
    p.add_argument("--list-samples", action="store_true", help="list the bundled samples and exit")
    p.add_argument("--method", choices=METHODS, default="fbp", help="reconstruction method (default fbp)")
    p.add_argument("--geometry", help="geometry file (JSON/YAML) of a plain sinogram file")
    p.add_argument("--blank", help="blank scan I0 of raw counts: a number or an array file (makes the data counts)")
    p.add_argument("--prior", help="prior image for piccs or net: a DICOM CT series (folder or file), NIfTI or .npy")
    p.add_argument("--prior-units", choices=("HU", "mu"), default=None,
                   help="units of the prior (default: HU for DICOM, mu = 1/mm for NIfTI/.npy)")
    p.add_argument("--prior-voxel-size", type=float, nargs="+", default=None,
                   help="voxel size (mm; dy dx or dz dy dx) of a .npy prior")
    p.add_argument("--register", choices=REGISTRATIONS, default="rigid",
                   help="register the prior to a first FBP (default rigid)")
    p.add_argument("--no-change-aware", action="store_true",
                   help="piccs: keep alpha and beta where the data disagree with the prior")
    p.add_argument("--filter", default="hann", help="FBP/FDK filter: ram-lak, shepp-logan, cosine, hann (default)")
    p.add_argument("--cutoff", type=float, default=1.0, help="filter cut-off, fraction of Nyquist (default 1)")
    p.add_argument("--iters", type=int, default=None,
                   help="iterations (defaults: sirt 50, os-sart 10, pwls-tv/piccs 12 with --solver os, 100 others)")
    p.add_argument("--beta", type=float, default=None,
                   help="TV weight of pwls-tv/piccs (default: from the data; piccs 8x pwls-tv's)")
    p.add_argument("--alpha", type=float, default=0.9, help="PICCS prior weight in [0, 1] (default 0.9)")
    p.add_argument("--solver", choices=SOLVERS, default="os",
                   help="pwls-tv/piccs solver: os (ordered subsets + momentum, default), fista, pdhg")
    p.add_argument("--subsets", type=int, default=None, help="ordered subsets (default: about 30 views each)")
    p.add_argument("--image-size", type=int, default=None, help="image grid (pixels per side)")
    p.add_argument("--voxel-size", type=float, default=None, help="pixel size (mm)")
    p.add_argument("--z", default=None, help="helical slice heights, scanner z in mm: Z or START:STOP:STEP (--z=-10:10:1 when negative)")
    p.add_argument("--helical", choices=HELICAL, default="rebin",
                   help="iterative methods on helical scans: per rebinned slice (default) or in the cone geometry")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="output format (default: from the output's extension, else h5)")
    p.add_argument("--window", choices=WINDOWS, default=None,
                   help="PNG window: soft-tissue, lung, bone (HU presets) or auto (percentiles); default "
                        "soft-tissue for DICOM-CT-PD data, auto otherwise")
    net = p.add_argument_group("method net (learned primal-dual, docs/nets.md)")
    net.add_argument("--weights", default=None, help="shipped weights name or a .safetensors path (default lpd-fan)")
    net.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings or summary")
    batch.add_arguments(p)
    p.set_defaults(func=run)
    return p


def config_from_args(args):
    """The ``recon.ct.ReconConfig`` of parsed ``recon ct`` arguments (validated)."""
    from .pipeline import ReconConfig

    return ReconConfig(method=args.method, filter=args.filter.lower(), cutoff=args.cutoff, iters=args.iters,
                       beta=args.beta, alpha=args.alpha, change_aware=not args.no_change_aware,
                       register=args.register, solver=args.solver, subsets=args.subsets,
                       image_size=args.image_size, voxel_size=args.voxel_size, z=args.z, helical=args.helical,
                       quiet=args.quiet, weights=args.weights, device=args.device).validate()


# ---- output ----------------------------------------------------------------------------------------

def _format_of(name: str):
    low = name.lower()
    return ("h5" if low.endswith((".h5", ".hdf5")) else "nifti" if low.endswith((".nii", ".nii.gz"))
            else "png" if low.endswith(".png") else None)


def _preview_of(path: str, fmt: str) -> str:
    """The PNG preview written beside an output (the output itself for png)."""
    if fmt == "png":
        return path
    base = path.rstrip("/" + os.sep)
    if fmt == "nifti" and base.lower().endswith(".nii.gz"):
        base = base[: -len(".nii.gz")]
    elif fmt != "dicom":
        base = os.path.splitext(base)[0]
    return base + ".png"


def output_paths(output: str, fmt: str | None, stem: str, method: str):
    """``(path, format, preview png)``: a file name gives the format by its extension (``--format`` must
    agree); ``--format dicom`` writes a series folder; an existing folder (or a name ending in ``/``)
    receives ``<stem>_<method>.<ext>`` (DICOM: a sub-folder of that name)."""
    if output.endswith(("/", os.sep)) or os.path.isdir(output):
        if fmt == "dicom" and not output.endswith(("/", os.sep)) and _is_series(output):
            return output, fmt, _preview_of(output, fmt)  # a series written before: replaced with --overwrite
        name = f"{stem}_{method}"
        fmt = fmt or "h5"
        path = os.path.join(output, name + _EXT.get(fmt, ""))
        return path, fmt, _preview_of(path, fmt)
    ext = _format_of(output)
    if fmt == "dicom":
        if ext is not None:
            raise ValueError(f"--format dicom writes a folder of files; got the file name {output!r}")
        return output, fmt, _preview_of(output, fmt)
    if ext is None:
        raise ValueError(f"--output {output!r}: unknown extension; use .h5, .nii, .nii.gz, .png, a folder, or "
                         "--format dicom")
    if fmt is not None and fmt != ext:
        raise ValueError(f"--format {fmt} does not match the output name {output!r}")
    return output, ext, _preview_of(output, ext)


def _is_series(folder: str) -> bool:
    names = os.listdir(folder)
    return bool(names) and all(n.endswith(".dcm") for n in names)


def _inputs(args) -> tuple[list[str], list[str]]:
    """(input files, input folders) of a run."""
    files, folders = [], []
    for p in (args.input, args.geometry, args.prior,
              args.blank if args.blank is not None and os.path.exists(args.blank) else None):
        if p is None:
            continue
        if os.path.isdir(p):
            folders.append(p)
            files += [os.path.join(p, n) for n in sorted(os.listdir(p))]
        else:
            files.append(p)
    return files, folders


def _check_not_inside(outputs, folders):
    for out in outputs:
        for f in folders:
            real = os.path.realpath(f)
            if os.path.commonpath([os.path.realpath(out), real]) == real:
                raise ValueError(f"{out}: inside the input folder {f}; recon writes no outputs into its inputs "
                                 "(choose another output)")


def write_h5(path, res, attrs: dict) -> str:
    """The reconstruction as HDF5: dataset ``reconstruction`` ``(z, y, x)`` float32 in 1/mm with the
    method's parameters as attributes (and ``voxel_size_mm``, ``origin_lps_mm``, ``direction``);
    PICCS adds ``prior_registered`` (1/mm), ``change_map`` (noise units) and ``alpha``."""
    from ..io.hdf5 import write_hdf5

    def fill(hf):
        ds = hf.create_dataset("reconstruction", data=np.asarray(res.image, dtype=np.float32))
        for k, v in attrs.items():
            ds.attrs[k] = v
        ds.attrs["voxel_size_mm"] = np.asarray(res.voxel_size, dtype=np.float64)
        ds.attrs["origin_lps_mm"] = np.asarray(res.origin, dtype=np.float64)
        ds.attrs["direction"] = np.asarray(res.direction, dtype=np.float64)
        for name, arr in (("prior_registered", res.prior), ("change_map", res.change), ("alpha", res.alpha)):
            if arr is not None:
                hf.create_dataset(name, data=np.asarray(arr, dtype=np.float32))

    return write_hdf5(path, fill)


def write_preview(path, res, window: str) -> str:
    """A PNG of the reconstruction (a montage of its slices) in a window preset (HU) or ``auto``."""
    from ..io import CT_WINDOWS, write_png
    from .prior import mu_to_hu

    if window == "auto":
        return write_png(path, res.image)
    c, w = CT_WINDOWS[window]
    return write_png(path, mu_to_hu(res.image, res.mu_water), vmin=c - w / 2, vmax=c + w / 2)


def _attrs(res) -> dict:
    from .. import __version__

    out = {"recon_version": __version__}
    out.update({k: v for k, v in res.info.items() if isinstance(v, (bool, int, float, str))})
    return out


def _write(path, fmt, res, args):
    from ..io import write_ct_series, write_nifti
    from .prior import mu_to_hu

    if fmt == "h5":
        write_h5(path, res, _attrs(res))
    elif fmt == "nifti":
        write_nifti(path, res.image, res.voxel_size, direction=res.direction, origin_mm=res.origin)
    elif fmt == "dicom":
        write_ct_series(path, mu_to_hu(res.image, res.mu_water), res.voxel_size, direction=res.direction,
                        origin_mm=res.origin, kvp=res.kvp, series_description=f"recon ct {args.method}")


# ---- the command --------------------------------------------------------------------------------

def run(args) -> int:
    """``recon ct``: one input here (:func:`run_file`), several through ``recon.batch``."""
    return batch.run_cli(args, BATCH)


def run_file(args) -> dict:
    """One input (or ``--sample``): read, reconstruct, write; returns the output."""
    from .data import list_samples

    if args.list_samples:
        print("\n".join(list_samples()))
        return {}
    if args.sample and args.input:
        raise ValueError("give INPUT or --sample, not both")
    if args.input is None and args.sample is None:
        raise ValueError("no input: give a sinogram file or DICOM-CT-PD folder, or --sample NAME (see --list-samples)")
    if args.output is None:
        raise ValueError("give -o OUTPUT (a file, or a folder)")
    config = config_from_args(args)
    if config.method == "piccs" and args.prior is None:
        raise ValueError("--method piccs needs --prior PRIOR")
    if args.prior is not None and config.method not in ("piccs", "net"):
        raise ValueError(f"--prior is used by --method piccs and net, not {config.method}")
    with batch.one_line_warnings(args.quiet):
        return _run(args, config)


def _stem(args) -> str:
    stem = args.sample or os.path.basename(os.path.normpath(args.input))
    for suf in (".npy", ".h5", ".hdf5", ".mat", ".tif", ".tiff", ".dcm"):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    return stem


def planned_outputs(args) -> tuple[list, list]:
    """(files, folders) that :func:`run_file` writes for ``args`` (one input)."""
    out_path, fmt, preview = output_paths(args.output, args.format, _stem(args), args.method)
    return list(dict.fromkeys([preview] + ([] if fmt == "dicom" else [out_path]))), ([out_path] if fmt == "dicom" else [])


def _run(args, config) -> dict:
    from ..io import OutputSet, check_outputs
    from .pipeline import load, reconstruct
    from .prior import read_prior

    t0 = time.perf_counter()
    blank = args.blank
    if blank is not None and not os.path.exists(blank):
        try:
            blank = float(blank)
        except ValueError:
            raise ValueError(f"--blank {blank!r}: neither a number nor an existing file") from None
    data = load(args.input, geometry=args.geometry, blank=blank, sample=args.sample)
    out_path, fmt, preview = output_paths(args.output, args.format, _stem(args), config.method)
    files, folders = _inputs(args)
    planned = [preview] if preview != out_path else []
    check_outputs(planned + ([] if fmt == "dicom" else [out_path]), [out_path] if fmt == "dicom" else [],
                  inputs=files, overwrite=args.overwrite, hint="pass --overwrite to replace it")
    _check_not_inside(planned + [out_path], folders)
    prior = None
    if args.prior is not None:
        units = {"HU": "HU", "mu": "1/mm", None: None}[args.prior_units]
        prior = read_prior(args.prior, units=units, mu_water=data.mu_water, voxel_size=args.prior_voxel_size)
    res = reconstruct(data, config, prior=prior)
    window = args.window or ("soft-tissue" if data.info.get("format") == "DICOM-CT-PD" else "auto")
    parent = os.path.dirname(os.path.abspath(out_path.rstrip("/" + os.sep)))
    os.makedirs(parent, exist_ok=True)
    with OutputSet(overwrite=args.overwrite) as outs:
        tmp = outs.folder(out_path, lambda n: n.endswith(".dcm")) if fmt == "dicom" else outs.file(out_path)
        if fmt == "png":
            write_preview(tmp, res, window)
        else:
            _write(tmp, fmt, res, args)
            write_preview(outs.file(preview), res, window)
    if not args.quiet:
        if res.registration is not None:
            print(f"prior: {res.registration.summary()}")
        img = res.image
        extra = ", ".join(f"{k} {res.info[k]:.4g}" if isinstance(res.info[k], float) else f"{k} {res.info[k]}"
                          for k in ("iterations", "beta", "subsets", "changed_fraction") if k in res.info
                          and res.info[k] not in (0, None))
        print(f"wrote {out_path} ({img.shape[0]} slice{'s' * (img.shape[0] != 1)} of {img.shape[1]}x{img.shape[2]} at "
              f"{res.voxel_size[2]:.3g} mm, {config.method}{', ' + extra if extra else ''}, "
              f"{time.perf_counter() - t0:.1f} s); preview {preview}")
    return {"method": config.method, "output": out_path}


def _is_scan_folder(path: str) -> bool:
    """A folder that is one input: a DICOM-CT-PD series (.dcm files, or DICOM by content)."""
    names = [n for n in sorted(os.listdir(path)) if not n.startswith(".")]
    files = [n for n in names if os.path.isfile(os.path.join(path, n))]
    if any(n.lower().endswith(".dcm") for n in files):
        return True
    from ..io.dicom import is_dicom

    return bool(files) and is_dicom(os.path.join(path, files[0]))


#: how ``recon ct`` runs many inputs (``recon.batch``): sinogram files and DICOM-CT-PD files by name in
#: folders and globs, DICOM-CT-PD series folders as one input each; --geometry and --prior shared by all
BATCH = batch.CliSpec("ct", run_file, planned_outputs,
                      accept=lambda path: path.lower().endswith((".npy", ".h5", ".hdf5", ".mat", ".tif", ".tiff",
                                                                 ".dcm")),
                      is_unit=_is_scan_folder, path_options=("geometry", "prior", "blank"),
                      shared_inputs=lambda args: [p for p in (args.geometry, args.prior) if p is not None])
