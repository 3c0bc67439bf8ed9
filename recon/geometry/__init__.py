"""CT geometries and image grids: the one home of recon's CT coordinate conventions.

The layer just above the compiled kernels (imports numpy and the standard library only):
``recon.ops.Projector`` consumes these geometries, ``recon.ct`` re-exports them
(``recon.ct.geometry`` keeps every old name). Picture: docs/ct_geometry.png; guide: docs/ct_geometry.md.

Coordinate system (identical to ASTRA's 2D conventions)
------------------------------------------------------
World coordinates ``(x, y[, z])`` in mm; the rotation axis is the z axis through the geometric
centre of the image (``(0, 0[, 0])``). Angles in radians.

Image ``(ny, nx)`` (2D) or ``(nz, ny, nx)`` (3D), voxel size ``(vy, vx)`` / ``(vz, vy, vx)`` mm
(:class:`ImageGrid`):

* column ``c`` is centred at ``x = (c - (nx - 1) / 2) * vx``  (column 0 at -x),
* row ``r`` is centred at ``y = ((ny - 1) / 2 - r) * vy``     (row 0 at +y: an image shown with
  ``imshow`` has +x to the right and +y up),
* slice ``k`` is centred at ``z = (k - (nz - 1) / 2) * vz``    (slice 0 at -z).

Detector bin ``i`` of ``N`` bins (spacing ``s``, offset ``o`` mm) is centred at
``u_i = (i - (N - 1) / 2) * s + o`` along the detector axis ``u``. In the vector form with ``d``
the detector centre (offset included) and ``u`` the vector from bin ``i`` to bin ``i + 1``, bin
``i`` sits at ``d + (i + 0.5 - N / 2) * u``.

Parallel beam, view angle ``t``: rays travel along ``ray = (sin t, -cos t)``; the detector axis is
``u = (cos t, sin t)``. At ``t = 0`` rays run along -y and bin ``i`` sits at ``x = u_i``, so with
``det_count = nx``, ``det_spacing = vx`` the projection is the column sums times ``vy``:
``sino[0, i] = vy * image[:, i].sum()``. Views ``t`` and ``t + pi`` are mirror images
(``sino(t + pi)[i] = sino(t)[N - 1 - i]`` when ``o = 0``).

Fan beam, view angle ``t``: source at ``S = source_origin * (sin t, -cos t)``, detector centre at
``D = -origin_det * (sin t, -cos t) + o * (cos t, sin t)``, detector axis ``u = (cos t, sin t)``.
A flat detector is the line through ``D`` along ``u``; an arc detector is the circle arc of radius
``source_det = source_origin + origin_det`` centred at the source, with bins equally spaced in
arc length ``s`` (fan angle ``gamma_i = u_i / source_det``; positive towards ``+u``).

Cone beam (circular orbit in the plane z = 0, flat detector): as the flat fan beam in x, y; the
detector's second axis is ``v = (0, 0, 1)``: detector row ``j`` of ``R`` rows (spacing ``sv``,
row offset ``ov``) is centred at ``z = (j - (R - 1) / 2) * sv + ov``. Helical cone beam: the
same with the source and the detector centre at ``z = z_k`` at view ``k`` (``pitch`` mm per turn,
or ``table_positions`` per view).

Sinogram layouts: 2D ``(views, bins)``; cone ``(views, rows, cols)``. ASTRA's 3D layout is
``(rows, views, cols)``: ``astra_sino = np.transpose(recon_sino, (1, 0, 2))``.

The vector form (ASTRA's "vec" geometries; per view, float64, mm) is what the kernels consume and
what every geometry converts to (``g.vectors()``, ``g.as_vector_geometry()``):

* :class:`ParallelVec2D`: ``(n_views, 6)`` = ``(ray_x, ray_y, d_x, d_y, u_x, u_y)``, ASTRA ``parallel_vec``.
* :class:`FanVec2D`: ``(n_views, 6)`` = ``(src_x, src_y, d_x, d_y, u_x, u_y)``, ASTRA ``fanflat_vec``
  (flat). For the arc detector the same numbers mean: the arc through ``d`` centred at ``src``,
  tangent ``u`` at ``d``, arc length ``|u|`` per bin.
* :class:`ConeVec3D`: ``(n_views, 12)`` = ``(src, d, u, v)`` (x, y, z each), ASTRA ``cone_vec``;
  ``u`` steps one column, ``v`` one row.

A new geometry with a flat detector (or a 2D arc) is a converter to one of these three, as
:class:`HelicalConeBeam3D` is; a curved (cylindrical) cone-beam detector would need a fourth
vector kind in the kernels.

Image mapping to ASTRA: 2D images are ASTRA's ``(rows, cols)`` volume with the window centred at
the origin (``create_vol_geom(ny, nx, -nx*vx/2, nx*vx/2, -ny*vy/2, ny*vy/2)``); see
:meth:`ParallelBeam2D.to_astra`. The 3D volume is ``(z, y, x)`` with row 0 at +y as in 2D.

Validity rules (ValueError naming the parameter): non-empty, finite angles; positive
spacings, sizes and distances; the source outside the image's circumscribed circle (3D: outside
the circumscribed cylinder or the bounding sphere), so the half-line from the source covers every
voxel a full line would; the detector wide enough to cover the image's inscribed circle (radius
``min(nx*vx, ny*vy) / 2``) at every view (circular cone beam: also the volume's z extent magnified at
the rotation axis). ``check_coverage=False`` turns the coverage rule off (truncated-data
experiments). Vector geometries check the vectors per view (finite, non-degenerate detector axes,
source outside) and name the view; they have no coverage rule.

Views: ``g.subset(views)`` (index array, slice or boolean mask) is the one subset code.
Description: ``g.to_dict()`` -> ``{"kind": "FanBeam2D", ...constructor arguments...}`` (JSON-able;
angles in radians, lengths in mm, vector forms with ``"vectors"``); :func:`from_dict` rebuilds it.
"""

from .analytic import ConeBeam3D, FanBeam2D, HelicalConeBeam3D, ParallelBeam2D
from .base import Geometry, from_dict
from .image import ImageGrid
from .vector import (
    KIND_CONE_FLAT,
    KIND_FAN_ARC,
    KIND_FAN_FLAT,
    KIND_PARALLEL2D,
    ConeVec3D,
    FanVec2D,
    ParallelVec2D,
)

__all__ = ["Geometry", "ImageGrid", "ParallelBeam2D", "FanBeam2D", "ConeBeam3D", "HelicalConeBeam3D",
           "ParallelVec2D", "FanVec2D", "ConeVec3D", "from_dict", "KIND_PARALLEL2D", "KIND_FAN_FLAT",
           "KIND_FAN_ARC", "KIND_CONE_FLAT"]
