"""``recon train``: train an unrolled network on a folder of data (docs/nets.md).

::

    recon train mri DATA_DIR -o out/knee.safetensors --model modl --accel 4 8 --mask random --time-limit 600
    recon train mri DATA_DIR -o out/radial --model modl --mask radial --prior --epochs 20
    recon train mri -o out/brain --sources mni:0.6,ellipses:0.4 --model varnet     # no data: synthetic sources
    recon train ct CT_IMAGES/ -o out/ldct --model lpd --dose 0.05 0.2 --views 360 --time-limit 3600
    recon train mri DATA_DIR -o out/knee --model modl --resume                     # continue a run

``DATA_DIR`` holds MRI raw data (fastMRI or ISMRMRD HDF5, fully sampled 2D Cartesian: undersampled
on the fly with fresh masks, :mod:`recon.nets.rawdata`) or images (``.npy``, DICOM ``.dcm``,
NIfTI; MRI: simulated coils and sampling; CT: simulated low-dose fan-beam scans,
:func:`recon.ct.simulate_low_dose`). ``--sources`` mixes in the synthetic sources of
:mod:`recon.nets.sources`. The weights ``WEIGHTS.safetensors`` and their model card
``WEIGHTS.json`` are the best epoch on the validation split; beside them ``WEIGHTS.log.csv``,
``WEIGHTS.curves.png`` and the resumable checkpoint ``WEIGHTS.checkpoint.*``.

This module only parses the arguments and builds a :class:`recon.nets.train.TrainConfig`.
"""

from __future__ import annotations

import argparse
import os

SYNTHETIC = ("mni", "ellipses", "shepp")
MASKS = ("random", "equispaced", "equispaced_fraction", "poisson", "radial")
SUFFIX = ".safetensors"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train an unrolled network (MoDL, VarNet, learned primal-dual)",
                       description="Train an unrolled network on raw MRI data, images or synthetic sources. "
                                   "See docs/nets.md.")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    m = tasks.add_parser("mri", help="MRI: MoDL or E2E-VarNet")
    _common(m, ("modl", "varnet"))
    g = m.add_argument_group("acquisition")
    g.add_argument("--accel", type=float, nargs="+", default=[4.0, 8.0], help="accelerations (default 4 8)")
    g.add_argument("--center-fractions", type=float, nargs="+", default=None,
                   help="fully sampled centre fractions, one per acceleration (default 0.32/accel)")
    g.add_argument("--mask", choices=MASKS, default="random",
                   help="fastMRI random/equispaced columns, 2D Poisson-disc, or golden-angle radial (default random)")
    g.add_argument("--spokes-fraction", type=float, default=None,
                   help="radial: spokes / Nyquist spokes (pi/2 N); default 1/accel of the first --accel")
    g.add_argument("--coils", type=int, default=8, help="simulated coils of image sources (default 8)")
    c = tasks.add_parser("ct", help="low-dose CT: learned primal-dual or learned PWLS")
    _common(c, ("lpd", "pwls"))
    g = c.add_argument_group("scan (fan beam, simulated low dose)")
    g.add_argument("--dose", type=float, nargs=2, default=[0.03, 0.3], metavar=("LO", "HI"),
                   help="training doses, fractions of --full-dose (log-uniform; default 0.03 0.3)")
    g.add_argument("--full-dose", type=float, default=1e5, help="photons per detector reading at 100 %% dose")
    g.add_argument("--electronic-noise", type=float, default=5.0, help="electronic noise std (photons)")
    g.add_argument("--views", type=int, default=180, help="views over 360 degrees (default 180)")
    g.add_argument("--voxel-size", type=float, default=1.5, help="pixel size, mm (default 1.5)")
    g.add_argument("--source-origin", type=float, default=500.0, help="source to rotation axis, mm")
    g.add_argument("--origin-det", type=float, default=300.0, help="rotation axis to detector, mm")
    g.add_argument("--det-count", type=int, default=0, help="detector pixels (0: 1.25 x the image diagonal)")
    g.add_argument("--mu-max", type=float, nargs=2, default=[0.015, 0.03], metavar=("LO", "HI"),
                   help="maximum attenuation of a training image, 1/mm (default 0.015 0.03)")
    g.add_argument("--ct-like", type=float, default=0.0,
                   help="fraction of images mapped to CT's histogram (useful with MRI-like sources; default 0)")
    return p


