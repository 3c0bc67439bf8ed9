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
