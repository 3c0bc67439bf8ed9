"""CT acquisition geometries: re-exported from :mod:`recon.geometry`, their home (and the home of
the CT coordinate conventions). Every name of this module keeps working (same classes, so
``isinstance`` checks and pickles made before the move still work)."""

from ..geometry import (  # noqa: F401
    KIND_CONE_FLAT,
    KIND_FAN_ARC,
    KIND_FAN_FLAT,
    KIND_PARALLEL2D,
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

__all__ = ["Geometry", "ParallelBeam2D", "FanBeam2D", "ConeBeam3D", "HelicalConeBeam3D", "ParallelVec2D",
           "FanVec2D", "ConeVec3D", "ImageGrid", "from_dict"]
