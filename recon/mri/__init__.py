"""MRI: density compensation, trajectories, coil sensitivities, prewhitening, the methods
(``recon.mri.recon``) and the pipeline ``reconstruct(raw, ReconConfig(...))`` (``recon.mri.pipeline``)."""

from .dcf import pipe_menon_dcf  # noqa: F401
from . import coils, noise, trajectory  # noqa: F401
from .coils import coil_compress, espirit_maps, estimate_maps, rss  # noqa: F401
from .noise import prewhiten  # noqa: F401
from .recon import Recon, cg_sense, cs_tv, cs_wavelet, zero_filled  # noqa: F401
from .pipeline import ReconConfig, ReconResult, RetrospectiveMask, reconstruct  # noqa: F401