def _common(p, models):
    p.add_argument("data", nargs="?", help="folder of raw data or images (optional with --sources)")
    p.add_argument("-o", "--output", required=True, help="weights file to write (NAME or NAME.safetensors)")
    p.add_argument("--model", choices=models, default=models[0], help=f"architecture (default {models[0]})")
    p.add_argument("--model-config", default=None, help='model hyper-parameters as JSON, e.g. \'{"features": 32}\'')
    p.add_argument("--sources", default=None,
                   help="training sources NAME[:WEIGHT],... among data (DATA_DIR), " + ", ".join(SYNTHETIC)
                        + " (default: data)")
    p.add_argument("--size", type=int, default=128, help="training matrix, pixels per side (default 128)")
    p.add_argument("--prior", action="store_true", help="train a prior-image model (varied priors, prior dropout)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 10, or unlimited with --time-limit)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds of training")
    p.add_argument("--steps-per-epoch", type=int, default=100, help="optimiser steps per epoch (default 100)")
    p.add_argument("--val-samples", type=int, default=16, help="validation samples per epoch (default 16)")
    p.add_argument("--batch-size", type=int, default=2, help="samples per step (default 2)")
    p.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (cosine decay to lr/20)")
    p.add_argument("--init", default=None, help="start from these weights (same architecture)")
    p.add_argument("--resume", action="store_true", help="continue the run of OUTPUT from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace existing weights and run files")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run)


def _sources(spec: str | None, data: str | None) -> dict:
    if spec is None:
        if data is None:
            raise ValueError("no training data: give DATA_DIR and/or --sources (e.g. --sources mni,ellipses)")
        return {"data": 1.0}
    out = {}
    for part in spec.split(","):
        name, _, w = part.strip().partition(":")
        if name not in ("data",) + SYNTHETIC:
            raise ValueError(f"--sources: unknown source {name!r} (use data, {', '.join(SYNTHETIC)})")
        try:
            out[name] = float(w) if w else 1.0
        except ValueError:
            raise ValueError(f"--sources: weight of {name!r} must be a number, got {w!r}") from None
        if not out[name] >= 0:
            raise ValueError(f"--sources: weight of {name!r} must be >= 0, got {out[name]}")
    if "data" in out and data is None:
        raise ValueError("--sources names 'data' but no DATA_DIR was given")
    if data is not None and "data" not in out:
        raise ValueError("DATA_DIR given but --sources does not name 'data'")
    return out


def _data_kind(task: str, folder: str) -> str:
    """'raw' (MRI raw data files) or 'folder' (images) for a training folder."""
    from .rawdata import raw_slices, skipped_files
    from .sources import folder_slices

    if not os.path.isdir(folder):
        raise ValueError(f"DATA_DIR {folder!r} is not a folder")
    if task == "mri":
        if raw_slices(folder, "train") or raw_slices(folder, "val"):
            return "raw"
        skipped = skipped_files(folder)
        if skipped:
            raise ValueError(f"{skipped[0][0]}: {skipped[0][1]}")
    try:
        folder_slices(os.path.abspath(folder), "train")
    except ValueError as exc:
        kinds = "fastMRI/ISMRMRD raw data or images (.npy, .dcm, .nii)" if task == "mri" else "images"
        raise ValueError(f"DATA_DIR {folder!r}: no training data ({kinds}): {exc}") from None
    return "folder"


def _paths(output: str) -> tuple[str, str]:
    out = output[: -len(SUFFIX)] if output.endswith(SUFFIX) else output
    folder, name = os.path.split(os.path.abspath(out))
    if not name:
        raise ValueError(f"-o {output!r}: give a weights file name, e.g. out/my-model.safetensors")
    return folder, name


