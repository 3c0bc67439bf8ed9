"""E2E-VarNet (Sriram et al., MICCAI 2020) on recon's SENSE operators, in image space:

    S = SensNet(calibration data)               (coil maps, unit root-sum-of-squares)
    x_0 = A_S^H y
    x_{k+1} = x_k - eta_k A_S^H (A_S x_k - y) + R_k(x_k)     k = 0 .. cascades-1

with ``R_k`` a normalised U-Net per cascade (own weights, as fastMRI's VarNet) and ``eta_k``
learned. The sensitivity network (fastMRI's SensitivityModel) runs a small normalised U-Net on
each coil image of the calibration data and divides by the root-sum-of-squares over coils:

- Cartesian: the data inside the fully sampled centre (the centred band of sampled columns for a
  column mask, the largest centred fully sampled square for a 2D mask);
- non-Cartesian: the samples within ``calib_radius`` cycles/FOV of the centre (density weighted
  when ``weights`` are given), gridded by the adjoint NUFFT.

Given ``params['maps']`` the network uses them instead (e.g. ESPIRiT maps). Gradients reach the
sensitivity network through ``A_S`` (recon's SENSE differentiates its maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .base import UnrolledNet, register
from .blocks import NormUNet, expand_as_item, from_channels, item_scale, to_channels
from .physics import (
    CARTESIAN,
    TRAJECTORIES,
    MriPhysics,
    _tensor,
    check_kspace,
    check_params,
    trajectory_of,
)


@dataclass
class VarNetConfig:
    """E2E-VarNet hyper-parameters (saved in the model card)."""

    trajectory: str = "cartesian"
    cascades: int = 6
    chans: int = 8                  # U-Net channels of the first level, per cascade
    pools: int = 2
    sens_chans: int = 4             # sensitivity U-Net
    sens_pools: int = 2
    calib_radius: float = 12.0      # non-Cartesian calibration disc, cycles/FOV
    eta_init: float = 0.5
    prior: bool = False
    nufft_tol: float = 1e-3


def _centre_box(mask2d: np.ndarray) -> tuple[int, int]:
    """Half-widths ``(ry, rx)`` of the largest centred fully sampled region of a ``(y, x)`` mask:
    a band of columns (``ry`` = all rows) when every row is sampled alike, else a square."""
    ny, nx = mask2d.shape
    cy, cx = ny // 2, nx // 2
    s = mask2d != 0
    if (s == s[:1]).all():  # column mask
        cols = s[0]
        r = 0
        while cx - r - 1 >= 0 and cx + r + 1 < nx and cols[cx - r - 1] and cols[cx + r]:
            r += 1
        return ny // 2, max(r, 1)
    r = 0
    while r + 1 <= min(cy, cx) and s[cy - r - 1:cy + r + 1, cx - r - 1:cx + r + 1].all():
        r += 1
    r = max(r, 1)
    return r, r


class SensNet(nn.Module):
    """Coil maps from calibration coil images ``(B, C, y, x)``: a normalised U-Net per coil image
    (coils as batch), then division by the root-sum-of-squares over coils."""

    def __init__(self, chans: int, pools: int):
        super().__init__()
        self.unet = NormUNet(2, 2, chans, pools)

    def forward(self, coil_images: torch.Tensor) -> torch.Tensor:
        B, C = coil_images.shape[:2]
        flat = coil_images.reshape((B * C,) + tuple(coil_images.shape[2:]))
        maps = from_channels(self.unet(to_channels(flat))).reshape(coil_images.shape)
        rss = maps.abs().pow(2).sum(1, keepdim=True).sqrt()
        return maps / (rss + 1e-6 * rss.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12))


@register
class VarNet(UnrolledNet):
    """E2E-VarNet (module docstring). ``model(kspace, params, prior=None)`` -> complex ``(B, y, x)``."""

    arch = "varnet"
    config_class = VarNetConfig

    def __init__(self, config: VarNetConfig | None = None, **kw):
        super().__init__(config, **kw)
        c = self.config
        if c.trajectory not in TRAJECTORIES:
            raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {c.trajectory!r}")
        self.sens = SensNet(c.sens_chans, c.sens_pools)
        self.cascades = nn.ModuleList([NormUNet(2 + self.prior_channels, 2, c.chans, c.pools)
                                       for _ in range(c.cascades)])
        self.eta = nn.Parameter(torch.full((c.cascades,), float(c.eta_init)))

    # ---- sensitivities ---------------------------------------------------------------------------
    def calibration_images(self, data, params, im_shape):
        """Coil images of the calibration data ``(B, C, y, x)`` (module docstring)."""
        from ..ops.linear import centred_fft
        from ..ops.nufft import Nufft

        B = int(data.shape[0])
        if trajectory_of(params) == CARTESIAN:
            mask = params["mask"]
            m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            m = m.reshape((1,) * (3 - m.ndim) + m.shape) if m.ndim < 3 else m
            win = np.zeros((B,) + tuple(im_shape), dtype=np.float32)
            for b in range(B):
                mb = np.broadcast_to(m[b if m.shape[0] > 1 else 0], im_shape)
                ry, rx = _centre_box(mb)
                cy, cx = im_shape[0] // 2, im_shape[1] // 2
                win[b, max(cy - ry, 0):cy + ry, max(cx - rx, 0):cx + rx] = mb[max(cy - ry, 0):cy + ry,
                                                                              max(cx - rx, 0):cx + rx]
            k = data * torch.from_numpy(win).to(data.device)[:, None]
            return centred_fft(k, 2, inverse=True)
        coord = params["coord"]
        c = coord.detach().cpu().numpy() if isinstance(coord, torch.Tensor) else np.asarray(coord)
        c = c.astype(np.float32)
        inside = (np.sqrt((c ** 2).sum(-1)) <= self.config.calib_radius).astype(np.float32)
        w = params.get("weights")
        wt = torch.from_numpy(inside).to(data.device)
        if w is not None:
            wt = wt * _tensor(w, "weights", data.device, wt.dtype)
        nu = Nufft.cached(c.reshape((B, 1) + c.shape[1:]), im_shape, tol=self.config.nufft_tol, frame_ndim=2,
                   dtype="complex64" if data.dtype == torch.complex64 else "complex128")
        return nu.adjoint((data * wt[:, None]).contiguous())

    def estimate_maps(self, data, params, im_shape):
        imgs = self.calibration_images(data, params, im_shape)
        return self.sens(imgs)

    # ---- forward -----------------------------------------------------------------------------------
    def _cascade(self, k, x, b, phys, pr):
        c = to_channels(x)
        if pr is not None:
            c = torch.cat([c, pr], dim=1)
        r = from_channels(self.cascades[k](c))
        return x - self.eta[k].to(x.real.dtype) * (phys.normal(x) - b) + r

    def forward(self, data, params, prior=None):
        c = self.config
        data = check_kspace(data)
        check_params(params, (), "VarNet")
        if params.get("maps") is not None:
            maps = _tensor(params["maps"], "maps", data.device, data.dtype)
        else:
            if trajectory_of(params) == CARTESIAN:
                im_shape = tuple(int(n) for n in data.shape[-2:])
            else:
                if params.get("im_shape") is None:
                    raise ValueError("VarNet: non-Cartesian params without maps need 'im_shape'")
                im_shape = tuple(int(n) for n in params["im_shape"])
            maps = self.estimate_maps(data, params, im_shape)
        phys = MriPhysics(params, data, maps, trajectory=c.trajectory, nufft_tol=c.nufft_tol)
        b = phys.adjoint_data(data)
        s = item_scale(b)
        b = b / expand_as_item(s, b)
        pr = self.prior_input(prior, b, None, magnitude=True)
        x = b
        for k in range(c.cascades):
            x = self.stage(self._cascade, k, x, b, phys, pr)
        return x * expand_as_item(s, x)
