"""CT FBP/FDK benchmark cases (shared by ``benchmarks/run_ct.py --parts fbp`` and ``recon bench``):
the projector cases plus an arc-detector fan, analytic inputs, each library's FBP as a callable, the
error against the phantom and the peak memory of one call."""

from __future__ import annotations

import numpy as np

from .ct_projectors import make_geometry, make_phantom, reference, skimage_reference

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
