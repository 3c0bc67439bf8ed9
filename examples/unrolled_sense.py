#!/usr/bin/env python
"""Train a 3-iteration unrolled network (MoDL-style) with recon's operators inside a torch Module.

    python examples/unrolled_sense.py --steps 60 --out unrolled_out

A batch of 4 slices, each with its OWN coil maps and sampling mask, goes through one batched
``CartesianSense(maps (4, C, y, x), mask (4, y, x))``. Each unrolled iteration applies a small CNN
denoiser and then the data consistency ``x = (A^H A + lam I)^{-1} (A^H y + lam z)`` by
``recon.solvers.cg_solve``, whose backward is one more CG solve (implicit differentiation: memory
does not grow with the CG iterations). ``lam`` is learned. The loss (image MSE against the fully
sampled slices) goes down; the curve and the images are written as PNGs to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
from torch import nn

from fastmri_data import simulate_coil_maps
from fastmri_data.masks import RandomMaskFunc
from recon.mri.simulate import textured_phantom
from recon.ops import CartesianSense
from recon.solvers import cg_solve


def make_batch(n_slices: int = 4, shape=(64, 64), n_coils: int = 6, noise: float = 0.01, seed: int = 0):
    """Slices (complex64 ``(B, y, x)``), their own coil maps ``(B, C, y, x)`` and masks ``(B, y, x)``
    (fastMRI random column masks, 4x, each with its own seed), and the noisy undersampled k-space."""
    rng = np.random.default_rng(seed)
    images = textured_phantom(n_slices, *shape, seed=seed)
    images /= np.abs(images).max()
    maps = np.stack([simulate_coil_maps(shape, n_coils, radius=0.6 + 0.1 * b, phase_cycles=0.3 * b)
                     for b in range(n_slices)])
    masks = np.stack([np.broadcast_to(RandomMaskFunc([0.08], [4])((1, 1, shape[1]), seed=seed + b)[0][0, 0],
                                      shape) for b in range(n_slices)]).astype(np.float32)
    if not masks.any(axis=(1, 2)).all():
        raise RuntimeError("a sampling mask is empty")
    A = CartesianSense(maps, masks)
    k = A(images)
    k = (k + noise * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) * masks[:, None]).astype(
        np.complex64)
    return [torch.from_numpy(np.ascontiguousarray(a)) for a in (images, maps, masks, k)]


class Denoiser(nn.Module):
    """A small residual CNN on the real and imaginary parts."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, 2, 3, padding=1))

    def forward(self, x):  # x: complex (B, y, x)
        r = torch.view_as_real(x).permute(0, 3, 1, 2)
        return x + torch.view_as_complex(self.net(r).permute(0, 2, 3, 1).contiguous())


class Unrolled(nn.Module):
    """``iters`` x (denoiser, then CG data consistency with a learned lam)."""

    def __init__(self, iters: int = 3, cg_iters: int = 8):
        super().__init__()
        self.denoiser = Denoiser()
        self.log_lam = nn.Parameter(torch.tensor(math.log(0.05)))
        self.iters, self.cg_iters = iters, cg_iters

    def forward(self, kspace, maps, mask):
        A = CartesianSense(maps, mask)              # one operator for the batch: own maps and mask per slice
        AHy = A.H(kspace)
        lam = self.log_lam.exp()
        x = AHy
        for _ in range(self.iters):
            z = self.denoiser(x)
            x = cg_solve(A.normal, AHy + lam * z, lam, max_iter=self.cg_iters, tol=0, batch_ndim=1)
        return x


def train(steps: int = 60, lr: float = 3e-3, seed: int = 0, out: str | None = None, quiet: bool = False,
          shape=(64, 64), cg_iters: int = 8):
    """Train for ``steps`` Adam steps; returns the list of losses (and writes PNGs to ``out``)."""
    torch.manual_seed(seed)
    images, maps, masks, kspace = make_batch(shape=shape, seed=seed)
    model = Unrolled(cg_iters=cg_iters)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        opt.zero_grad()
        x = model(kspace, maps, masks)
        loss = (x - images).abs().pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if not quiet and (step % 10 == 0 or step == steps - 1):
            print(f"step {step:3d}  loss {losses[-1]:.3e}")
    if out:
        _plots(out, losses, images, kspace, maps, masks, model)
    return losses


def _plots(out, losses, images, kspace, maps, masks, model):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(losses)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("image MSE")
    ax.set_title("unrolled SENSE network, batch of 4 slices")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=120)
    plt.close(fig)
    with torch.no_grad():
        x = model(kspace, maps, masks)
        zf = CartesianSense(maps, masks).H(kspace)
    fig, axes = plt.subplots(3, 4, figsize=(8, 6))
    for b in range(4):
        for row, (im, name) in enumerate(((zf[b], "A^H y"), (x[b], "network"), (images[b], "truth"))):
            axes[row, b].imshow(im.abs().numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row, b].set_axis_off()
            if b == 0:
                axes[row, b].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "images.png"), dpi=100)
    plt.close(fig)
    print(f"wrote {out}/loss.png and {out}/images.png")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default="unrolled_out")
    a = ap.parse_args(argv)
    losses = train(a.steps, a.lr, out=a.out)
    print(f"loss {losses[0]:.3e} -> {losses[-1]:.3e}")


if __name__ == "__main__":
    main()
