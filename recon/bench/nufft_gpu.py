"""GPU NUFFT benchmark: recon (recon._cuda) against cuFINUFFT and torchkbnufft (those importable): the
cases and runner of ``python benchmarks/gpu.py`` (a thin wrapper of :func:`main`) and of the NUFFT part
of ``recon bench --device cuda``.

    python benchmarks/gpu.py                    # full run (needs a CUDA GPU; a few minutes on an H100)
    python benchmarks/gpu.py --cases 2d --libs recon,cufinufft --targets 1e-3
    python benchmarks/gpu.py --smoke            # tiny sizes, CPU arrays, recon only: checks this script

Needs a CUDA device, the recon._cuda module, and torch with CUDA (preferred) or cupy. Without them it
stops with a message saying which is missing (exit status 2); it cannot run on the development
machine this script was written on (no GPU there), so no result files ship with it.

Cases (seeded): 2D 256x256, 402 golden-angle spokes x 512 samples (205,824 samples), 8 coils;
3D 256^3 koosh ball, 39,063 golden-means spokes x 256 samples (10,000,128 samples), 1 coil. Type 2
(image -> samples) and type 1 (samples -> image), accuracy targets 1e-3 and 1e-6 (complex64), and
the Toeplitz normal operator A^H A (recon only, torch; 2D, and 3D with --toeplitz-3d: its
point-spread function is computed on the CPU on the (2N)^3 grid, minutes and ~20 GB of RAM).

For each (case, target, library): the setting used (recon: tol = target; cuFINUFFT: eps = target;
torchkbnufft: fixed kernel settings per target, it has no tolerance), the MEASURED relative error
against a float64 direct sum (computed on the GPU) on 200 random samples (type 2) or pixels (type 1),
the plan time (for recon: Nufft construction, which builds the CPU plan, plus the first GPU call that
builds and caches the device plan), the median execution time (GPU synchronised; warm-up excluded),
the ratio to recon, and the peak GPU memory of plan + runs (torch's allocator; cupy: n/a).
Results: benchmarks/results/<gpu-name>.md and .png (bar chart of execution times).
"""

from __future__ import annotations

import argparse
import datetime
import math
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .nufft import golden_angle_radial_2d, golden_means_radial_3d
from .report import importable, write_text_atomic


# ---- trajectories (cycles per FOV, last axis ordered like the image axes): recon.bench.nufft's, flattened ---

def radial_2d(n_spokes, n_samples, N):
    return golden_angle_radial_2d(n_spokes, n_samples, N).reshape(-1, 2)


def koosh_3d(n_spokes, n_samples, N):
    return golden_means_radial_3d(n_spokes, n_samples, N).reshape(-1, 3)


CASES = {
    "2d": dict(coord=lambda: radial_2d(402, 512, 256), N=(256, 256), coils=8, reps=10),
    "3d": dict(coord=lambda: koosh_3d(39063, 256, 256), N=(256, 256, 256), coils=1, reps=3),
}
SMOKE = {
    "2d": dict(coord=lambda: radial_2d(20, 32, 32), N=(32, 32), coils=2, reps=2),
    "3d": dict(coord=lambda: koosh_3d(40, 16, 16), N=(16, 16, 16), coils=1, reps=2),
}
TARGETS = (1e-3, 1e-6)


# ---- the array library on the GPU (torch preferred, else cupy; numpy for --smoke) ---------------------

