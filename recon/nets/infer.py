"""Running a trained model on raw data, with the checks its model card allows.

- :func:`reconstruct_mri`: multi-coil k-space of one slice ``(C, y, x)`` / ``(C, *sample)`` or of
  several ``(S, C, ...)``; Cartesian (mask = the non-zero pattern unless given) or non-Cartesian
  (``coord`` ``(*sample, 2)`` shared by the slices, Pipe-Menon density weights unless given); coil
  maps by ESPIRiT (:func:`recon.mri.coils.estimate_maps` / ``calib_from_noncartesian``) unless given.
- :func:`reconstruct_ct`: post-log sinograms ``(*sino)`` or ``(S, *sino)`` on a
  :class:`recon.geometry` geometry; PWLS weights from ``counts`` when the model needs them.

Both batch over slices (``batch_size`` at a time) under ``torch.inference_mode`` on ``device`` and
return numpy arrays (complex64 images for MRI, float32 attenuation for CT). A model that cannot take
the input is a ValueError: Cartesian weights on radial data or the reverse, 3D k-space or a 3D CT
geometry for a 2D model, a matrix below :data:`MIN_MATRIX`, coil maps whose coil count differs from
the data's. An input unlike the training data (its model card) warns with :class:`ModelCardWarning`
naming what differs: acceleration or spoke fraction, 2D sampling for a model trained on 1D masks,
coil count, matrix; CT geometry (kind, views, detector, distances, pixel size, matrix) and dose
(estimated from the statistical weights when given).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .weights import load


class ModelCardWarning(UserWarning):
    """The input differs from what the model was trained on (its card)."""


#: the smallest image matrix (pixels per side) a 2D model takes: below it the convolutions see
#: mostly padding (and VarNet's U-Net pools to nothing)
MIN_MATRIX = 16


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


def _check_matrix(shape, where: str):
    if len(shape) != 2:
        raise ValueError(f"{where}: the networks reconstruct 2D slices; got a {len(shape)}D matrix {tuple(shape)} "
                         "(reconstruct 3D data slice by slice, or use a classical method)")
    if min(shape) < MIN_MATRIX:
        raise ValueError(f"{where}: matrix {tuple(shape)} is below the smallest the model takes "
                         f"({MIN_MATRIX} x {MIN_MATRIX})")


def _warn_card_mri(task: dict, coils: int, matrix):
    if task.get("coils") and int(task["coils"]) != coils:
        warnings.warn(f"{coils} coils; the model was trained on {task['coils']}-coil data (SENSE takes any coil "
                      "count, but expect lower quality)", ModelCardWarning, stacklevel=3)
    n = task.get("size")
    if n and not (n / 2 <= max(matrix) <= 4 * n):
        warnings.warn(f"matrix {tuple(matrix)} is far from the training matrix {n} x {n}; expect lower quality",
                      ModelCardWarning, stacklevel=3)


def reconstruct_mri(kspace, model="modl-cartesian", *, mask=None, coord=None, weights=None, maps=None, prior=None,
                    im_shape=None, device="cpu", batch_size: int = 4, map_method: str = "espirit",
                    calib_width: int | None = None, crop: float | None = None, return_maps: bool = False):
    """Network reconstruction of multi-coil MRI (module docstring). Returns complex64 ``(y, x)``
    for one slice, ``(S, y, x)`` for several (and the coil maps used, like the images with a coil
    axis, with ``return_maps``). Maps not given are estimated by ``map_method`` (espirit | lowres |
    walsh; ``calib_width`` default 24 Cartesian, 24 cycles/FOV non-Cartesian; ``crop`` ESPIRiT's
    threshold, default 0.95 Cartesian, 0.8 non-Cartesian)."""
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
    if cart and k.ndim not in (3, 4):
        raise ValueError(f"kspace {k.shape}: expected (C, y, x) or (S, C, y, x) 2D Cartesian k-space; the networks "
                         "reconstruct 2D slices")
    single = k.ndim == (3 if cart else 1 + np.ndim(coord) - 1)
    if single:
        k = k[None]
    S, C = k.shape[:2]
    k = k.astype(np.complex64)
    cw = calib_width or 24
    mkw = {} if map_method != "espirit" else {"crop": crop if crop is not None else (0.95 if cart else 0.8)}
    if cart:
        _check_matrix(k.shape[2:], "kspace")
        m = np.any(k != 0, axis=1).astype(np.float32) if mask is None else \
            np.broadcast_to(np.asarray(mask, dtype=np.float32), (S,) + k.shape[2:]).copy()
        accel = 1.0 / max(float(m.mean()), 1e-12)
        if task.get("accelerations"):
            _warn_range("acceleration", accel, task["accelerations"])
        if task.get("mask") and (m != m[:, :1, :]).any():
            warnings.warn(f"2D sampling pattern (it varies along both axes); the model was trained on fastMRI "
                          f"{task['mask']} column masks: expect lower quality", ModelCardWarning, stacklevel=2)
        _warn_card_mri(task, C, k.shape[2:])
        if maps is None:
            maps = np.stack([coils.estimate_maps(k[s], map_method, cw, **mkw) for s in range(S)])
    else:
        c = np.asarray(coord, dtype=np.float32)
        if c.shape[-1] != 2:
            raise ValueError(f"coord {c.shape}: the networks reconstruct 2D slices (coordinates (*sample, 2)); "
                             f"got {c.shape[-1]}D coordinates")
        if c.shape[:-1] != k.shape[2:]:
            raise ValueError(f"coord {c.shape} does not match kspace {k.shape}: expected (*sample, 2) with "
                             f"sample shape {k.shape[2:]}")
        if im_shape is None:
            im_shape = tuple(maps.shape[-2:]) if maps is not None else None
        if im_shape is None:
            raise ValueError("non-Cartesian reconstruction needs im_shape (or maps)")
        im_shape = tuple(int(n) for n in im_shape)
        _check_matrix(im_shape, "im_shape")
        w = pipe_menon_dcf(c, im_shape) if weights is None else np.asarray(weights, dtype=np.float32)
        spokes = c.shape[0] if c.ndim == 3 else None
        if spokes and task.get("spokes_fraction"):
            _warn_range("spokes / Nyquist spokes", spokes / (math.pi / 2 * max(im_shape)), [task["spokes_fraction"]])
        _warn_card_mri(task, C, im_shape)
        if maps is None:
            maps = np.stack([coils.maps_from_calib(coils.calib_from_noncartesian(k[s], c, im_shape, cw, dcf=w),
                                                   im_shape, map_method, **mkw) for s in range(S)])
    maps = np.asarray(maps, dtype=np.complex64)
    if maps.ndim == 3:
        maps = np.repeat(maps[None], S, axis=0)
    if maps.ndim != 4 or maps.shape[:2] != (S, C):
        raise ValueError(f"maps {maps.shape}: the data have {C} coils; expected maps ({C}, y, x) or ({S}, {C}, y, x)")
    if prior is not None:
        prior = np.asarray(prior)
        prior = prior[None] if prior.ndim == 2 else prior
        if prior.ndim != 3 or prior.shape[0] not in (1, S) or prior.shape[1:] != maps.shape[2:]:
            raise ValueError(f"prior {prior.shape}: expected one registered image {maps.shape[2:]} per slice "
                             f"(or one for all {S})")
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
    x = x[0] if single else x
    if return_maps:
        return x, (maps[0] if single else maps)
    return x


def _geometry_differences(geometry, trained: dict) -> list[str]:
    """What differs between a geometry and the training geometry of a CT card's task."""
    d = geometry.to_dict()
    out = []
    if trained.get("kind") and d.get("kind") != trained["kind"] and not (
            trained["kind"] == "fan" and d.get("kind") == "FanBeam2D"):
        out.append(f"{d.get('kind')} beam (trained: {trained['kind']})")
    for key, name in (("sino_shape", "sinogram"), ("image_shape", "image")):
        if trained.get(key) and list(trained[key]) != list(getattr(geometry, key)):
            out.append(f"{name} {tuple(getattr(geometry, key))} (trained: {tuple(trained[key])})")
    for key in ("voxel_size", "source_origin", "origin_det"):
        t, v = trained.get(key), d.get(key)
        if t is not None and v is not None and not np.allclose(np.ravel(v), np.ravel(t), rtol=0.05):
            out.append(f"{key} {np.ravel(v)[0]:.4g} (trained: {np.ravel(t)[0]:.4g})")
    return out


