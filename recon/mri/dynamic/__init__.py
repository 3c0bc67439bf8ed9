"""Motion-resolved (4D) MRI of free-breathing golden-angle acquisitions (docs/dynamic.md).

- :mod:`.simulate` (with :mod:`.phantom`, :mod:`.breathing`): a breathing abdomen acquired by a
  golden-angle stack of stars or 2D radial scan, every readout at its own motion state, as ISMRMRD;
- :mod:`.data`: the spokes of a ``recon.io.RawData`` in time order;
- :mod:`.gating`: the respiratory signal (self-gating as in XD-GRASP, or the bellows);
- :mod:`.binning`: amplitude/phase bins with outlier breaths rejected;
- :mod:`.xdgrasp`: XD-GRASP (and binned CG-SENSE / zero-filled) on the stack of stars split along z;
- :mod:`.mrsigma`: real-time 3D by signature matching against the 4D set;
- :mod:`.pipeline`: ``reconstruct_dynamic(raw, DynamicConfig(...))``, what ``recon mri --dynamic
  respiratory`` runs; :mod:`.outputs` its files; :mod:`.evaluate` scoring against the truth.
"""

from .binning import Bins, bin_signal  # noqa: F401
from .breathing import BreathingTrace, bellows_signal, breathing_trace  # noqa: F401
from .data import SpokeData, spokes_from_raw  # noqa: F401
from .gating import RespiratorySignal, respiratory_signal  # noqa: F401
from .mrsigma import Match, SignatureDictionary, build_dictionary, match_segments  # noqa: F401
from .phantom import AbdomenPhantom, Grid, coil_maps  # noqa: F401
from .pipeline import DynamicConfig, DynamicResult, reconstruct_dynamic  # noqa: F401
from .simulate import ScanConfig, Simulation, simulate, simulation_from_raw, state_image  # noqa: F401
from .xdgrasp import (  # noqa: F401
    BinnedData,
    DynamicRecon,
    bin_data,
    cg_sense_bins,
    xdgrasp_bins,
    zero_filled_bins,
)
