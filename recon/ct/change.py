"""Change-aware PICCS: where do today's data disagree with the (registered) prior image?

PICCS (:func:`recon.ct.pwls_tv` with ``prior``) pulls the image towards the prior's edges with weight
``alpha``; where the patient changed since the prior (a new lesion, a tumour that shrank) it would
paint the prior's content over the change. The change-aware variant lowers ``alpha`` there:

1. :func:`change_map`: the residual of the prior's projection, ``r = p - A prior``, taken back to the
   image: its Hann FBP when the geometry has one (a sharp image of what the data hold and the prior
   does not), else the separable-surrogate step ``A^T W r / A^T W A 1``; smoothed by a Gaussian of
   ``smooth`` pixels and divided by its own noise level (1.4826 x the median absolute value over
   the image: most of the image has not changed), so the map is in **noise units**.
2. :func:`change_aware_maps`: ``alpha`` where ``|change| <= low`` noise units, 0 where
   ``|change| >= high``, linear between, the lowered region dilated by ``grow`` pixels (a max filter:
   the whole changed region and its rim lose the prior, not only its core); and a factor on ``beta``
   lowered there to ``keep``: without the prior the TV term alone would flatten a low-contrast change.

Units: the residual image in 1/mm before normalisation; the map is unitless (noise units).
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import _array
from ..geometry import ConeBeam3D, FanBeam2D, ParallelBeam2D

__all__ = ["CHANGE_HIGH", "CHANGE_KEEP", "CHANGE_LOW", "change_aware_maps", "change_map"]

#: noise units below which ``alpha`` is kept, and above which it is 0
CHANGE_LOW = 3.0
CHANGE_HIGH = 5.0
#: Gaussian smoothing of the change map (pixels) and the dilation of the changed region (pixels)
CHANGE_SMOOTH = 2.5
CHANGE_GROW = 3
#: the factor on (PICCS's) beta where the patient changed: 1 / recon.ct.pipeline.PICCS_BETA_SCALE, so
#: that a change gets PWLS-TV's default beta (and no prior)
CHANGE_KEEP = 0.125


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma, mode="nearest") if sigma > 0 else image


def change_map(projector, sinogram, prior, weights=None, *, smooth: float = CHANGE_SMOOTH) -> np.ndarray:
    """Where the data disagree with ``prior`` (module docstring): a float32 map of the image's shape
    in noise units (positive: more attenuation in the data than in the prior).

    ``projector``: :class:`recon.ops.Projector` (its geometry gives the FBP when it has one);
    ``sinogram``: line integrals; ``prior``: the registered prior on the reconstruction grid (1/mm);
    ``weights``: statistical weights (used only without an FBP geometry); ``smooth``: Gaussian sigma
    in pixels (0: none).
    """
    from .fbp import IncompleteCoverageWarning, fbp

    p = _array.to_numpy(sinogram).astype(np.float32)
    x = _array.to_numpy(prior).astype(np.float32)
    if tuple(x.shape) != tuple(projector.ishape) or tuple(p.shape) != tuple(projector.oshape):
        raise ValueError(f"change_map: prior {x.shape} / sinogram {p.shape} do not match the projector "
                         f"{tuple(projector.ishape)} -> {tuple(projector.oshape)}")
    r = p - np.asarray(projector.forward(x), dtype=np.float32)
    geom = getattr(projector, "geometry", None)
    if isinstance(geom, (ParallelBeam2D, FanBeam2D, ConeBeam3D)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteCoverageWarning)
            img = np.asarray(fbp(r, geom, filter="hann"), dtype=np.float64)
    else:
        w = np.ones_like(p) if weights is None else _array.to_numpy(weights).astype(np.float32)
        d = np.asarray(projector.adjoint(w * np.asarray(projector.forward(np.ones_like(x)))), dtype=np.float64)
        img = np.asarray(projector.adjoint(w * r), dtype=np.float64) / np.where(d > 1e-6 * d.max(), d, np.inf)
    img = _smooth(img, float(smooth))
    scale = 1.4826 * float(np.median(np.abs(img - np.median(img))))
    if not scale > 0:
        return np.zeros(img.shape, dtype=np.float32)
    return (img / scale).astype(np.float32)


def change_aware_maps(change, alpha: float = 0.9, *, low: float = CHANGE_LOW, high: float = CHANGE_HIGH,
                      grow: int = CHANGE_GROW, keep: float = CHANGE_KEEP):
    """``(alpha_map, beta_map)`` (float32, ``change``'s shape) for :func:`recon.ct.pwls_tv`: with the
    drop ``d = clip((|change| - low) / (high - low), 0, 1)`` dilated by ``grow`` pixels, ``alpha_map =
    alpha (1 - d)`` (no prior where the patient changed) and ``beta_map = 1 - d (1 - keep)`` (the
    penalty there lowered to ``keep`` x beta, so that the change keeps its contrast instead of being
    flattened by the TV term that replaces the prior)."""
    from scipy.ndimage import maximum_filter

    c = np.abs(_array.to_numpy(change).astype(np.float64))
    if not (0 <= low < high):
        raise ValueError(f"change_aware_maps: need 0 <= low < high, got low={low!r}, high={high!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"change_aware_maps: alpha must lie in [0, 1], got {alpha!r}")
    if not 0.0 <= float(keep) <= 1.0:
        raise ValueError(f"change_aware_maps: keep must lie in [0, 1], got {keep!r}")
    drop = np.clip((c - low) / (high - low), 0.0, 1.0)
    if grow > 0:
        drop = maximum_filter(drop, size=2 * int(grow) + 1, mode="nearest")
    return ((float(alpha) * (1.0 - drop)).astype(np.float32),
            (1.0 - drop * (1.0 - float(keep))).astype(np.float32))
