"""Learned iterative CT reconstruction on :class:`recon.ops.Projector` (parallel, fan and cone beam).

**Learned primal-dual** (Adler & Oktem, IEEE TMI 2018), with a primal memory ``f`` of ``primal``
channels and a dual memory ``h`` of ``dual`` channels:

    h_{i+1} = h_i + Gamma_i(h_i, A' f_i^(2), g')           (dual step, sinogram space)
    f_{i+1} = f_i + Lambda_i(f_i, A'^T h_{i+1}^(1) [, prior])  (primal step, image space)

``A' = A / ||A||``, ``g'`` the data divided by ``||A||`` and the per-item scale ``s``; the image
channels start at the Hann-filtered FBP divided by ``s`` (``s``: 99th percentile of the FBP), the
dual channels at zero; the result is ``s f^(1)``. Each Gamma_i / Lambda_i is a small residual CNN
whose last layer starts near zero (an untrained network returns about the FBP).

**Learned unrolled PWLS** (``LearnedPWLS``): learned gradient steps on the penalised weighted least
squares data term with the statistical weights ``W`` (``params['weights']``, :func:`recon.ct.pwls_weights`),

    x_{k+1} = x_k - alpha_k A'^T W' (A' x_k - g') + Lambda_k(x_k, A'^T W' (A' x_k - g') [, prior])

with ``W' = W / mean(W)`` per item. 2D images use 2D convolutions, cone-beam volumes 3D ones
(``ndim=3``; memory: the primal memory holds ``primal`` copies of the volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import UnrolledNet, register
from .blocks import ResidualCNN, expand_as_item, item_scale
from .physics import check_ct, fbp_init, projector_norm


@dataclass
class LPDConfig:
    """Learned primal-dual hyper-parameters (saved in the model card)."""

    iterations: int = 8
    primal: int = 5
    dual: int = 5
    features: int = 32
    layers: int = 3
    ndim: int = 2                 # 2 (parallel/fan) or 3 (cone-beam volumes)
    prior: bool = False


@dataclass
class PWLSNetConfig:
    """Learned unrolled PWLS hyper-parameters (saved in the model card)."""

    iterations: int = 8
    features: int = 32
    layers: int = 3
    ndim: int = 2
    step_init: float = 0.5
    prior: bool = False


def _dim(ndim: int) -> str:
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    return "2d" if ndim == 2 else "3d"


class _CTNet(UnrolledNet):
    """Shared set-up of the CT models: normalisation by ``||A||`` and the FBP's scale."""

    def _setup(self, data, params, prior, need_weights: bool):
        where = type(self).__name__
        P = check_ct(data, params, where, need_weights)
        if len(P.ishape) != self.config.ndim:
            raise ValueError(f"{where} was built for {self.config.ndim}D images, the projector's image is "
                             f"{tuple(P.ishape)}")
        L = projector_norm(P)
        x0 = fbp_init(data, P)
        s = item_scale(x0)
        x0 = x0 / expand_as_item(s, x0)
        g = data / (L * expand_as_item(s, data))
        pr = self.prior_input(prior, x0, s, magnitude=False)
        return P, L, s, x0, g, pr


@register
class LearnedPrimalDual(_CTNet):
    """Learned primal-dual (module docstring): ``model(sinogram, {'projector': P}, prior=None)``
    -> attenuation image ``(B, *image_shape)`` in the data's units (1/mm for line integrals)."""

    arch = "lpd"
    config_class = LPDConfig

    def __init__(self, config: LPDConfig | None = None, **kw):
        super().__init__(config, **kw)
        c = self.config
        dim = _dim(c.ndim)
        self.dual_nets = nn.ModuleList([ResidualCNN(c.dual + 2, c.dual, c.features, c.layers, dim)
                                        for _ in range(c.iterations)])
        self.primal_nets = nn.ModuleList([ResidualCNN(c.primal + 1 + self.prior_channels, c.primal, c.features,
                                                      c.layers, dim) for _ in range(c.iterations)])

    def _iteration(self, i, f, h, g, pr, P, L):
        Af = P.forward(f[:, 1].contiguous()) / L
        h = h + self.dual_nets[i](torch.cat([h, Af[:, None], g[:, None]], 1))
        ATh = P.adjoint(h[:, 0].contiguous()) / L
        parts = [f, ATh[:, None]] + ([pr] if pr is not None else [])
        f = f + self.primal_nets[i](torch.cat(parts, 1))
        return f, h

    def forward(self, data, params, prior=None):
        c = self.config
        P, L, s, x0, g, pr = self._setup(data, params, prior, need_weights=False)
        f = x0[:, None].repeat_interleave(c.primal, dim=1)
        h = torch.zeros((data.shape[0], c.dual) + tuple(data.shape[1:]), dtype=data.dtype, device=data.device)
        for i in range(c.iterations):
            f, h = self.stage(self._iteration, i, f, h, g, pr, P, L)
        return f[:, 0] * expand_as_item(s, f[:, 0])


@register
class LearnedPWLS(_CTNet):
    """Learned unrolled PWLS (module docstring): ``model(sinogram, {'projector': P, 'weights': W},
    prior=None)`` -> attenuation image ``(B, *image_shape)``."""

    arch = "pwls"
    config_class = PWLSNetConfig

    def __init__(self, config: PWLSNetConfig | None = None, **kw):
        super().__init__(config, **kw)
        c = self.config
        self.nets = nn.ModuleList([ResidualCNN(2 + self.prior_channels, 1, c.features, c.layers, _dim(c.ndim))
                                   for _ in range(c.iterations)])
        self.log_step = nn.Parameter(torch.full((c.iterations,), float(c.step_init)).log())

    def _iteration(self, k, x, g, w, pr, P, L):
        grad = P.adjoint(w * (P.forward(x) / L - g)) / L
        parts = [x[:, None], grad[:, None]] + ([pr] if pr is not None else [])
        return x - self.log_step[k].exp() * grad + self.nets[k](torch.cat(parts, 1))[:, 0]

    def forward(self, data, params, prior=None):
        c = self.config
        P, L, s, x, g, pr = self._setup(data, params, prior, need_weights=True)
        w = params["weights"].to(device=data.device, dtype=data.dtype)
        w = w / expand_as_item(w.reshape(w.shape[0], -1).mean(1).clamp_min(1e-12), w)
        for k in range(c.iterations):
            x = self.stage(self._iteration, k, x, g, w, pr, P, L)
        return x * expand_as_item(s, x)
