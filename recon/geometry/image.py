"""The CT image grid: shape, voxel size and voxel centres (conventions: :mod:`recon.geometry`)."""

from __future__ import annotations

import math

import numpy as np

from . import _checks as check

__all__ = ["ImageGrid"]

#: Largest number of voxels of one image (the kernels' limit on padded images, csrc/ct/spec.h).
MAX_VOXELS = 1 << 40


class ImageGrid:
    """A 2D image ``(ny, nx)`` or 3D volume ``(nz, ny, nx)`` of voxels of ``voxel_size`` mm, centred
    on the origin: column ``c`` at ``x = (c - (nx-1)/2) vx``, row ``r`` at ``y = ((ny-1)/2 - r) vy``
    (row 0 at +y), slice ``k`` at ``z = (k - (nz-1)/2) vz``.

    ``shape``: ``ndim`` positive integers (an int: the same along every axis, then ``ndim`` is
    required); ``voxel_size``: scalar or one value per axis (mm), same order as ``shape``.
    """

    def __init__(self, shape, voxel_size=1.0, *, ndim: int | None = None, owner: str = "ImageGrid"):
        if ndim is None:
            if isinstance(shape, (int, np.integer)):
                raise ValueError(f"{owner}: image_shape must be (ny, nx) or (nz, ny, nx), got {shape!r}")
            ndim = len(np.asarray(shape, dtype=object).ravel())
        if ndim not in (2, 3):
            raise ValueError(f"{owner}: image_shape must have 2 or 3 entries, got {shape!r}")
        self.shape = check.sizes(owner, "image_shape", shape, ndim)
        self.voxel_size = check.per_axis(owner, "voxel_size", voxel_size, ndim)
        if math.prod(self.shape) > MAX_VOXELS:
            raise ValueError(f"{owner}: image_shape {self.shape} has more than 2^40 voxels")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of voxels."""
        return math.prod(self.shape)

    def voxel_centres(self) -> list[np.ndarray]:
        """Per-axis voxel-centre coordinates (mm), in ``shape`` order ((z,) y, x)."""
        out = []
        for ax, (n, v) in enumerate(zip(self.shape, self.voxel_size)):
            c = (np.arange(n) - (n - 1) / 2.0) * v
            out.append(-c if ax == self.ndim - 2 else c)  # y axis: row 0 at +y
        return out

    @property
    def inscribed_radius(self) -> float:
        """Radius (mm) of the largest circle (cylinder) inside the x-y extent."""
        (ny, nx), (vy, vx) = self.shape[-2:], self.voxel_size[-2:]
        return 0.5 * min(ny * vy, nx * vx)

    @property
    def circumscribed_radius(self) -> float:
        """Radius (mm) of the smallest circle (cylinder about z) around the x-y extent."""
        (ny, nx), (vy, vx) = self.shape[-2:], self.voxel_size[-2:]
        return 0.5 * math.hypot(ny * vy, nx * vx)

    @property
    def bounding_radius(self) -> float:
        """Radius (mm) of the smallest circle (2D) or sphere (3D) around the whole grid."""
        return 0.5 * math.sqrt(sum((n * v) ** 2 for n, v in zip(self.shape, self.voxel_size)))

    def encloses(self, points) -> np.ndarray:
        """For points ``(..., ndim)`` (x, y[, z] mm): inside both the circumscribed circle (cylinder
        about z) and, in 3D, the bounding sphere. From a point outside either (both are convex and
        contain the grid), a half-line meets the grid exactly where the full line does."""
        p = np.asarray(points, dtype=np.float64)
        inside = np.hypot(p[..., 0], p[..., 1]) <= self.circumscribed_radius
        if self.ndim == 3:
            inside &= np.linalg.norm(p[..., :3], axis=-1) <= self.bounding_radius
        return inside

    def to_dict(self) -> dict:
        return {"image_shape": list(self.shape), "voxel_size": list(self.voxel_size)}

    def __eq__(self, other):
        return isinstance(other, ImageGrid) and self.shape == other.shape and self.voxel_size == other.voxel_size

    def __hash__(self):
        return hash((self.shape, self.voxel_size))

    def __repr__(self):
        return f"ImageGrid(shape={self.shape}, voxel_size={self.voxel_size})"
