#!/usr/bin/env python
"""NUFFT benchmark runner: recon against FINUFFT, ducc0, SigPy and torchkbnufft (those installed).

    python benchmarks/run_nufft.py                 # full run (~12 min on 2 cores)
    python benchmarks/run_nufft.py --quick         # fewer repetitions
    python benchmarks/run_nufft.py --cases 2d-1coil --libs recon,finufft --targets 1e-3

Cases (seeded, fixed): 2D 256x256 with 402 golden-angle spokes x 512 samples (1 and 8 coils) and
3D 128^3 with a 4096 x 256 golden-means koosh ball (1,048,576 samples, 1 coil); type 2 (image ->
samples) and type 1 (samples -> image); each at two accuracy targets, 1e-3 and 1e-6.

For every (case, target) and library it reports: the setting used (for every library, recon
included: the cheapest setting whose error on a small proxy problem is <= target, see
nufft_peers.calibrate, so that all are compared at equal measured accuracy), the MEASURED relative error on this case against a float64 direct sum on
200 random samples (type 2) or 200 random pixels (type 1), plan (setup) time, the median execute
time, the ratio peer time / recon time, and the peak memory of plan + execution.

Order: case by case; for each case every library runs in its own fresh worker process, one after
the other, so that a slow spell of a shared machine affects the libraries of a case alike (running
each library over all cases in one block let such spells move one library's numbers by +-30 %).

Peak memory: each library runs in its own worker process; before each case the kernel's peak-RSS
counter is reset (``echo 5 > /proc/self/clear_refs``) and the figure is ``VmHWM - VmRSS`` read from
/proc/self/status after the case: the extra resident memory of plan + runs, C++ allocations
included (tracemalloc would miss them). Where clear_refs is unavailable, the resource.getrusage
ru_maxrss delta is used and marked (it only grows, so later cases are then lower bounds). Workers
run with ``MALLOC_MMAP_THRESHOLD_=131072`` so that glibc unmaps freed large blocks and the memory
freed by one case does not absorb the next case's peak.

Results: printed, written to benchmarks/results/cpu.md (section "## NUFFT", other sections are
kept), benchmarks/results/nufft_cpu.json and a bar chart benchmarks/results/nufft_cpu.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SLOW = {"sigpy", "torchkbnufft"}
import _recon_path  # noqa: E402,F401  (recon: the installed package, else this checkout)

from recon.bench.report import replace_section, write_text_atomic  # noqa: E402


# ---- memory -------------------------------------------------------------------------------------------

def _status_kib(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Extra peak resident memory (MiB) of a block, see the module docstring."""

    def __init__(self):
        self.method = None

    def __enter__(self):
        self.method = "VmHWM"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.method = "ru_maxrss"
        if self.method == "VmHWM" and _status_kib("VmHWM") is None:
            self.method = "ru_maxrss"
        if self.method == "VmHWM":
            self.base = _status_kib("VmRSS")
        else:
            import resource

            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        if self.method == "VmHWM":
            self.mib = (_status_kib("VmHWM") - self.base) / 1024.0
        else:
            import resource

            self.mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.base) / 1024.0
        return False


# ---- worker: one library, all cases --------------------------------------------------------------------

