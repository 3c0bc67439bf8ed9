"""CT reconstruction benchmarks: ``recon bench``'s CT part (:func:`bench`: FBP, SIRT, PWLS-TV against
ASTRA on a low-dose Shepp-Logan scan), and benchmarks/run_ldct.py's low-dose CT with a prior image:
held-out real CT images, simulated low-dose fan-beam scans with a lesion the prior lacks, recon's
methods with their defaults, and the metrics.

Held-out images (never used to tune recon's defaults): pydicom's ``CT_small.dcm`` (a real 128 x 128 CT
patch, 0.66 mm pixels) and frame 0 of pydicom-data's ``eCT_Supplemental.dcm`` (512 x 512, 0.39 mm;
optional). ``build_case``: the image with a +60 HU lesion (the truth), the lesion-free image rotated
by 3 deg and shifted by (2.5, -1.5) mm (the prior), a fan-beam scan (flat detector, source-origin
595 mm, source-detector 1085.6 mm) simulated from the truth upsampled 2x at a dose (photons per
reading, electronic noise 5 photons). ``methods``: FBP, PWLS-TV, PICCS without registration,
registered PICCS, change-aware registered PICCS. ``metrics``: PSNR/SSIM against the truth, the
lesion's contrast and CNR ratios to the truth's, and the lesion region's RMSE.
"""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np

from .ct_projectors import SD, SO

FULL_DOSE = 1e5
DOSES = {"10%": 0.10, "5%": 0.05}
SIGMA_E = 5.0
PRIOR_ROTATION_DEG, PRIOR_SHIFT_MM = 3.0, (2.5, -1.5)
LESION_HU = 60.0


# ---- data ---------------------------------------------------------------------------------------------------

def held_out_images(quick: bool):
    """[(name, hu (n, n), pixel mm)] of the held-out real images."""
    import pydicom
    from pydicom.data import get_testdata_file
    from scipy.ndimage import zoom

    out = []
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    px = float(ds.PixelSpacing[0])
    if quick:
        hu, px = zoom(hu, 0.5, order=1), 2 * px
    out.append(("CT_small", hu.astype(np.float64), px))
    try:
        path = get_testdata_file("eCT_Supplemental.dcm")
    except Exception:  # noqa: BLE001 - pydicom-data not installed or no network
        path = None
    if path is None:
        print("eCT_Supplemental.dcm (pydicom-data) not available: skipped")
        return out
    ds = pydicom.dcmread(path)
    tr = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    hu = ds.pixel_array[0] * float(tr.RescaleSlope) + float(tr.RescaleIntercept)
    px = float(ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0])
    f = 0.25 if quick else 0.5
    out.append(("eCT_Supplemental", zoom(hu, f, order=1), px / f))
    return out


