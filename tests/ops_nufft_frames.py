"""Registers ragged-frame NUFFTs (frames with different sample counts, 2D and 3D, complex64 and
complex128) and their Toeplitz normal operator with per-sample weights in the operator harness."""

import numpy as np
from harness import random_coord, register

from recon.ops import Nufft


def _ragged(im_shape, sizes, dtype, seed):
    rng = np.random.default_rng(seed)
    frames = [random_coord(rng, m, im_shape) for m in sizes]
    frames[0] = frames[0].reshape(2, sizes[0] // 2, len(im_shape))  # a frame of (spokes, samples, d)
    return Nufft(frames, im_shape, 1e-6 if dtype == "complex64" else 1e-10, dtype=dtype)


for _dt in ("complex64", "complex128"):
    register(f"nufft2d-ragged-{_dt}", lambda d=_dt: _ragged((6, 7), [12, 5, 0, 9], d, 40))
    register(f"nufft3d-ragged-{_dt}", lambda d=_dt: _ragged((4, 5, 3), [10, 17, 4], d, 41))
    register(f"nufft2d-ragged-toeplitz-{_dt}",
             lambda d=_dt: _ragged((6, 7), [12, 5, 0, 9], d, 42).toeplitz(np.linspace(0.5, 2.0, 26)))