def worker(args):
    import numpy as np

    if args.lib == "torchkbnufft":
        import torch

        torch.set_num_threads(args.threads)
    import nufft_peers as P

    adapter = P.ADAPTERS[args.lib](args.threads)
    data_dir = Path(args.data)
    problems = [p for p in sorted(data_dir.glob("*.npz")) if not args.case or p.stem == args.case]
    # warm up (JIT compilation, thread pools, FFT plans of tiny sizes)
    for g in sorted({p.stem.split("-")[0] for p in problems}):
        traj, N = P.PROXIES[g]
        warm = P.make_problem("warm", traj(), N, 1, 2, seed=2, n_ref=4)
        adapter.run(adapter.plan(warm, adapter.params[0]), warm.data)
    for path in problems:
        z = np.load(path)
        p = P.Problem(path.stem, z["coord"], tuple(int(v) for v in z["im_shape"]), int(z["ncoils"]), int(z["kind"]),
                      z["data"], z["ref_idx"], z["ref"])
        geometry = path.stem.split("-")[0]
        for target in args.targets:
            # start from the setting calibrated on the small proxy problem; if this case's measured
            # error is above the target (float rounding grows with problem size), move on to the next
            # more accurate setting. Only the accepted setting's plan/first run/memory are reported.
            t0 = time.perf_counter()
            param0, proxy_err, reached, proxy_s = P.calibrate(adapter, geometry, target)
            t_cal = time.perf_counter() - t0
            est = P.estimated_seconds(proxy_s, geometry, p)
            if est > args.max_call_seconds:
                rec = dict(lib=args.lib, version=adapter.version(), case=p.name, target=target,
                           setting=adapter.describe(param0), skipped=True, estimate_s=est, proxy_error=proxy_err,
                           reached=bool(reached))
                print("RESULT " + json.dumps(rec), flush=True)
                continue
            reps = args.reps_slow if args.lib in SLOW else args.reps
            res = P.settle(adapter, p, geometry, target, context=PeakMemory)
            param, err, t_plan, t_first = res["param"], res["error"], res["plan_s"], res["first_s"]
            tried = res["tried"]
            if args.lib in SLOW:
                # slow libraries: the first run (after the JIT warm-up on a tiny problem) is one of the
                # timed runs; reps - 1 more follow
                times = [t_first]
                for _ in range(reps - 1):
                    t0 = time.perf_counter()
                    out = adapter.run(res["h"], p.data)
                    times.append(time.perf_counter() - t0)
                    del out
                mem = res["ctx"]
            else:
                # time the repetitions under a second probe; the peak is the larger of the two,
                # both relative to the resident memory before the plan
                with PeakMemory() as mem2:
                    times = []
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        out = adapter.run(res["h"], p.data)
                        times.append(time.perf_counter() - t0)
                        del out
                mem = res["ctx"]
                mem.mib = max(mem.mib, mem2.mib + (mem2.base - mem.base) / 1024.0)
            del res
            rec = dict(lib=args.lib, version=adapter.version(), case=p.name, target=target,
                       setting=adapter.describe(param), reached=bool(err <= target), proxy_error=proxy_err,
                       rejected=tried, error=err, plan_s=t_plan, first_s=t_first, exec_s=float(np.median(times)),
                       times=times, peak_mib=mem.mib, mem_method=mem.method, calibration_s=t_cal,
                       scale=getattr(adapter, "last_scale", None), skipped=False)
            if rec["scale"] is not None:
                rec["scale"] = [rec["scale"].real, rec["scale"].imag]
            print("RESULT " + json.dumps(rec), flush=True)


# ---- parent -------------------------------------------------------------------------------------------------

def _fmt_ms(s):
    return f"{1e3 * s:.1f}" if s < 10 else f"{1e3 * s:.0f}"  # s: seconds


