"""Registers the SENSE operators (recon.ops.CartesianSense, NonCartesianSense, SenseMaps) in the operator
harness: single slices, soft-SENSE sets, 3D, and batches of slices with their own maps, masks and
trajectories (with gradients to the maps, masks and weights as tensors)."""

import numpy as np
from harness import register

from recon.mri.trajectory import radial_2d
from recon.ops import CartesianSense, NonCartesianSense
from recon.ops.sense import SenseMaps


def _maps(shape, c=3, dtype="complex64", seed=7):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((c,) + shape) + 1j * rng.standard_normal((c,) + shape)).astype(dtype)


def _mask(shape, seed=8):
    return np.random.default_rng(seed).random(shape) < 0.5


def _batched_maps(dtype, B=3, C=2, shape=(6, 5)):
    return _maps((B,) + shape, c=C, dtype=dtype, seed=9).transpose(1, 0, 2, 3).copy()  # (B, C, y, x)



def _weights(shape, seed=10):
    return np.random.default_rng(seed).random(shape) + 0.5


for _dt in ("complex64", "complex128"):
    _s = _dt[-3:]
    _tol = 1e-6 if _dt == "complex128" else 1e-4
    register(f"mri.cartesian_sense-{_s}", lambda d=_dt: CartesianSense(_maps((6, 5), dtype=d), _mask((6, 5))))
    register(f"mri.cartesian_sense_3d-{_s}", lambda d=_dt: CartesianSense(_maps((3, 4, 5), c=2, dtype=d), ndim=3))
    register(f"mri.cartesian_sense_sets-{_s}", lambda d=_dt: CartesianSense(_maps((2, 6, 5), c=3, dtype=d)
                                                                             .reshape(3, 2, 6, 5), sets=True))
    register(f"mri.noncartesian_sense-{_s}",
             lambda d=_dt, t=_tol: NonCartesianSense(_maps((6, 7), dtype=d), radial_2d(4, 10, (6, 7)), tol=t,
                                                     weights=np.linspace(0.5, 2.0, 10)[None].repeat(4, 0)),
             normal_rtol=1e-3)
    # a batch of 3 slices, each with its own maps and mask (B, C, y, x) / (B, y, x)
    register(f"mri.cartesian_sense_batch-{_s}",
             lambda d=_dt: CartesianSense(_batched_maps(d), _mask((3, 6, 5))),
             params=lambda d=_dt: (lambda maps, mask: CartesianSense(maps, mask), [_batched_maps(d), _mask((3, 6, 5))]))
    # ... and with their own trajectories and density weights (2 slices, 2 coils, 5x4, 2 spokes of 6)
    _coords = np.stack([radial_2d(2, 6, (5, 4), offset=2 * b) for b in range(2)])
    register(f"mri.noncartesian_sense_batch-{_s}",
             lambda d=_dt, t=_tol, c=_coords: NonCartesianSense(_batched_maps(d, 2, 2, (5, 4)), c, tol=t,
                                                                weights=_weights((2, 2, 6)), coord_batched=True),
             normal_rtol=1e-3,
             params=lambda d=_dt, t=_tol, c=_coords: (
                 lambda maps, w: NonCartesianSense(maps, c, tol=t, weights=w, coord_batched=True, toeplitz=False),
                 [_batched_maps(d, 2, 2, (5, 4)), _weights((2, 2, 6))]))
    register(f"mri.sense_maps-{_s}", lambda d=_dt: SenseMaps(_batched_maps(d), 2),
             params=lambda d=_dt: (lambda maps: SenseMaps(maps, 2), [_batched_maps(d)]))
    # frames with different sample counts (respiratory bins): 3 frames of 2, 4 and 3 spokes of 6 samples
    _frames = [radial_2d(n, 6, (5, 4), offset=o) for n, o in ((2, 0), (4, 2), (3, 6))]
    register(f"mri.noncartesian_sense_frames-{_s}",
             lambda d=_dt, t=_tol, c=_frames: NonCartesianSense(_maps((5, 4), c=2, dtype=d), c, tol=t,
                                                                weights=_weights((54,))),
             normal_rtol=1e-3,
             params=lambda d=_dt, t=_tol, c=_frames: (
                 lambda maps, w: NonCartesianSense(maps, c, tol=t, weights=w, toeplitz=False),
                 [_maps((5, 4), c=2, dtype=d), _weights((54,))]))
