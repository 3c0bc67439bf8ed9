#!/usr/bin/env python
"""CT benchmark runner: recon's Joseph projector and its FBP/FDK against ASTRA (CPU) and scikit-image.

    python benchmarks/run_ct.py            # full run (a few minutes on 2 cores; the cone cases dominate)
    python benchmarks/run_ct.py --quick    # half-size cases, one repetition (checks the runner)
    python benchmarks/run_ct.py --cases parallel,fan --reps 5
    python benchmarks/run_ct.py --parts fbp --fbp-cases parallel,fan,fan_arc,cone

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
chart benchmarks/results/ct_cpu.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))

SO, SD = 595.0, 1085.6


# ---- cases ------------------------------------------------------------------------------------------------

def make_geometry(case: str, quick: bool = False):
    from recon.ct import ConeBeam3D, FanBeam2D, ParallelBeam2D

    h = 2 if quick else 1
    if case == "parallel":
        n = 512 // h
        return ParallelBeam2D(np.linspace(0, np.pi, 720 // h, endpoint=False), 729 // h, 1.0 * h, (n, n), 1.0 * h)
    if case == "fan":
        n = 512 // h
        return FanBeam2D(np.linspace(0, 2 * np.pi, 720 // h, endpoint=False), 888 // h, 1.0 * h, SO, SD - SO,
                         "flat", (n, n), 0.8 * h)
    if case == "cone":
        n = 256 // (2 * h)  if quick else 256
        views = 90 if quick else 360
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


def write_atomic(path: Path, text: str):
    """Write through a temporary file in the same folder and a rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_section(md_path: Path, section: str, title: str = "## CT projectors"):
    text = md_path.read_text() if md_path.exists() else "# CPU benchmarks\n\n"
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == title), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        text = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + [""] + lines[end:]).rstrip("\n") + "\n"
    write_atomic(md_path, text)


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


# ---- FBP / FDK -------------------------------------------------------------------------------------------

FBP_CASES = ("parallel", "fan", "fan_arc", "cone")


def fbp_geometry(case: str, quick: bool = False):
    """The projector cases plus ``fan_arc``: the fan case with an equiangular detector (888 bins of 1.0 mm
    along the arc)."""
    if case != "fan_arc":
        return make_geometry(case, quick)
    from recon.ct import FanBeam2D

    g = make_geometry("fan", quick)
    return FanBeam2D(g.angles, g.det_count, g.det_spacing, g.source_origin, g.origin_det, "arc", g.image_shape,
                     g.voxel_size)


def fbp_inputs(case: str, quick: bool = False):
    """(geometry, ellipses, rasterised truth, float32 sinogram): analytic line integrals in 2D, the Joseph
    projection of the rasterised phantom for the cone case."""
    geom = fbp_geometry(case, quick)
    ell, truth = make_phantom(geom)
    if geom.ndim == 3:
        from recon.ops import Projector

        sino = np.asarray(Projector(geom, dtype="float32")(truth))
    else:
        sino = reference(ell, geom).astype(np.float32)
    return geom, ell, truth, sino


def fbp_error(rec, truth) -> float:
    """Relative l2 error in the central disk (radius 0.6 x half the image); 3D: the two mid-plane slices."""
    rec = np.asarray(rec, np.float64)
    if truth.ndim == 3:
        m = truth.shape[0] // 2
        rec, truth = rec[m - 1:m + 1], truth[m - 1:m + 1]
    ny, nx = truth.shape[-2:]
    yy, xx = np.mgrid[:ny, :nx]
    disk = (xx - (nx - 1) / 2) ** 2 + (yy - (ny - 1) / 2) ** 2 < (0.6 * nx / 2) ** 2
    return float(np.linalg.norm((rec - truth)[..., disk]) / np.linalg.norm(truth[..., disk]))


