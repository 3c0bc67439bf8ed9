#!/usr/bin/env python
"""Measure recon's classical MRI defaults (issue #11, phase 1): background outside the object, the
convergence-based stopping and the data-driven lambda against a lambda sweep.

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. python tools/mri_quality.py [--size 160]
        [--methods before,sense,wavelet,tv] [--lams 1e-3,2e-3,5e-3,1e-2,2e-2] [--cases phantom-rand4x,...]

Cases: three images (recon's textured phantom; two real magnitude images, pydicom-data's
MR2_UNCR.dcm and a slice of nilearn's MNI152 template, each given a smooth phase) of ``size`` x
``size``, 8 simulated coils (``fastmri_data.simulate_coil_maps``), complex Gaussian noise of 1 % of
the image's 99th percentile per part; masks: fastMRI random 1D 4x (centre 0.08) and 8x (centre
0.04), SigPy's Poisson-disc 6x (calibration 16 x 16). Maps: recon's ESPIRiT from the fully sampled
centre (zero where the eigenvalue is below 0.95; coil-map quality is issue #11's item 2, not this).
``before``: cs_wavelet as it was (no support constraint, maximum wavelet depth, 60 iterations). Metrics against the noise-free image magnitude
(fastMRI's PSNR and SSIM, whole image, maxval = the reference's maximum); ``bg`` the mean magnitude
outside the object (reference below 5 % of its maximum, dilated by 3 pixels) relative to the same
mean of the fully sampled noisy image (its noise floor: ``bg < 1`` is below it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastmri_data import simulate_coil_maps
from fastmri_data.masks import RandomMaskFunc
from fastmri_data.metrics import psnr, ssim
from recon.mri import coils
from recon.mri import recon as R
from recon.mri.simulate import textured_phantom
from recon.ops import CartesianSense


def _resize(img, n):
    from scipy.ndimage import zoom

    img = np.asarray(img, np.float64)
    img = zoom(img, (n / img.shape[0], n / img.shape[1]), order=1)
    return img / np.percentile(img, 99.5)


def _with_phase(mag, seed):
    from scipy.ndimage import gaussian_filter

    p = gaussian_filter(np.random.default_rng(seed).standard_normal(mag.shape), mag.shape[0] / 8)
    return (mag * np.exp(1j * 0.5 * np.pi * p / abs(p).max())).astype(np.complex64)


def images(n):
    out = {"phantom": textured_phantom(1, n, n, seed=0)[0]}
    try:
        import pydicom
        from pydicom.data import get_testdata_file

        out["mr2"] = _with_phase(_resize(pydicom.dcmread(get_testdata_file("MR2_UNCR.dcm")).pixel_array, n), 1)
    except Exception as e:  # noqa: BLE001
        print("no MR2_UNCR.dcm:", e)
    try:
        from nilearn import datasets

        t = datasets.load_mni152_template(resolution=1).get_fdata()
        out["mni"] = _with_phase(_resize(np.rot90(t[:, :, t.shape[2] // 2 + 10]), n), 2)
    except Exception as e:  # noqa: BLE001
        print("no MNI152:", e)
    return out


def masks(n):
    import sigpy.mri

    out = {}
    for name, (cf, acc) in {"rand4x": (0.08, 4), "rand8x": (0.04, 8)}.items():
        m, _ = RandomMaskFunc([cf], [acc], seed=0)((1, n, n), seed=0)
        out[name] = np.broadcast_to(np.asarray(m).reshape(-1)[-n:] if np.asarray(m).size == n else np.asarray(m)[0], (n, n)).astype(np.float32)
    out["pois6x"] = sigpy.mri.poisson((n, n), 6, calib=(16, 16), seed=0).real.astype(np.float32)
    return out


def case(x, mask, seed=0):
    maps = simulate_coil_maps(x.shape, 8)
    full = CartesianSense(maps)(x)
    sigma = 0.01 * np.percentile(abs(x), 99)
    rng = np.random.default_rng(seed)
    full = (full + sigma * (rng.standard_normal(full.shape) + 1j * rng.standard_normal(full.shape))).astype(np.complex64)
    k = (full * mask).astype(np.complex64)
    # maps from the fully sampled centre (24 columns): coil-map quality is not what this measures
    return full, k, coils.estimate_maps(full)


def background(ref, img, floor_img):
    from scipy.ndimage import binary_dilation

    obj = binary_dilation(ref > 0.05 * ref.max(), iterations=3)
    return float(abs(img)[~obj].mean() / abs(floor_img)[~obj].mean())


def score(ref, img, floor_img):
    m = abs(img)[None]
    return psnr(ref[None], m), ssim(ref[None], m), background(ref, img, floor_img)


def wavelet_before(problem, maps, lam=3e-3, **kw):
    """cs_wavelet as it was before issue #11: no support constraint, PyWavelets' maximum depth,
    60 iterations, lam 3e-3."""
    import dataclasses

    import pywt

    P = dataclasses.replace(problem, support=None)
    return R.cs_wavelet(problem=P, maps=maps, lam=lam, max_iter=60, level=pywt.dwt_max_level(min(P.im_shape), 2),
                        **kw)


METHODS = {"sense": R.cg_sense, "wavelet": R.cs_wavelet, "tv": R.cs_tv, "before": wavelet_before}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--methods", default="before,sense,wavelet,tv")
    ap.add_argument("--cases", default="")
    ap.add_argument("--lams", default="1e-3,2e-3,5e-3,1e-2,2e-2")
    ap.add_argument("--extra", default="", help="python dict of extra keyword arguments for the methods")
    a = ap.parse_args(argv)
    extra = eval(a.extra) if a.extra else {}
    lams = [float(v) for v in a.lams.split(",")] if a.lams else []
    rows = []
    for iname, x in images(a.size).items():
        ref = abs(x)
        for mname, mask in masks(a.size).items():
            cname = f"{iname}-{mname}"
            if a.cases and cname not in a.cases.split(","):
                continue
            full, k, maps = case(x, mask)
            floor_img = R.zero_filled(full, maps=simulate_coil_maps(x.shape, 8)).image
            P = R.sense_problem(k, maps)
            zf = R.zero_filled(k, maps=maps).image
            print(cname + ": zero-filled psnr {:.2f} ssim {:.3f} bg {:.2f}".format(*score(ref, zf, floor_img)),
                  flush=True)
            for meth in a.methods.split(","):
                t = time.perf_counter()
                r = METHODS[meth](problem=P, maps=maps, **extra)
                dt = time.perf_counter() - t
                d = score(ref, r.image, floor_img)
                sweep = {lam: score(ref, METHODS[meth](problem=P, maps=maps, lam=lam, **extra).image, floor_img)
                         for lam in (lams if meth != "before" else [])}
                best = max(sweep.items(), key=lambda kv: kv[1][0]) if sweep else (None, (np.nan,) * 3)
                rows.append((cname, meth, r.info["lam"], d, best[0], best[1], r.info["iterations"], dt,
                             score(ref, zf, floor_img)))
                print(f"  {meth:8s} default lam {r.info['lam']:.2e} it {r.info['iterations']:3d} {dt:5.1f}s "
                      f"psnr {d[0]:.2f} ssim {d[1]:.3f} bg {d[2]:.2f} | best lam {best[0]} psnr {best[1][0]:.2f} "
                      f"ssim {best[1][1]:.3f} | sweep " + " ".join(f"{v[0]:.2f}" for v in sweep.values()),
                      flush=True)
    return rows


if __name__ == "__main__":
    main()
