"""``recon demo``: the main job on bundled data, end to end, in a few minutes on a laptop.

1. NUFFT: a golden-angle radial acquisition (402 spokes x 512 samples) of a 256x256 phantom;
   recon's NUFFT accuracy (against an exact direct NUDFT on a random subset of samples) and speed,
   next to every installed peer (FINUFFT, SigPy) on the same inputs; gridding and CG
   reconstructions of the phantom written as PNG.
2. MRI: the bundled real radial cardiac raw file reconstructed through ``recon mri``.
3. CT: the bundled real fan-beam data and a simulated low-dose scan reconstructed (FBP, PWLS-TV).
4. 4D MRI: the bundled free-breathing stack-of-stars sample (simulated by recon) self-gated into 6
   respiratory states and reconstructed by XD-GRASP through ``recon mri --dynamic respiratory``
   (HDF5, an animated GIF, a strip of the states and the breathing signal with its bins).

Everything is written under ``--out`` (PNG images and a ``summary.txt``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run the end-to-end demo on bundled data (NUFFT, MRI, CT, 4D MRI)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default="recon_demo", help="output directory (default: recon_demo)")
    p.add_argument("--parts", default="nufft,mri,ct,4d", help="comma-separated parts to run (default: all)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions and iterations")
    p.set_defaults(func=run)
    return p


def _median_time(f, reps: int) -> float:
    f()  # warm-up (plan caches, page faults)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _nudft_rows(image, coord, rows):
    """Exact type-2 values y_j for the selected samples (float64 direct sum, recon's convention)."""
    from .conventions import centred_positions

    N = image.shape
    grids = np.meshgrid(*[centred_positions(n) for n in N], indexing="ij")
    k = coord[rows].astype(np.float64)
    phase = sum(np.outer(k[:, a], grids[a].ravel() / N[a]) for a in range(len(N)))
    return np.exp(-2j * np.pi * phase) @ image.ravel().astype(np.complex128) / np.sqrt(np.prod(N))


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


def _peers():
    """Installed peer NUFFTs as name -> factory(coord (M, 2) cycles/FOV, N, tol) -> (type2, type1)."""
    peers = {}
    try:
        import finufft

        def make_finufft(coord, N, tol, nthreads):
            pts = [np.ascontiguousarray(2 * np.pi * coord[:, a] / N[a], dtype=np.float32) for a in range(2)]
            scale = 1 / np.sqrt(np.prod(N))
            p2 = finufft.Plan(2, N, eps=tol, isign=-1, dtype="complex64", nthreads=nthreads)
            p1 = finufft.Plan(1, N, eps=tol, isign=1, dtype="complex64", nthreads=nthreads)
            p2.setpts(*pts)
            p1.setpts(*pts)
            return (lambda x: p2.execute(x) * scale), (lambda y: p1.execute(y) * scale)

        peers["FINUFFT"] = make_finufft
    except ImportError:
        pass
    try:
        import sigpy

        def make_sigpy(coord, N, tol, nthreads):
            c = coord.astype(np.float32)
            return (lambda x: sigpy.nufft(x, c)), (lambda y: sigpy.nufft_adjoint(y, c, N))

        peers["SigPy"] = make_sigpy
    except ImportError:
        pass
    return peers


def nufft_part(out: str, quick: bool, log) -> None:
    from .ct.phantom import shepp_logan_2d
    from .io import write_png
    from .mri import pipe_menon_dcf
    from .mri.trajectory import radial_2d
    from .ops import Nufft
    from .ops.backend import default_threads
    from .solvers import cg

    N = (256, 256)
    n_spokes, n_samples = 402, 512
    reps = 3 if quick else 7
    log(f"[nufft] {N[0]}x{N[1]} phantom, golden-angle radial {n_spokes} spokes x {n_samples} samples, "
        f"{default_threads()} threads")
    image = shepp_logan_2d(N[0]).astype(np.complex64)
    coord = radial_2d(n_spokes, n_samples, N[0]).reshape(-1, 2)
    M = coord.shape[0]
    rng = np.random.default_rng(0)
    rows = rng.choice(M, 400, replace=False)
    exact = _nudft_rows(image, coord, rows)

    # accuracy and speed: type 2 (forward) on the phantom, type 1 (adjoint) on random data
    t0 = time.perf_counter()
    ref = Nufft(coord, N, tol=1e-12, dtype="complex128")
    y_ref = ref(image.astype(np.complex128))
    log(f"[nufft] float64 reference at tol=1e-12: error vs direct NUDFT {_rel(y_ref[rows], exact):.1e} "
        f"({time.perf_counter() - t0:.2f} s)")
    yr = (rng.standard_normal(M) + 1j * rng.standard_normal(M)).astype(np.complex64)
    x_ref = ref.H(yr.astype(np.complex128))

    table = []
    for tol in (1e-3, 1e-6):
        t0 = time.perf_counter()
        A = Nufft(coord, N, tol=tol)
        plan_s = time.perf_counter() - t0
        y = A(image)
        t2 = _median_time(lambda: A(image), reps)
        t1 = _median_time(lambda: A.H(yr), reps)
        table.append(("recon", tol, plan_s, t2, _rel(y[rows], exact), t1, _rel(A.H(yr), x_ref)))
        for name, make in _peers().items():
            t0 = time.perf_counter()
            f2, f1 = make(coord, N, tol, default_threads())
            plan_s = time.perf_counter() - t0
            r = 1 if name == "SigPy" else reps
            e2 = _rel(f2(image)[rows], exact)
            e1 = _rel(f1(yr), x_ref)
            table.append((name, tol, plan_s, _median_time(lambda: f2(image), r), e2,
                          _median_time(lambda: f1(yr), r), e1))
    log("[nufft] library   tol     plan(ms)  type2(ms)  err2     type1(ms)  err1     (ratio = peer time / recon time)")
    best = {tol: (t2, t1) for (name, tol, _, t2, _, t1, _) in table if name == "recon"}
    for name, tol, ps, t2, e2, t1, e1 in table:
        r2, r1 = t2 / best[tol][0], t1 / best[tol][1]
        ratio = "" if name == "recon" else f"   x{r2:.1f} / x{r1:.1f}"
        log(f"[nufft] {name:8s} {tol:.0e}  {ps * 1e3:8.1f}  {t2 * 1e3:9.1f}  {e2:.1e}  {t1 * 1e3:9.1f}  {e1:.1e}{ratio}")

    # reconstruction from the simulated radial data: gridding (DCF-weighted adjoint) and CG
    A = Nufft(coord, N, tol=1e-4)
    data = y_ref.astype(np.complex64)
    t0 = time.perf_counter()
    w = pipe_menon_dcf(coord, N, iterations=20)
    grid = A.H(data * w)
    t_grid = time.perf_counter() - t0
    t0 = time.perf_counter()
    # density-weighted least squares: (A^H W A) x = A^H W y, Toeplitz normal operator with the DCF
    x_cg, hist = cg(A.toeplitz(w), A.H(data * w), max_iter=10 if quick else 25, tol=1e-6, progress=False)
    t_cg = time.perf_counter() - t0
    truth = np.abs(image)
    for name, x, t in (("gridding", grid, t_grid), (f"CG ({len(hist.residual)} it)", x_cg, t_cg)):
        err = _rel(np.abs(x), truth)
        log(f"[nufft] {name:12s} reconstruction: relative error {err:.3f} ({t:.2f} s)")
    os.makedirs(out, exist_ok=True)
    panel = np.concatenate([truth, np.abs(grid) / max(np.abs(grid).max(), 1e-12) * truth.max(),
                            np.abs(x_cg), 4 * np.abs(np.abs(x_cg) - truth)], axis=1)
    path = os.path.join(out, "nufft_radial_phantom.png")
    write_png(path, panel)
    log(f"[nufft] wrote {path} (phantom | gridding | CG | 4x error of CG)")


def _recon_command(tag: str, args: list, dest: str, log, what: str = "") -> None:
    """Run ``recon ARGS`` (the command line, in this process), logged under ``[tag]`` with its time."""
    from .cli import main as cli_main

    log(f"[{tag}] recon {' '.join(args)}")
    t0 = time.perf_counter()
    rc = cli_main(args)
    if rc != 0:
        raise RuntimeError(f"[{tag}] recon {args[0]} exited with {rc}")
    log(f"[{tag}] done in {time.perf_counter() - t0:.1f} s -> {dest}{what}")


def mri_part(out: str, quick: bool, log) -> None:
    dest = os.path.join(out, "mri")
    _recon_command("mri", ["mri", "--sample", "cardiac-radial", "-o", dest, "--method", "cs", "--format", "png",
                           "--overwrite"], dest, log)


def ct_part(out: str, quick: bool, log) -> None:
    from .ct.demo import run_demo

    dest = os.path.join(out, "ct")
    t0 = time.perf_counter()
    run_demo(dest, quick=quick, log=log)
    log(f"[ct] done in {time.perf_counter() - t0:.1f} s -> {dest}")


def dynamic_part(out: str, quick: bool, log) -> None:
    dest = os.path.join(out, "4d")
    _recon_command("4d", ["mri", "--sample", "abdomen-4d-sos", "--dynamic", "respiratory", "--bins", "6", "-o",
                          dest + os.sep, "--overwrite"] + (["--iters", "10"] if quick else []), dest, log,
                   " (GIF of the respiratory states, strip, signal plot)")


PARTS = {"nufft": nufft_part, "mri": mri_part, "ct": ct_part, "4d": dynamic_part}


def run(args) -> int:
    os.makedirs(args.out, exist_ok=True)
    lines = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        if part not in PARTS:
            raise ValueError(f"unknown demo part {part!r}; choose from {', '.join(PARTS)}")
        PARTS[part](args.out, args.quick, log)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"summary: {os.path.join(args.out, 'summary.txt')}")
    return 0
