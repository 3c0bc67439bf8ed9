"""Density compensation for non-Cartesian trajectories."""

from __future__ import annotations

import numpy as np

from .. import _array


def pipe_menon_dcf(coord, im_shape, iterations: int = 30, *, tol: float = 1e-3, frame_ndim: int = 0,
                   nthreads: int | None = None):
    """Pipe-Menon iterative density compensation (Pipe & Menon, MRM 1999).

    Iterates ``w <- w / (C w)`` where ``C`` spreads the weights onto the NUFFT's oversampled grid
    with the ES kernel and interpolates them back, until ``C w = 1``. The result is scaled so that
    a fully sampled Cartesian grid gets weights close to 1 (within a few per cent: the
    kernel aliases slightly on a lattice); weights are k-space areas in (cycles/FOV)^d.

    Parameters: ``coord`` as for :class:`recon.ops.Nufft` (cycles/FOV), ``im_shape``, number of
    iterations, the kernel tolerance, frame axes. Returns float32 weights of shape
    ``coord.shape[:-1]``, numpy or torch like ``coord`` (on its device): a trajectory is a plan-time
    parameter, so the weights are computed on the host and a tensor's copied back once.

    ``coord`` may also be a list of per-frame trajectories with different sample counts (the ragged
    frames of :class:`recon.ops.Nufft`): each frame is compensated on its own and the weights are
    concatenated in frame order, shape ``(M_total,)`` (the ragged Nufft's sample axis).
    """
    from ..ops.backend import param_like
    from ..ops.nufft import Nufft, is_frame_list
    from .coils import host

    if is_frame_list(coord):
        if frame_ndim:
            raise ValueError("pipe_menon_dcf: frame_ndim applies to one array, not to a list of frames")
        if not coord:
            raise ValueError("pipe_menon_dcf: empty list of frames")
        frames = [host(c) for c in coord]
        w = np.concatenate([pipe_menon_dcf(c, im_shape, iterations, tol=tol, nthreads=nthreads).reshape(-1)
                            if c.size else np.zeros(0, np.float32) for c in frames])
        return param_like(w, coord[0]) if _array.is_torch(coord[0]) else w
    ref, coord = coord, host(coord)
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    op = Nufft(coord, im_shape, tol=tol, dtype="complex128", upsampfac=2.0, frame_ndim=frame_ndim, nthreads=nthreads)
    out = np.empty((len(op._plans), op.num_points), dtype=np.float64)
    for f, plan in enumerate(op._plans):
        grid = np.empty(plan.grid_shape, dtype=np.complex128)
        w = np.ones(op.num_points, dtype=np.complex128)
        cw = np.empty_like(w)
        for _ in range(iterations):
            plan.spread_to_grid(w, grid)
            plan.interpolate_from_grid(grid, cw)
            w = w / np.maximum(cw.real, 1e-12)
        # C = interpolate o spread convolves with psi twice: at uniform density rho (samples per fine
        # cell) a converged w satisfies w * rho * (int psi)^2 = 1, and the k-space area per sample in
        # (cycles/FOV)^d is 1 / (rho * sigma^d) = w * ((int psi)^2 / sigma)^d.
        sigma = np.asarray(plan.grid_shape, dtype=np.float64) / np.asarray(op.im_shape, dtype=np.float64)
        out[f] = w.real * float(np.prod(plan.kernel_integral**2 / sigma))
    w = out.reshape(coord.shape[:-1]).astype(np.float32)
    return param_like(w, ref) if _array.is_torch(ref) else w
