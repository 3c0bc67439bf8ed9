"""Network building blocks shared by the unrolled models: complex <-> channel views, the residual
CNN denoiser (2D, or (2+1)D for dynamic data), a small U-Net with per-sample normalisation
(fastMRI's NormUnet), and the per-item scale used to make every model intensity-invariant.

Images inside the models are normalised by a per-item scale ``s`` (the 99th percentile of the
magnitude of the initial image), so the networks see values of order one whatever the scanner's
units; results are multiplied back by ``s``.
"""

from __future__ import annotations

import torch
from torch import nn

#: quantile of the magnitude of the initial image used as the per-item scale
SCALE_QUANTILE = 0.99
#: factor on the default initialisation of a residual CNN's last layer (near-identity start)
LAST_LAYER_GAIN = 0.01


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, *im)`` -> real ``(B, 2, *im)`` (real and imaginary parts as channels)."""
    return torch.stack([x.real, x.imag], dim=1)


def from_channels(c: torch.Tensor) -> torch.Tensor:
    """Real ``(B, 2, *im)`` -> complex ``(B, *im)``."""
    return torch.complex(c[:, 0].contiguous(), c[:, 1].contiguous())


def item_scale(x: torch.Tensor, batch_ndim: int = 1) -> torch.Tensor:
    """Per-item scale of ``x`` ``(*batch, ...)``: the :data:`SCALE_QUANTILE` quantile of ``|x|``
    over the non-batch axes, shape ``batch`` (float, detached, >= 1e-12 so an empty item cannot
    divide by zero)."""
    a = x.detach().abs().reshape(tuple(x.shape[:batch_ndim]) + (-1,)).float()
    k = max(1, int(round(SCALE_QUANTILE * a.shape[-1])))
    q = a.kthvalue(k, dim=-1).values
    return q.clamp_min(1e-12).to(x.real.dtype if x.is_complex() else x.dtype)


def expand_as_item(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``s`` ``(B,)`` reshaped to broadcast against ``x`` ``(B, ...)``."""
    return s.reshape(tuple(s.shape) + (1,) * (x.ndim - s.ndim))


def _conv(dim: str, cin: int, cout: int, k: int = 3) -> nn.Module:
    """A 'same' convolution: ``'2d'`` (Conv2d on ``(B, ch, y, x)``), ``'3d'`` (Conv3d on
    ``(B, ch, z, y, x)``) or ``'2+1d'`` (a spatial ``(1, k, k)`` then a temporal ``(k, 1, 1)``
    Conv3d on ``(B, ch, t, y, x)``, R(2+1)D)."""
    if dim == "2d":
        return nn.Conv2d(cin, cout, k, padding=k // 2)
    if dim == "3d":
        return nn.Conv3d(cin, cout, k, padding=k // 2)
    if dim == "2+1d":
        return nn.Sequential(nn.Conv3d(cin, cout, (1, k, k), padding=(0, k // 2, k // 2)),
                             nn.Conv3d(cout, cout, (k, 1, 1), padding=(k // 2, 0, 0)))
    raise ValueError(f"dim must be '2d', '3d' or '2+1d', got {dim!r}")


class ResidualCNN(nn.Module):
    """MoDL's denoiser ``D_w``: ``layers`` convolutions of ``features`` channels with batch-free
    ReLU activations in between (no normalisation layers, so batch size 1 trains the same as
    larger ones); returns the residual ``D_w(x)`` (the caller adds it to the image channels).

    ``in_channels`` may exceed ``out_channels`` (prior-image channels); ``dim`` ``'2d'`` works on
    ``(B, ch, y, x)``, ``'3d'`` on ``(B, ch, z, y, x)``, ``'2+1d'`` on ``(B, ch, t, y, x)``. The
    last layer starts near zero (default initialisation times :data:`LAST_LAYER_GAIN`, zero bias),
    so an untrained model is close to its classical iteration and gradients reach every layer
    from the first step."""

    def __init__(self, in_channels: int, out_channels: int, features: int = 48, layers: int = 5,
                 dim: str = "2d"):
        super().__init__()
        if layers < 2:
            raise ValueError(f"layers must be >= 2, got {layers}")
        mods = [_conv(dim, in_channels, features), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            mods += [_conv(dim, features, features), nn.ReLU(inplace=True)]
        last = _conv(dim, features, out_channels)
        with torch.no_grad():
            for name, p in last.named_parameters():
                p.mul_(LAST_LAYER_GAIN) if name.endswith("weight") else p.zero_()
        mods.append(last)
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each with instance normalisation and LeakyReLU (fastMRI's U-Net block)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


class UNet(nn.Module):
    """A small 2D U-Net (fastMRI's layout: ``pools`` poolings, channels doubling from ``chans``,
    transpose-convolution up-sampling, skip connections, a final 1x1 convolution) on
    ``(B, in_channels, y, x)``; any image size (padded to a multiple of ``2**pools`` inside)."""

    def __init__(self, in_channels: int, out_channels: int, chans: int = 8, pools: int = 2):
        super().__init__()
        self.pools = int(pools)
        self.down = nn.ModuleList([_ConvBlock(in_channels, chans)])
        ch = chans
        for _ in range(pools - 1):
            self.down.append(_ConvBlock(ch, ch * 2))
            ch *= 2
        self.bottom = _ConvBlock(ch, ch * 2)
        self.up_t, self.up = nn.ModuleList(), nn.ModuleList()
        for _ in range(pools):
            self.up_t.append(nn.ConvTranspose2d(ch * 2, ch, 2, stride=2, bias=False))
            self.up.append(_ConvBlock(ch * 2, ch))
            ch //= 2
        self.out = nn.Conv2d(chans, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2 ** self.pools
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph))
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = nn.functional.avg_pool2d(x, 2)
        x = self.bottom(x)
        for t, blk in zip(self.up_t, self.up):
            x = blk(torch.cat([t(x), skips.pop()], dim=1))
        return self.out(x)[..., :h, :w]


class NormUNet(nn.Module):
    """:class:`UNet` on channels normalised per sample and channel group (mean and standard
    deviation over the image, as fastMRI's NormUnet), un-normalised at the output. The first
    ``norm_channels`` input channels (the image) are normalised and their statistics restore the
    output; further channels (a prior) are normalised by their own statistics."""

    def __init__(self, in_channels: int, out_channels: int, chans: int = 8, pools: int = 2,
                 norm_channels: int = 2):
        super().__init__()
        self.unet = UNet(in_channels, out_channels, chans, pools)
        self.norm_channels = int(norm_channels)

    @staticmethod
    def _stats(x):
        flat = x.reshape(x.shape[0], -1)
        mean = flat.mean(1).reshape(-1, 1, 1, 1)
        std = flat.std(1).reshape(-1, 1, 1, 1).clamp_min(1e-6)
        return mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.norm_channels
        mean, std = self._stats(x[:, :k])
        parts = [(x[:, :k] - mean) / std]
        if x.shape[1] > k:
            m2, s2 = self._stats(x[:, k:])
            parts.append((x[:, k:] - m2) / s2)
        return self.unet(torch.cat(parts, 1)) * std + mean
