#!/usr/bin/env python
"""Unrolled networks: quality on held-out real images against recon's classical methods, speed,
and peak memory.

    python benchmarks/run_nets.py --quality          # PSNR/SSIM tables (minutes; no timing)
    python benchmarks/run_nets.py --speed            # inference times and peak memory (quiet machine)
    python benchmarks/run_nets.py --quality --quick  # one image, no 128 matrix
    python benchmarks/run_nets.py --user-training 600 # `recon train` on a 50-slice folder for 600 s, then held-out

Quality (``--quality``): the shipped weights (``recon.nets.load``) on real images that no training
source contains (``recon.nets.evaluate``: ``MR2_UNCR.dcm`` of pydicom-data, a 1024x1024 shoulder MR,
resampled to 256 and 128; pydicom's ``MR_small.dcm`` at 128; pydicom's ``CT_small.dcm``, a real CT
slice, HU -> 1/mm). MRI: 8 simulated coils (true maps for every method), complex noise 1 %, a random
smooth phase; fastMRI random masks 4x (centre 0.08) and 8x (centre 0.04); golden-angle radial with 1/8
of the Nyquist spokes. CT: the shipped model's fan-beam geometry, 10 % and 5 % of a 1e5-photon full
dose, electronic noise 5 photons, data projected from a 2x finer image. Baselines are tuned on each
case itself (oracle): zero-filled, CG-SENSE (Tikhonov weight; iterations for radial), L1-wavelet CS
(weight), FBP (filter and cutoff), PWLS-TV (TV weight). Prior: a lesion present only in the target
('new') or only in the prior ('removed'), the prior deformed and shifted by up to 2 px; the same
prior model with and without the prior; PSNR overall and inside the changed region.

Targets (issue 12): MRI net >= best CS + 1 dB (4x, 8x); radial net >= CG-SENSE + 2 dB; CT LPD >=
PWLS-TV + 1 dB and >= FBP + 5 dB (10 %, 5 %); the prior better overall and no worse in the changed
region. Results: printed, benchmarks/results/nets_quality.json, section "## Unrolled networks" of
benchmarks/results/cpu.md, and benchmarks/results/nets_quality.png.

Speed (``--speed``, run on a quiet machine): median of 5 inferences (after one warm-up) of a 320x320
8-coil Cartesian slice (modl-cartesian), a 256x256 12-coil radial frame with 1/8 Nyquist spokes
(modl-radial: NUFFT plans and Toeplitz kernels from the plan cache after the warm-up), a 512x512 fan-beam CT slice (lpd-fan on a
720-view geometry); threads 2; peak resident memory of one inference and of one training step
(batch 2 at 128x128) in a fresh process each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
import _recon_path  # noqa: E402,F401  (recon: the installed package, else this checkout)

from recon.bench.report import replace_section, write_text_atomic  # noqa: E402


# ---- quality ---------------------------------------------------------------------------------------

def _fmt(m):
    return f"{m['psnr']:.2f} / {m['ssim']:.3f}"


def quality(quick: bool, log=print, runs: str | None = None, figure: Path | None = None) -> dict:
    import torch

    from recon.nets import evaluate as ev
    from recon.nets import load

    torch.set_num_threads(2)
    res = {"mri": [], "ct": [], "prior": []}
    names = ("modl-cartesian", "modl-radial", "lpd-fan")
    # --from-runs: a name without a run RUNS/NAME/NAME.safetensors is measured with its shipped weights
    weights = {n: os.path.join(runs, n, n + ".safetensors") if runs and os.path.isfile(
        os.path.join(runs, n, n + ".safetensors")) else n for n in names}
    models = {n: load(w) for n, w in weights.items()}
    log("weights: " + ", ".join(f"{n} = {w}" for n, w in weights.items()))
    images = [("MR2_UNCR", 256)] + ([] if quick else [("MR2_UNCR", 128), ("MR_small", 128)])
    figs = {}
    for name, size in images:
        held = ev.heldout_mri(size)
        if name not in held:
            log(f"skip {name}: not installed (pip install pydicom-data)")
            continue
        img = held[name]
        for traj, accel in (("cartesian", 4), ("cartesian", 8), ("noncartesian", 8)):
            task, s = ev.mri_case(img, traj, accel)
            t0 = time.perf_counter()
            base = ev.mri_baselines(task, s)
            net = ev.run_mri_net(models["modl-cartesian" if traj == "cartesian" else "modl-radial"], task, s)
            row = {"image": f"{name} {size}x{size}", "sampling": f"{traj} {accel}x" if traj == "cartesian"
                   else "radial 1/8 Nyquist", "net": ev.metrics(s["image"], net)}
            for k, (x, settings) in base.items():
                row[k] = dict(ev.metrics(s["image"], x), settings=settings)
            res["mri"].append(row)
            figs[(name, size, traj, accel)] = (np.abs(s["image"]), np.abs(base["zero-filled"][0]),
                                               np.abs(base.get("cs-wavelet", base["zero-filled"])[0]), np.abs(net))
            log(f"{row['image']:>18} {row['sampling']:>20}: net {_fmt(row['net'])}  "
                + "  ".join(f"{k} {_fmt(row[k])}" for k in base) + f"  ({time.perf_counter() - t0:.0f} s)")
    # prior (MRI Cartesian, the first image)
    name, size = images[0]
    img = ev.heldout_mri(size).get(name)
    if img is not None:
        for kind in ("new", "removed"):
            target, prior, changed = ev.prior_case(img, kind=kind)
            for accel in (4, 8):
                task, s = ev.mri_case(target, "cartesian", accel)
                m = models["modl-cartesian"]
                with_p = ev.metrics(s["image"], ev.run_mri_net(m, task, s, prior), changed)
                without = ev.metrics(s["image"], ev.run_mri_net(m, task, s), changed)
                res["prior"].append({"case": f"MRI {name} cartesian {accel}x, lesion {kind}", "with": with_p,
                                     "without": without})
                log(f"prior MRI {accel}x lesion {kind}: with {_fmt(with_p)} region {with_p['psnr_region']:.2f}; "
                    f"without {_fmt(without)} region {without['psnr_region']:.2f}")
    # CT
    from recon.nets.simulate import CtTask

    lpd = models["lpd-fan"]
    task = CtTask(**{k: v for k, v in lpd.card["task"].items() if k in CtTask.__dataclass_fields__})
    for cname, mu in ev.heldout_ct(task.size).items():
        for dose in (0.1, 0.05):
            s = ev.ct_case(mu, task, dose)
            base = ev.ct_baselines(task, s)
            net = ev.run_ct_net(lpd, task, s)
            row = {"image": cname, "dose": dose, "net": ev.metrics(s["image"], net)}
            for k, (x, settings) in base.items():
                row[k] = dict(ev.metrics(s["image"], x), settings=settings)
            res["ct"].append(row)
            figs[(cname, dose)] = (s["image"], base["fbp"][0], base["pwls-tv"][0], net)
            log(f"{cname} {int(dose * 100)}% dose: LPD {_fmt(row['net'])}  FBP {_fmt(row['fbp'])}  "
                f"PWLS-TV {_fmt(row['pwls-tv'])}")
        for kind in ("new", "removed"):
            target, prior, changed = ev.prior_case(mu / mu.max(), kind=kind)
            s = ev.ct_case(target * mu.max(), task, 0.1)
            with_p = ev.metrics(s["image"], ev.run_ct_net(lpd, task, s, prior * mu.max()), changed)
            without = ev.metrics(s["image"], ev.run_ct_net(lpd, task, s), changed)
            res["prior"].append({"case": f"CT {cname} 10% dose, lesion {kind}", "with": with_p, "without": without})
            log(f"prior CT lesion {kind}: with {_fmt(with_p)} region {with_p['psnr_region']:.2f}; "
                f"without {_fmt(without)} region {without['psnr_region']:.2f}")
    res["cards"] = {n: {"weights": weights[n], "training": m.card["training"], "config": m.card["config"]}
                    for n, m in models.items()}
    if figure is not None:
        _figure(figs, figure)
    return res


def _figure(figs: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in figs if len(k) == 4 and k[1] == 256] + [k for k in figs if len(k) == 2]
    if not keys:
        return
    cols = ("truth", "zero-filled / FBP", "best CS / PWLS-TV", "network")
    fig, ax = plt.subplots(len(keys), 4, figsize=(10, 2.6 * len(keys)))
    ax = np.atleast_2d(ax)
    for r, k in enumerate(keys):
        ims = figs[k]
        vmax = float(np.abs(ims[0]).max())
        for c in range(4):
            ax[r, c].imshow(np.abs(ims[c]), cmap="gray", vmin=0, vmax=vmax)
            ax[r, c].set_xticks([])
            ax[r, c].set_yticks([])
            if r == 0:
                ax[r, c].set_title(cols[c], fontsize=9)
        ax[r, 0].set_ylabel(" ".join(str(v) for v in k), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _targets(res: dict) -> list[str]:
    lines = []
    for r in res["mri"]:
        if r["sampling"].startswith("cartesian"):
            d = r["net"]["psnr"] - r["cs-wavelet"]["psnr"]
            ok = d >= 1.0 and r["net"]["ssim"] > r["cs-wavelet"]["ssim"]
            lines.append(f"| MRI {r['image']} {r['sampling']}: net - best CS >= +1 dB, higher SSIM | {d:+.2f} dB, "
                         f"SSIM {r['net']['ssim']:.3f} vs {r['cs-wavelet']['ssim']:.3f} | {'met' if ok else 'NOT met'} |")
        else:
            d = r["net"]["psnr"] - r["cg-sense"]["psnr"]
            lines.append(f"| MRI {r['image']} {r['sampling']}: net - CG-SENSE >= +2 dB | {d:+.2f} dB | "
                         f"{'met' if d >= 2 else 'NOT met'} |")
    for r in res["ct"]:
        d1 = r["net"]["psnr"] - r["pwls-tv"]["psnr"]
        d2 = r["net"]["psnr"] - r["fbp"]["psnr"]
        lines.append(f"| CT {r['image']} {int(r['dose'] * 100)} % dose: LPD - PWLS-TV >= +1 dB, LPD - FBP >= +5 dB | "
                     f"{d1:+.2f} dB, {d2:+.2f} dB | {'met' if d1 >= 1 and d2 >= 5 else 'NOT met'} |")
    for r in res["prior"]:
        d = r["with"]["psnr"] - r["without"]["psnr"]
        dr = r["with"]["psnr_region"] - r["without"]["psnr_region"]
        lines.append(f"| prior {r['case']}: better overall, changed region no worse | {d:+.2f} dB overall, "
                     f"{dr:+.2f} dB in the region | {'met' if d > 0 and dr >= -0.1 else 'NOT met'} |")
    return lines


def markdown(res: dict) -> str:
    out = ["## Unrolled networks", "",
           f"`python benchmarks/run_nets.py --quality` ({datetime.date.today()}, {platform.machine()}, "
           "held-out real images, PSNR dB / SSIM, fastMRI definitions; baselines tuned on each case)", ""]
    if res.get("mri"):
        out += ["| image | sampling | zero-filled | CG-SENSE | CS L1-wavelet | network |", "|---|---|---|---|---|---|"]
        out += [f"| {r['image']} | {r['sampling']} | {_fmt(r['zero-filled'])} | {_fmt(r['cg-sense'])} | "
                f"{_fmt(r['cs-wavelet'])} | {_fmt(r['net'])} |" for r in res["mri"]]
        out.append("")
    if res.get("ct"):
        out += ["| image | dose | FBP | PWLS-TV | learned primal-dual |", "|---|---|---|---|---|"]
        out += [f"| {r['image']} | {int(r['dose'] * 100)} % | {_fmt(r['fbp'])} | {_fmt(r['pwls-tv'])} | "
                f"{_fmt(r['net'])} |" for r in res["ct"]]
        out.append("")
    if res.get("prior"):
        out += ["| prior case | with prior (overall, changed region) | without prior |", "|---|---|---|"]
        out += [f"| {r['case']} | {_fmt(r['with'])}, {r['with']['psnr_region']:.2f} | {_fmt(r['without'])}, "
                f"{r['without']['psnr_region']:.2f} |" for r in res["prior"]]
        out.append("")
    out += ["| target | measured | |", "|---|---|---|"] + _targets(res) + [""]
    return "\n".join(out)


# ---- a user's training run -------------------------------------------------------------------------

def user_training(time_limit: float, log=print, threads: int = 2, n_train: int = 50, n_test: int = 10,
                  n: int = 160) -> dict:
    """Issue 12's "training works for a user": ``n_train`` slices (MNI152 T1 axial, ``n`` x ``n``)
    written as fully sampled 8-coil fastMRI files of 10 slices; ``recon train mri FOLDER --model modl
    --time-limit S`` from scratch; then the trained model against the best-tuned CS on ``n_test``
    held-out slices (MNI positions of the validation split, none in the folder) at 4x and 8x (true
    maps for every method). The folder is removed afterwards."""
    import shutil
    import tempfile

    import torch

    from fastmri_data import write_fastmri_multicoil
    from recon.cli import main as recon_main
    from recon.nets import evaluate as ev
    from recon.nets import load, sources

    torch.set_num_threads(threads)
    train_pos = [p for k, p in sources.mni_slices("train") if k == "axial"]
    test_pos = [p for k, p in sources.mni_slices("val") if k == "axial"]
    train_pos = [train_pos[i] for i in np.linspace(0, len(train_pos) - 1, n_train).astype(int)]
    test_pos = [test_pos[i] for i in np.linspace(0, len(test_pos) - 1, n_test).astype(int)]

    def slices(pos):
        return np.stack([ev._resize(sources.mni_t1("axial", p), n) for p in pos]).astype(np.float32)

    work = tempfile.mkdtemp(prefix="recon-user-training-")
    try:
        data = os.path.join(work, "data")
        os.makedirs(data)
        imgs = slices(train_pos)
        for f in range(0, n_train, 10):
            write_fastmri_multicoil(os.path.join(data, f"mni{f // 10}.h5"), imgs[f:f + 10], num_coils=8,
                                    noise_std=0.003, seed=f)
        out = os.path.join(work, "model.safetensors")
        t0 = time.perf_counter()
        rc = recon_main(["train", "mri", data, "-o", out, "--model", "modl", "--size", str(n), "--accel", "4", "8",
                         "--time-limit", str(time_limit), "--threads", str(threads), "-q"])
        if rc != 0:
            raise RuntimeError(f"recon train failed (exit {rc})")
        wall = time.perf_counter() - t0
        model = load(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for i, img in enumerate(slices(test_pos)):
        for accel in (4, 8):
            task, s = ev.mri_case(img / img.max(), "cartesian", accel, seed=i)
            base = ev.mri_baselines(task, s)
            rows.append({"slice": int(test_pos[i]), "accel": accel,
                         "net": ev.metrics(s["image"], ev.run_mri_net(model, task, s)),
                         "cs-wavelet": ev.metrics(s["image"], base["cs-wavelet"][0]),
                         "zero-filled": ev.metrics(s["image"], base["zero-filled"][0])})
            log(f"slice {rows[-1]['slice']} {accel}x: net {_fmt(rows[-1]['net'])}  CS {_fmt(rows[-1]['cs-wavelet'])}")
    summary = {}
    for accel in (4, 8):
        r = [x for x in rows if x["accel"] == accel]
        summary[f"{accel}x"] = {k: {m: float(np.mean([x[k][m] for x in r])) for m in ("psnr", "ssim")}
                                for k in ("net", "cs-wavelet", "zero-filled")}
    return {"time_limit_s": time_limit, "wall_s": wall, "steps": model.card["training"].get("total_steps"),
            "train_slices": n_train, "test_slices": n_test, "size": n, "rows": rows, "mean": summary}


def user_training_markdown(res: dict) -> str:
    out = ["### recon train for a user", "",
           f"`python benchmarks/run_nets.py --user-training {res['time_limit_s']:g}`: `recon train mri` on "
           f"{res['train_slices']} slices (fastMRI files of 10, 8 coils, {res['size']}x{res['size']}, MNI152 T1) for "
           f"{res['wall_s']:.0f} s wall ({res['steps']} steps), then {res['test_slices']} held-out slices; "
           "mean PSNR dB / SSIM", "",
           "| acceleration | zero-filled | best CS | trained net | net - CS |", "|---|---|---|---|---|"]
    for a, m in res["mean"].items():
        out.append(f"| {a} | {_fmt(m['zero-filled'])} | {_fmt(m['cs-wavelet'])} | {_fmt(m['net'])} | "
                   f"{m['net']['psnr'] - m['cs-wavelet']['psnr']:+.2f} dB |")
    return "\n".join(out) + "\n"


# ---- speed -----------------------------------------------------------------------------------------

_SPEED_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(2)
what, smoke = sys.argv[1], sys.argv[2] == "1"
from recon.nets import load
from recon.nets import evaluate as ev
from recon.nets.simulate import CtTask, MriTask, simulate_mri, simulate_ct
rng = np.random.default_rng(0)
if what.startswith("mri"):
    n, traj, C = ((320, "cartesian", 8) if what == "mri-cartesian" else (256, "noncartesian", 12))
    n = 32 if smoke else n
    img = np.pad(np.ones((n // 2, n // 2), np.float32), n // 4)
    task = MriTask(trajectory=traj, size=n, coils=C, accelerations=(4,), center_fractions=(0.08,))
    s = simulate_mri(task, img, rng)
    model = load("modl-cartesian" if traj == "cartesian" else "modl-radial")
    run = lambda: ev.run_mri_net(model, task, s)
elif what == "ct":
    n = 32 if smoke else 512
    task = CtTask(size=n, voxel_size=192.0 / n, views=60 if smoke else 720)
    mu = np.pad(np.full((n // 2, n // 2), 0.02, np.float32), n // 4)
    s = simulate_ct(task, mu / mu.max(), rng, dose=0.1)
    model = load("lpd-fan")
    run = lambda: ev.run_ct_net(model, task, s)
elif what == "train":
    from recon.nets.train import TrainConfig, build_model, batch_inputs, loss_fn
    from recon.nets.simulate import DataConfig, SimulatedDataset
    cfg = TrainConfig(mri=MriTask(size=32 if smoke else 128), data=DataConfig(prior=True))
    model = build_model(cfg)
    ds = SimulatedDataset(cfg.mri, cfg.data, "train", 2)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    def run():
        d, p, pr, t = batch_inputs(cfg, batch, "cpu")
        loss_fn(model(d, p, pr), t).backward()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run()
times = []
for _ in range(1 if smoke else 5):
    t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
print(json.dumps({"median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * min(times),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": base / 1024}))
"""


