"""MRI helpers: density compensation, trajectories, coil sensitivities, binning."""

from .dcf import pipe_menon_dcf  # noqa: F401
