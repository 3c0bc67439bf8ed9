"""Image-quality metrics exactly as fastMRI's ``evaluate.py`` defines them (on magnitude volumes).

- ``mse(gt, pred) = mean((gt - pred)^2)``
- ``nmse(gt, pred) = ||gt - pred||_2^2 / ||gt||_2^2`` (whole arrays)
- ``psnr(gt, pred, maxval=None) = 10 log10(maxval^2 / mse)``, ``maxval`` defaulting to ``gt.max()``
  over the whole volume (skimage's ``peak_signal_noise_ratio`` with ``data_range=maxval``)
- ``ssim(gt, pred, maxval=None)``: gt and pred are ``(slices, H, W)``; the mean over slices of
  skimage's ``structural_similarity(gt[s], pred[s], data_range=maxval)`` with its defaults, which we
  implement here: a uniform 7x7 window, ``K1 = 0.01``, ``K2 = 0.03``, sample (co)variances
  (factor ``NP / (NP - 1)``, ``NP = 49``), ``C1 = (K1 maxval)^2``, ``C2 = (K2 maxval)^2``,
  ``S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2))`` averaged over the pixels
  whose window lies inside the image (skimage crops 3 pixels at each border); ``maxval`` defaults
  to ``gt.max()`` over the whole volume.

We compute in float64 (skimage keeps float32 inputs in float32; the difference is float32 rounding).
"""

from __future__ import annotations

import numpy as np

SSIM_WIN = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pair(gt, pred, what):
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"{what}: gt shape {gt.shape} != pred shape {pred.shape}")
    if np.iscomplexobj(gt) or np.iscomplexobj(pred):
        raise TypeError(f"{what}: expects real (magnitude) images; take np.abs first")
    return gt.astype(np.float64), pred.astype(np.float64)


def mse(gt, pred) -> float:
    gt, pred = _pair(gt, pred, "mse")
    return float(np.mean((gt - pred) ** 2))


def nmse(gt, pred) -> float:
    gt, pred = _pair(gt, pred, "nmse")
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt, pred, maxval=None) -> float:
    gt, pred = _pair(gt, pred, "psnr")
    maxval = gt.max() if maxval is None else float(maxval)
    return float(10 * np.log10(maxval**2 / np.mean((gt - pred) ** 2)))


def _ssim2d(x, y, data_range):
    from scipy.ndimage import uniform_filter

    w = SSIM_WIN
    if min(x.shape) < w:
        raise ValueError(f"ssim: slices must be at least {w}x{w}, got {x.shape}")
    np_ = w**x.ndim
    cov_norm = np_ / (np_ - 1)
    ux = uniform_filter(x, size=w)
    uy = uniform_filter(y, size=w)
    uxx = uniform_filter(x * x, size=w)
    uyy = uniform_filter(y * y, size=w)
    uxy = uniform_filter(x * y, size=w)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (w - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def ssim(gt, pred, maxval=None) -> float:
    """Mean over slices of the 2D SSIM of ``(slices, H, W)`` volumes (see the module docstring)."""
    gt, pred = _pair(gt, pred, "ssim")
    if gt.ndim != 3:
        raise ValueError(f"ssim: expects (slices, H, W) volumes, got {gt.ndim} dimensions")
    maxval = gt.max() if maxval is None else float(maxval)
    return float(np.mean([_ssim2d(gt[s], pred[s], maxval) for s in range(gt.shape[0])]))


METRIC_FUNCS = {"MSE": mse, "NMSE": nmse, "PSNR": psnr, "SSIM": ssim}
