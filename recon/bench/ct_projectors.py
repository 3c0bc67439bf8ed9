"""CT projector benchmark cases and library runners (``recon bench``, benchmarks/run_ct.py, its
pytest-benchmark suite and ab_compare.py).

Cases (fixed inputs: the modified Shepp-Logan phantom, values x 0.02 /mm, rasterised with 4x4
sub-samples per pixel (2x2x2 in 3D)); ``h`` halves (``quick``) or quarters sizes:

* parallel: 512 x 512 pixels of 1.0 mm, 720 angles over [0, pi), 729 bins of 1.0 mm.
* fan: 512 x 512 pixels of 0.8 mm (409.6 mm FOV), 720 angles over [0, 2 pi), 888 flat bins of
  1.0 mm at the detector, source-origin 595 mm, source-detector 1085.6 mm.
* cone: 256^3 voxels of 1.0 mm, 360 views over [0, 2 pi) of 256 x 256 pixels of 2.0 mm,
  source-origin 595 mm, source-detector 1085.6 mm.

Runners (``run_recon``, ``run_astra``, ``run_skimage``) time the forward and back projection of each
library on the same inputs (median wall and process CPU time after a warm-up) and return the
forward projection for the error against the exact line integrals (``reference``).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

SO, SD = 595.0, 1085.6


# ---- cases ------------------------------------------------------------------------------------------------

def make_geometry(case: str, quick: bool = False, h: int | None = None):
    """The geometry of ``case`` (parallel, fan, cone) at full size, halved (``quick``) or divided by ``h``."""
    from recon.ct import ConeBeam3D, FanBeam2D, ParallelBeam2D

    h = h or (2 if quick else 1)
    if case == "parallel":
        n = 512 // h
        return ParallelBeam2D(np.linspace(0, np.pi, 720 // h, endpoint=False), 729 // h, 1.0 * h, (n, n), 1.0 * h)
    if case == "fan":
        n = 512 // h
        return FanBeam2D(np.linspace(0, 2 * np.pi, 720 // h, endpoint=False), 888 // h, 1.0 * h, SO, SD - SO,
                         "flat", (n, n), 0.8 * h)
    if case == "cone":  # halved: a quarter of the size and views (one call takes seconds at 256^3)
        n = 256 // (2 * h) if h > 1 else 256
        views = 360 // (2 * h) if h > 1 else 360
        return ConeBeam3D(np.linspace(0, 2 * np.pi, views, endpoint=False), (n, n), 2.0 * 256 / n, SO, SD - SO,
                          (n, n, n), 256.0 / n)
    raise ValueError(f"unknown case {case!r}")


def make_phantom(geom):
    """(ellipses, rasterised float32 image) of the modified Shepp-Logan phantom filling the image."""
    from recon.ct import rasterize, shepp_logan_ellipses

    radius = geom.image_shape[-1] * geom.voxel_size[-1] / 2
    ell = shepp_logan_ellipses(radius, geom.ndim, scale=0.02)
    img = rasterize(ell, geom, supersample=4 if geom.ndim == 2 else 2).astype(np.float32)
    return ell, img


def reference(ell, geom, every: int = 1):
    from recon.ct import analytic_sinogram

    g = geom.subset(slice(None, None, every)) if every > 1 else geom
    return analytic_sinogram(ell, g)


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


_CPU: dict = {}


def timed(fn, reps: int):
    """Median wall time of `reps` calls after a warm-up; the median process CPU time (all threads)
    of the same calls is kept in _CPU["last"] (robust on a busy machine, where wall time is not)."""
    out = fn()  # warm-up (plans, first touch)
    ts, cs = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    _CPU["last"] = statistics.median(cs)
    return statistics.median(ts), out


# ---- libraries ------------------------------------------------------------------------------------------------

def run_recon(geom, img, reps):
    from recon.ops import Projector

    P = Projector(geom, dtype="float32")
    tf, sino = timed(lambda: P(img), reps)
    cf = _CPU["last"]
    tb, _ = timed(lambda: P.H(sino), reps)
    return {"forward_s": tf, "back_s": tb, "forward_cpu_s": cf, "back_cpu_s": _CPU["last"], "sino": sino,
            "threads": P.nthreads}


def run_astra(geom, img, reps):
    try:
        import astra
    except Exception as e:
        return {"skipped": f"astra not importable ({e})"}
    if geom.ndim == 3:
        return {"skipped": "ASTRA's 3D projectors need CUDA"}
    vol, proj = geom.to_astra()
    model = "linear" if geom.kind == 0 else "line_fanflat"
    pid = astra.create_projector(model, proj, vol)
    try:
        def fwd():
            sid, s = astra.create_sino(img, pid)
            astra.data2d.delete(sid)
            return s

        tf, sino = timed(fwd, reps)
        cf = _CPU["last"]

        def back():
            bid, b = astra.create_backprojection(sino, pid)
            astra.data2d.delete(bid)
            return b

        tb, _ = timed(back, reps)
    finally:
        astra.projector.delete(pid)
    return {"forward_s": tf, "back_s": tb, "forward_cpu_s": cf, "back_cpu_s": _CPU["last"], "sino": sino,
            "model": model, "threads": 1}


def run_skimage(geom, img, reps):
    if geom.kind != 0:
        return {"skipped": "scikit-image has parallel beam only"}
    try:
        from skimage.transform import iradon, radon
    except Exception as e:
        return {"skipped": f"scikit-image not importable ({e})"}
    theta = np.rad2deg(geom.angles)
    v = geom.voxel_size[-1]
    img64 = img.astype(np.float64)
    tf, s = timed(lambda: radon(img64, theta=theta, circle=False), reps)
    cf = _CPU["last"]
    tb, _ = timed(lambda: iradon(s, theta=theta, filter_name=None, circle=False, output_size=img.shape[0]), reps)
    return {"forward_s": tf, "back_s": tb, "forward_cpu_s": cf, "back_cpu_s": _CPU["last"], "sino": s.T * v,
            "model": "radon (rotate + sum)", "threads": 1}


def skimage_reference(ell, geom, nbins):
    """Analytic line integrals on scikit-image's detector (nbins of one pixel, centre bin nbins // 2)
    with its rotation centre at pixel (n/2, n/2), i.e. our image shifted by half a pixel."""
    from recon.ct import Ellipse, ParallelBeam2D, analytic_sinogram

    v = geom.voxel_size[-1]
    g = ParallelBeam2D(geom.angles, nbins, v, geom.image_shape, v, check_coverage=False)
    shifted = [Ellipse(e.value, e.axes, (e.centre[0] - 0.5 * v, e.centre[1] + 0.5 * v), e.angle) for e in ell]
    return analytic_sinogram(shifted, g)


RUNNERS = {"recon": run_recon, "astra": run_astra, "skimage": run_skimage}


def run_case(geom, libs, reps: int, runners: dict | None = None) -> dict:
    """{library: result} of one geometry: ``forward_s``/``back_s`` (median wall s), ``*_cpu_s``, and
    ``error`` (relative l2 of the forward projection against the exact line integrals; cone: every
    10th view), or ``skipped`` (why). ``runners``: library -> runner (default :data:`RUNNERS`)."""
    runners = runners or RUNNERS
    ell, img = make_phantom(geom)
    every = 10 if geom.ndim == 3 else 1
    ref = reference(ell, geom, every)
    out = {}
    for lib in libs:
        r = runners[lib](geom, img, reps)
        if "sino" in r:
            s = r.pop("sino")
            r["error"] = rel(s, skimage_reference(ell, geom, s.shape[1])) if lib == "skimage" else rel(s[::every], ref)
        out[lib] = r
    return out


# ---- recon bench: the CT projector part ----------------------------------------------------------------------

def _on_device(geom, img, reps, device):
    """recon's projector on ``device`` (cuda: torch tensors, synchronised timing)."""
    if device == "cpu":
        return run_recon(geom, img, reps)
    import torch

    from recon.ops import Projector

    P = Projector(geom, dtype="float32")
    x = torch.from_numpy(img).cuda()

    def sync(out):
        torch.cuda.synchronize()
        return out

    tf, sino = timed(lambda: sync(P(x)), reps)
    cf = _CPU["last"]
    tb, _ = timed(lambda: sync(P.H(sino)), reps)
    return {"forward_s": tf, "back_s": tb, "forward_cpu_s": cf, "back_cpu_s": _CPU["last"],
            "sino": sino.cpu().numpy(), "threads": P.nthreads, "model": "joseph (CUDA)"}


