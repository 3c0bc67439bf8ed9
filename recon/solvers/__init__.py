"""Iterative solvers shared by MRI and CT, the proximal operators they use, and the regularizers.

Every algorithm is a step object (:class:`Alg`: state set up at construction, ``step()`` does one
iteration) and one loop, :func:`run`, owns the iteration budget, tolerance, callbacks, progress bar
and :class:`History` (no host synchronisation per iteration unless tolerance checks are asked for):

- :class:`CG` - conjugate gradient for ``(N + damping I) x = rhs``, ``N`` Hermitian PSD (per-item
  step lengths and stopping for batches with ``batch_ndim``)
- :class:`PowerIteration` - largest eigenvalue of a PSD callable (Lipschitz constants, step sizes)
- :class:`FISTA`, :class:`POGM` - proximal gradient methods for ``min f(x) + g(x)``
- :class:`PDHG` - Chambolle-Pock primal-dual for ``min f(K x) + g(x)`` (incl. the accelerated variant)
- :class:`ADMM` - ADMM for ``min f(x) + g(K x)`` with a user x-update (:func:`cg_x_update`)

The functions ``cg``, ``power_iteration``, ``fista``, ``pogm``, ``pdhg``, ``admm`` build the step
object and call :func:`run`; they return ``(x, history)`` on numpy arrays and torch tensors.
:func:`cg_solve` is CG as a differentiable layer (implicit backward). CT's SIRT / OS-SART / PWLS-TV
(:mod:`recon.ct.iterative`) use the same loop.

Proximal operators: :mod:`recon.solvers.prox`. Regularizers (TV, smoothed TV, PICCS prior-image TV,
L1-wavelet; one :class:`Regularizer` interface): :mod:`recon.solvers.regularizers`.
Documentation: ``docs/solvers.md``.
"""

from .cg import CG, PowerIteration, cg, cg_x_update, power_iteration  # noqa: F401
from .diff_cg import cg_solve  # noqa: F401
from .loop import Alg, History, run  # noqa: F401
from .primal_dual import ADMM, PDHG, admm, pdhg  # noqa: F401
from .prox import (conjugate_prox, group_soft_threshold, project_box, project_l2_ball,  # noqa: F401
                   project_l2inf_ball, project_linf_ball, project_nonneg, prox_l1, prox_l2_squared, prox_l21,
                   separable, soft_threshold)
from .proximal_gradient import FISTA, POGM, fista, pogm  # noqa: F401
from .regularizers import (FiniteDifference, L1Wavelet, PriorImageTV, Regularizer, SmoothTV,  # noqa: F401
                           TotalVariation, Wavelet, tv_prox)

TV = TotalVariation

__all__ = [
    "Alg", "History", "run", "CG", "PowerIteration", "FISTA", "POGM", "PDHG", "ADMM",
    "cg", "power_iteration", "fista", "pogm", "pdhg", "admm", "cg_x_update", "cg_solve",
    "soft_threshold", "prox_l1", "group_soft_threshold", "prox_l21", "project_box", "project_nonneg",
    "project_l2_ball", "project_l2inf_ball", "project_linf_ball", "prox_l2_squared", "conjugate_prox",
    "separable", "Regularizer", "FiniteDifference", "TotalVariation", "TV", "tv_prox", "PriorImageTV",
    "SmoothTV", "Wavelet", "L1Wavelet",
]
