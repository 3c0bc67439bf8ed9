"""Registers recon.ops.Projector (every geometry, float32 and float64) in the operator harness."""

import numpy as np
from harness import register

from recon.ct import ConeBeam3D, FanBeam2D, ParallelBeam2D
from recon.ops import Projector

_A2 = np.linspace(0, 2 * np.pi, 7, endpoint=False) + 0.1
_A3 = np.linspace(0, 2 * np.pi, 4, endpoint=False) + 0.2
_GEOMETRIES = {
    "parallel2d": lambda: ParallelBeam2D(_A2, 11, 0.9, (6, 7), (1.1, 0.8)),
    "fanflat": lambda: FanBeam2D(_A2, 14, 1.0, 20.0, 10.0, "flat", (6, 7), 0.8),
    "fanarc": lambda: FanBeam2D(_A2, 14, 1.0, 20.0, 10.0, "arc", (6, 7), 0.8),
    "cone": lambda: ConeBeam3D(_A3, (8, 9), (1.0, 1.1), 20.0, 10.0, (4, 5, 6), (0.9, 0.8, 0.7)),
}

for _name, _geom in _GEOMETRIES.items():
    for _dt in ("float32", "float64"):
        register(f"ct.projector.{_name}-{_dt[-2:]}", lambda g=_geom, d=_dt: Projector(g(), dtype=d, nthreads=2))