class Lib:
    def __init__(self, name):
        self.name = name
        if name == "torch":
            import torch

            self.m = torch
            self.dev = torch.device("cuda", 0)
        elif name == "cupy":
            import cupy

            self.m = cupy
        else:
            self.m = np

    def asarray(self, a):
        if self.name == "torch":
            return self.m.from_numpy(np.ascontiguousarray(a)).to(self.dev)
        if self.name == "cupy":
            return self.m.asarray(a)
        return np.ascontiguousarray(a)

    def numpy(self, a):
        if self.name == "torch":
            return a.detach().cpu().numpy()
        if self.name == "cupy":
            return self.m.asnumpy(a)
        return np.asarray(a)

    def sync(self):
        if self.name == "torch":
            self.m.cuda.synchronize()
        elif self.name == "cupy":
            self.m.cuda.Device().synchronize()

    def reset_peak(self):
        if self.name == "torch":
            self.sync()
            self.m.cuda.reset_peak_memory_stats()
            return self.m.cuda.memory_allocated()
        return None

    def peak_mib(self, base):
        if self.name == "torch" and base is not None:
            self.sync()
            return (self.m.cuda.max_memory_allocated() - base) / 2**20
        return float("nan")

    def exp_matmul_ref(self, data, coord, N, idx, kind):
        """float64 direct sums at idx (samples for type 2, flat pixels for type 1), on this device."""
        m = self.m
        d = len(N)
        cen = [np.arange(n) - n // 2 for n in N]
        out = np.zeros((data.shape[0], len(idx)), dtype=np.complex128)
        if kind == 2:
            k = coord[idx]
            for b in range(data.shape[0]):
                g = self.asarray(data[b].astype(np.complex128))
                for a in reversed(range(d)):  # contract the last axis with its phase matrix each time
                    e = self.asarray(np.exp(-2j * np.pi * np.outer(k[:, a], cen[a]) / N[a]))  # (J, N_a)
                    if a == d - 1:
                        g = g.reshape(-1, N[a]) @ e.T                # (prod N[:-1], J)
                    else:
                        g = g.reshape(-1, N[a], len(idx))           # (prod N[:a], N_a, J)
                        g = (g * e.T[None]).sum(1)                  # (prod N[:a], J)
                out[b] = self.numpy(g).reshape(-1)
        else:
            pos = (np.stack(np.unravel_index(idx, N), axis=-1) - np.asarray(N) // 2) / np.asarray(N, float)
            P = self.asarray(pos)  # (P, d)
            Y = self.asarray(data.astype(np.complex128))
            chunk = 1 << 18
            acc = None
            for s in range(0, coord.shape[0], chunk):
                K = self.asarray(coord[s:s + chunk])
                ph = (K @ P.T) * (2 * np.pi)
                E = m.exp(1j * ph) if self.name != "torch" else m.polar(m.ones_like(ph), ph)
                part = Y[:, s:s + chunk] @ E
                acc = part if acc is None else acc + part
            out = self.numpy(acc)
        return out / math.sqrt(float(np.prod(N)))


def pick_lib(smoke):
    if smoke:
        return Lib("numpy")
    import recon

    if not recon.cuda_available():
        try:
            from recon import _cuda

            why = _cuda.device_status()
        except ImportError as exc:
            why = f"recon._cuda is not built ({exc})"
        print(f"benchmarks/gpu.py needs a CUDA device and the recon._cuda module: {why}", file=sys.stderr)
        sys.exit(2)
    try:
        import torch

        if torch.cuda.is_available():
            return Lib("torch")
    except ImportError:
        pass
    try:
        import cupy  # noqa: F401

        return Lib("cupy")
    except ImportError:
        print("benchmarks/gpu.py needs torch with CUDA or cupy to hold GPU arrays; neither is usable", file=sys.stderr)
        sys.exit(2)


# ---- libraries -----------------------------------------------------------------------------------------

class Recon:
    name = "recon"

    def setting(self, target):
        return f"tol={target:g}"

    def plan(self, lib, coord, N, kind, target, data):
        from recon.ops.nufft import Nufft

        op = Nufft(coord, N, target, dtype="complex64")
        run = (lambda x: op.forward(x)) if kind == 2 else (lambda y: op.adjoint(y))
        run(data)  # builds and caches the device plan
        lib.sync()
        return run

    @staticmethod
    def available(lib):
        return True


class Cufinufft:
    name = "cufinufft"

    @staticmethod
    def available(lib):
        return lib.name != "numpy" and importable("cufinufft")

    def setting(self, target):
        return f"eps={target:g}"

    def plan(self, lib, coord, N, kind, target, data):
        import cufinufft

        ncoils = data.shape[0]
        plan = cufinufft.Plan(kind, tuple(N), n_trans=ncoils, eps=target, isign=-1 if kind == 2 else 1,
                              dtype="complex64", modeord=0)
        pts = [lib.asarray(np.ascontiguousarray(2 * np.pi * coord[:, a] / N[a], dtype=np.float32))
               for a in range(len(N))]
        plan.setpts(*pts)
        scale = 1.0 / math.sqrt(float(np.prod(N)))
        keep = (plan, pts)

        def run(x):
            out = keep[0].execute(x)
            return out * scale

        return run


class TorchKbNufft:
    name = "torchkbnufft"
    # no tolerance parameter: the settings nearest each target on the CPU proxies of benchmarks/nufft_peers.py
    SETTINGS = {1e-3: (4, 2**10), 1e-6: (8, 2**16)}

    @staticmethod
    def available(lib):
        return lib.name == "torch" and importable("torchkbnufft")

    def setting(self, target):
        npts, tos = self.SETTINGS.get(target, (6, 2**10))
        return f"numpoints={npts} table_oversamp=2^{int(math.log2(tos))}"

    def plan(self, lib, coord, N, kind, target, data):
        import torch
        import torchkbnufft as tkbn

        npts, tos = self.SETTINGS.get(target, (6, 2**10))
        cls = tkbn.KbNufft if kind == 2 else tkbn.KbNufftAdjoint
        op = cls(im_size=tuple(N), numpoints=npts, table_oversamp=tos, dtype=torch.complex64).to(lib.dev)
        om = lib.asarray(np.ascontiguousarray((2 * np.pi * coord / np.asarray(N)).T, dtype=np.float32))
        # torchkbnufft's norm='ortho' differs from recon's scaling by a constant: fit it on a tiny problem
        small = tuple(min(n, 16) for n in N)
        rng = np.random.default_rng(0)
        c = (rng.random((64, len(N))) - 0.5) * np.asarray(small)
        x = (rng.standard_normal((1, 1) + small) + 1j * rng.standard_normal((1, 1) + small)).astype(np.complex64)
        ref = lib.exp_matmul_ref(x[0], c, small, np.arange(64), 2)[0]
        fwd = tkbn.KbNufft(im_size=small, numpoints=npts, table_oversamp=tos, dtype=torch.complex64).to(lib.dev)
        got = lib.numpy(fwd(lib.asarray(x), lib.asarray((2 * np.pi * c / np.asarray(small)).T.astype(np.float32)),
                            norm="ortho"))[0, 0].astype(np.complex128)
        s = complex(np.vdot(got, ref) / np.vdot(got, got))
        s = s if kind == 2 else s.conjugate()

        def run(x):
            with torch.no_grad():
                return op(x[None], om, norm="ortho")[0] * s

        return run


LIBS = {c.name: c for c in (Recon, Cufinufft, TorchKbNufft)}


# ---- running -------------------------------------------------------------------------------------------

def timed(lib, fn, *args):
    lib.sync()
    t = time.perf_counter()
    out = fn(*args)
    lib.sync()
    return out, time.perf_counter() - t


def bench_case(lib, case, geometry, kind, target, libs, rng, rows):
    coord, N, ncoils, reps = case["coord"], case["N"], case["coils"], case["reps"]
    M = coord.shape[0]
    if kind == 2:
        data = (rng.standard_normal((ncoils,) + N) + 1j * rng.standard_normal((ncoils,) + N)).astype(np.complex64)
        idx = np.sort(rng.choice(M, size=min(200, M), replace=False))
    else:
        data = (rng.standard_normal((ncoils, M)) + 1j * rng.standard_normal((ncoils, M))).astype(np.complex64)
        idx = np.sort(rng.choice(int(np.prod(N)), size=min(200, int(np.prod(N))), replace=False))
    ref = lib.exp_matmul_ref(data, coord, N, idx, kind)
    d_data = lib.asarray(data)
    recon_time = None
    for name in libs:
        impl = LIBS[name]()
        if not impl.available(lib):
            continue
        base = lib.reset_peak()
        try:
            t0 = time.perf_counter()
            run = impl.plan(lib, coord, N, kind, target, d_data)
            lib.sync()
            plan_s = time.perf_counter() - t0
            out, _ = timed(lib, run, d_data)  # warm-up
            times = [timed(lib, run, d_data)[1] for _ in range(reps)]
        except Exception as exc:  # noqa: BLE001 - a failing peer is reported, not fatal
            rows.append(dict(case=f"{geometry} type{kind}", target=target, lib=name, setting="-",
                             error=float("nan"), plan=float("nan"), exec=float("nan"), ratio=float("nan"),
                             peak=float("nan"), note=f"failed: {type(exc).__name__}: {exc}"[:120]))
            continue
        got = lib.numpy(out).reshape(ncoils, -1)[:, idx]
        err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        med = statistics.median(times)
        if name == "recon":
            recon_time = med
        rows.append(dict(case=f"{geometry} type{kind}", target=target, lib=name, setting=impl.setting(target),
                         error=err, plan=plan_s, exec=med, ratio=med / recon_time if recon_time else float("nan"),
                         peak=lib.peak_mib(base), note=""))


def bench_toeplitz(lib, case, geometry, target, rng, rows):
    """A^H A by Toeplitz embedding (recon; torch tensors only: the embedding FFTs use torch.fft)."""
    if lib.name not in ("torch", "numpy"):
        return
    from recon.ops.nufft import Nufft

    coord, N, ncoils, reps = case["coord"], case["N"], case["coils"], case["reps"]
    x = (rng.standard_normal((ncoils,) + N) + 1j * rng.standard_normal((ncoils,) + N)).astype(np.complex64)
    base = lib.reset_peak()
    t0 = time.perf_counter()
    op = Nufft(coord, N, target, dtype="complex64")
    T = op.toeplitz()
    if lib.name == "torch":
        import torch

        dx = torch.from_numpy(x).to(lib.dev)
    else:
        import torch

        dx = torch.from_numpy(x)
    out, _ = timed(lib, T.forward, dx)
    plan_s = time.perf_counter() - t0
    times = [timed(lib, T.forward, dx)[1] for _ in range(reps)]
    direct = op.adjoint(op.forward(dx))
    got = out.detach().cpu().numpy()
    ref = direct.detach().cpu().numpy()
    err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    rows.append(dict(case=f"{geometry} normal (Toeplitz)", target=target, lib="recon", setting=f"tol={target:g}",
                     error=err, plan=plan_s, exec=statistics.median(times), ratio=1.0, peak=lib.peak_mib(base),
                     note="error vs adjoint(forward(x))"))


def device_name(lib):
    if lib.name == "torch":
        return lib.m.cuda.get_device_name(0)
    if lib.name == "cupy":
        return lib.m.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return "cpu-smoke"


def write_results(rows, lib, args, out_dir):
    name = device_name(lib)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "gpu"
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{slug}.md"
    import recon

    lines = [f"# GPU NUFFT benchmark: {name}", "",
             f"{datetime.datetime.now().isoformat(timespec='seconds')}; recon {recon.__version__}; arrays: {lib.name}; "
             f"command: `python benchmarks/gpu.py {' '.join(sys.argv[1:])}`", "",
             "Errors: relative l2 against a float64 direct sum on 200 random samples (type 2) or pixels (type 1). "
             "Times: seconds, median of the runs after one warm-up, GPU synchronised. Peak: GPU MiB of plan + runs "
             "(torch allocator; n/a with cupy).", "",
             "| case | target | library | setting | error | plan s | exec s | / recon | peak MiB | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['target']:g} | {r['lib']} | {r['setting']} | {r['error']:.2e} | "
                     f"{r['plan']:.3f} | {r['exec']:.4f} | {r['ratio']:.2f} | {r['peak']:.0f} | {r['note']} |")
    write_text_atomic(md, "\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = [f"{r['case']} {r['target']:g}\n{r['lib']}" for r in rows]
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows)), 4))
        ax.bar(range(len(rows)), [r["exec"] for r in rows])
        ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=6)
        ax.set_ylabel("execution time [s]")
        ax.set_yscale("log")
        ax.set_title(f"NUFFT on {name}")
        fig.tight_layout()
        fig.savefig(out_dir / f"{slug}.png", dpi=120)
        plt.close(fig)
    except Exception as exc:  # noqa: BLE001 - the table is the result; the chart is a convenience
        print(f"(no chart: {exc})")
    return md


