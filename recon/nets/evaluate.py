"""Held-out evaluation: real images of other sources than the training data, simulated
acquisitions with fixed seeds, the networks against the classical baselines.

Held-out images (never in training; the training uses MNI152, ellipses and Shepp-Logan only):

- MRI: ``MR2_UNCR.dcm`` of ``pydicom-data`` (a real 1024x1024 shoulder MR image, resampled to the
  evaluation matrix) when installed, and pydicom's own ``MR_small.dcm`` (64x64, real);
- CT: pydicom's ``CT_small.dcm`` (a real 128x128 CT slice, HU -> attenuation
  ``mu = 0.0192 (1 + HU/1000)`` 1/mm, water at about 70 keV).

Metrics: fastMRI's PSNR/SSIM on magnitudes with ``maxval`` = the truth's maximum. Baselines are
recon's own and tuned on the evaluation image itself (oracle choice of the regularisation weight
over a grid, so the networks face the best-tuned classical result): zero-filled, CG-SENSE (Tikhonov
weight and iterations), L1-wavelet compressed sensing (weight); FBP (filter and cutoff), PWLS-TV
(TV weight). All methods get the true coil maps (MRI).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .simulate import CtTask, MriTask, simulate_ct, simulate_mri

MU_WATER = 0.0192  # 1/mm


# ---- images -----------------------------------------------------------------------------------------

def _resize(img: np.ndarray, n: int) -> np.ndarray:
    from scipy import ndimage

    img = np.asarray(img, dtype=np.float64)
    s = min(img.shape)
    y0, x0 = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
    img = img[y0:y0 + s, x0:x0 + s]
    if s > n:  # area average before interpolation (no aliasing)
        img = ndimage.gaussian_filter(img, 0.4 * s / n)
    return ndimage.zoom(img, n / s, order=1)[:n, :n]


def _dicom(name: str):
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        return None
    d = pydicom.dcmread(path)
    a = d.pixel_array.astype(np.float64)
    return a[0] if a.ndim == 3 else a, d


def heldout_mri(size: int = 256) -> dict:
    """Held-out real MR magnitude images ``(size, size)`` float32 scaled to max 1, by name."""
    out = {}
    for name in ("MR2_UNCR.dcm", "MR_small.dcm"):
        try:
            got = _dicom(name)
        except Exception:  # noqa: BLE001 - a missing optional data package is not an error here
            got = None
        if got is None:
            continue
        img = np.clip(_resize(got[0], size), 0, None)
        out[name.split(".")[0]] = (img / img.max()).astype(np.float32)
    return out


def heldout_ct(size: int = 128) -> dict:
    """Held-out real CT attenuation images ``(size, size)`` float32 in 1/mm, by name."""
    a, d = _dicom("CT_small.dcm")
    hu = a * float(getattr(d, "RescaleSlope", 1)) + float(getattr(d, "RescaleIntercept", 0))
    mu = np.clip(MU_WATER * (1 + _resize(hu, size) / 1000), 0, None)
    return {"CT_small": mu.astype(np.float32)}


# ---- metrics -----------------------------------------------------------------------------------------

def metrics(truth, x, region=None) -> dict:
    """PSNR/SSIM (fastMRI definitions) of ``|x|`` against ``|truth|``; with a boolean ``region`` also
    the PSNR inside it (same ``maxval``)."""
    from fastmri_data.metrics import psnr, ssim

    t, o = np.abs(truth).astype(np.float64), np.abs(x).astype(np.float64)
    mx = float(t.max())
    out = {"psnr": psnr(t, o, mx), "ssim": ssim(t[None], o[None], mx)}
    if region is not None and region.any():
        out["psnr_region"] = float(10 * np.log10(mx ** 2 / max(np.mean((t[region] - o[region]) ** 2), 1e-30)))
    return out


# ---- cases -------------------------------------------------------------------------------------------------

def mri_case(image: np.ndarray, trajectory: str, accel: float, seed: int = 0, coils: int = 8,
             noise: float = 0.01) -> tuple[MriTask, dict]:
    """A simulated acquisition of a held-out magnitude ``image`` (fixed seed): Cartesian fastMRI
    random mask at ``accel`` (centre fraction 0.08 at 4x, 0.04 at 8x) or radial with
    ``1/accel`` of the Nyquist spokes."""
    n = image.shape[-1]
    cf = 0.08 if accel <= 4 else 0.04
    task = MriTask(trajectory=trajectory, size=n, coils=coils, accelerations=(accel,), center_fractions=(cf,),
                   spokes_fraction=1.0 / accel, noise=(noise, noise))
    return task, simulate_mri(task, image, np.random.default_rng([seed, 11]))


def prior_case(image: np.ndarray, seed: int = 0, kind: str = "new"):
    """(target, prior, changed) for a held-out image: a lesion only in the target (``'new'``) or
    only in the prior (``'removed'``), the prior deformed and shifted (up to 2 px)."""
    from .sources import prior_pair

    return prior_pair(image, np.random.default_rng([seed, 13]), max_shift=2.0, kind=kind)


def _mri_params(task: MriTask, s: dict) -> dict:
    p = {"maps": torch.from_numpy(s["maps"][None])}
    if task.trajectory == "cartesian":
        p["mask"] = torch.from_numpy(s["mask"][None])
    else:
        p["coord"] = torch.from_numpy(s["coord"][None])
        p["weights"] = torch.from_numpy(s["weights"][None])
    return p


def run_mri_net(model, task: MriTask, s: dict, prior=None) -> np.ndarray:
    with torch.inference_mode():
        p = None if prior is None else torch.from_numpy(np.asarray(prior, dtype=np.float32)[None])
        return model(torch.from_numpy(s["kspace"][None]), _mri_params(task, s), p)[0].numpy()


def mri_baselines(task: MriTask, s: dict, *, tune: bool = True) -> dict:
    """Zero-filled, best CG-SENSE and best L1-wavelet CS of a case (images and chosen settings)."""
    from ..mri.recon import cg_sense, cs_wavelet, sense_problem, zero_filled

    truth = s["image"]
    kw = {"mask": s["mask"]} if task.trajectory == "cartesian" else {"coord": s["coord"], "dcf": s["weights"]}
    zkw = {} if task.trajectory == "cartesian" else kw
    out = {"zero-filled": (zero_filled(s["kspace"], maps=s["maps"], **zkw).image, {})}
    if not tune:
        return out
    P = sense_problem(s["kspace"], s["maps"], **kw)
    best = None
    for lam in (1e-5, 1e-4, 1e-3, 1e-2, 5e-2):
        for it in ((30,) if task.trajectory == "cartesian" else (5, 10, 20, 40)):
            x = cg_sense(problem=P, maps=s["maps"], lam=lam, max_iter=it, tol=0).image
            q = metrics(truth, x)["psnr"]
            if best is None or q > best[0]:
                best = (q, x, {"lam": lam, "max_iter": it})
    out["cg-sense"] = best[1:]
    best = None
    for lam in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2):
        x = cs_wavelet(problem=P, maps=s["maps"], lam=lam, max_iter=80, tol=0).image
        q = metrics(truth, x)["psnr"]
        if best is None or q > best[0]:
            best = (q, x, {"lam": lam, "max_iter": 80, "wave": "haar", "cycle_spin": True})
    out["cs-wavelet"] = best[1:]
    return out


def ct_case(mu: np.ndarray, task: CtTask, dose: float, seed: int = 0, prior=None) -> dict:
    """A simulated low-dose scan of a held-out attenuation image at ``dose`` (fraction of
    ``task.full_dose``)."""
    task = dataclasses.replace(task, mu_range=(1.0, 1.0))
    return simulate_ct(task, mu, np.random.default_rng([seed, 17]), dose=dose, prior=prior)


def run_ct_net(model, task: CtTask, s: dict, prior=None) -> np.ndarray:
    with torch.inference_mode():
        p = None if prior is None else torch.from_numpy(np.asarray(prior, dtype=np.float32)[None])
        params = {"projector": task.projector(), "weights": torch.from_numpy(s["weights"][None])}
        return model(torch.from_numpy(s["sinogram"][None]), params, p)[0].numpy()


def ct_baselines(task: CtTask, s: dict, *, tune: bool = True) -> dict:
    """Best FBP (filter, cutoff) and best PWLS-TV (TV weight) of a case."""
    from ..ct import fbp, pwls_tv

    truth, g = s["image"], s["sinogram"]
    geom = task.geometry()
    best = None
    for filt in ("ram-lak", "hann"):
        for cut in ((1.0, 0.7, 0.5, 0.35) if tune else (1.0,)):
            x = fbp(g, geom, filter=filt, cutoff=cut)
            q = metrics(truth, x)["psnr"]
            if best is None or q > best[0]:
                best = (q, x, {"filter": filt, "cutoff": cut})
    out = {"fbp": best[1:]}
    if not tune:
        return out
    best = None
    for beta in (30.0, 100.0, 300.0, 1e3, 3e3, 1e4):
        x, _ = pwls_tv(task.projector(), g, s["weights"], beta=beta, n_iter=60)
        q = metrics(truth, x)["psnr"]
        if best is None or q > best[0]:
            best = (q, x, {"beta": beta, "n_iter": 60})
    out["pwls-tv"] = best[1:]
    return out


def evaluate_shipped(model, name: str) -> dict:
    """The card's held-out numbers: the network against zero-filled / FBP (untuned Ram-Lak) on the
    held-out images (quick; ``benchmarks/run_nets.py`` has the full comparison)."""
    res = {}
    if getattr(model.config, "trajectory", None) is not None:
        traj = model.config.trajectory
        for img_name, img in heldout_mri(256).items():
            for accel in ((4, 8) if traj == "cartesian" else (8,)):
                task, s = mri_case(img, traj, accel)
                net = metrics(s["image"], run_mri_net(model, task, s))
                zf = metrics(s["image"], mri_baselines(task, s, tune=False)["zero-filled"][0])
                res[f"{img_name} {traj} {accel}x 8 coils"] = {"net": net, "zero-filled": zf}
    else:
        task = CtTask(**{k: v for k, v in model.card["task"].items() if k in {f.name for f in
                                                                              dataclasses.fields(CtTask)}})
        for img_name, mu in heldout_ct(task.size).items():
            for dose in (0.1, 0.05):
                s = ct_case(mu, task, dose)
                res[f"{img_name} fan {int(dose * 100)}% dose"] = {
                    "net": metrics(s["image"], run_ct_net(model, task, s)),
                    "fbp": metrics(s["image"], ct_baselines(task, s, tune=False)["fbp"][0])}
    return res
