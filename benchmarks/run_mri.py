#!/usr/bin/env python
"""MRI reconstruction benchmark: recon against BART ``pics`` and SigPy (those installed).

    python benchmarks/run_mri.py            # full run
    python benchmarks/run_mri.py --quick    # 1 slice, fewer regularisation weights
    python benchmarks/run_mri.py --libs recon,sigpy --no-write

Cases (seeded, fixed):

- ``synthetic-4x`` / ``synthetic-8x``: a fastMRI-format multicoil file written by
  ``fastmri_data.write_fastmri_multicoil`` from ``recon.mri.simulate.textured_phantom`` (slices of
  256 x 256, 8 simulated coils, complex noise 0.01 per part), undersampled with fastMRI's
  ``RandomMaskFunc`` (4x, centre 0.08; 8x, centre 0.04). Reference: the file's
  ``reconstruction_rss``; metrics PSNR/SSIM/NMSE as fastMRI defines them.
- ``brain-real``: the bundled real brain (8 coils, Poisson-disc, 12.4 % of k-space). There is no
  fully sampled reference: it reports the time and the agreement (PSNR/SSIM) of each peer's image
  with recon's image of the same model.

Every library reconstructs with the SAME coil maps (recon's ESPIRiT, also timed against BART
``ecalib`` and SigPy ``EspiritCalib``, whose agreement with recon's maps is reported), the same
normalised k-space (divided by the 99th percentile of the zero-filled image) and the same iteration
counts (SENSE 30, CS 60). Models: CG-SENSE with Tikhonov weight (recon ``cg_sense``, BART
``pics -l2``, SigPy ``SenseRecon``) and L1-wavelet CS (recon ``cs_wavelet``: Haar with cycle
spinning, POGM; BART ``pics -l1``: its wavelet with random shifts, FISTA; SigPy
``L1WaveletRecon``: db4, FISTA-type ``GradientMethod``). Each library's regularisation weight is the
best of a small grid on each synthetic case (its lambda means something different in each: oracle
tuning for everyone); the real brain uses each library's best weight of ``synthetic-8x``.

Times: wall seconds of the reconstruction alone (maps excluded), recon and SigPy in-process, BART
through its command line (process start and .cfl file I/O included: a few tens of ms). Threads: 2
for all (OMP_NUM_THREADS). Results: printed, appended as section "## MRI reconstruction" of
benchmarks/results/cpu.md (other sections kept) and benchmarks/results/mri_cpu.json. The cases and
library runners live in ``recon.bench.mri`` (shared with ``recon bench``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
import _recon_path  # noqa: E402,F401  (recon: the installed package, else this checkout)

from recon.bench.mri import (  # noqa: E402,F401  (the cases and runners: one home, shared with recon bench)
    CS_ITERS,
    LAMBDAS,
    QUICK_LAMBDAS,
    SENSE_ITERS,
    Bart,
    bart_run,
    brain_case,
    metrics,
    read_cfl,
    recon_run,
    run_method,
    sigpy_run,
    synthetic_case,
    time_maps,
    write_cfl,
    zf_scale,
)
from recon.bench.report import replace_section, write_text_atomic  # noqa: E402

# ---- main ---------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 slice, fewer regularisation weights")
    ap.add_argument("--libs", default="recon,bart,sigpy")
    ap.add_argument("--slices", type=int, default=None, help="slices per synthetic case (default 2; quick 1)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    libs = [x.strip() for x in a.libs.split(",") if x.strip()]
    bart = Bart(2)
    versions = {}
    import recon

    versions["recon"] = recon.__version__
    if "bart" in libs:
        if bart.available:
            versions["bart"] = bart.version()
        else:
            print("BART not found (apt-get install bart): skipped", file=sys.stderr)
            libs.remove("bart")
    if "sigpy" in libs:
        try:
            import sigpy

            versions["sigpy"] = sigpy.__version__
        except ImportError:
            print("SigPy not installed: skipped", file=sys.stderr)
            libs.remove("sigpy")
    n_slices = a.slices or (1 if a.quick else 2)
    grid = QUICK_LAMBDAS if a.quick else LAMBDAS
    tmpdir = tempfile.mkdtemp(prefix="recon_mri_bench_")
    t_start = time.perf_counter()
    rows, map_rows, best_lam = [], [], {}
    cases = [("synthetic-4x", lambda: synthetic_case(4, 0.08, n_slices, (256, 256), tmpdir)),
             ("synthetic-8x", lambda: synthetic_case(8, 0.04, n_slices, (256, 256), tmpdir)),
             ("brain-real", brain_case)]
    recon_ref_imgs = {}
    for case, make in cases:
        ks, ref = make()
        maps, mt = time_maps(ks, libs, bart)
        for lib, (dt, err) in mt.items():
            map_rows.append({"case": case, "lib": lib, "time_s": dt, "maps_rel_diff": err})
        for method in ("sense", "cs"):
            for lib in libs:
                if ref is not None:
                    best = None
                    for lam in grid[lib][method]:
                        vol, dt = run_method(lib, method, ks, maps, lam, bart)
                        m = metrics(ref, vol)
                        print(f"  {case} {method} {lib} lam={lam:g}: {dt:.2f} s, PSNR {m['psnr']:.2f}, SSIM {m['ssim']:.4f}")
                        if best is None or m["psnr"] > best["psnr"]:
                            best = dict(m, lam=lam, time_s=dt)
                    best_lam[(lib, method)] = best["lam"] if case == "synthetic-8x" else best_lam.get((lib, method), best["lam"])
                    rows.append(dict(case=case, method=method, lib=lib, **best))
                else:
                    lam = best_lam.get((lib, method), grid[lib][method][0])
                    vol, dt = run_method(lib, method, ks, maps, lam, bart)
                    if lib == "recon":
                        recon_ref_imgs[method] = vol
                    rows.append(dict(case=case, method=method, lib=lib, lam=lam, time_s=dt, vol=vol))
        # real data: agreement with recon's image of the same model
        for r in rows:
            if r["case"] == case and "vol" in r:
                vol = r.pop("vol")
                if r["lib"] == "recon":
                    continue
                m = metrics(recon_ref_imgs[r["method"]], vol)
                r.update({"agree_psnr": m["psnr"], "agree_ssim": m["ssim"]})
    wall = time.perf_counter() - t_start
    md = render(rows, map_rows, versions, a, n_slices, wall)
    print(md)
    if not a.no_write:
        RESULTS.mkdir(exist_ok=True)
        replace_section(RESULTS / "cpu.md", md)
        write_text_atomic(RESULTS / "mri_cpu.json", json.dumps({"rows": rows, "maps": map_rows, "versions": versions,
                                                          "quick": a.quick, "slices": n_slices}, indent=1, default=float))
        print(f"wrote {RESULTS / 'cpu.md'} and {RESULTS / 'mri_cpu.json'}")
    return 0


def render(rows, map_rows, versions, a, n_slices, wall):
    now = datetime.date.today().isoformat()
    cmd = "python benchmarks/run_mri.py" + (" --quick" if a.quick else "")
    out = ["## MRI reconstruction", ""]
    if a.quick:
        out += ["**A `--quick` run: one slice per synthetic case and a small grid of regularisation weights.**", ""]
    envs = " ".join(f"{v}={os.environ[v]}" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")
                    if v in os.environ)
    out += [f"Command: `{envs} {cmd}` ({now}, {platform.machine()}, {os.cpu_count()} cores, wall "
            f"{wall / 60:.1f} min). Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "",
            f"Synthetic cases: {n_slices} slice(s) of 256 x 256, 8 coils, fastMRI random masks; same ESPIRiT maps "
            f"(recon's) and normalised data for every library; SENSE {SENSE_ITERS} and CS {CS_ITERS} iterations; "
            "each library's best regularisation weight (lambda) of a small grid; time = reconstruction only, "
            "summed over slices (BART: command line, process start and file I/O included). "
            "*ratio* = library time / recon time (> 1: recon faster). See the docstring of benchmarks/run_mri.py.", "",
            "| case | model | library | lambda | time s | ratio | PSNR dB | SSIM | NMSE |",
            "|---|---|---|---|---|---|---|---|---|"]
    tr = {(r["case"], r["method"]): r["time_s"] for r in rows if r["lib"] == "recon"}
    for r in rows:
        if "psnr" not in r:
            continue
        ratio = r["time_s"] / tr[(r["case"], r["method"])]
        out.append(f"| {r['case']} | {r['method']} | {r['lib']} | {r['lam']:g} | {r['time_s']:.2f} | {ratio:.2f} | "
                   f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['nmse']:.4f} |")
    out += ["", "Real brain (no fully sampled reference): time, and agreement (PSNR/SSIM) of each library's image "
            "with recon's image of the same model and iterations, lambda = the library's best on synthetic-8x.", "",
            "| model | library | lambda | time s | ratio | PSNR vs recon | SSIM vs recon |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["case"] != "brain-real":
            continue
        ratio = r["time_s"] / tr[(r["case"], r["method"])]
        ap = "-" if r["lib"] == "recon" else f"{r['agree_psnr']:.2f}"
        asim = "-" if r["lib"] == "recon" else f"{r['agree_ssim']:.4f}"
        out.append(f"| {r['method']} | {r['lib']} | {r['lam']:g} | {r['time_s']:.2f} | {ratio:.2f} | {ap} | {asim} |")
    out += ["", "Coil maps (ESPIRiT, calib 24, kernel 6, threshold 0.02, crop 0.95): time summed over slices and the "
            "relative difference of each library's maps from recon's (after a per-pixel phase, on recon's support).", "",
            "| case | library | time s | rel. diff from recon |", "|---|---|---|---|"]
    for r in map_rows:
        out.append(f"| {r['case']} | {r['lib']} | {r['time_s']:.2f} | {r['maps_rel_diff']:.3f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