def full_size_ect():
    """eCT_Supplemental at 512 x 512 for the speed part (HU, pixel mm)."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    tr = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    px = float(ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0])
    return ds.pixel_array[0] * float(tr.RescaleSlope) + float(tr.RescaleIntercept), px


def fan_geometry(n: int, px: float, n_views: int, upsample: int = 1):
    from recon.ct import FanBeam2D

    fov = n * px * math.sqrt(2.0) * 1.05
    bins = int(math.ceil(1.5 * n))
    spacing = fov * SD / SO / bins
    return FanBeam2D(np.linspace(0, 2 * np.pi, n_views, endpoint=False), bins, spacing, SO, SD - SO, "flat",
                     (n * upsample, n * upsample), px / upsample)


def lesion_site(hu: np.ndarray, radius_px: float):
    """(row, col) of a soft-tissue site for the lesion: among the pixels whose neighbourhood (2.5 x the
    radius) lies in [-150, 150] HU, the most uniform one (smallest HU range there), ties to the centre."""
    from scipy.ndimage import maximum_filter, minimum_filter

    size = int(2 * math.ceil(2.5 * radius_px) + 1)
    lo, hi = minimum_filter(hu, size), maximum_filter(hu, size)
    ok = (lo > -150) & (hi < 150)
    if not ok.any():
        raise RuntimeError("no soft-tissue site for the lesion")
    r, c = np.nonzero(ok)
    centre = (np.array(hu.shape) - 1) / 2
    spread = (hi - lo)[r, c] + 1e-3 * np.hypot(r - centre[0], c - centre[1])
    i = int(np.argmin(spread))
    return int(r[i]), int(c[i])


def rigid_move(img: np.ndarray, deg: float, shift_mm, px: float):
    """The image rotated by ``deg`` (counter-clockwise in recon x-y) and shifted by ``shift_mm``
    (recon x, y), cubic interpolation, 0 outside."""
    from scipy.ndimage import affine_transform

    n = img.shape[0]
    a = math.radians(deg)
    # output pixel (r, c) at recon (x, y) = ((c - cc) px, (cr - r) px); it shows the input at R^-1 (p - s)
    R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    Rinv = R.T
    cc = (n - 1) / 2
    # in (row, col) index space: x = (c - cc) px, y = (cc - r) px
    M = np.array([[0.0, 1.0], [-1.0, 0.0]])  # (x, y) / px = M (r, c) + const: x = c, y = -r
    Minv = np.linalg.inv(M)
    A = Minv @ Rinv @ M
    s = np.asarray(shift_mm, dtype=np.float64) / px
    offset = np.array([cc, cc]) - A @ np.array([cc, cc]) - Minv @ Rinv @ s
    return affine_transform(img, A, offset=offset, order=3, mode="constant", cval=0.0)


def build_case(name, hu, px, dose, n_views, seed):
    """Truth (with lesion), prior (lesion-free, moved), noisy data and weights of one image and dose."""
    import recon.ct as ct
    from recon.ops import Projector
    from scipy.ndimage import zoom

    n = hu.shape[0]
    radius_px = max(2.5, 5.0 / px) if n >= 200 else max(2.5, 3.5 / px)
    rr, cc = lesion_site(hu, radius_px)
    yy, xx = np.mgrid[:n, :n]
    dist = np.hypot(yy - rr, xx - cc)
    lesion = np.clip(radius_px + 0.5 - dist, 0.0, 1.0)  # anti-aliased disk
    truth_hu = hu + LESION_HU * lesion
    truth = np.maximum(ct.hu_to_mu(truth_hu), 0.0).astype(np.float32)
    prior = np.maximum(rigid_move(np.maximum(ct.hu_to_mu(hu), 0.0), PRIOR_ROTATION_DEG, PRIOR_SHIFT_MM, px),
                       0.0).astype(np.float32)
    fine = fan_geometry(n, px, n_views, upsample=2)
    data = Projector(fine).forward(np.maximum(zoom(truth, 2, order=1), 0.0).astype(np.float32))
    noisy, counts = ct.simulate_low_dose(data, FULL_DOSE * dose, SIGMA_E, seed=seed)
    regions = {"core": dist <= 0.6 * radius_px, "ring": (dist >= 1.6 * radius_px) & (dist <= 2.6 * radius_px),
               "region": dist <= 1.6 * radius_px}
    return dict(name=name, px=px, truth=truth, prior=prior, geometry=fan_geometry(n, px, n_views), noisy=noisy,
                weights=ct.pwls_weights(counts, SIGMA_E), regions=regions)


# ---- metrics ------------------------------------------------------------------------------------------------

def metrics(x, case):
    from fastmri_data.metrics import ssim

    t = case["truth"]
    x = np.asarray(x, dtype=np.float64).reshape(t.shape)
    r = case["regions"]

    def cnr(img):
        con = img[r["core"]].mean() - img[r["ring"]].mean()
        return con, con / max(img[r["ring"]].std(), 1e-12)

    con_t, cnr_t = cnr(t.astype(np.float64))
    con, cnr_x = cnr(x)
    return {"psnr": float(10 * np.log10(t.max() ** 2 / np.mean((x - t) ** 2))),
            "ssim": ssim(t[None].astype(np.float64), x[None], maxval=float(t.max())),
            "contrast_ratio": float(con / con_t), "cnr_ratio": float(cnr_x / cnr_t),
            "lesion_rmse": float(np.sqrt(np.mean((x - t)[r["region"]] ** 2)))}


def timed(fn):
    """(result, wall s, process CPU s, peak MiB of numpy/Python allocations)."""
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return out, wall, cpu, peak


def methods(case, iters):
    """name -> thunk of the benchmark's methods with recon's defaults."""
    import recon.ct as ct

    data = ct.CTData(sinogram=case["noisy"], geometry=case["geometry"], weights=case["weights"])
    prior = ct.PriorImage(case["prior"], (1.0, case["px"], case["px"]), np.eye(3),
                          ct.ct_grid_placement((1,) + case["prior"].shape, (1.0, case["px"], case["px"]))[1])
    kw = {} if iters is None else {"iters": iters}

    def run(cfg, with_prior=False):
        return lambda: ct.reconstruct(data, cfg, prior=prior if with_prior else None)

    return {
        "fbp": run(ct.ReconConfig(method="fbp")),
        "pwls-tv": run(ct.ReconConfig(method="pwls-tv", **kw)),
        "piccs-noreg": run(ct.ReconConfig(method="piccs", register="none", change_aware=False, **kw), True),
        "piccs-reg": run(ct.ReconConfig(method="piccs", change_aware=False, **kw), True),
        "piccs-aware": run(ct.ReconConfig(method="piccs", **kw), True),
    }


# ---- recon bench: the CT part ----------------------------------------------------------------------------

def _psnr(x, truth) -> float:
    x = np.asarray(x, dtype=np.float64).reshape(truth.shape)
    return float(10 * np.log10(float(truth.max()) ** 2 / np.mean((x - truth) ** 2)))


def _astra(kind: str, sino, geom, iters: int):
    """ASTRA's CPU reconstruction ``kind`` (FBP: Hann filter; SIRT: ``iters``, x >= 0) of ``sino``."""
    import astra

    vol, proj = geom.to_astra()
    pid = astra.create_projector("linear" if geom.kind == 0 else "line_fanflat", proj, vol)
    sid = astra.data2d.create("-sino", proj, np.ascontiguousarray(sino, np.float32))
    rid = astra.data2d.create("-vol", vol, 0.0)
    cfg = astra.astra_dict(kind)
    cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid,
               option={"FilterType": "hann"} if kind == "FBP" else {"MinConstraint": 0.0})
    aid = astra.algorithm.create(cfg)
    try:
        astra.algorithm.run(aid, 1 if kind == "FBP" else iters)
        return astra.data2d.get(rid)
    finally:
        astra.algorithm.delete(aid)
        astra.data2d.delete([sid, rid])
        astra.projector.delete(pid)