def _warn_card_ct(task: dict, geometry, g, weights):
    trained = dict(task.get("geometry") or {})
    for key in ("voxel_size", "source_origin", "origin_det"):
        if key in task:
            trained.setdefault(key, task[key])
    diff = _geometry_differences(geometry, trained) if trained else []
    if diff:
        warnings.warn("the geometry differs from the training geometry: " + "; ".join(diff) + "; expect lower quality",
                      ModelCardWarning, stacklevel=3)
    if weights is not None and task.get("full_dose") and task.get("dose_range"):
        # incident photons per reading: the weights are about the counts, I0 exp(-p)
        w = np.asarray(weights, dtype=np.float64).reshape(g.shape)
        i0 = float(np.median(w * np.exp(np.clip(g, 0, 30))))
        _warn_range("dose (incident photons per reading, estimated from the weights)", i0,
                    [task["full_dose"] * d for d in task["dose_range"]])


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
    if net.config.ndim == 2:
        _check_matrix(tuple(geometry.image_shape), "the geometry's image")
    need_w = net.arch == "pwls"
    if weights is None and counts is not None:
        weights = pwls_weights(np.asarray(counts).reshape(g.shape), electronic_noise_std)
    if need_w and weights is None:
        raise ValueError("this model (learned PWLS) needs statistical weights: pass weights= or counts=")
    _warn_card_ct(getattr(net, "card", {}).get("task", {}), geometry, g, weights)
    P = Projector(geometry)
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