def table(results, quick: bool, threads: int, wall: float, command: str, max_call: float, reps: int,
          reps_slow: int) -> str:
    by = {}
    for r in results:
        by.setdefault((r["case"], r["target"]), []).append(r)
    order = ["recon", "finufft", "ducc0", "sigpy", "torchkbnufft"]
    versions = {r["lib"]: r["version"] for r in results}
    methods = sorted({r["mem_method"] for r in results if not r["skipped"]})
    lines = ["## NUFFT", ""]
    if quick:
        lines += ["**Provisional: a `--quick` run on a shared, loaded 2-core development machine (other jobs were "
                  "running); timings are noisy and only show that the runner works. The lead re-measures on a quiet "
                  "machine.**", ""]
    lines += [f"Command: `{command}` ({datetime.date.today().isoformat()}, {platform.machine()}, "
              f"{os.cpu_count()} cores, {threads} threads for every library, wall {wall / 60:.1f} min).",
              "Versions: " + ", ".join(f"{k} {versions[k]}" for k in order if k in versions) + ".", "",
              "Columns: *setting* = the library's accuracy parameters (every library, recon included: the cheapest setting "
              "whose error on a small proxy problem is <= target, moved to the next setting when the error "
              "measured on this case is still above it); *error* = measured relative l2 error on this case "
              "against a float64 direct sum on 200 random samples (type 2) / pixels (type 1); *plan* = setup time "
              f"(SigPy has no plan); *exec* = median execute time of {reps} runs after a warm-up run (SigPy and "
              f"torchkbnufft: of {reps_slow} run(s), the first included); *ratio* = peer exec / recon exec (> 1: recon "
              f"faster); *peak MiB* = extra peak RSS of plan + runs ({', '.join(methods)}, see run_nufft.py). "
              "`!` marks a library whose measured error stays above the target at its most accurate setting "
              "(that setting is shown). *skipped*: the execute time extrapolated from the proxy exceeded "
              f"--max-call-seconds ({max_call:g} s). torchkbnufft's output is rescaled by one least-squares constant fitted on a tiny problem "
              "(its `norm='ortho'` scaling differs from recon's by a constant).", ""]
    lines += ["| case | target | library | setting | error | plan ms | exec ms | ratio | peak MiB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (case, target), rs in sorted(by.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        rs = sorted(rs, key=lambda r: order.index(r["lib"]) if r["lib"] in order else 99)
        base = next((r["exec_s"] for r in rs if r["lib"] == "recon" and not r["skipped"]), None)
        for r in rs:
            if r["skipped"]:
                flag = "" if r["reached"] else " !"
                lines.append(f"| {case} | {target:g} | {r['lib']}{flag} | {r['setting']} | - | - | skipped: ~{r['estimate_s']:.0f} s "
                             f"per call (est.) | - | - |")
                continue
            ratio = f"{r['exec_s'] / base:.2f}" if base else "-"
            flag = "" if r["reached"] else " !"
            plan = "-" if r["lib"] == "sigpy" else _fmt_ms(r["plan_s"])
            lines.append(f"| {case} | {target:g} | {r['lib']}{flag} | {r['setting']} | {r['error']:.1e} | {plan} | "
                         f"{_fmt_ms(r['exec_s'])} | {ratio} | {r['peak_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results, path: Path, quick: bool):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    targets = sorted({r["target"] for r in results}, reverse=True)
    cases = sorted({r["case"] for r in results})
    libs = [l for l in ["recon", "finufft", "ducc0", "sigpy", "torchkbnufft"] if any(r["lib"] == l for r in results)]
    fig, axes = plt.subplots(len(targets), 1, figsize=(max(8, 1.6 * len(cases)), 3.6 * len(targets)), squeeze=False)
    width = 0.8 / max(1, len(libs))
    for ax, target in zip(axes[:, 0], targets):
        for j, lib in enumerate(libs):
            vals = []
            for c in cases:
                r = next((r for r in results if r["lib"] == lib and r["case"] == c and r["target"] == target
                          and not r["skipped"]), None)
                vals.append(1e3 * r["exec_s"] if r else np.nan)
            ax.bar(np.arange(len(cases)) + (j - (len(libs) - 1) / 2) * width, vals, width, label=lib)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(cases)))
        ax.set_xticklabels(cases, rotation=15, fontsize=8)
        ax.set_ylabel("execute time [ms]")
        ax.set_title(f"target relative error {target:g}" + (" (provisional, --quick, noisy)" if quick else ""))
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=len(libs))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parent(args):
    import numpy as np

    sys.path.insert(0, str(HERE))
    import nufft_peers as P
    from tqdm import tqdm

    t_start = time.perf_counter()
    libs = [l for l in (args.libs.split(",") if args.libs else P.ADAPTERS) if l]
    unknown = set(libs) - set(P.ADAPTERS)
    if unknown:
        sys.exit(f"unknown libraries {sorted(unknown)}; known: {sorted(P.ADAPTERS)}")
    missing = [l for l in libs if not P.ADAPTERS[l].available()]
    libs = [l for l in libs if l not in missing]
    for l in missing:
        print(f"{l}: not installed, left out")
    filters = [f for f in (args.cases.split(",") if args.cases else []) if f]
    cases = [c for c in P.case_names() if not filters or any(f in c[0] for f in filters)]
    if not cases:
        sys.exit("no case matches --cases " + args.cases)
    targets = [float(t) for t in args.targets.split(",")]
    threads = args.threads
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "RECON_NUM_THREADS"):
        env[var] = str(threads)
    # a fixed mmap threshold (it is dynamic by default) makes glibc return large freed blocks to the
    # OS, so one case's freed memory does not hide the next case's peak
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])

    results = []
    with tempfile.TemporaryDirectory(prefix="recon-nufft-bench-") as tmp:
        for name, g, nc, kind in tqdm(cases, desc="inputs + exact references", unit="case"):
            p = P.build_problem(g, nc, kind)
            np.savez(Path(tmp) / f"{name}.npz", coord=p.coord, im_shape=np.asarray(p.im_shape), ncoils=nc, kind=kind,
                     data=p.data, ref_idx=p.ref_idx, ref=p.ref)
        total = len(cases) * len(targets) * len(libs)
        bar = tqdm(total=total, desc="benchmark", unit="run")
        # case by case, one worker process per (case, library): the libraries of a case run back to
        # back, so a slow spell of a shared machine hits them alike rather than one library's block
        for name, *_ in cases:
            for lib in libs:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", lib, "--data", tmp,
                       "--case", name, "--threads", str(threads), "--reps", str(args.reps),
                       "--reps-slow", str(args.reps_slow), "--targets", ",".join(map(str, targets)),
                       "--max-call-seconds", str(args.max_call_seconds)]
                bar.set_postfix_str(f"{name} {lib}")
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for line in proc.stdout:
                    if line.startswith("RESULT "):
                        r = json.loads(line[7:])
                        results.append(r)
                        bar.update(1)
                        if r["skipped"]:
                            tqdm.write(f"{r['case']:>18} {r['target']:g} {r['lib']:>12}: skipped, estimated "
                                       f"{r['estimate_s']:.0f} s per call ({r['setting']})")
                            continue
                        tqdm.write(f"{r['case']:>18} {r['target']:g} {r['lib']:>12}: exec {_fmt_ms(r['exec_s'])} ms, "
                                   f"plan {_fmt_ms(r['plan_s'])} ms, error {r['error']:.1e}, {r['peak_mib']:.0f} MiB "
                                   f"({r['setting']})")
                err = proc.stderr.read()
                if proc.wait() != 0:
                    tqdm.write(f"{name} {lib}: worker failed:\n{err[-3000:]}")
        bar.close()
    wall = time.perf_counter() - t_start
    command = "python benchmarks/run_nufft.py " + " ".join(sys.argv[1:])
    if os.environ.get("OMP_WAIT_POLICY"):
        command = f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} " + command
    md = table(results, args.quick, threads, wall, command.strip(), args.max_call_seconds, args.reps, args.reps_slow)
    print()
    print(md)
    if not args.no_write and results:
        RESULTS.mkdir(parents=True, exist_ok=True)
        replace_section(RESULTS / "cpu.md", md)
        write_text_atomic(RESULTS / "nufft_cpu.json", json.dumps(results, indent=1))
        plot(results, RESULTS / "nufft_cpu.png", args.quick)
        print(f"wrote {RESULTS / 'cpu.md'}, {RESULTS / 'nufft_cpu.json'}, {RESULTS / 'nufft_cpu.png'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repetitions (3 for fast libraries, 1 for SigPy/torchkbnufft)")
    ap.add_argument("--cases", default="", help="comma-separated substrings of case names, e.g. 2d-1coil,3d")
    ap.add_argument("--libs", default="", help="comma-separated libraries (default: all installed)")
    ap.add_argument("--targets", default="1e-3,1e-6", help="accuracy targets (default 1e-3,1e-6)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every library")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions for recon/FINUFFT/ducc0 (default 9, quick 3)")
    ap.add_argument("--reps-slow", type=int, default=None, help="timed repetitions for SigPy/torchkbnufft (default 2, quick 1)")
    ap.add_argument("--max-call-seconds", type=float, default=None,
                    help="skip a (library, case) whose execute time, extrapolated from the proxy problem, exceeds "
                         "this (default 60, quick 20)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results/")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--case", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reps is None:
        args.reps = 3 if args.quick else 9
    if args.max_call_seconds is None:
        args.max_call_seconds = 20.0 if args.quick else 60.0
    if args.reps_slow is None:
        args.reps_slow = 1 if args.quick else 2
    if args.worker:
        args.lib = args.worker
        args.targets = [float(t) for t in str(args.targets).split(",")]
        worker(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