def bench(ctx):
    """``recon bench``'s CT part: a low-dose scan (10 % of 1e5 photons, electronic noise 5) of the
    Shepp-Logan phantom (exact line integrals, no inverse crime) on parallel and fan geometries of
    growing size, reconstructed by recon's FBP (Hann), SIRT and PWLS-TV and by ASTRA's CPU FBP
    (parallel beam only) and SIRT with the same iterations; PSNR against the rasterised phantom."""
    import recon.ct as ct
    from recon.ops import Projector

    from . import Section
    from .ct_projectors import make_geometry, make_phantom
    from .report import importable, table

    divisors = ctx.pick((8,), (8, 4), (4, 2, 1))
    sirt_iters, pwls_iters = ctx.pick(10, 30, 100), ctx.pick(5, 20, None)
    astra_ok = ctx.wants("astra") and importable("astra")
    sec = Section("ct", "CT reconstruction", size_label="image side n (pixels; n^2 image, ~1.4 n views)",
                  accuracy_label="PSNR (dB) against the phantom", accuracy_log=False)
    rows, lines = [], []
    for h in divisors:
        for case in ("parallel", "fan"):
            geom = make_geometry(case, h=h)
            ell, truth = make_phantom(geom)
            clean = ct.analytic_sinogram(ell, geom)
            noisy, counts = ct.simulate_low_dose(clean, FULL_DOSE * DOSES["10%"], SIGMA_E, seed=0)
            data = ct.CTData(sinogram=noisy, geometry=geom, weights=ct.pwls_weights(counts, SIGMA_E))
            runs = {("recon", "fbp"): lambda: ct.fbp(noisy, geom, "hann"),
                    ("recon", "sirt"): lambda: ct.sirt(Projector(geom, dtype="float32"), noisy, sirt_iters)[0],
                    ("recon", "pwls-tv"): lambda: ct.reconstruct(data, ct.ReconConfig(method="pwls-tv",
                                                                                      iters=pwls_iters)).image}
            if astra_ok:
                if geom.kind == 0:
                    runs[("astra", "fbp")] = lambda: _astra("FBP", noisy, geom, 0)
                runs[("astra", "sirt")] = lambda: _astra("SIRT", noisy, geom, sirt_iters)
            n = geom.image_shape[-1]
            base = {}
            for (lib, method), fn in runs.items():
                t0 = time.perf_counter()
                img = fn()
                dt = time.perf_counter() - t0
                psnr = _psnr(img, truth)
                base.setdefault(method, dt)
                row = dict(library=lib, case=f"{case} {n}^2 {method}", size=n, method=method, time_s=dt, psnr=psnr,
                           ratio=dt / base[method])
                rows.append(row)
                sec.sizes.setdefault(f"{lib} {method} {case}", []).append((n, dt))
                sec.accuracy.setdefault(f"{lib} {case}", []).append((dt, psnr))
                lines.append((f"{case} {n}^2", method, lib, f"{dt:.3f}", f"{row['ratio']:.2f}", f"{psnr:.2f}"))
                ctx.log(f"   {case} {n}^2 {method} {lib}: {dt:.3f} s, PSNR {psnr:.2f} dB")
    sec.rows = rows
    iters = f"PWLS-TV {pwls_iters} iterations" if pwls_iters else "PWLS-TV recon's default iterations"
    sec.text = (f"Shepp-Logan phantom (x 0.02 /mm), exact line integrals with Poisson and electronic noise "
                f"({FULL_DOSE * DOSES['10%']:g} photons per reading, sigma_e {SIGMA_E:g}); SIRT {sirt_iters} iterations "
                f"(x >= 0) for recon and ASTRA, {iters}; *time* = wall seconds of one reconstruction (ASTRA: "
                "single-threaded CPU, FBP parallel beam only; recon: "
                f"{ctx.threads} thread(s)); *ratio* = library / recon for the same method (> 1: recon faster); "
                "PSNR against the rasterised phantom (its maximum as peak). The low-dose study with real images "
                "and PICCS is `python benchmarks/run_ldct.py`."
                + ("" if astra_ok else " ASTRA not installed or not included.") + "\n\n"
                + table(("case", "method", "library", "time s", "ratio", "PSNR dB"), lines))
    return sec
