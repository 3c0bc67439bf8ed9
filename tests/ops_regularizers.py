"""Registers the operators of regularized solvers in the operator harness: FiniteDifference and
Wavelet (every dtype, 2D/3D, odd sizes, axis subsets; the torch path is recon's own transform and the
numpy path PyWavelets, so the harness's numpy == torch check pins one to the other), and the block
operators Stack and Diag (real and complex, numpy and torch)."""

import numpy as np
from harness import random_array, register

from recon.ops import FFT, Diag, FiniteDifference, Matrix, Multiply, Stack, Wavelet

DTYPES = ("float32", "float64", "complex64", "complex128")


def _rng(seed):
    return np.random.default_rng(seed)


for _dt in DTYPES:
    _s = _dt.replace("complex", "c").replace("float", "f")
    # finite differences: 2D and 3D, odd sizes, both boundaries, weights, an axis subset
    register(f"finite_difference2d-{_s}", lambda d=_dt: FiniteDifference((5, 6), dtype=d))
    register(f"finite_difference3d-periodic-{_s}",
             lambda d=_dt: FiniteDifference((3, 4, 5), boundary="periodic", weights=(0.5, 1.0, 2.0), dtype=d))
    register(f"finite_difference3d-axes-{_s}", lambda d=_dt: FiniteDifference((3, 4, 5), axes=(0, 2), dtype=d))
    # wavelets: the four families asked for, several levels, odd sizes (zero padding), 2D and 3D.
    # Numerical gradcheck costs (inputs x outputs) evaluations: it runs on the small cases; the larger
    # ones keep the dot test, which pins the same adjoint that the autograd backward applies.
    register(f"wavelet2d-haar-l3-{_s}", lambda d=_dt: Wavelet((9, 14), "haar", 3, dtype=d), gradcheck=False)
    register(f"wavelet2d-db2-l2-{_s}", lambda d=_dt: Wavelet((7, 12), "db2", 2, dtype=d))
    register(f"wavelet2d-db4-l1-{_s}", lambda d=_dt: Wavelet((11, 10), "db4", 1, dtype=d))
    register(f"wavelet2d-sym4-default-{_s}", lambda d=_dt: Wavelet((16, 17), "sym4", dtype=d), gradcheck=False)
    register(f"wavelet3d-db2-l2-{_s}", lambda d=_dt: Wavelet((5, 6, 7), "db2", 2, dtype=d), gradcheck=False)
    register(f"wavelet3d-axes-sym4-{_s}", lambda d=_dt: Wavelet((2, 8, 9), "sym4", 1, axes=(-2, -1), dtype=d))
    # block operators
    register(f"stack-{_s}", lambda d=_dt: Stack([Matrix(random_array(_rng(1), (7, 12), d), ishape=(3, 4)),
                                                 FiniteDifference((3, 4), dtype=d),
                                                 Wavelet((3, 4), "haar", 1, dtype=d)]))
    register(f"diag-{_s}", lambda d=_dt: Diag([Matrix(random_array(_rng(2), (5, 6), d), ishape=(2, 3)),
                                               FiniteDifference((4, 5), dtype=d)]))

for _dt in ("complex64", "complex128"):
    register(f"stack-fft-multiply-{_dt}",
             lambda d=_dt: Stack([FFT((4, 5), d), Multiply((4, 5), random_array(_rng(3), (2, 4, 5), d), d)]))
    register(f"diag-of-stack-{_dt}", lambda d=_dt: Diag([Stack([FFT((3, 4), d), FiniteDifference((3, 4), dtype=d)]),
                                                         FFT((5,), d)]))