def config_from_args(args):
    """The :class:`recon.nets.train.TrainConfig` of parsed ``recon train`` arguments."""
    import json

    from .simulate import CtTask, DataConfig, MriTask
    from .train import TrainConfig

    folder, name = _paths(args.output)
    sources = _sources(args.sources, args.data)
    if "data" in sources:
        sources[_data_kind(args.task, args.data)] = sources.pop("data")
    if args.size < 16:
        raise ValueError(f"--size must be >= 16 pixels, got {args.size}")
    model_config = {}
    if args.model_config:
        try:
            model_config = json.loads(args.model_config)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--model-config: not valid JSON ({exc})") from None
        if not isinstance(model_config, dict):
            raise ValueError("--model-config must be a JSON object of hyper-parameters")
    kw = {}
    if args.task == "mri":
        accel = tuple(float(a) for a in args.accel)
        if any(not a >= 1 for a in accel):
            raise ValueError(f"--accel values must be >= 1, got {list(accel)}")
        cf = tuple(args.center_fractions) if args.center_fractions else tuple(min(0.32 / a, 1.0) for a in accel)
        if len(cf) != len(accel):
            raise ValueError("--center-fractions needs one value per --accel value")
        radial = args.mask == "radial"
        spokes = args.spokes_fraction if args.spokes_fraction is not None else 1.0 / accel[0]
        kw["mri"] = MriTask(trajectory="noncartesian" if radial else "cartesian", size=args.size, coils=args.coils,
                            accelerations=accel, center_fractions=cf, mask="random" if radial else args.mask,
                            spokes_fraction=spokes)
    else:
        lo, hi = args.dose
        if not 0 < lo <= hi:
            raise ValueError(f"--dose must be 0 < LO <= HI (fractions of --full-dose), got {lo} {hi}")
        if not 0 <= args.ct_like <= 1:
            raise ValueError(f"--ct-like must lie in [0, 1], got {args.ct_like}")
        kw["ct"] = CtTask(size=args.size, voxel_size=args.voxel_size, views=args.views, det_count=args.det_count,
                          source_origin=args.source_origin, origin_det=args.origin_det, full_dose=args.full_dose,
                          dose_range=(lo, hi), electronic_noise=args.electronic_noise, mu_range=tuple(args.mu_max),
                          ct_like=args.ct_like)
    epochs = args.epochs if args.epochs is not None else (10 if args.time_limit is None else 10 ** 6)
    return TrainConfig(task=args.task, model=args.model, model_config=model_config,
                       data=DataConfig(sources=sources, prior=args.prior,
                                       folder=os.path.abspath(args.data) if args.data else None),
                       out_dir=folder, name=name, run_prefix=name + ".", epochs=epochs,
                       steps_per_epoch=args.steps_per_epoch, val_samples=args.val_samples,
                       batch_size=args.batch_size, lr=args.lr, lr_final=args.lr / 20, time_limit=args.time_limit,
                       seed=args.seed, resume=args.resume, init_weights=args.init, num_threads=args.threads,
                       progress=False if args.quiet else None, device=args.device, **kw)


def run(args) -> int:
    from .train import run_files, train

    cfg = config_from_args(args)
    files = run_files(cfg)
    existing = [p for p in files.values() if os.path.exists(p)]
    if args.resume:
        if not os.path.exists(files["checkpoint"]):
            raise ValueError(f"--resume: no checkpoint {files['checkpoint']} to continue from")
    elif existing and not args.overwrite:
        raise ValueError(f"{existing[0]} exists; pass --overwrite to replace it (or --resume to continue the run)")
    os.makedirs(cfg.out_dir, exist_ok=True)
    res = train(cfg, log=(lambda s: None) if args.quiet else (lambda s: print(s, flush=True)))
    if not args.quiet:
        best = res["best"]
        print(f"wrote {res['weights']} ({res['steps']} steps, {res['time_s']:.0f} s; best validation PSNR "
              f"{best.get('psnr', float('nan')):.2f} dB, SSIM {best.get('ssim', float('nan')):.4f} at epoch "
              f"{best.get('epoch')}); log {res['log']}, curves {files['curves']}")
    return 0
