"""CT: acquisition geometries (the one home of CT conventions: :mod:`recon.ct.geometry`), ellipse
phantoms with analytic line integrals, and (from part B) FBP/FDK, low-dose simulation."""

from .geometry import ConeBeam3D, FanBeam2D, Geometry, ParallelBeam2D  # noqa: F401
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

# ---- CT analytic/iterative reconstruction, low dose, bundled data (part B) ----
from .data import load_htc2022, load_pet_transmission, load_pet_transmission_counts  # noqa: F401
from .fbp import FILTERS, fbp, fdk, filter_response, parker_weights  # noqa: F401
from .iterative import os_sart, pwls_tv, sirt, subset_geometry  # noqa: F401
from .lowdose import post_log_variance, pwls_weights, simulate_low_dose  # noqa: F401
