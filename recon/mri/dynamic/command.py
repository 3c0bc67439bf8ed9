"""``recon mri FILE --dynamic respiratory ...``: the dynamic branch of ``recon mri`` (recon/mri/cli.py
parses the options and calls :func:`run_dynamic`).

It builds a :class:`~recon.mri.dynamic.pipeline.DynamicConfig`, reads the file, runs
:func:`~recon.mri.dynamic.pipeline.reconstruct_dynamic` and writes, all or nothing (one
``recon.io.OutputSet``): the reconstruction (``--format`` h5: ``reconstruction (bins, z, y, x)`` with the
respiratory signal, bins and ranges; nifti: 4D NIfTI; dicom: one series with temporal positions; png:
the strip), plus ``<name>.gif`` (the bins as an animation), ``<name>_strip.png`` and
``<name>_signal.png`` (the signal with the bin of every angle). Output names: a folder receives
``<input stem>_<method>_4d.<ext>``.
"""

from __future__ import annotations

import argparse
import sys
import time

#: static-only options that make no sense with --dynamic (attribute, option)
_STATIC_ONLY = (("lam", "--lam"), ("slices", "--slices"), ("retrospective_mask", "--retrospective-mask"),
                ("weights", "--weights"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--dynamic`` options of ``recon mri`` (defaults: see DynamicConfig)."""
    from . import binning, pipeline, xdgrasp

    g = p.add_argument_group("motion-resolved (4D) reconstruction (docs/dynamic.md)")
    g.add_argument("--dynamic", choices=pipeline.MODES, default=None,
                   help="respiratory: bin free-breathing golden-angle data into motion states and reconstruct them")
    g.add_argument("--bins", type=int, default=6, help="number of respiratory motion states (default 6)")
    g.add_argument("--gating", choices=binning.METHODS, default="amplitude", help="binning by amplitude (default) or phase")
    g.add_argument("--bin-edges", choices=binning.EDGES, default="equal-count",
                   help="equally filled bins (default) or equal steps of amplitude/phase")
    g.add_argument("--no-reject", action="store_true", help="keep outlier breaths (deep breaths, coughs) in the bins")
    g.add_argument("--outlier-threshold", type=float, default=3.0,
                   help="robust standard deviations above the median breath peak that make a breath an outlier (default 3)")
    g.add_argument("--signal", choices=pipeline.SIGNALS, default="self",
                   help="respiratory signal: self-gating from the data (default) or the file's bellows")
    g.add_argument("--lam-t", type=float, default=xdgrasp.DEFAULT_LAM_T,
                   help=f"XD-GRASP temporal weight, relative (default {xdgrasp.DEFAULT_LAM_T})")
    g.add_argument("--lam-s", type=float, default=xdgrasp.DEFAULT_LAM_S,
                   help=f"XD-GRASP spatial TV weight, relative (default {xdgrasp.DEFAULT_LAM_S})")
    g.add_argument("--solver", choices=xdgrasp.SOLVERS, default="admm", help="XD-GRASP solver (default admm)")
    g.add_argument("--prior-weight", type=float, default=0.5, help="weight alpha of the prior term in [0, 1] (default 0.5)")


def config_from_args(args):
    """The validated DynamicConfig of parsed ``recon mri --dynamic`` arguments."""
    from .pipeline import DynamicConfig

    for attr, opt in _STATIC_ONLY:
        if getattr(args, attr, None) is not None:
            raise ValueError(f"{opt} does not apply to --dynamic reconstructions")
    return DynamicConfig(mode=args.dynamic, bins=args.bins, method=args.method or "xdgrasp", gating=args.gating,
                         bin_edges=args.bin_edges, reject_outliers=not args.no_reject,
                         outlier_threshold=args.outlier_threshold, signal=args.signal, lam_t=args.lam_t,
                         lam_s=args.lam_s, iters=args.iters, solver=args.solver, prior=args.prior,
                         alpha=args.prior_weight, virtual_coils=args.virtual_coils, maps=args.maps,
                         calib_width=args.calib_width, crop=args.crop, prewhiten=not args.no_prewhiten,
                         nufft_tol=args.nufft_tol, quiet=args.quiet).validate()


def planned_outputs(args, stem: str) -> dict:
    """Every file (and the DICOM folder) the ``--dynamic`` branch writes for ``args``: the
    reconstruction ``out``, its ``fmt``, the strip, the GIF and the signal plot."""
    from ..cli import _resolve_output

    method = args.method or "xdgrasp"
    named = argparse.Namespace(**{**vars(args), "method": f"{method}_4d"})
    out_path, fmt, preview = _resolve_output(named, stem)
    base = preview[: -len(".png")]
    extras = {"gif": base + ".gif", "signal": base + "_signal.png"}
    strip = out_path if fmt == "png" else base + "_strip.png"
    files = list(dict.fromkeys(([] if fmt == "dicom" else [out_path]) + [strip] + list(extras.values())))
    return {"out": out_path, "fmt": fmt, "strip": strip, "extras": extras, "files": files,
            "folders": [out_path] if fmt == "dicom" else []}


def run_dynamic(args, src: str, stem: str) -> dict:
    """The ``--dynamic`` branch of ``recon mri`` (module docstring); returns the output and method
    (the record ``recon.batch`` keeps for each input)."""
    from ...io import OutputSet, check_outputs, read_raw, write_nifti
    from ..cli import _DICOM_FILE
    from .outputs import (
        plot_signal,
        write_dicom_4d,
        write_dynamic_h5,
        write_gif,
        write_strip,
    )
    from .pipeline import reconstruct_dynamic

    config = config_from_args(args)
    if args.output is None:
        raise ValueError("give -o OUTPUT (a file or a folder)")
    t0 = time.perf_counter()
    planned = planned_outputs(args, stem)
    out_path, fmt, strip, extras = planned["out"], planned["fmt"], planned["strip"], planned["extras"]
    check_outputs(planned["files"], planned["folders"], inputs=[src] + ([args.prior] if args.prior else []),
                  overwrite=args.overwrite, hint="pass --overwrite to replace it")
    raw = read_raw(src)
    res = reconstruct_dynamic(raw, config)
    vol = res.volume
    with OutputSet(overwrite=args.overwrite) as outs:
        if fmt == "h5":
            write_dynamic_h5(outs.file(out_path), res, attrs={"recon_version": _version()})
        elif fmt == "nifti":
            write_nifti(outs.file(out_path), vol, res.voxel_mm)
        elif fmt == "dicom":
            write_dicom_4d(outs.folder(out_path, _DICOM_FILE), vol, res.voxel_mm, ranges=res.bins.ranges,
                           series_description=f"recon mri {config.method} 4D")
        write_gif(outs.file(extras["gif"]), vol, res.voxel_mm)
        write_strip(outs.file(strip), vol, res.voxel_mm)
        plot_signal(outs.file(extras["signal"]), res.signal, res.bins)
    if not args.quiet:
        i = res.info
        bell = f", bellows correlation {i['bellows_correlation']:.3f}" if "bellows_correlation" in i else ""
        print(f"wrote {out_path} ({vol.shape[0]} bins of {'x'.join(map(str, vol.shape[1:]))}, {config.method}, "
              f"{time.perf_counter() - t0:.1f} s; {i['rejected_angles']} of {i['angles']} angles rejected{bell}); "
              f"animation {extras['gif']}, signal {extras['signal']}", file=sys.stdout)
    return {"method": f"{config.method}_4d", "output": out_path, "metrics": {}}


def _version():
    from ... import __version__

    return __version__


__all__ = ["add_arguments", "config_from_args", "run_dynamic"]
