"""Registers the SENSE operators (recon.ops.CartesianSense, NonCartesianSense) in the operator harness."""

import numpy as np
from harness import register

from recon.mri.trajectory import radial_2d
from recon.ops import CartesianSense, NonCartesianSense


def _maps(shape, c=3, dtype="complex64", seed=7):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((c,) + shape) + 1j * rng.standard_normal((c,) + shape)).astype(dtype)


def _mask(shape, seed=8):
    return np.random.default_rng(seed).random(shape) < 0.5


for _dt in ("complex64", "complex128"):
    register(f"mri.cartesian_sense-{_dt[-3:]}", lambda d=_dt: CartesianSense(_maps((6, 5), dtype=d), _mask((6, 5))))
    register(f"mri.cartesian_sense_3d-{_dt[-3:]}", lambda d=_dt: CartesianSense(_maps((3, 4, 5), c=2, dtype=d)))
    register(f"mri.noncartesian_sense-{_dt[-3:]}",
             lambda d=_dt: NonCartesianSense(_maps((6, 7), dtype=d), radial_2d(4, 10, (6, 7)),
                                             tol=1e-6 if d == "complex128" else 1e-4,
                                             weights=np.linspace(0.5, 2.0, 10)[None].repeat(4, 0)),
             normal_rtol=1e-3)