def fbp_callable(lib: str, geom, ell, sino):
    """(call, model) for one library's FBP on the case, or a str saying why it is skipped."""
    if lib == "recon":
        from recon.ct import fbp
        from recon.ops.backend import default_threads

        n = default_threads()
        return (lambda: fbp(sino, geom, "ram-lak", nthreads=n)), "fdk" if geom.ndim == 3 else "fbp"
    if lib == "astra":
        try:
            import astra
        except Exception as e:
            return f"astra not importable ({e})"
        if geom.kind != 0:
            return ("ASTRA's CPU FBP supports parallel beams only (FBP_CUDA / FDK_CUDA need a GPU)"
                    if geom.ndim == 2 else "ASTRA's FDK needs CUDA")

        def run():
            vol, proj = geom.to_astra()
            pid = astra.create_projector("linear", proj, vol)
            sid = astra.data2d.create("-sino", proj, sino)
            rid = astra.data2d.create("-vol", vol)
            cfg = astra.astra_dict("FBP")
            cfg.update(ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=pid,
                       option={"FilterType": "Ram-Lak"})
            aid = astra.algorithm.create(cfg)
            try:
                astra.algorithm.run(aid)
                return astra.data2d.get(rid)
            finally:
                astra.algorithm.delete(aid)
                astra.data2d.delete([sid, rid])
                astra.projector.delete(pid)

        return run, "FBP, linear (Joseph) projector"
    if lib == "skimage":
        if geom.kind != 0:
            return "scikit-image has parallel beam only"
        try:
            from skimage.transform import iradon
        except Exception as e:
            return f"scikit-image not importable ({e})"
        # the line integrals on radon's detector (odd, 725 bins at 512^2) of the phantom placed around
        # iradon's rotation centre, in pixel units: iradon puts it back where recon's image has it
        v = geom.voxel_size[-1]
        nbins = int(np.ceil(np.hypot(*geom.image_shape))) + 1
        nbins += 1 - nbins % 2
        sk_sino = (skimage_reference(ell, geom, nbins) / v).T  # (bins, angles)
        theta = np.rad2deg(geom.angles)
        return (lambda: iradon(sk_sino, theta=theta, output_size=geom.image_shape[0], filter_name="ramp",
                               interpolation="linear", circle=False)), "iradon, ramp, linear"
    raise ValueError(f"unknown library {lib!r}")


def fbp_peak_memory_here(case: str, lib: str, quick: bool):
    """In this (fresh) process: MiB by which one FBP call raises the peak resident set size over the
    inputs (Linux: resets VmHWM through /proc/self/clear_refs); None where that is unavailable."""
    geom, ell, _, sino = fbp_inputs(case, quick)
    job = fbp_callable(lib, geom, ell, sino)
    if isinstance(job, str):
        return None

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))  # kB

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS")
    except (OSError, StopIteration):
        return None
    job[0]()
    return (status("VmHWM") - before) / 1024.0


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
        write_section(RESULTS / "cpu.md", md, "## FBP / FDK")
        write_atomic(RESULTS / "fbp_cpu.json", json.dumps({"meta": meta, "results": results}, indent=1))
        print(f"wrote {RESULTS / 'cpu.md'}, {RESULTS / 'fbp_cpu.json'}")
    return results


def machine_meta(quick: bool, reps: int, threads) -> dict:
    meta = {"date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "threads": threads, "reps": reps, "quick": quick}
    try:
        meta["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        meta["load"] = os.getloadavg()[0]
    except OSError:
        pass
    return meta


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


def run_projectors(args, libs, reps):
    from tqdm import tqdm

    runners = {"recon": run_recon, "astra": run_astra, "skimage": run_skimage}
    cases = [c for c in args.cases.split(",") if c]
    results = {}
    threads = None
    for case in tqdm(cases, desc="cases"):
        geom = make_geometry(case, args.quick)
        ell, img = make_phantom(geom)
        every = 10 if geom.ndim == 3 else 1
        ref = reference(ell, geom, every)
        results[case] = {}
        for lib in libs:
            r = runners[lib](geom, img, 1 if case == "cone" and not args.reps else reps)
            if "sino" in r:
                s = r.pop("sino")
                if lib == "skimage":
                    r["error"] = rel(s, skimage_reference(ell, geom, s.shape[1]))
                else:
                    r["error"] = rel(s[::every], ref)
            if lib == "recon":
                threads = r["threads"]
            results[case][lib] = r
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
        write_section(RESULTS / "cpu.md", md)
        write_atomic(RESULTS / "ct_cpu.json", json.dumps({"meta": meta, "results": results}, indent=1))
        plot(results, RESULTS / "ct_cpu.png")
        print(f"wrote {RESULTS / 'cpu.md'}, {RESULTS / 'ct_cpu.json'}, {RESULTS / 'ct_cpu.png'}")
    return results


if __name__ == "__main__":
    main()
