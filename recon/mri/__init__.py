"""MRI helpers: density compensation, trajectories, coil sensitivities, binning."""

from .dcf import pipe_menon_dcf  # noqa: F401
from . import coils, noise, trajectory  # noqa: F401
from .coils import coil_compress, espirit_maps, estimate_maps, rss  # noqa: F401
from .noise import prewhiten  # noqa: F401
from .recon import Recon, cg_sense, cs_tv, cs_wavelet, reconstruct, zero_filled  # noqa: F401
