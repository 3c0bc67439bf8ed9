"""Generic iterative solvers shared by MRI and CT, and the regularizers they use.

Solvers take callables (SigPy's rule) and return ``(x, history)``; they run on numpy arrays and CPU
torch tensors, real or complex, batched or not (see :mod:`recon.solvers.iterative`):

- :func:`cg` - conjugate gradient for ``(N + damping I) x = rhs``, ``N`` Hermitian PSD
- :func:`power_iteration` - largest eigenvalue of a PSD callable (Lipschitz constants, step sizes)
- :func:`fista`, :func:`pogm` - proximal gradient methods for ``min f(x) + g(x)``
- :func:`pdhg` - Chambolle-Pock primal-dual for ``min f(K x) + g(x)``
- :func:`admm` - ADMM for ``min f(x) + g(K x)`` with a user x-update (:func:`cg_x_update`)

Proximal operators: :mod:`recon.solvers.prox`. Regularizers (TV, smoothed TV, PICCS prior-image TV,
finite differences, orthonormal wavelets, L1-wavelet): :mod:`recon.solvers.regularizers`.
Documentation with the models each solver minimises: ``docs/solvers.md``.
"""

from .cg import CG, PowerIteration, cg, cg_x_update, power_iteration  # noqa: F401
from .diff_cg import cg_solve  # noqa: F401
from .loop import Alg, History, run  # noqa: F401
from .primal_dual import ADMM, PDHG, admm, pdhg  # noqa: F401
from .proximal_gradient import FISTA, POGM, fista, pogm  # noqa: F401
from .prox import (conjugate_prox, group_soft_threshold, project_box, project_l2_ball,  # noqa: F401
                   separable,
                   project_l2inf_ball, project_nonneg, prox_l1, prox_l2_squared, prox_l21,
                   soft_threshold)
from .regularizers import (FiniteDifference, L1Wavelet, PriorImageTV, SmoothTV,  # noqa: F401
                           TotalVariation, Wavelet, tv_prox)

TV = TotalVariation

__all__ = [
    "History", "cg", "power_iteration", "fista", "pogm", "pdhg", "admm", "cg_x_update",
    "soft_threshold", "prox_l1", "group_soft_threshold", "prox_l21", "project_box", "project_nonneg",
    "project_l2_ball", "project_l2inf_ball", "prox_l2_squared", "conjugate_prox",
    "FiniteDifference", "TotalVariation", "TV", "tv_prox", "PriorImageTV", "SmoothTV", "Wavelet",
    "L1Wavelet",
]
