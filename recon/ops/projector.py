"""Matched CT projector ``y = A x`` (line integrals) and its exact adjoint, on ``recon._core``.

Geometry and conventions: :mod:`recon.geometry` (lengths mm, angles radians, image row 0 at +y,
sinograms ``(views, bins)`` in 2D and ``(views, rows, cols)`` for the cone beam). The image is
an attenuation map in 1/mm; the sinogram holds unitless line integrals. The kernels see only the
vector form of a geometry (:func:`kernel_arguments`: kind code, per-view vectors, image grid,
detector shape), so any geometry that converts to it works, for the CPU and the CUDA projector.

Model ``"joseph"``: Joseph's method. Each ray steps through the voxel-centre planes of its driving
axis (the axis most parallel to it); at each step the image is interpolated linearly (2D) or
bilinearly (3D) between voxel centres, zero outside; weight = interpolation weight x step length
(mm). All weights come from one function (csrc/kernels/joseph.h), so the adjoint is the exact
transpose of the forward (dot test ~1e-7 in float32, ~1e-15 in float64).
"""

from __future__ import annotations

import numpy as np

from .. import _array
from ..geometry import Geometry
from ..geometry._checks import check_allocation
from .backend import default_threads, on_gpu, require_cuda
from .base import Operator

_MODELS = ("joseph",)


def _core():
    from .. import _core as core

    return core


def kernel_arguments(geometry: Geometry, subsample: int = 1) -> dict:
    """The projector kernels' description of ``geometry`` (recon._core.JosephProjector and the
    recon._cuda projectors take these, in this order): its vector form only."""
    vg = geometry.as_vector_geometry()
    return dict(kind=int(vg.kind), vectors=np.ascontiguousarray(vg.vectors(), dtype=np.float64),
                image_shape=[int(n) for n in vg.image_shape], voxel_size=[float(v) for v in vg.voxel_size],
                det_shape=[int(n) for n in vg.det_shape], subsample=int(subsample))


class Projector(Operator):
    """CT projector: image ``(..., *geometry.image_shape)`` -> sinogram ``(..., *geometry.sino_shape)``.

    Parameters
    ----------
    geometry : any :class:`recon.geometry.Geometry` (analytic: ``ParallelBeam2D``, ``FanBeam2D``,
        ``ConeBeam3D``, ``HelicalConeBeam3D``; vector: ``ParallelVec2D``, ``FanVec2D``, ``ConeVec3D``).
    model : ``"joseph"`` (the only model so far).
    dtype : ``"float32"`` (default) or ``"float64"``.
    nthreads : CPU threads (default: RECON_NUM_THREADS, else OMP_NUM_THREADS, else all cores).
    subsample : rays per detector bin along each detector axis (``subsample**2`` per cone-beam
        pixel), equally spaced over the bin and averaged: models the bin width. 1 = one ray through
        the bin centre.
    check_finite : raise ValueError on NaN/Inf inputs (one cheap pass over the data).

    Leading axes beyond the image/sinogram shape are batch axes. Inputs may be numpy arrays or CPU
    torch tensors (autograd: the backward of ``forward`` is ``adjoint``, and vice versa).
    """

    matched = True

    def __init__(self, geometry, model: str = "joseph", dtype="float32", nthreads: int | None = None, *,
                 subsample: int = 1, check_finite: bool = True):
        if not isinstance(geometry, Geometry):
            raise ValueError(f"Projector: geometry must be a recon.geometry geometry (ParallelBeam2D, FanBeam2D, "
                             f"ConeBeam3D, HelicalConeBeam3D or a vector geometry), got {type(geometry).__name__}")
        if model not in _MODELS:
            raise ValueError(f"Projector: model must be one of {_MODELS}, got {model!r}")
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"Projector: dtype must be float32 or float64, got {dtype!r}") from None
        if dtype.name not in ("float32", "float64"):
            raise TypeError(f"Projector: dtype must be float32 or float64, got {dtype.name}")
        if isinstance(subsample, bool) or not isinstance(subsample, (int, np.integer)) or not 1 <= subsample <= 16:
            raise ValueError(f"Projector: subsample must be an integer in [1, 16], got {subsample!r}")
        if nthreads is not None:  # a positive integer at most backend.max_threads() (4 per core)
            from .backend import check_threads
            nthreads = check_threads(nthreads, "Projector")
        super().__init__(geometry.image_shape, geometry.sino_shape, dtype)
        self.geometry = geometry
        self.model = model
        self.subsample = int(subsample)
        self.nthreads = int(nthreads or default_threads())
        self.check_finite = check_finite
        self._plan = _core().JosephProjector(*kernel_arguments(geometry, self.subsample).values())

    def _run(self, a, core_in, core_out, method: str):
        if on_gpu(a):
            require_cuda(f"Projector.{method}")
            from .projector_cuda import run_on_gpu

            return run_on_gpu(self, a, method)
        arr = _array.to_numpy(a)
        if arr.dtype != self.dtype:
            raise TypeError(f"Projector: expected dtype {self.dtype.name}, got {arr.dtype.name}")
        arr = np.ascontiguousarray(arr)
        if self.check_finite and not _array.all_finite(arr):
            raise ValueError(f"Projector.{method}: input contains NaN or Inf")
        lead = arr.shape[: arr.ndim - len(core_in)]
        self._check_memory(lead, core_out, method)
        out = np.empty(lead + tuple(core_out), dtype=self.dtype)
        if out.size:
            getattr(self._plan, method)(arr, out, self.nthreads)
        return _array.like(out, a)

    def _check_memory(self, lead, core_out, method: str):
        """Refuse an apply whose output plus the kernels' work buffers (two zero-padded image copies
        for the forward) exceed the available memory."""
        item = self.dtype.itemsize
        out = float(np.prod(lead, dtype=np.float64)) * float(np.prod(core_out, dtype=np.float64)) * item
        work = 2.0 * np.prod([n + 3.0 for n in self.ishape]) * item if method == "forward" else 0.0
        check_allocation(f"Projector.{method}", out + work, f"a batch of {int(np.prod(lead))} x {tuple(core_out)}")

    def _forward(self, x):
        return self._run(x, self.ishape, self.oshape, "forward")

    def _adjoint(self, y):
        return self._run(y, self.oshape, self.ishape, "adjoint")

    def __repr__(self):
        return f"<Projector {self.model} {self.geometry!r} {self.dtype.name}>"
