"""``method='net'`` of the MRI and CT pipelines (``recon mri|ct --method net``).

The pipelines (``recon.mri.reconstruct``, ``recon.ct.reconstruct``) sit a layer below the networks,
so they do not import them: importing :mod:`recon.nets` registers the runners below with
``recon.mri.pipeline.register_net`` and ``recon.ct.pipeline.register_net``.

- MRI: units of equal shape (and trajectory) are stacked and reconstructed in batches of
  ``config.batch_size`` by :func:`recon.nets.reconstruct_mri` (coil maps by ``config.maps``, as for
  the classical methods, unless given); weights ``config.weights`` or ``modl-cartesian`` /
  ``modl-radial`` by the data's trajectory.
- CT: the units (2D slices, rebinned helical slices) sharing a geometry are reconstructed in batches
  by :func:`recon.nets.reconstruct_ct`; weights ``config.weights`` or ``lpd-fan``; a prior comes
  registered onto the grid by the CT pipeline (as for PICCS).

The model of a name or path is loaded once per process and device (cached by path and file time).
"""

from __future__ import annotations

import functools
import os

import numpy as np

DEFAULT_WEIGHTS = {"cartesian": "modl-cartesian", "noncartesian": "modl-radial", "ct": "lpd-fan"}


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime: float, device: str):
    from .weights import load

    return load(path, device)


def model_for(weights: str, device: str = "cpu"):
    """The model of a shipped name or weights path on ``device`` (loaded once per file version)."""
    from .weights import resolve

    path = resolve(weights)
    return _cached(os.path.abspath(path), os.path.getmtime(path), str(device))


def _info(model, weights: str, device: str) -> dict:
    return {"weights": str(weights), "architecture": model.arch, "device": str(device),
            "weights_sha256": str(model.card.get("weights_sha256", ""))[:16]}


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b))


def _groups(items: list, key) -> list[list[int]]:
    """Runs of consecutive items that ``key`` says can share one batch."""
    groups: list[list[int]] = []
    for i, it in enumerate(items):
        if groups and key(items[groups[-1][0]], it):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def mri_runner(items: list, config) -> list:
    """The runner of ``recon.mri`` (``recon.mri.pipeline.register_net``): one
    :class:`recon.mri.recon.Recon` per item (complex image ``im_shape``, the maps used)."""
    from ..mri.coils import host
    from ..mri.recon import Recon
    from .infer import reconstruct_mri

    traj = "cartesian" if items[0]["coord"] is None else "noncartesian"
    weights = config.weights or DEFAULT_WEIGHTS[traj]
    model = model_for(weights, config.device)
    info = _info(model, weights, config.device)
    for it in items:
        it["kspace"] = host(it["kspace"], np.complex64)

    def batchable(a, b):
        return (a["kspace"].shape == b["kspace"].shape and a["im_shape"] == b["im_shape"]
                and _same(a["coord"], b["coord"]) and (a["mask"] is None) == (b["mask"] is None)
                and (a["prior"] is None) == (b["prior"] is None))

    out = [None] * len(items)
    for group in _groups(items, batchable):
        first = items[group[0]]
        k = np.stack([items[i]["kspace"] for i in group])
        mask = None if first["mask"] is None else np.stack(
            [np.broadcast_to(host(items[i]["mask"], np.float32), k.shape[2:]) for i in group])
        prior = None if first["prior"] is None else np.stack([items[i]["prior"] for i in group])
        maps = first["maps"]
        coord = None if first["coord"] is None else host(first["coord"], np.float32)
        x, maps_used = reconstruct_mri(k, model, mask=mask, coord=coord, maps=None if maps is None else host(maps),
                                       prior=prior, im_shape=first["im_shape"], device=config.device,
                                       batch_size=config.batch_size, map_method=config.maps,
                                       calib_width=config.calib_width, crop=config.crop, return_maps=True)
        for j, i in enumerate(group):
            out[i] = Recon(x[j], "net", None, maps_used[j], dict(info, prior=first["prior"] is not None))
    return out


def ct_runner(units: list, config, priors) -> tuple[list, dict]:
    """The runner of ``recon.ct`` (``recon.ct.pipeline.register_net``): ``([image per unit], info)``."""
    from .infer import reconstruct_ct

    weights = config.weights or DEFAULT_WEIGHTS["ct"]
    model = model_for(weights, config.device)
    images = [None] * len(units)
    for group in _groups(list(range(len(units))), lambda a, b: units[a].geometry is units[b].geometry
                         and (units[a].weights is None) == (units[b].weights is None)):
        g = units[group[0]].geometry
        sino = np.stack([np.asarray(units[i].sinogram, dtype=np.float32) for i in group])
        w = None if units[group[0]].weights is None else np.stack([units[i].weights for i in group])
        prior = None if priors is None else np.stack([priors[i] for i in group])
        x = reconstruct_ct(sino, g, model, prior=prior, weights=w, device=config.device,
                           batch_size=config.batch_size)
        for j, i in enumerate(group):
            images[i] = x[j]
    return images, dict(_info(model, weights, config.device), prior=priors is not None)


def register():
    """Plug the runners into the MRI and CT pipelines (done when :mod:`recon.nets` is imported)."""
    from ..ct import pipeline as ct_pipeline
    from ..mri import pipeline as mri_pipeline

    mri_pipeline.register_net(mri_runner)
    ct_pipeline.register_net(ct_runner)