def speed(smoke: bool, log=print) -> dict:
    out = {}
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(HERE.parent))
    for what in ("mri-cartesian", "mri-radial", "ct", "train"):
        p = subprocess.run([sys.executable, "-c", _SPEED_CHILD, what, "1" if smoke else "0"], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{what}: {p.stderr[-2000:]}")
        out[what] = json.loads(p.stdout.strip().splitlines()[-1])
        log(f"{what}: {out[what]}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--quick", action="store_true", help="quality: one image; speed: tiny sizes (a smoke run)")
    ap.add_argument("--user-training", type=float, metavar="SECONDS", default=None,
                    help="train on a generated 50-slice folder for SECONDS, then compare with CS on held-out slices")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--from-runs", metavar="DIR", help="quality of training runs DIR/NAME/NAME.safetensors "
                    "(examples/train_shipped_weights.py) instead of the shipped weights (shipped ones for names "
                    "without a run); implies --no-write")
    a = ap.parse_args(argv)
    if not (a.quality or a.speed or a.user_training):
        ap.error("choose --quality, --speed and/or --user-training")
    RESULTS.mkdir(exist_ok=True)
    if a.quality:
        write = not (a.no_write or a.from_runs)
        res = quality(a.quick, runs=a.from_runs, figure=RESULTS / "nets_quality.png" if write else None)
        md = markdown(res)
        print(md)
        if write:
            write_text_atomic(RESULTS / "nets_quality.json", json.dumps(res, indent=1, default=float) + "\n")
            replace_section(RESULTS / "cpu.md", md, "## Unrolled networks")
    if a.user_training:
        ut = user_training(a.user_training)
        md = user_training_markdown(ut)
        print(md)
        if not a.no_write:
            write_text_atomic(RESULTS / "nets_user_training.json", json.dumps(ut, indent=1, default=float) + "\n")
    if a.speed:
        sp = speed(a.quick)
        if not a.no_write and not a.quick:
            write_text_atomic(RESULTS / "nets_speed_cpu.json", json.dumps(sp, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
