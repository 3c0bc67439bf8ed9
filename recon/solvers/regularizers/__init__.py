"""Regularizers for the solvers, one interface (:class:`Regularizer`): total variation
(:class:`TotalVariation`, :func:`tv_prox`), smoothed TV (:class:`SmoothTV`), the PICCS prior-image
TV term (:class:`PriorImageTV`) and L1-wavelet sparsity (:class:`L1Wavelet`).

The operators they use live in :mod:`recon.ops` (:class:`~recon.ops.FiniteDifference`,
:class:`~recon.ops.Wavelet`) and are re-exported here for compatibility.
"""

from ...ops.finite_difference import FiniteDifference  # noqa: F401
from ...ops.wavelet import Wavelet  # noqa: F401
from .base import Regularizer  # noqa: F401
from .l1_wavelet import L1Wavelet  # noqa: F401
from .prior import PriorImageTV  # noqa: F401
from .smooth_tv import SmoothTV  # noqa: F401
from .tv import TotalVariation, tv_prox  # noqa: F401

__all__ = ["Regularizer", "FiniteDifference", "TotalVariation", "tv_prox", "PriorImageTV", "SmoothTV",
           "Wavelet", "L1Wavelet"]
