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

FBP/FDK part (``--parts fbp``): the same parallel and fan cases, ``fan_arc`` (the fan case with an
equiangular detector of 888 bins of 1.0 mm along the arc) and ``cone`` (FDK). Inputs: the analytic line
integrals of the phantom (float32); cone: the Joseph projection of the rasterised phantom (analytic line
integrals of 360 x 256^2 rays take minutes in numpy). Ram-Lak filter, full scans. Printed per case and
library: median wall time and process CPU time of the whole reconstruction (filtering included), the
peak memory of one call (the rise of the peak resident set size over the inputs, measured in a fresh
subprocess: ``/proc/self/clear_refs``, ``VmHWM``), the wall-time ratio peer / recon and the relative l2
error against the rasterised phantom in the central disk (radius 0.6 x half the image; cone: the two
slices next to the mid-plane). Peers, same inputs: ASTRA's CPU ``FBP`` algorithm (parallel beams only:
ASTRA refuses fan geometries on the CPU, "FBP currently only supports parallel projection geometries";
its FBP_CUDA / FDK_CUDA need a GPU) with the ``linear`` (Joseph) projector, and scikit-image's
``iradon`` (parallel only; ramp filter, linear interpolation, on its own detector and rotation centre as
for the projectors).

Results: printed, written to benchmarks/results/cpu.md (sections "## CT projectors" and "## FBP / FDK";
other sections are kept), benchmarks/results/ct_cpu.json, benchmarks/results/fbp_cpu.json and a bar
chart benchmarks/results/ct_cpu.png. The cases and library runners live in ``recon.bench.ct_projectors``
and ``recon.bench.ct_fbp`` (shared with ``recon bench``).
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
import _recon_path  # noqa: E402,F401  (recon: the installed package, else this checkout)

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
from recon.bench.ct_fbp import (  # noqa: E402
    FBP_CASES,
    fbp_callable,
    fbp_error,
    fbp_inputs,
    fbp_peak_memory_here,
)
from recon.bench.ct_projectors import _CPU  # noqa: E402
from recon.bench.report import cpu_model, replace_section, write_text_atomic  # noqa: E402

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


def machine_meta(quick: bool, reps: int, threads) -> dict:
    meta = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "threads": threads, "reps": reps, "quick": quick}
    try:
        meta["load"] = os.getloadavg()[0]
    except OSError:
        pass
    return meta


def fbp_peak_memory(case: str, lib: str, quick: bool):
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--peak-memory", f"{case}:{lib}"] + (["--quick"] if quick else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800).stdout
        return json.loads(out.strip().splitlines()[-1])["peak_mib"]
    except (subprocess.SubprocessError, ValueError, IndexError, KeyError):
        return None


def fbp_markdown(results, meta) -> str:
    load = f", load average {meta['load']:.1f} at the start" if "load" in meta else ""
    lines = ["## FBP / FDK", "",
             f"`python benchmarks/run_ct.py --parts fbp{' --quick' if meta['quick'] else ''}` on {meta['date']}, "
             f"{meta['cpu']} ({meta['cores']} cores{load}), recon threads {meta['threads']}; peers as they run "
             f"(ASTRA's CPU FBP and scikit-image single-threaded). Whole reconstruction (filtering included): "
             f"median wall time of {meta['reps']} calls (process CPU time, all threads), peak memory of one call "
             "over its inputs, wall-time ratio peer / recon, and the relative l2 error against the rasterised "
             "phantom in the central disk (cone: mid-plane slices). Ram-Lak filter, float32 inputs.",
             "", "| case | library | method | wall s (cpu s) | peak MiB | ratio peer/recon | error |",
             "|---|---|---|---|---|---|---|"]
    for case, libs in results.items():
        rec = libs.get("recon", {})
        for lib, r in libs.items():
            if "skipped" in r:
                lines.append(f"| {case} | {lib} | {r['skipped']} | | | | |")
                continue
            ratio = f"{r['wall_s'] / rec['wall_s']:.1f}" if lib != "recon" and "wall_s" in rec else "1.0"
            mem = f"{r['peak_mib']:.0f}" if r.get("peak_mib") is not None else "n/a"
            lines.append(f"| {case} | {lib} | {r['model']} | {r['wall_s']:.3f} ({r['cpu_s']:.3f}) | {mem} | {ratio} | "
                         f"{r['error']:.4f} |")
    return "\n".join(lines) + "\n"


