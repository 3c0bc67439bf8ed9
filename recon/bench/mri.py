"""MRI reconstruction benchmark cases and library runners (``recon bench``, benchmarks/run_mri.py,
ab_compare.py): recon against BART ``pics`` and SigPy on the same data, maps and iterations.

Cases: ``synthetic_case`` writes a fastMRI-format multicoil file (``fastmri_data``) of
``recon.mri.simulate.textured_phantom`` slices (8 coils, complex noise 0.01 per part) and undersamples
it with fastMRI's ``RandomMaskFunc``; ``brain_case`` is the bundled real brain (8 coils, Poisson-disc).
Every library reconstructs with the SAME coil maps (recon's ESPIRiT; ``time_maps`` also times BART
``ecalib`` and SigPy ``EspiritCalib`` and reports their agreement), the same normalised k-space and the
same iteration counts (SENSE 30, CS 60). Models: CG-SENSE with Tikhonov weight (recon ``cg_sense``,
BART ``pics -l2``, SigPy ``SenseRecon``) and L1-wavelet CS (recon ``cs_wavelet``, BART ``pics -l1``,
SigPy ``L1WaveletRecon``). Times: wall seconds of the reconstruction alone (maps excluded); BART runs
through its command line (process start and .cfl file I/O included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import numpy as np

SENSE_ITERS, CS_ITERS = 30, 60


# ---- BART .cfl files ------------------------------------------------------------------------------

def write_cfl(name: str, a) -> None:
    """BART .hdr/.cfl pair: dimensions line, then complex64 data in column-major order."""
    a = np.asarray(a, dtype=np.complex64)
    dims = list(a.shape) + [1] * (16 - a.ndim)
    with open(name + ".hdr", "w") as f:
        f.write("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    a.ravel(order="F").tofile(name + ".cfl")


def read_cfl(name: str) -> np.ndarray:
    with open(name + ".hdr") as f:
        lines = [ln for ln in f.read().splitlines() if ln and not ln.startswith("#")]
    dims = [int(v) for v in lines[0].split()]
    data = np.fromfile(name + ".cfl", dtype=np.complex64)
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return data.reshape(dims, order="F")


def _to_bart(a):
    """recon (c, H, W) -> BART (H, W, 1, c)."""
    return np.asarray(a).transpose(1, 2, 0)[:, :, None, :]


class Bart:
    def __init__(self, threads: int):
        self.exe = shutil.which("bart")
        self.tmp = tempfile.mkdtemp(prefix="recon_bart_")
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads))

    @property
    def available(self):
        return self.exe is not None

    def version(self):
        r = subprocess.run([self.exe, "version"], capture_output=True, text=True)
        return r.stdout.strip()

    def run(self, args, inputs: dict, output: str):
        for name, arr in inputs.items():
            write_cfl(os.path.join(self.tmp, name), arr)
        t = time.perf_counter()
        r = subprocess.run([self.exe] + args + list(inputs) + [output], cwd=self.tmp, env=self.env,
                           capture_output=True, text=True)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"bart {' '.join(args)} failed: {r.stderr.strip()[-300:]}")
        return read_cfl(os.path.join(self.tmp, output)), dt


# ---- data ---------------------------------------------------------------------------------------

def synthetic_case(accel: float, cf: float, n_slices: int, shape, tmpdir):
    from fastmri_data import read_fastmri, write_fastmri_multicoil
    from fastmri_data.masks import RandomMaskFunc
    from recon.mri.simulate import textured_phantom

    path = os.path.join(tmpdir, f"synthetic_{n_slices}x{shape[0]}x{shape[1]}.h5")
    if not os.path.exists(path):
        write_fastmri_multicoil(path, textured_phantom(n_slices, *shape, seed=0), num_coils=8, noise_std=0.01, seed=1)
    vol = read_fastmri(path)
    mf = RandomMaskFunc([cf], [accel], seed=0)
    ks = []
    for s in range(vol.num_slices):
        m, _ = mf(vol.kspace[s].shape, seed=s)
        ks.append((vol.kspace[s] * m).astype(np.complex64))
    return ks, vol.target


def brain_case():
    from fastmri_data import read_fastmri
    from recon.data import path

    return [read_fastmri(path("brain-poisson")).kspace[0]], None


# ---- reconstructions ----------------------------------------------------------------------------

def zf_scale(k, maps):
    from recon.ops import CartesianSense

    return float(np.percentile(np.abs(CartesianSense(maps, (k != 0).any(0)).H(k)), 99))


def recon_run(method, k, maps, lam):
    from recon.mri import recon as R

    t = time.perf_counter()
    if method == "sense":
        r = R.cg_sense(k, maps, lam=lam, max_iter=SENSE_ITERS, tol=0)
    else:
        r = R.cs_wavelet(k, maps, lam=lam, max_iter=CS_ITERS, tol=0)
    return np.abs(r.image), time.perf_counter() - t


def sigpy_run(method, k, maps, lam):
    import sigpy.mri as mr

    s = zf_scale(k, maps)
    kn = k / s
    t = time.perf_counter()
    if method == "sense":
        x = mr.app.SenseRecon(kn, maps, lamda=lam, max_iter=SENSE_ITERS, show_pbar=False).run()
    else:
        x = mr.app.L1WaveletRecon(kn, maps, lamda=lam, max_iter=CS_ITERS, show_pbar=False).run()
    return np.abs(np.asarray(x)) * s, time.perf_counter() - t


def bart_run(bart, method, k, maps, lam):
    s = zf_scale(k, maps)
    reg = ["-l2", "-r", str(lam), "-i", str(SENSE_ITERS)] if method == "sense" else \
        ["-l1", "-r", str(lam), "-i", str(CS_ITERS)]
    img, dt = bart.run(["pics", "-S"] + reg, {"ksp": _to_bart(k / s), "maps": _to_bart(maps)}, "img")
    return np.abs(np.asarray(img).reshape(k.shape[1:])) * s, dt


LAMBDAS = {
    "recon": {"sense": [1e-3, 1e-2, 3e-2], "cs": [1e-3, 3e-3, 1e-2]},
    "sigpy": {"sense": [1e-3, 1e-2, 3e-2], "cs": [3e-4, 1e-3, 3e-3, 1e-2]},
    "bart": {"sense": [1e-3, 1e-2, 3e-2], "cs": [1e-3, 3e-3, 1e-2, 3e-2]},
}
QUICK_LAMBDAS = {
    "recon": {"sense": [1e-3], "cs": [3e-3]},
    "sigpy": {"sense": [1e-3, 1e-2], "cs": [1e-3, 3e-3]},
    "bart": {"sense": [1e-3, 1e-2], "cs": [3e-3, 1e-2]},
}


def run_method(lib, method, ks, maps, lam, bart):
    imgs, total = [], 0.0
    for k, m in zip(ks, maps):
        if lib == "recon":
            x, dt = recon_run(method, k, m, lam)
        elif lib == "sigpy":
            x, dt = sigpy_run(method, k, m, lam)
        else:
            x, dt = bart_run(bart, method, k, m, lam)
        imgs.append(x.astype(np.float32))
        total += dt
    return np.stack(imgs), total


def metrics(ref, vol):
    from fastmri_data.metrics import nmse, psnr, ssim

    return {"psnr": psnr(ref, vol), "ssim": ssim(ref, vol), "nmse": nmse(ref, vol)}


def time_maps(ks, libs, bart):
    from recon.mri import coils

    out = {}
    t = time.perf_counter()
    maps = [coils.espirit_maps(k) for k in ks]
    out["recon"] = (time.perf_counter() - t, 0.0)

    def agree(other):
        errs = []
        for a, b in zip(maps, other):
            sup = coils.rss(a) > 0
            inner = np.sum(np.conj(b) * a, axis=0)
            ph = np.exp(1j * np.angle(inner))
            errs.append(np.linalg.norm((b * ph - a)[:, sup]) / np.linalg.norm(a[:, sup]))
        return float(np.mean(errs))

    if "sigpy" in libs:
        import sigpy.mri as mr

        t = time.perf_counter()
        sm = [np.asarray(mr.app.EspiritCalib(k, calib_width=24, thresh=0.02, kernel_width=6, crop=0.95,
                                             show_pbar=False).run()) for k in ks]
        out["sigpy"] = (time.perf_counter() - t, agree(sm))
    if "bart" in libs:
        tt, bm = 0.0, []
        for k in ks:
            m, dt = bart.run(["ecalib", "-m1", "-r", "24", "-k", "6", "-c", "0.95"], {"ksp": _to_bart(k)}, "maps")
            bm.append(np.asarray(m).reshape(k.shape[1:] + (k.shape[0],)).transpose(2, 0, 1))
            tt += dt
        out["bart"] = (tt, agree(bm))
    return maps, out


# ---- recon bench: the MRI part ------------------------------------------------------------------------

def bench(ctx):
    """``recon bench``'s MRI part: CG-SENSE and L1-wavelet CS of synthetic fastMRI-format slices (4x
    random Cartesian undersampling, 8 coils) of growing size by recon, SigPy and BART ``pics`` (those
    installed), with the same ESPIRiT maps and iterations; PSNR against the fully sampled truth, each
    library at its best weight of :data:`QUICK_LAMBDAS` (all its weights in the accuracy plot)."""
    from . import Section
    from .report import importable, table

    sizes = ctx.pick((64,), (128, 256), (128, 256, 320))
    bart = Bart(ctx.threads)
    libs = ["recon"]
    missing = []
    if ctx.wants("sigpy"):
        (libs if importable("sigpy") else missing).append("sigpy")
    if ctx.wants("bart"):
        (libs if bart.available else missing).append("bart")
    grid = {lib: {m: v[:1] for m, v in QUICK_LAMBDAS[lib].items()} for lib in libs} if ctx.scale == "tiny" else \
        {lib: (QUICK_LAMBDAS if ctx.scale == "quick" else LAMBDAS)[lib] for lib in libs}
    sec = Section("mri", "MRI reconstruction", size_label="image side n (n x n, 8 coils, 4x)",
                  accuracy_label="PSNR (dB) against the fully sampled image", accuracy_log=False)
    rows, lines = [], []
    for n in sizes:
        ks, ref = synthetic_case(4, 0.08, 1, (n, n), ctx.workdir)
        maps, _ = time_maps(ks, ["recon"], bart)
        for method in ("sense", "cs"):
            base = None
            for lib in libs:
                best = None
                for lam in grid[lib][method]:
                    vol, dt = run_method(lib, method, ks, maps, lam, bart)
                    m = metrics(ref, vol)
                    sec.accuracy.setdefault(f"{lib} {method}", []).append((dt, m["psnr"]))
                    if best is None or m["psnr"] > best["psnr"]:
                        best = dict(m, lam=lam, time_s=dt)
                base = best["time_s"] if lib == "recon" else base
                row = dict(library=lib, case=f"{n}x{n} {method}", size=n, method=method, **best,
                           ratio=best["time_s"] / base)
                rows.append(row)
                sec.sizes.setdefault(f"{lib} {method}", []).append((n, best["time_s"]))
                lines.append((f"{n}x{n}", method, lib, f"{best['lam']:g}", f"{best['time_s']:.3f}",
                              f"{row['ratio']:.2f}", f"{best['psnr']:.2f}", f"{best['ssim']:.4f}"))
                ctx.log(f"   {n}x{n} {method} {lib}: {best['time_s']:.3f} s, PSNR {best['psnr']:.2f} dB")
    sec.rows = rows
    sec.text = (f"One synthetic slice per size (textured phantom, 8 coils, noise 0.01, 4x random Cartesian "
                f"undersampling with 8 % centre); every library with recon's ESPIRiT maps and {SENSE_ITERS} (SENSE) / "
                f"{CS_ITERS} (CS) iterations; *time* = wall seconds of the reconstruction alone (BART: its command "
                "line, process start and .cfl files included); *ratio* = library / recon (> 1: recon faster); "
                "PSNR/SSIM against the fully sampled image at the best weight of each library."
                + (f" Not installed: {', '.join(missing)}." if missing else "") + "\n\n"
                + table(("size", "model", "library", "weight", "time s", "ratio", "PSNR dB", "SSIM"), lines))
    return sec
