"""Registers recon.ops.Projector (every geometry: analytic, helical and vector; float32 and float64)
in the operator harness."""

import numpy as np
from harness import register

from recon.geometry import (
    ConeBeam3D,
    ConeVec3D,
    FanBeam2D,
    FanVec2D,
    HelicalConeBeam3D,
    ParallelBeam2D,
    ParallelVec2D,
)
from recon.ops import Projector

_A2 = np.linspace(0, 2 * np.pi, 7, endpoint=False) + 0.1
_A3 = np.linspace(0, 2 * np.pi, 4, endpoint=False) + 0.2


def _tilted_cone():
    """A cone geometry given only as vectors: the circular orbit tilted by 0.3 rad about x."""
    v = ConeBeam3D(_A3, (8, 9), (1.0, 1.1), 20.0, 10.0, (4, 5, 6), (0.9, 0.8, 0.7)).vectors()
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return ConeVec3D((v.reshape(-1, 4, 3) @ rot.T).reshape(-1, 12), (8, 9), (4, 5, 6), (0.9, 0.8, 0.7))


_GEOMETRIES = {
    "parallel2d": lambda: ParallelBeam2D(_A2, 11, 0.9, (6, 7), (1.1, 0.8)),
    "fanflat": lambda: FanBeam2D(_A2, 14, 1.0, 20.0, 10.0, "flat", (6, 7), 0.8),
    "fanarc": lambda: FanBeam2D(_A2, 14, 1.0, 20.0, 10.0, "arc", (6, 7), 0.8),
    "cone": lambda: ConeBeam3D(_A3, (8, 9), (1.0, 1.1), 20.0, 10.0, (4, 5, 6), (0.9, 0.8, 0.7)),
    "helical": lambda: HelicalConeBeam3D(_A3, (8, 9), (1.0, 1.1), 20.0, 10.0, (4, 5, 6), (0.9, 0.8, 0.7),
                                         pitch=4.0),
    "parallelvec": lambda: ParallelVec2D(ParallelBeam2D(_A2, 11, 0.9, (6, 7), (1.1, 0.8), det_offset=0.3).vectors(),
                                         11, (6, 7), (1.1, 0.8)),
    "fanvec-flat": lambda: FanBeam2D(_A2, 14, 1.0, 20.0, 10.0, "flat", (6, 7), 0.8, det_offset=-0.4)
    .as_vector_geometry(),
    "fanvec-arc": lambda: FanVec2D(FanBeam2D(_A2, 14, 1.0, 20.0, 10.0, "arc", (6, 7), 0.8).vectors(), 14, "arc",
                                   (6, 7), 0.8),
    "conevec-tilted": _tilted_cone,
}

for _name, _geom in _GEOMETRIES.items():
    for _dt in ("float32", "float64"):
        register(f"ct.projector.{_name}-{_dt[-2:]}", lambda g=_geom, d=_dt: Projector(g(), dtype=d, nthreads=2))
