#!/usr/bin/env python
"""CT projector benchmark runner: recon's Joseph projector against ASTRA (CPU) and scikit-image.

    python benchmarks/run_ct.py            # full run (a few minutes on 2 cores; the cone case dominates)
    python benchmarks/run_ct.py --quick    # half-size cases, one repetition (checks the runner)
    python benchmarks/run_ct.py --cases parallel,fan --reps 5

Cases (fixed inputs: the modified Shepp-Logan phantom, values x 0.02 /mm, rasterised with 4x4
sub-samples per pixel (2x2x2 in 3D)):

* parallel: 512 x 512 pixels of 1.0 mm, 720 angles over [0, pi), 729 bins of 1.0 mm.
* fan: 512 x 512 pixels of 0.8 mm (409.6 mm FOV), 720 angles over [0, 2 pi), 888 flat bins of
  1.0 mm at the detector (covers a 450 mm FOV; 0.897 mm is the least that covers 409.6 mm),
  source-origin 595 mm, source-detector 1085.6 mm.
* cone: 256^3 voxels of 1.0 mm, 360 views over [0, 2 pi) of 256 x 256 pixels of 2.0 mm (covers the
  volume: 1.87 mm would be the least), source-origin 595 mm, source-detector 1085.6 mm.

For each case and direction (forward = projection, back = adjoint/backprojection) it prints the
median wall time (and process CPU time) of each library, the wall-time ratio peer / recon, and each forward projector's relative l2
error against the exact (analytic) line integrals of the phantom's ellipses (cone: on every 10th view).
Peers, same inputs, same run: ASTRA CPU (parallel: "linear" = Joseph; fan: "line_fanflat"; ASTRA's 3D
projectors need CUDA), scikit-image radon/iradon (parallel only; its own 725-bin detector and
rotation centre at pixel (n/2, n/2), accounted for in its reference; back = iradon without filter,
not an exact adjoint). ASTRA's CPU projectors are single-threaded; recon uses RECON_NUM_THREADS /
OMP_NUM_THREADS or all cores (printed).

Results: printed, written to benchmarks/results/cpu.md (section "## CT projectors"; other sections
are kept), benchmarks/results/ct_cpu.json and a bar chart benchmarks/results/ct_cpu.png. The cases and
library runners live in ``recon.bench.ct_projectors`` (shared with ``recon bench``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))

from recon.bench.ct_projectors import (  # noqa: E402,F401  (the cases and runners: one home, shared with recon bench)
    SD,
    SO,
    make_geometry,
    make_phantom,
    reference,
    rel,
    run_astra,
    run_case,
    run_recon,
    run_skimage,
    skimage_reference,
    timed,
)
from recon.bench.report import cpu_model, replace_section  # noqa: E402

# ---- report -----------------------------------------------------------------------------------------------------

def markdown(results, meta) -> str:
    lines = ["## CT projectors", "",
             f"`python benchmarks/run_ct.py{' --quick' if meta['quick'] else ''}` on {meta['date']}, "
             f"{meta['cpu']} ({meta['cores']} cores), recon threads {meta['threads']}; peers single-threaded. "
             "Wall times (median of "
             f"{meta['reps']}); error = relative l2 error of the forward projection of the rasterised "
             "Shepp-Logan phantom against its exact line integrals. Timings on a shared machine are noisy; "
             "the CPU seconds (process time, all threads) are the steadier figure there.",
             "", "| case | library | model | forward s (cpu s) | back s (cpu s) | fwd ratio peer/recon | back ratio | error |",
             "|---|---|---|---|---|---|---|---|"]
    for case, libs in results.items():
        rec = libs.get("recon", {})
        for lib, r in libs.items():
            if "skipped" in r:
                lines.append(f"| {case} | {lib} | {r['skipped']} | | | | | |")
                continue
            rf = r["forward_s"] / rec["forward_s"] if lib != "recon" else 1.0
            rb = r["back_s"] / rec["back_s"] if lib != "recon" else 1.0
            lines.append(f"| {case} | {lib} | {r.get('model', 'joseph')} | {r['forward_s']:.3f} ({r['forward_cpu_s']:.3f}) | "
                         f"{r['back_s']:.3f} ({r['back_cpu_s']:.3f}) | {rf:.1f} | {rb:.1f} | {r['error']:.2e} |")
    return "\n".join(lines) + "\n"


def plot(results, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(results)
    libs = sorted({l for c in cases for l, r in results[c].items() if "skipped" not in r},
                  key=lambda l: (l != "recon", l))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    w = 0.8 / max(1, len(libs))
    for ax, key, title in ((axes[0], "forward_s", "forward projection"), (axes[1], "back_s", "back projection")):
        for j, lib in enumerate(libs):
            vals = [results[c].get(lib, {}).get(key, np.nan) for c in cases]
            ax.bar(np.arange(len(cases)) + j * w, vals, w, label=lib)
        ax.set_xticks(np.arange(len(cases)) + w * (len(libs) - 1) / 2, cases)
        ax.set_yscale("log")
        ax.set_ylabel("seconds (log)")
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="half-size cases, one repetition")
    ap.add_argument("--cases", default="parallel,fan,cone")
    ap.add_argument("--libs", default="recon,astra,skimage")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3; quick: 1; cone: 1)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    libs = [l for l in args.libs.split(",") if l]
    cases = [c for c in args.cases.split(",") if c]
    reps = args.reps or (1 if args.quick else 3)
    results = {}
    threads = None
    for case in tqdm(cases, desc="cases"):
        geom = make_geometry(case, args.quick)
        results[case] = run_case(geom, libs, 1 if case == "cone" and not args.reps else reps)
        for lib, r in results[case].items():
            if lib == "recon":
                threads = r["threads"]
            if "skipped" in r:
                tqdm.write(f"{case:9s} {lib:8s} skipped: {r['skipped']}")
            else:
                rec = results[case]["recon"]
                tqdm.write(f"{case:9s} {lib:8s} forward {r['forward_s']:8.3f} s ({r['forward_s'] / rec['forward_s']:5.1f}x) "
                           f"back {r['back_s']:8.3f} s ({r['back_s'] / rec['back_s']:5.1f}x)  error {r['error']:.2e}")
    meta = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
            "reps": reps, "quick": args.quick}
    md = markdown(results, meta)
    print()
    print(md)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        replace_section(RESULTS / "cpu.md", md)
        (RESULTS / "ct_cpu.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        plot(results, RESULTS / "ct_cpu.png")
        print(f"wrote {RESULTS / 'cpu.md'}, {RESULTS / 'ct_cpu.json'}, {RESULTS / 'ct_cpu.png'}")
    return results


if __name__ == "__main__":
    main()
