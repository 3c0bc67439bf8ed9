"""Running a trained model on raw data, with the checks its model card allows.

- :func:`reconstruct_mri`: multi-coil k-space of one slice ``(C, y, x)`` / ``(C, *sample)`` or of
  several ``(S, C, ...)``; Cartesian (mask = the non-zero pattern unless given) or non-Cartesian
  (``coord`` ``(*sample, 2)`` shared by the slices, Pipe-Menon density weights unless given); coil
  maps by ESPIRiT (:func:`recon.mri.coils.estimate_maps` / ``calib_from_noncartesian``) unless given.
- :func:`reconstruct_ct`: post-log sinograms ``(*sino)`` or ``(S, *sino)`` on a
  :class:`recon.geometry` geometry; PWLS weights from ``counts`` when the model needs them.

Both batch over slices (``batch_size`` at a time) under ``torch.inference_mode`` on ``device`` and
return numpy arrays (complex64 images for MRI, float32 attenuation for CT). A model that cannot take
the input (Cartesian weights on radial data, a 2D CT model on a cone-beam volume) is a ValueError; an
input unlike the training data (acceleration, spoke fraction, views, detector) warns with
:class:`ModelCardWarning` naming what differs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .weights import load


class ModelCardWarning(UserWarning):
    """The input differs from what the model was trained on (its card)."""


def _model(model, device):
    return load(model, device) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else model


def _batches(n: int, size: int):
    for i in range(0, n, max(1, int(size))):
        yield slice(i, min(i + size, n))


def _warn_range(what: str, value: float, trained, rel: float = 1.5):
    lo, hi = min(trained), max(trained)
    if not (lo / rel <= value <= hi * rel):
        warnings.warn(f"{what} {value:.3g} is outside the range the model was trained on ({lo:.3g} .. {hi:.3g}); "
                      "expect lower quality", ModelCardWarning, stacklevel=3)


def reconstruct_mri(kspace, model="modl-cartesian", *, mask=None, coord=None, weights=None, maps=None, prior=None,
                    im_shape=None, device="cpu", batch_size: int = 4) -> np.ndarray:
    """Network reconstruction of multi-coil MRI (module docstring). Returns complex64 ``(y, x)``
    for one slice, ``(S, y, x)`` for several."""
    from ..mri import coils
    from ..mri.dcf import pipe_menon_dcf

    net = _model(model, device)
    card = getattr(net, "card", {})
    task = card.get("task", {})
    trained_traj = getattr(net.config, "trajectory", None)
    if trained_traj is None:
        raise ValueError(f"{type(net).__name__} is not an MRI model")
    k = np.asarray(kspace)
    if not np.iscomplexobj(k):
        raise TypeError(f"kspace: expected complex data, got {k.dtype}")
    cart = coord is None
    if (trained_traj == "cartesian") != cart:
        raise ValueError(f"the model was trained on {trained_traj} data but the input is "
                         f"{'Cartesian' if cart else 'non-Cartesian'}; load a matching model")
    single = k.ndim == (3 if cart else 1 + np.ndim(coord) - 1)
    if single:
        k = k[None]
    S, C = k.shape[:2]
    k = k.astype(np.complex64)
    if cart:
        m = np.any(k != 0, axis=1).astype(np.float32) if mask is None else \
            np.broadcast_to(np.asarray(mask, dtype=np.float32), (S,) + k.shape[2:]).copy()
        accel = 1.0 / max(float(m.mean()), 1e-12)
        if task.get("accelerations"):
            _warn_range("acceleration", accel, task["accelerations"])
        if maps is None:
            maps = np.stack([coils.estimate_maps(k[s], "espirit") for s in range(S)])
    else:
        c = np.asarray(coord, dtype=np.float32)
        if c.shape[:-1] != k.shape[2:] or c.shape[-1] != 2:
            raise ValueError(f"coord {c.shape} does not match kspace {k.shape}: expected (*sample, 2) with "
                             f"sample shape {k.shape[2:]}")
        if im_shape is None:
            im_shape = tuple(maps.shape[-2:]) if maps is not None else None
        if im_shape is None:
            raise ValueError("non-Cartesian reconstruction needs im_shape (or maps)")
        im_shape = tuple(int(n) for n in im_shape)
        w = pipe_menon_dcf(c, im_shape) if weights is None else np.asarray(weights, dtype=np.float32)
        spokes = c.shape[0] if c.ndim == 3 else None
        if spokes and task.get("spokes_fraction"):
            _warn_range("spokes / Nyquist spokes", spokes / (math.pi / 2 * max(im_shape)), [task["spokes_fraction"]])
        if maps is None:
            maps = np.stack([coils.maps_from_calib(coils.calib_from_noncartesian(k[s], c, im_shape, 24, dcf=w),
                                                   im_shape, "espirit", crop=0.8) for s in range(S)])
    maps = np.asarray(maps, dtype=np.complex64)
    if maps.ndim == 3:
        maps = np.repeat(maps[None], S, axis=0)
    if maps.shape[:2] != (S, C):
        raise ValueError(f"maps {maps.shape}: expected ({C}, y, x) or ({S}, {C}, y, x) for {C} coils")
    if prior is not None:
        prior = np.asarray(prior)
        prior = prior[None] if prior.ndim == 2 else prior
    out = []
    dev = torch.device(device)
    with torch.inference_mode():
        for sl in _batches(S, batch_size):
            n = sl.stop - sl.start
            params = {"maps": torch.from_numpy(np.ascontiguousarray(maps[sl])).to(dev)}
            if cart:
                params["mask"] = torch.from_numpy(np.ascontiguousarray(m[sl])).to(dev)
            else:
                params["coord"] = torch.from_numpy(np.broadcast_to(c, (n,) + c.shape).copy())
                params["weights"] = torch.from_numpy(np.broadcast_to(w, (n,) + w.shape).copy()).to(dev)
            p = None if prior is None else torch.from_numpy(np.ascontiguousarray(
                np.broadcast_to(prior, (S,) + prior.shape[1:])[sl])).to(dev)
            out.append(net(torch.from_numpy(np.ascontiguousarray(k[sl])).to(dev), params, p).cpu().numpy())
    x = np.concatenate(out).astype(np.complex64)
    return x[0] if single else x


def reconstruct_ct(sinogram, geometry, model="lpd-fan", *, prior=None, counts=None, weights=None,
                   electronic_noise_std: float = 0.0, device="cpu", batch_size: int = 4) -> np.ndarray:
    """Network reconstruction of low-dose CT (module docstring). Returns float32 ``image_shape``
    for one sinogram, ``(S, *image_shape)`` for several (1/mm for line-integral data)."""
    from ..ct import pwls_weights
    from ..ops import Projector

    net = _model(model, device)
    if not hasattr(net.config, "ndim") or hasattr(net.config, "trajectory"):
        raise ValueError(f"{type(net).__name__} is not a CT model")
    g = np.asarray(sinogram, dtype=np.float32)
    sino_shape = tuple(geometry.sino_shape)
    single = g.shape == sino_shape
    if single:
        g = g[None]
    if tuple(g.shape[1:]) != sino_shape:
        raise ValueError(f"sinogram {g.shape}: expected {sino_shape} or (S, *{sino_shape}) for this geometry")
    if len(geometry.image_shape) != net.config.ndim:
        raise ValueError(f"the model reconstructs {net.config.ndim}D images, the geometry's image is "
                         f"{tuple(geometry.image_shape)}")
    trained = getattr(net, "card", {}).get("task", {}).get("geometry")
    if trained and (list(trained.get("sino_shape", [])) != list(sino_shape)
                    or list(trained.get("image_shape", [])) != list(geometry.image_shape)):
        warnings.warn(f"the geometry (sinogram {sino_shape}, image {tuple(geometry.image_shape)}) differs from the "
                      f"training geometry (sinogram {tuple(trained.get('sino_shape', []))}, image "
                      f"{tuple(trained.get('image_shape', []))}); expect lower quality", ModelCardWarning, stacklevel=2)
    P = Projector(geometry)
    need_w = net.arch == "pwls"
    if need_w and weights is None:
        if counts is None:
            raise ValueError("this model (learned PWLS) needs statistical weights: pass weights= or counts=")
        weights = pwls_weights(np.asarray(counts).reshape(g.shape), electronic_noise_std)
    if prior is not None:
        prior = np.asarray(prior, dtype=np.float32)
        prior = prior[None] if prior.ndim == len(geometry.image_shape) else prior
    out = []
    dev = torch.device(device)
    with torch.inference_mode():
        for sl in _batches(g.shape[0], batch_size):
            params = {"projector": P}
            if need_w:
                params["weights"] = torch.from_numpy(np.ascontiguousarray(
                    np.asarray(weights, dtype=np.float32).reshape(g.shape)[sl])).to(dev)
            p = None if prior is None else torch.from_numpy(np.ascontiguousarray(
                np.broadcast_to(prior, (g.shape[0],) + prior.shape[1:])[sl])).to(dev)
            out.append(net(torch.from_numpy(np.ascontiguousarray(g[sl])).to(dev), params, p).cpu().numpy())
    x = np.concatenate(out).astype(np.float32)
    return x[0] if single else x