def main(argv=None, results: Path | None = None):
    """``python benchmarks/gpu.py`` (its command line); ``results``: the default results folder."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="2d,3d")
    ap.add_argument("--libs", default="recon,cufinufft,torchkbnufft")
    ap.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS))
    ap.add_argument("--no-toeplitz", action="store_true")
    ap.add_argument("--toeplitz-3d", action="store_true", help="also the 3D Toeplitz normal (slow CPU set-up)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on CPU arrays (checks the script only)")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results; --smoke: a temp dir)")
    args = ap.parse_args(argv)
    lib = pick_lib(args.smoke)
    from tqdm import tqdm

    specs = SMOKE if args.smoke else CASES
    libs = [s for s in args.libs.split(",") if s]
    for s in libs:
        if s not in LIBS:
            sys.exit(f"unknown library {s!r}; known: {', '.join(LIBS)}")
    targets = [float(t) for t in args.targets.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    jobs = [(g, k, t) for g in args.cases.split(",") for t in targets for k in (2, 1)]
    for g, kind, target in tqdm(jobs, desc="cases"):
        spec = specs[g]
        case = dict(spec, coord=spec["coord"](), N=tuple(spec["N"]))
        bench_case(lib, case, g, kind, target, libs, rng, rows)
    if not args.no_toeplitz:
        for g in args.cases.split(","):
            if g == "3d" and not (args.toeplitz_3d or args.smoke):
                continue  # its PSF is built on the CPU on a (2N)^3 grid: minutes and ~20 GB of RAM
            spec = specs[g]
            case = dict(spec, coord=spec["coord"](), N=tuple(spec["N"]))
            for target in targets:
                bench_toeplitz(lib, case, g, target, rng, rows)
    if args.out:
        out_dir = Path(args.out)
    elif args.smoke:
        import tempfile

        out_dir = Path(tempfile.mkdtemp(prefix="recon-gpu-bench-"))
    else:
        out_dir = Path(results) if results is not None else Path("results")
    md = write_results(rows, lib, args, out_dir)
    print(md.read_text())
    print(f"written: {md}")
    return 0

