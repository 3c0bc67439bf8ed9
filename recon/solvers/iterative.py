"""The classical solver functions in one namespace (compatibility: they live in :mod:`.cg`,
:mod:`.proximal_gradient` and :mod:`.primal_dual`, each a thin wrapper over a step object and
:func:`recon.solvers.run`)."""

from .cg import cg, cg_x_update, power_iteration  # noqa: F401
from .primal_dual import admm, pdhg  # noqa: F401
from .proximal_gradient import fista, pogm  # noqa: F401

__all__ = ["cg", "power_iteration", "fista", "pogm", "pdhg", "admm", "cg_x_update"]
