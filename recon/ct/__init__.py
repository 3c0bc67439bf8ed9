"""CT: acquisition geometries (re-exported from :mod:`recon.geometry`, the one home of the CT
conventions), ellipse phantoms with analytic line integrals, FBP/FDK, low-dose simulation,
iterative reconstruction (SIRT, OS-SART, PWLS-TV and PICCS with a fast ordered-subsets solver),
priors with registration and change-aware PICCS, helical rebinning, the bundled real data, and the
pipeline behind ``recon ct`` (:func:`load`, :class:`ReconConfig`, :func:`reconstruct`)."""

from ..geometry import (  # noqa: F401
    ConeBeam3D,
    ConeVec3D,
    FanBeam2D,
    FanVec2D,
    Geometry,
    HelicalConeBeam3D,
    ImageGrid,
    ParallelBeam2D,
    ParallelVec2D,
    from_dict,
)
from .counts import (  # noqa: F401
    counts_to_line_integrals,
    weights_from_counts,
    weights_from_line_integrals,
)

# ---- CT analytic/iterative reconstruction, low dose, bundled data ----
from .data import SAMPLES, load_htc2022, load_pet_transmission, load_pet_transmission_counts  # noqa: F401
from .change import change_aware_maps, change_map  # noqa: F401
from .fbp import (  # noqa: F401
    FILTERS,
    IncompleteCoverageWarning,
    angular_coverage,
    fbp,
    fdk,
    filter_response,
    parker_weights,
)
from .iterative import default_beta, os_sart, pwls_tv, sirt, subset_geometry  # noqa: F401
from .lowdose import post_log_variance, pwls_weights, simulate_low_dose  # noqa: F401
from .phantom import (  # noqa: F401
    Ellipse,
    Ellipsoid,
    analytic_sinogram,
    random_ellipses,
    rasterize,
    shepp_logan_2d,
    shepp_logan_3d,
    shepp_logan_ellipses,
)
from .pipeline import CTData, CTResult, ReconConfig, load, reconstruct  # noqa: F401
from .prior import PriorImage, ct_grid_placement, hu_to_mu, mu_to_hu, read_prior  # noqa: F401
from .rebin import RebinnedSlices, rebin_ssrb, scan_line_integrals  # noqa: F401
from .registration import Registration, register_prior, resample_prior  # noqa: F401