def run_fbp_part(args, libs, reps):
    from tqdm import tqdm

    cases = [c for c in args.fbp_cases.split(",") if c]
    bad = [c for c in cases if c not in FBP_CASES]
    if bad:
        raise SystemExit(f"--fbp-cases: unknown case(s) {bad}; expected some of {FBP_CASES}")
    results, threads = {}, None
    for case in tqdm(cases, desc="fbp cases"):
        geom, ell, truth, sino = fbp_inputs(case, args.quick)
        results[case] = {}
        for lib in libs:
            job = fbp_callable(lib, geom, ell, sino)
            if isinstance(job, str):
                results[case][lib] = {"skipped": job}
                tqdm.write(f"{case:9s} {lib:8s} skipped: {job}")
                continue
            call, model = job
            wall, rec = timed(call, 1 if geom.ndim == 3 and not args.reps else reps)
            r = {"model": model, "wall_s": wall, "cpu_s": _CPU["last"], "error": fbp_error(rec, truth),
                 "peak_mib": fbp_peak_memory(case, lib, args.quick)}
            if lib == "recon":
                from recon.ops.backend import default_threads

                threads = default_threads()
            results[case][lib] = r
            base = results[case].get("recon", {}).get("wall_s", wall)
            mem = f"{r['peak_mib']:.0f} MiB" if r["peak_mib"] is not None else "n/a"
            tqdm.write(f"{case:9s} {lib:8s} {wall:8.3f} s (cpu {r['cpu_s']:.3f} s, {wall / base:5.1f}x recon)  "
                       f"peak {mem}  error {r['error']:.4f}")
    meta = machine_meta(args.quick, reps, threads)
    md = fbp_markdown(results, meta)
    print()
    print(md)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        replace_section(RESULTS / "cpu.md", md, "## FBP / FDK")
        write_text_atomic(RESULTS / "fbp_cpu.json", json.dumps({"meta": meta, "results": results}, indent=1))
        print(f"wrote {RESULTS / 'cpu.md'}, {RESULTS / 'fbp_cpu.json'}")
    return results


def run_projectors(args, libs, reps):
    from tqdm import tqdm

    cases = [c for c in args.cases.split(",") if c]
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
    meta = machine_meta(args.quick, reps, threads)
    md = markdown(results, meta)
    print()
    print(md)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        replace_section(RESULTS / "cpu.md", md)
        write_text_atomic(RESULTS / "ct_cpu.json", json.dumps({"meta": meta, "results": results}, indent=1))
        plot(results, RESULTS / "ct_cpu.png")
        print(f"wrote {RESULTS / 'cpu.md'}, {RESULTS / 'ct_cpu.json'}, {RESULTS / 'ct_cpu.png'}")
    return results




def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="half-size cases, one repetition")
    ap.add_argument("--parts", default="projectors,fbp", help="projectors and/or fbp")
    ap.add_argument("--cases", default="parallel,fan,cone", help="projector cases")
    ap.add_argument("--fbp-cases", default=",".join(FBP_CASES), help="FBP/FDK cases")
    ap.add_argument("--libs", default="recon,astra,skimage")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3; quick: 1; cone: 1)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--peak-memory", metavar="CASE:LIB", help=argparse.SUPPRESS)  # child of fbp_peak_memory
    args = ap.parse_args(argv)
    if args.peak_memory:
        case, lib = args.peak_memory.split(":")
        print(json.dumps({"peak_mib": fbp_peak_memory_here(case, lib, args.quick)}))
        return None
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - {"projectors", "fbp"}
    if unknown:
        ap.error(f"--parts: unknown part(s) {sorted(unknown)}; expected projectors and/or fbp")
    libs = [l for l in args.libs.split(",") if l]
    reps = args.reps or (1 if args.quick else 3)
    results = {}
    if "projectors" in parts:
        results["projectors"] = run_projectors(args, libs, reps)
    if "fbp" in parts:
        results["fbp"] = run_fbp_part(args, libs, reps)
    return results


if __name__ == "__main__":
    main()
