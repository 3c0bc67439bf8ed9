"""``recon bench``'s networks part: the shipped unrolled networks (``recon.nets.load``) against recon's
classical methods on held-out real images (the cases, baselines and metrics of ``recon.nets.evaluate``,
which benchmarks/run_nets.py reports in full): inference time and PSNR/SSIM against the truth.

MRI: pydicom's ``MR_small.dcm`` at 128 x 128 (and pydicom-data's ``MR2_UNCR.dcm`` at 256 at full
scale), 8 simulated coils with true maps, fastMRI random masks 4x (and 8x at full scale); the net is
``modl-cartesian``, the baselines zero-filled, CG-SENSE and L1-wavelet CS at their best weight for the
case (an oracle grid; ``tiny``: zero-filled only). CT: pydicom's ``CT_small.dcm`` on ``lpd-fan``'s
fan-beam geometry at 10 % dose (and 5 % at full scale); baselines FBP (best filter and cutoff;
below full scale: ram-lak or hann at full cutoff) and, at full scale, PWLS-TV (best weight). Baseline times are one run at the chosen setting; no peer network library is installed.
"""

from __future__ import annotations

import time


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _mri_rerun(method, s, settings):
    """One run of a classical MRI method at its chosen ``settings`` (for its time)."""
    from recon.mri.recon import cg_sense, cs_wavelet, zero_filled

    k, maps, mask = s["kspace"], s["maps"], s["mask"]
    if method == "zero-filled":
        return zero_filled(k, maps=maps).image
    fn = cg_sense if method == "cg-sense" else cs_wavelet
    return fn(k, maps, mask=mask, lam=settings["lam"], max_iter=settings["max_iter"], tol=0).image


def _ct_rerun(method, task, s, settings):
    from recon.ct import fbp, pwls_tv

    if method == "fbp":
        return fbp(s["sinogram"], task.geometry(), filter=settings["filter"], cutoff=settings["cutoff"])
    return pwls_tv(task.projector(), s["sinogram"], s["weights"], beta=settings["beta"], n_iter=settings["n_iter"])[0]


def bench(ctx):
    import torch

    from recon.nets import evaluate as ev
    from recon.nets import load
    from recon.nets.simulate import CtTask

    from . import Section
    from .report import table

    torch.set_num_threads(ctx.threads)
    sec = Section("nets", "Unrolled networks", size_label="image side n (n x n)",
                  accuracy_label="PSNR (dB) against the truth", accuracy_log=False)
    rows, lines = [], []

    def add(case, n, method, img, truth, dt, settings=""):
        m = ev.metrics(truth, img)
        rows.append(dict(library="recon", case=case, size=n, method=method, time_s=dt, psnr=m["psnr"],
                         ssim=m["ssim"], settings=settings))
        sec.sizes.setdefault(method, []).append((n, dt))
        sec.accuracy.setdefault(method, []).append((dt, m["psnr"]))
        lines.append((case, method, settings, f"{dt:.3f}", f"{m['psnr']:.2f}", f"{m['ssim']:.4f}"))
        ctx.log(f"   {case} {method}: {dt:.3f} s, PSNR {m['psnr']:.2f} dB")

    modl = load("modl-cartesian")
    images = [("MR_small", 128)] + ctx.pick([], [], [("MR2_UNCR", 256)])
    for name, n in images:
        img = ev.heldout_mri(n).get(name)
        if img is None:
            ctx.log(f"   {name}: not installed (pydicom-data), skipped")
            continue
        for accel in ctx.pick((4,), (4,), (4, 8)):
            task, s = ev.mri_case(img, "cartesian", accel)
            case = f"MRI {name} {n}^2 {accel}x"
            base = ev.mri_baselines(task, s, tune=ctx.scale != "tiny")
            for method, (_, settings) in base.items():
                x, dt = _timed(lambda: _mri_rerun(method, s, settings))  # noqa: B023 - called at once
                add(case, n, method, x, s["image"], dt, ", ".join(f"{k}={v}" for k, v in settings.items()))
            if ctx.scale != "tiny":
                ev.run_mri_net(modl, task, s)  # warm-up
            x, dt = _timed(lambda: ev.run_mri_net(modl, task, s))  # noqa: B023 - called at once
            add(case, n, "net modl-cartesian", x, s["image"], dt)
    lpd = load("lpd-fan")
    task = CtTask(**{k: v for k, v in lpd.card["task"].items() if k in CtTask.__dataclass_fields__})
    for cname, mu in ev.heldout_ct(task.size).items():
        for dose in ctx.pick((0.1,), (0.1,), (0.1, 0.05)):
            s = ev.ct_case(mu, task, dose)
            case = f"CT {cname} {task.size}^2 {dose:.0%} dose"
            for method, (_, settings) in ev.ct_baselines(task, s, tune=ctx.scale == "full").items():
                x, dt = _timed(lambda: _ct_rerun(method, task, s, settings))  # noqa: B023 - called at once
                add(case, task.size, method, x, s["image"], dt, ", ".join(f"{k}={v}" for k, v in settings.items()))
            if ctx.scale != "tiny":
                ev.run_ct_net(lpd, task, s)  # warm-up
            x, dt = _timed(lambda: ev.run_ct_net(lpd, task, s))  # noqa: B023 - called at once
            add(case, task.size, "net lpd-fan", x, s["image"], dt)
    sec.rows = rows
    sec.text = ("The shipped networks against recon's classical methods on held-out real images "
                "(`recon.nets.evaluate`; the full study is `python benchmarks/run_nets.py --quality`). Classical "
                "methods at their best setting for the case (oracle grid; FBP's cutoff and PWLS-TV at full scale "
                "only; scale tiny: no CG-SENSE or CS), timed "
                "in one run at that setting; networks timed after a warm-up (scale tiny: the first call); torch "
                f"{ctx.threads} thread(s). No peer network library is "
                "installed to compare with.\n\n"
                + table(("case", "method", "setting", "time s", "PSNR dB", "SSIM"), lines))
    return sec
