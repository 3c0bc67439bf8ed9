"""MoDL (Aggarwal, Mani & Jacob, IEEE TMI 2019): a shared-weight CNN denoiser alternating with
conjugate-gradient data consistency, ``K`` unrolls,

    z_k = x_k + D_w(x_k)                       (residual CNN, one set of weights for all k)
    x_{k+1} = (A^H A + lam I)^{-1} (A^H y + lam z_k)

with ``lam`` learned. ``A`` is recon's SENSE operator (Cartesian: ``CartesianSense``; non-Cartesian:
``NonCartesianSense`` whose normal runs the NUFFT's Toeplitz embedding) and the solve is
:func:`recon.solvers.cg_solve` (fixed ``cg_iter`` CG steps per item, implicit backward).

**Dynamic variant** (``dynamic=True``, for 2D+t series and motion states): data ``(B, T, C, ...)``;
each frame has its own data consistency (frames are a batch axis of the solve), and the denoiser
is a (2+1)D CNN over ``(t, y, x)``. Per-frame params: ``mask`` ``(B, T, y, x)`` (or one shared 2D
mask), ``coord`` ``(B, T, *sample, 2)``, ``weights`` ``(B, T, *sample)``; ``maps`` ``(B, C, y, x)``
shared by the frames or ``(B, T, C, y, x)``; a prior ``(B, y, x)`` shared or ``(B, T, y, x)``.
Output ``(B, T, y, x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..solvers import cg_solve
from .base import UnrolledNet, register
from .blocks import ResidualCNN, expand_as_item, from_channels, item_scale, to_channels
from .physics import TRAJECTORIES, MriPhysics, _tensor, check_kspace, check_params


@dataclass
class MoDLConfig:
    """MoDL hyper-parameters (saved in the model card)."""

    trajectory: str = "cartesian"   # 'cartesian' or 'noncartesian'
    features: int = 48              # denoiser channels
    layers: int = 5                 # denoiser convolutions
    unrolls: int = 5                # K
    cg_iter: int = 6                # CG steps per data-consistency solve
    lam_init: float = 0.05          # initial lambda (relative to ||A||^2 ~ 1)
    prior: bool = False             # prior-image input channels (see recon.nets.base)
    dynamic: bool = False           # (2+1)D denoiser, frames as a batch axis of the data consistency
    nufft_tol: float = 1e-3         # NUFFT accuracy (non-Cartesian)


def _frames_flat(a, B: int, T: int, name: str, per_item_ndim: int):
    """A per-frame parameter ``(B, T, ...)`` as ``(B*T, ...)``; one per item ``(B, ...)`` (with
    ``per_item_ndim`` axes after B) repeated over the frames; a shared one returned as is."""
    if a is None:
        return None
    s = tuple(a.shape)
    if len(s) >= 2 and s[:2] == (B, T) and len(s) == per_item_ndim + 2:
        return a.reshape((B * T,) + s[2:])
    if len(s) == per_item_ndim + 1 and s[0] == B:
        return a.repeat_interleave(T, dim=0) if isinstance(a, torch.Tensor) else np.repeat(a, T, axis=0)
    if len(s) <= per_item_ndim:
        return a
    raise ValueError(f"params[{name!r}]: expected (B, T, ...) = ({B}, {T}, ...) per frame or ({B}, ...) per item, "
                     f"got {s}")


@register
class MoDL(UnrolledNet):
    """MoDL for multi-coil MRI (see the module docstring). ``model(kspace, params, prior=None)``
    returns the complex image ``(B, y, x)`` (``(B, T, y, x)`` when dynamic); ``params`` as in
    :mod:`recon.nets.physics` (``maps`` required)."""

    arch = "modl"
    config_class = MoDLConfig

    def __init__(self, config: MoDLConfig | None = None, **kw):
        super().__init__(config, **kw)
        c = self.config
        if c.trajectory not in TRAJECTORIES:
            raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {c.trajectory!r}")
        self.denoiser = ResidualCNN(2 + self.prior_channels, 2, c.features, c.layers,
                                    dim="2+1d" if c.dynamic else "2d")
        self.log_lam = nn.Parameter(torch.tensor(float(c.lam_init)).log())

    @property
    def lam(self) -> torch.Tensor:
        return self.log_lam.exp()

    def _denoise(self, x, pr, T):
        c = to_channels(x)
        if pr is not None:
            c = torch.cat([c, pr], dim=1)
        if T:  # (B*T, ch, y, x) -> (B, ch, T, y, x) for the (2+1)D CNN, and back
            BT, ch = c.shape[:2]
            c = c.reshape((BT // T, T, ch) + tuple(c.shape[2:])).transpose(1, 2)
            r = self.denoiser(c).transpose(1, 2).reshape((BT, 2) + tuple(c.shape[3:]))
        else:
            r = self.denoiser(c)
        return x + from_channels(r)

    def forward(self, data, params, prior=None):
        c = self.config
        data = check_kspace(data, 2 if c.dynamic else 1)
        check_params(params, ("maps",), "MoDL")
        T = 0
        if c.dynamic:
            B, T = int(data.shape[0]), int(data.shape[1])
            data = data.reshape((B * T,) + tuple(data.shape[2:]))
            ns = data.ndim - 2                       # sample axes: (y, x) Cartesian, (*sample) otherwise
            params = dict(params,
                          maps=_frames_flat(params["maps"], B, T, "maps", 3),
                          mask=_frames_flat(params.get("mask"), B, T, "mask", 2),
                          coord=_frames_flat(params.get("coord"), B, T, "coord", ns + 1),
                          weights=_frames_flat(params.get("weights"), B, T, "weights", ns))
            if prior is not None and prior.ndim == 3:
                prior = prior.repeat_interleave(T, dim=0)
            elif prior is not None:
                prior = prior.reshape((B * T,) + tuple(prior.shape[2:]))
        maps = _tensor(params["maps"], "maps", data.device, data.dtype)
        phys = MriPhysics(params, data, maps, trajectory=c.trajectory, nufft_tol=c.nufft_tol)
        b = phys.adjoint_data(data)
        s = item_scale(b)
        b = b / expand_as_item(s, b)
        pr = self.prior_input(prior, b, None, magnitude=True)
        lam = self.lam.to(b.real.dtype).expand(b.shape[0])
        x = b
        for _ in range(c.unrolls):
            z = self.stage(self._denoise, x, pr, T)
            x = cg_solve(phys.normal, b + expand_as_item(lam, b) * z, lam, batch_ndim=1, max_iter=c.cg_iter,
                         tol=0.0)
        x = x * expand_as_item(s, x)
        if T:
            x = x.reshape((x.shape[0] // T, T) + tuple(x.shape[1:]))
        return x
