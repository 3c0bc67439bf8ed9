#!/usr/bin/env python
"""A/B speed check of recon against another source tree (an older commit) in one run.

    git worktree add --detach /tmp/recon-old <commit> && (cd /tmp/recon-old && tools/dev_build.sh)
    python benchmarks/ab_compare.py --baseline /tmp/recon-old            # ~15 min on 2 cores
    python benchmarks/ab_compare.py --baseline /tmp/recon-old --only nufft --rounds 5

Every measurement runs in a fresh worker process whose ``PYTHONPATH`` puts one tree first (this
checkout or ``--baseline``); the two trees alternate case by case and round by round (A B B A ...),
so a slow spell of a shared machine hits both alike. The figure per case is the minimum over
rounds of the median over repetitions (the least disturbed run), in wall time or, with
``--measure cpu``, in process CPU time (all threads; robust when other processes load the machine,
with ``OMP_WAIT_POLICY=PASSIVE`` so that waiting threads do not burn CPU). Cases: the NUFFT runner's 12 cases
(recon at fixed settings: tol 1e-3 and 1e-6, complex64, one plan, same inputs), the CT projector
runner's parallel and fan cases (forward and back projection), and the MRI runner's CG-SENSE and
L1-wavelet reconstructions of one 256x256 8-coil slice (fixed lambda and iterations). It prints
new/old time ratios and flags cases more than ``--threshold`` (default 5 %) slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# ---- cases (run inside a worker, against whichever recon the worker imports) -------------------------

def _nufft_cases():
    out = []
    for geom, nc in (("2d", 1), ("2d", 8), ("3d", 1)):
        for kind in (2, 1):
            for tol in (1e-3, 1e-6):
                out.append(f"nufft-{geom}-{nc}coil-type{kind}-{tol:g}")
    return out


CASES = {
    "nufft": _nufft_cases(),
    "ct": [f"ct-{g}-{d}" for g in ("parallel", "fan") for d in ("forward", "back")],
    "mri": ["mri-sense", "mri-cs"],
}


def _prepare(case, tmp):
    """Build (and cache on disk, shared by both trees) the inputs of a case; return a callable."""
    import numpy as np

    import recon  # noqa: F401  (first, from the worker's PYTHONPATH: the runners put this checkout on sys.path)

    sys.path.insert(0, str(HERE))
    if case.startswith("nufft"):
        import nufft_peers as P

        _, geom, coils, kind, tol = case.split("-", 4)
        nc, kind, tol = int(coils[:-4]), int(kind[-1]), float(tol)
        path = Path(tmp) / f"{geom}-{nc}-{kind}.npz"
        if not path.exists():
            p = P.build_problem(geom, nc, kind)
            np.savez(path, coord=p.coord, N=np.asarray(p.im_shape), data=p.data)
        z = np.load(path)
        from recon.ops import Nufft

        op = Nufft(z["coord"], tuple(int(v) for v in z["N"]), tol=tol)
        data = z["data"]
        return (lambda: op.forward(data)) if kind == 2 else (lambda: op.adjoint(data))
    if case.startswith("ct"):
        import run_ct

        _, g, direction = case.split("-")
        geom = run_ct.make_geometry(g, False)
        _, img = run_ct.make_phantom(geom)
        from recon.ops import Projector

        P = Projector(geom, dtype="float32")
        sino = P(img)
        return (lambda: P(img)) if direction == "forward" else (lambda: P.H(sino))
    if case.startswith("mri"):
        import run_mri

        path = Path(tmp) / "mri.npz"
        if not path.exists():
            ks, _ = run_mri.synthetic_case(4, 0.08, 1, (256, 256), tmp)
            from recon.mri import coils

            np.savez(path, k=ks[0], maps=coils.espirit_maps(ks[0]))
        z = np.load(path)
        k, maps = z["k"], z["maps"]
        from recon.mri import recon as R

        if case == "mri-sense":
            return lambda: R.cg_sense(k, maps, lam=1e-3, max_iter=30, tol=0)
        return lambda: R.cs_wavelet(k, maps, lam=3e-3, max_iter=60, tol=0)
    raise ValueError(case)


def worker(case, tmp, reps):
    fn = _prepare(case, tmp)
    fn()  # warm-up
    times, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    import recon

    print("RESULT " + json.dumps({"case": case, "wall": statistics.median(times), "cpu": statistics.median(cpu),
                                  "times": times, "recon": os.path.dirname(recon.__file__)}), flush=True)


# ---- parent ---------------------------------------------------------------------------------------------

def _run(tree, case, tmp, reps, threads, measure):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(HERE)])
    for var in ("OMP_NUM_THREADS", "RECON_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads) if var != "OPENBLAS_NUM_THREADS" else "1"
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", case, "--tmp", tmp, "--reps", str(reps)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            rec = json.loads(line[7:])
            if Path(rec["recon"]).resolve() != (Path(tree) / "recon").resolve():
                raise RuntimeError(f"worker imported recon from {rec['recon']}, expected {tree}/recon")
            return rec[measure]
    raise RuntimeError(f"{case} on {tree} failed:\n{r.stderr[-2000:]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="source tree of the older recon (with its built recon/_core*.so)")
    ap.add_argument("--only", default="nufft,ct,mri", help="which groups (default all)")
    ap.add_argument("--cases", default="", help="comma-separated substrings of case names (default all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--measure", choices=("wall", "cpu"), default="wall",
                    help="wall time (a quiet machine) or process CPU time (a loaded one)")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.tmp, a.reps)
    if not a.baseline:
        ap.error("--baseline is required")
    trees = {"new": ROOT, "old": Path(a.baseline).resolve()}
    cases = [c for g in a.only.split(",") for c in CASES[g]]
    if a.cases:
        cases = [c for c in cases if any(f in c for f in a.cases.split(","))]
    best = {(t, c): float("inf") for t in trees for c in cases}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recon-ab-") as tmp:
        for rnd in range(a.rounds):
            for i, case in enumerate(cases):
                order = ("new", "old") if (rnd + i) % 2 == 0 else ("old", "new")
                for t in order:
                    best[(t, case)] = min(best[(t, case)], _run(trees[t], case, tmp, a.reps, a.threads, a.measure))
                print(f"round {rnd + 1}/{a.rounds} {case:32s} new {1e3 * best[('new', case)]:9.1f} ms  "
                      f"old {1e3 * best[('old', case)]:9.1f} ms", flush=True)
    rows, slower = [], []
    for c in cases:
        ratio = best[("new", c)] / best[("old", c)]
        rows.append((c, best[("new", c)], best[("old", c)], ratio))
        if ratio > 1 + a.threshold:
            slower.append(c)
    print(f"\n{a.measure} time\n\n| case | new (ms) | old (ms) | new/old |\n|---|---|---|---|")
    for c, n, o, r in rows:
        print(f"| {c} | {1e3 * n:.1f} | {1e3 * o:.1f} | {r:.3f}{' **slower**' if c in slower else ''} |")
    print(f"\n{len(cases)} cases, {a.rounds} rounds x {a.reps} reps, {a.threads} threads, "
          f"{(time.perf_counter() - t0) / 60:.1f} min; slower than {100 * a.threshold:.0f} %: {slower or 'none'}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "slower": slower, "baseline": str(trees["old"])}, indent=1))
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
