"""The common interface of CT geometries: view subsets, equality, repr and the JSON-able description
(``to_dict`` / :func:`from_dict`). Conventions: :mod:`recon.geometry`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

from .image import ImageGrid

__all__ = ["Geometry", "from_dict"]

#: Public geometry classes by name (filled as they are defined): the ``"kind"`` of a description.
_CLASSES: dict[str, type] = {}


class Geometry:
    """Base of all CT geometries.

    Attributes: ``image_shape`` (``(ny, nx)`` or ``(nz, ny, nx)``), ``voxel_size`` (mm per axis, same
    order), ``sino_shape`` (``(n_views, bins)`` or ``(n_views, rows, cols)``), ``ndim`` (2 or 3),
    ``kind`` (the kernels' code, :mod:`recon.geometry.vector`).

    Methods: ``vectors()`` (per-view vector form, mm), ``as_vector_geometry()`` (the vector geometry
    the projector consumes), ``rays()``, ``subset(views)``, ``to_dict()``.

    Subclasses define ``_per_view`` (the constructor arguments that hold one entry per view) and
    ``_params()`` (the constructor arguments by name).
    """

    ndim: int
    kind: int
    image_shape: tuple[int, ...]
    voxel_size: tuple[float, ...]
    sino_shape: tuple[int, ...]
    _per_view: tuple[str, ...] = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.__name__.startswith("_"):
            _CLASSES[cls.__name__] = cls

    # ---- shapes and the image grid ---------------------------------------------------------------
    @property
    def n_views(self) -> int:
        return int(self.sino_shape[0])

    @property
    def n_angles(self) -> int:
        """The number of views (same as ``n_views``)."""
        return self.n_views

    @property
    def det_shape(self) -> tuple[int, ...]:
        """Detector shape: ``(bins,)`` in 2D, ``(rows, cols)`` in 3D."""
        return tuple(self.sino_shape[1:])

    @property
    def grid(self) -> ImageGrid:
        """The image grid (shape, voxel size, voxel centres)."""
        return ImageGrid(self.image_shape, self.voxel_size, owner=type(self).__name__)

    def voxel_centres(self) -> list[np.ndarray]:
        """Per-axis voxel-centre coordinates in mm, in ``image_shape`` order ((z,) y, x)."""
        return self.grid.voxel_centres()

    @property
    def inscribed_radius(self) -> float:
        """Radius (mm) of the largest circle (cylinder) in the image's x-y extent."""
        return self.grid.inscribed_radius

    @property
    def circumscribed_radius(self) -> float:
        """Radius (mm) of the smallest circle (cylinder) around the image's x-y extent."""
        return self.grid.circumscribed_radius

    # ---- the vector form -------------------------------------------------------------------------
    def vectors(self) -> np.ndarray:  # pragma: no cover - abstract
        """Per-view vectors ``(n_views, 6 | 12)`` in mm (ASTRA's "vec" layout; :mod:`recon.geometry`)."""
        raise NotImplementedError

    def as_vector_geometry(self) -> Geometry:  # pragma: no cover - abstract
        """The equivalent vector geometry (:class:`ParallelVec2D`, :class:`FanVec2D`, :class:`ConeVec3D`)."""
        raise NotImplementedError

    def rays(self, subsamples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Ray origins and unit directions (mm), each ``(*sino_shape, S, ndim)`` in (x, y[, z]) order.

        ``S = subsamples`` (2D) or ``subsamples**2`` (3D) sub-rays per bin, equally spaced over the
        bin at ``(k + 0.5) / subsamples - 0.5`` bins from its centre. Parallel rays are full lines
        (origin on the detector); fan/cone rays are half-lines from the source.
        """
        return self.as_vector_geometry().rays(subsamples)

    # ---- subsets -----------------------------------------------------------------------------------
    def subset(self, views) -> Geometry:
        """The same geometry restricted to some views: ``views`` is an index array (or one index), a
        slice, or a boolean mask of length ``n_views``. Views keep the given order (repeats allowed)."""
        idx = view_index(type(self).__name__, views, self.n_views)
        params = self._params()
        for name in self._per_view:
            params[name] = np.asarray(params[name])[idx]
        return type(self)(**params)

    # ---- description ---------------------------------------------------------------------------------
    def _params(self) -> dict:  # pragma: no cover - abstract
        """Constructor arguments by name (per-view ones as arrays)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """A JSON-able description: ``{"kind": class name, **constructor arguments}`` (angles in
        radians, lengths in mm, arrays as lists); :func:`from_dict` rebuilds an equal geometry."""
        return {"kind": type(self).__name__, **{k: _plain(v) for k, v in self._params().items()}}

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        return (self.kind == other.kind and self.image_shape == other.image_shape
                and self.voxel_size == other.voxel_size and self.sino_shape == other.sino_shape
                and np.array_equal(self.vectors(), other.vectors()))

    __hash__ = None  # mutable numpy arrays inside

    def _repr_extra(self) -> str:
        return ""

    def __repr__(self):
        count = "n_angles" if "angles" in self._per_view else "n_views"
        parts = [f"{count}={self.n_views}"]
        for k, v in self._params().items():
            if k in self._per_view or v is None or (k == "check_coverage" and v):
                continue
            parts.append(f"{k}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)}{self._repr_extra()})"


def view_index(owner: str, views, n: int) -> np.ndarray:
    """Indices (int64, in ``[0, n)``) selected by an index array / one index, a slice or a boolean mask."""
    if isinstance(views, slice):
        idx = np.arange(n)[views]
    else:
        try:
            v = np.asarray(views)
        except (TypeError, ValueError):
            v = np.asarray(None)
        if v.dtype == bool:
            if v.shape != (n,):
                raise ValueError(f"{owner}.subset: a boolean mask of views must have shape ({n},), got {v.shape}")
            idx = np.flatnonzero(v)
        elif v.dtype.kind in "iu" and v.ndim <= 1:
            idx = v.astype(np.int64).reshape(-1)
            bad = idx[(idx < -n) | (idx >= n)]
            if bad.size:
                raise ValueError(f"{owner}.subset: view index {int(bad[0])} is out of range for {n} views")
            idx = np.where(idx < 0, idx + n, idx)
        else:
            raise ValueError(f"{owner}.subset: views must be integer indices, a slice or a boolean mask of "
                             f"length {n}, got {views!r}")
    if idx.size == 0:
        raise ValueError(f"{owner}.subset: views selects no view")
    return idx


def _plain(v):
    """JSON-able form: arrays and tuples as lists, numpy scalars as Python numbers."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def from_dict(description: Mapping) -> Geometry:
    """Rebuild a geometry from :meth:`Geometry.to_dict`'s description (e.g. read from JSON or YAML).

    ``description["kind"]`` names the class; the other keys are its constructor arguments by name.
    Unknown or missing keys and bad values raise ValueError naming the field.
    """
    if not isinstance(description, Mapping):
        raise TypeError(f"from_dict: expected a mapping (dict), got {type(description).__name__}")
    kinds = ", ".join(sorted(_CLASSES))
    if "kind" not in description:
        raise ValueError(f"from_dict: missing field 'kind' (one of {kinds})")
    kind = description["kind"]
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"from_dict: field 'kind' must be one of {kinds}, got {kind!r}")
    sig = inspect.signature(cls.__init__)
    fields = [p for p in list(sig.parameters.values())[1:]]
    names = {p.name for p in fields}
    args = {k: v for k, v in description.items() if k != "kind"}
    unknown = sorted(map(str, set(args) - names))
    if unknown:
        raise ValueError(f"from_dict: {kind} has no field(s) {', '.join(unknown)}; its fields: "
                         f"{', '.join(p.name for p in fields)}")
    missing = [p.name for p in fields if p.default is inspect.Parameter.empty and p.name not in args]
    if missing:
        raise ValueError(f"from_dict: {kind} needs field(s) {', '.join(missing)}")
    return cls(**args)