def bench(ctx):
    """``recon bench``'s CT projector part: forward and back projection of the Shepp-Logan phantom by
    recon, ASTRA (CPU) and scikit-image (parallel beam) on parallel and fan geometries of growing size
    (and a cone beam beyond ``tiny``); forward-projection error against the exact line integrals."""
    from . import Section
    from .report import table

    divisors = ctx.pick((8, 4), (4, 2), (4, 2, 1))
    cases = [(c, h) for h in divisors for c in ("parallel", "fan")] + ctx.pick([], [("cone", 4)], [("cone", 1)])
    reps = ctx.pick(1, 2, 3)
    libs = [lib for lib in RUNNERS if ctx.wants(lib)]
    sec = Section("ct-projectors", "CT projectors", size_label="image side n (pixels; n^2 image, ~1.4 n views)")
    lines, rows = [], []
    for case, h in cases:
        geom = make_geometry(case, h=h)
        runners = dict(RUNNERS, recon=lambda g, i, r: _on_device(g, i, r, ctx.device))
        res = run_case(geom, libs, 1 if case == "cone" and ctx.scale == "full" else reps, runners)
        n = geom.image_shape[-1]
        label = f"{case} {n}^{geom.ndim}"
        rec = res["recon"]
        for lib, r in res.items():
            if "skipped" in r:
                lines.append((label, lib, r["skipped"], "-", "-", "-", "-", "-"))
                continue
            rf, rb = r["forward_s"] / rec["forward_s"], r["back_s"] / rec["back_s"]
            rows.append(dict(library=lib, case=label, size=n, time_s=r["forward_s"], back_s=r["back_s"],
                             forward_cpu_s=r["forward_cpu_s"], back_cpu_s=r["back_cpu_s"], error=r["error"],
                             ratio=rf, back_ratio=rb, model=r.get("model", "joseph"), threads=r["threads"]))
            if case != "cone":
                sec.sizes.setdefault(f"{lib} {case} forward", []).append((n, r["forward_s"]))
            sec.accuracy.setdefault(lib, []).append((r["forward_s"], r["error"]))
            lines.append((label, lib, r.get("model", "joseph"), f"{r['forward_s']:.4f} ({r['forward_cpu_s']:.3f})",
                          f"{r['back_s']:.4f} ({r['back_cpu_s']:.3f})", f"{rf:.2f}", f"{rb:.2f}", f"{r['error']:.2e}"))
            ctx.log(f"   {label} {lib}: forward {r['forward_s']:.4f} s, back {r['back_s']:.4f} s, error {r['error']:.2e}")
    sec.rows = rows
    sec.accuracy_label = "forward projection relative error"
    sec.text = ("Shepp-Logan phantom (x 0.02 /mm) rasterised with sub-samples; *error* = relative l2 error of the "
                "forward projection against the exact line integrals (cone: every 10th view); times: median wall "
                f"seconds of {reps} run(s) after a warm-up (process CPU seconds, all threads, in brackets); *ratio* "
                "= library / recon (> 1: recon faster). ASTRA's CPU projectors are single-threaded and its 3D "
                "projectors need CUDA; scikit-image has parallel beam only, on its own detector (its back "
                f"projection is not an exact adjoint). recon: {ctx.threads} thread(s)"
                + (", on the GPU; the peers on the CPU" if ctx.device == "cuda" else "") + ".\n\n"
                + table(("case", "library", "model", "forward s (cpu s)", "back s (cpu s)", "fwd ratio",
                         "back ratio", "error"), lines))
    return sec
