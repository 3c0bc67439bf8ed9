"""Non-uniform FFT operator (type 2 forward, type 1 adjoint) on the C++ kernels of ``recon._core``.

Convention: see :mod:`recon.conventions` (cycles per FOV, centred positions, 1/sqrt(prod N) scaling,
identical to ``sigpy.nufft``/``sigpy.nufft_adjoint``).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Sequence

import numpy as np

from .. import _array
from .._memory import check_memory, memory_limit  # noqa: F401 (memory_limit: public here too)
from .backend import (
    array_digest,
    check_device,
    check_threads,
    default_threads,
    on_gpu,
    plan_cache,
)
from .base import Operator

_PLAN_CLASSES = {"complex64": "NufftPlan64", "complex128": "NufftPlan128"}


def _core():
    from .. import _core as core

    return core


UPSAMPFAC_CANDIDATES = (1.25, 1.5, 1.75, 2.0)

#: Largest image axis a plan accepts: the fine grid (about upsampfac x the image) is limited to 2^30
#: points per axis (32-bit stencil indices), so in practice an axis holds at most ~2^30 / upsampfac.
MAX_IMAGE_AXIS = 2**30


def _real(v, name: str) -> float:
    """A real scalar argument (Python or numpy number, not bool) as a float; TypeError otherwise."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"Nufft: {name} must be a real number, got {v!r}")
    return float(v)


def _integer(v, name: str) -> int:
    """An integer argument (Python or numpy integer, not bool) as an int; TypeError otherwise."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"Nufft: {name} must be an integer, got {v!r}")
    return int(v)


def _complex_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _PLAN_CLASSES:
        raise TypeError(f"Nufft: dtype must be complex64 or complex128, got {dtype!r}")
    return dt


def _image_shape(im_shape) -> tuple[int, ...]:
    """``im_shape`` as a tuple of 2 or 3 integers in [1, MAX_IMAGE_AXIS] (numpy integers accepted)."""
    try:
        entries = tuple(im_shape)
    except TypeError:
        raise TypeError(f"Nufft: im_shape must be a sequence of 2 or 3 integers, got {im_shape!r}") from None
    if len(entries) not in (2, 3):
        raise ValueError(f"Nufft: im_shape must have 2 or 3 entries, got {im_shape!r}")
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in entries):
        raise TypeError(f"Nufft: im_shape entries must be integers, got {im_shape!r}")
    shape = tuple(int(n) for n in entries)
    if any(n < 1 for n in shape):
        raise ValueError(f"Nufft: im_shape entries must be >= 1, got {shape}")
    if any(n > MAX_IMAGE_AXIS for n in shape):
        raise ValueError(f"Nufft: im_shape {shape} is too large: each axis may hold at most 2^30 points "
                         "(and its fine grid, about upsampfac times larger, at most 2^30)")
    return shape


def choose_upsampfac(tol: float, im_shape: Sequence[int], num_points: int, dtype) -> float:
    """Oversampling factor with the lowest modelled cost that meets ``tol`` in ``dtype``.

    Cost model per transform (units of one complex multiply-add, calibrated on the CPU kernels):
    spreading ``M * w^d`` plus FFT and deconvolution ``0.75 * n log2 n + 2 n`` over the fine grid
    of ``n`` points. Candidates are 1.25, 1.5, 1.75 and 2.0; those whose kernel would be too wide
    for the dtype (the plan refuses them) are skipped.
    """
    d = len(im_shape)
    core = _core()
    costs = {}
    for sigma in UPSAMPFAC_CANDIDATES:
        try:
            w, _ = core.es_kernel_params(tol, sigma)
        except ValueError:
            continue
        if np.dtype(dtype) == np.complex64 and w > 9:
            continue
        n = [core.fine_grid_size(int(N), sigma, w) for N in im_shape]
        ngrid = float(np.prod(n))
        costs[sigma] = num_points * w**d + 0.75 * ngrid * math.log2(ngrid) + 2 * ngrid
    if not costs:
        raise ValueError(f"Nufft: tol={tol} is not reachable in {np.dtype(dtype).name}")
    return min(costs, key=costs.get)


#: Inputs whose largest magnitude lies outside [2^-e, 2^e] are rescaled by a power of two before the
#: kernels and back after: spreading sums up to M samples and the FFT up to prod(n) grid points, so
#: internal values may exceed the input's by ~2^87 before the result shrinks back (complex64 overflowed
#: at 1e36 although the result fit); products of tiny inputs and kernel weights would turn subnormal.
_SAFE_EXPONENT = {np.dtype("complex64"): 40, np.dtype("complex128"): 400}


def input_scale(a, dtype, what: str) -> float:
    """The power of two by which the NUFFT scales the input ``a`` (1.0 for ordinary magnitudes).

    One pass over ``a`` (:func:`recon._array.max_abs`) that also rejects NaN/Inf with a ValueError
    naming ``what``. Outside the safe range (:data:`_SAFE_EXPONENT`) the scale brings the largest
    magnitude into [0.5, 1); powers of two keep the scaling exact."""
    m = _array.max_abs(a)
    if not math.isfinite(m):
        raise ValueError(f"{what}: input contains NaN or Inf")
    e = _SAFE_EXPONENT[np.dtype(dtype)]
    if m == 0.0 or 2.0**-e <= m <= 2.0**e:
        return 1.0
    # the scale and its inverse must be normal numbers of the dtype (subnormal inputs would ask for
    # 2^129, inputs near the largest float32 for 2^-128)
    lim = np.finfo(np.dtype(dtype).type(0).real.dtype).maxexp - 2
    return math.ldexp(1.0, max(-lim, min(-math.frexp(m)[1], lim)))


def undo_input_scale(out, scale: float, dtype, what: str):
    """``out / scale`` (in place where possible); ValueError when the true result exceeds ``dtype``."""
    with np.errstate(over="ignore"):  # reported below, as an error
        out = out * (1.0 / scale) if _array.is_torch(out) else np.multiply(out, 1.0 / scale, out=out)
    if not math.isfinite(_array.max_abs(out)):
        raise ValueError(f"{what}: the result exceeds the range of {np.dtype(dtype).name} (the input's largest "
                         f"magnitude is about {1.0 / scale:.3g}); use complex128 or scale the data")
    return out


class Nufft(Operator):
    """NUFFT ``y = A x``: image ``(..., *im_shape)`` -> samples ``(..., *sample_shape)``.

    Parameters
    ----------
    coord : trajectory in cycles per FOV, each axis in ``[-N_a/2, N_a/2]``, last axis ordered like the
        image axes. Either

        * one array ``(*frame_shape, *sample_shape, d)``: the first ``frame_ndim`` axes index frames of
          equal size, each with its own trajectory; size-1 frame axes broadcast (e.g. ``(T, 1, M, d)``
          against images ``(T, C, Ny, Nx)``: one trajectory per frame, shared by the coils); or
        * a list or tuple of F arrays (**ragged frames**), frame ``f`` of shape ``(*sample_shape_f, d)``
          with any number of samples (zero too: that frame's data is empty and its image gets zeros).
          Then ``ishape = (F, *im_shape)`` and ``oshape = (M_total,)``: frame ``f``'s samples, flattened,
          are ``y[..., frame_offsets[f]:frame_offsets[f + 1]]`` (:meth:`split` / :meth:`concat`).
          Leading batch axes pass through: ``(C, F, Ny, Nx) -> (C, M_total)``.
    im_shape : image shape (2 or 3 integers).
    tol : requested relative accuracy (1e-2 .. 1e-6 in complex64, down to ~1e-12 in complex128),
        met on any trajectory: the kernel width is the narrowest whose estimated aliasing error is
        below ``tol``.
    dtype : complex64 or complex128.
    upsampfac : fine-grid oversampling (any in [1.2, 3]); None picks the cheapest of 1.25, 1.5, 1.75
        and 2.0 that meets ``tol`` (see :func:`choose_upsampfac`; ragged frames: for the mean frame).
    frame_ndim : number of leading frame axes of a single ``coord`` array (0 for a list).
    nthreads : kernel threads, at most :func:`~recon.ops.backend.max_threads` (4 per core); default
        :func:`~recon.ops.backend.default_threads`.
    check_finite : one cheap pass over each input that raises ValueError on NaN/Inf and rescales inputs
        of extreme magnitude by a power of two (see :func:`input_scale`; complex64 handles data from
        ~1e-38 to ~1e38 without internal overflow or underflow). False skips both.
    max_memory : bytes this operator may allocate (plans, applies, Toeplitz kernels); see
        :func:`memory_limit` for the other limits (RECON_MAX_MEMORY, available memory). Requests above
        it raise ValueError before anything is allocated.

    Attributes: ``frame_shape`` (``(F,)`` for ragged frames), ``sample_shape`` (``(M_total,)`` for
    ragged frames), ``frame_sizes`` (samples per frame), ``frame_offsets`` (F + 1 offsets into the
    flattened samples of all frames), ``num_points`` (samples per frame; ragged: all frames),
    ``ragged``. Leading axes of the input beyond ``ishape`` are batch axes (coils, ...) sharing the plan.
    """

    def __init__(self, coord, im_shape: Sequence[int], tol: float = 1e-6, *, dtype="complex64",
                 upsampfac: float | None = None, frame_ndim: int = 0, nthreads: int | None = None,
                 check_finite: bool = True, max_memory: float | None = None):
        dtype = _complex_dtype(dtype)
        im_shape = _image_shape(im_shape)
        frame_ndim = _integer(frame_ndim, "frame_ndim")
        tol = _real(tol, "tol")
        if not 0 < tol < 1:
            raise ValueError(f"Nufft: tol must lie in (0, 1), got {tol}")
        if upsampfac is not None:
            upsampfac = _real(upsampfac, "upsampfac")
        nthreads = default_threads() if nthreads is None else check_threads(nthreads, "Nufft")
        if max_memory is not None:
            max_memory = _real(max_memory, "max_memory")
            if not max_memory > 0:
                raise ValueError(f"Nufft: max_memory must be a positive number of bytes or None, got {max_memory}")
        self.im_shape = im_shape
        self.tol = tol
        self.nthreads = nthreads
        self.check_finite = bool(check_finite)
        self.max_memory = max_memory
        self.ragged = is_frame_list(coord)
        points = self._parse_points(coord, frame_ndim)
        self._set_points(points)
        mean_points = self.frame_offsets[-1] // len(self.frame_sizes)
        self.upsampfac = upsampfac if upsampfac is not None else choose_upsampfac(tol, im_shape, int(mean_points),
                                                                                  dtype)
        Operator.__init__(self, self.frame_shape + im_shape, self._samples_shape(), dtype)

        plan_cls = getattr(_core(), _PLAN_CLASSES[dtype.name])
        self._check_plan_memory(plan_cls, self.frame_sizes)
        try:
            self._plans = [plan_cls(c, list(im_shape), self.tol, self.upsampfac, self.nthreads) for c in self._coord]
        except ValueError as e:
            raise ValueError(f"Nufft: {e}") from None
        self._toeplitz = {}
        self._shared = False

    @classmethod
    def cached(cls, coord, im_shape: Sequence[int], tol: float = 1e-6, *, dtype="complex64",
               upsampfac: float | None = None, frame_ndim: int = 0, nthreads: int | None = None,
               check_finite: bool = True, max_memory: float | None = None) -> "Nufft":
        """A Nufft from the process-wide plan cache (:data:`recon.ops.backend.plan_cache`, LRU): the
        same trajectory (by content, :func:`~recon.ops.backend.array_digest`), image shape, tol, dtype,
        upsampfac, frame axes, threads and check_finite give the same object, without planning again
        (operators rebuilt per call inside a network). The object is shared: do not call
        :meth:`set_points` on it (it raises). ``RECON_PLAN_CACHE=0`` disables the cache."""
        nthreads = default_threads() if nthreads is None else check_threads(nthreads, "Nufft")

        def build():
            op = cls(coord, im_shape, tol, dtype=dtype, upsampfac=upsampfac, frame_ndim=frame_ndim,
                     nthreads=nthreads, check_finite=check_finite, max_memory=max_memory)
            op._shared = True
            return op

        try:
            frames = list(coord) if is_frame_list(coord) else [coord]
            digest = tuple(array_digest(c if _array.is_array(c) else np.asarray(c, dtype=np.float64))
                           for c in frames)
            key = ("Nufft", is_frame_list(coord), digest, _image_shape(im_shape), _real(tol, "tol"),
                   _complex_dtype(dtype).name, None if upsampfac is None else _real(upsampfac, "upsampfac"),
                   _integer(frame_ndim, "frame_ndim"), nthreads, bool(check_finite))
        except (TypeError, ValueError):
            return build()  # not a valid trajectory or argument: the constructor says what is wrong
        return plan_cache.get(key, build)

    def set_points(self, coord):
        """Re-plan for a new trajectory of the same structure: the same kind (one array or a list), the
        same number of frames (and frame axes) and dimensionality; the sample counts may change.

        The plans keep their kernel, deconvolution and buffers, so streaming trajectories (a new batch
        of spokes every few ms) re-sort the points without allocating while they do not grow. The
        Toeplitz kernels and GPU plans of the old trajectory are dropped. ``oshape`` (and ``H.ishape``)
        follow the new sample counts; operators composed from this one earlier keep their old shapes."""
        if self._shared:
            raise ValueError("Nufft.set_points: this Nufft comes from Nufft.cached and may be shared; build "
                             "your own Nufft(...) to stream trajectories")
        if is_frame_list(coord) != self.ragged:
            raise ValueError("Nufft.set_points: expected " + ("a list of per-frame trajectories, like the one the "
                             "Nufft was built with" if self.ragged else "one coord array, like the one the Nufft "
                             "was built with"))
        p = self._parse_points(coord, 0 if self.ragged else len(self.frame_shape))
        if p.frame_shape != self.frame_shape:
            raise ValueError(f"Nufft.set_points: expected the frame shape {self.frame_shape} of the first "
                             f"trajectory, got {p.frame_shape}")
        self._check_plan_memory(type(self._plans[0]), [len(c) for c in p.frames])
        for f, (plan, c) in enumerate(zip(self._plans, p.frames)):
            try:
                plan.set_points(c)
            except ValueError as e:  # not expected after the checks above; frames done so far go back
                for g in range(f):
                    self._plans[g].set_points(self._coord[g])
                raise ValueError(f"Nufft.set_points: {e}") from None
        self._set_points(p)
        self.oshape = self._samples_shape()
        if "_adjoint_op" in self.__dict__:
            self.__dict__["_adjoint_op"].ishape = self.oshape
        self._toeplitz.clear()
        self.__dict__.pop("_cuda_plans", None)

    def _parse_points(self, coord, frame_ndim: int) -> "_Points":
        """``coord`` validated and split into per-frame C-contiguous float64 ``(M_f, d)`` arrays."""
        d = len(self.im_shape)
        if self.ragged:
            if frame_ndim != 0:
                raise ValueError("Nufft: frame_ndim counts frame axes of one coord array; leave it 0 with a list "
                                 "of per-frame trajectories")
            if len(coord) == 0:
                raise ValueError("Nufft: a list of per-frame trajectories needs at least one frame")
            arrays = [_coord_array(c, self.im_shape, f"coord[{f}]") for f, c in enumerate(coord)]
            frames = [np.ascontiguousarray(a.reshape(-1, d)) for a in arrays]
            total = sum(len(c) for c in frames)
            return _Points(frames, (len(frames),), (total,), [a.shape[:-1] for a in arrays], total)
        a = _coord_array(coord, self.im_shape, "coord")
        if a.ndim < 2:
            raise ValueError(f"Nufft: coord must have shape (..., M, {d}) for a {d}D image, got {a.shape}")
        if not 0 <= frame_ndim <= a.ndim - 2:
            raise ValueError(f"Nufft: frame_ndim must lie in [0, {a.ndim - 2}], got {frame_ndim}")
        frame_shape, sample_shape = tuple(a.shape[:frame_ndim]), tuple(a.shape[frame_ndim:-1])
        M = math.prod(sample_shape)
        frames = list(np.ascontiguousarray(a).reshape(math.prod(frame_shape), M, d))
        return _Points(frames, frame_shape, sample_shape, [sample_shape] * len(frames), M)

    def _samples_shape(self) -> tuple[int, ...]:
        """``oshape``: (*frame_shape, *sample_shape), or (M_total,) for ragged frames."""
        return self.sample_shape if self.ragged else self.frame_shape + self.sample_shape

    def _set_points(self, p: "_Points"):
        self._coord = p.frames  # per frame: float64 (M_f, d)
        self.frame_shape, self.sample_shape, self.num_points = p.frame_shape, p.sample_shape, p.num_points
        self.frame_sample_shapes = p.frame_sample_shapes
        self.frame_sizes = tuple(len(c) for c in p.frames)
        self.frame_offsets = np.concatenate([[0], np.cumsum(self.frame_sizes, dtype=np.int64)])

    def _check_plan_memory(self, plan_cls, frame_sizes):
        """Refuse (ValueError) plans for these frames whose memory (plans, one fine grid, the float64
        trajectory) exceeds :func:`memory_limit`, before anything is allocated."""
        est = {m: plan_cls.memory_estimate(m, list(self.im_shape), self.tol, self.upsampfac, self.nthreads)
               for m in set(frame_sizes)}
        need = (sum(est[m]["plan"] for m in frame_sizes) + max(e["grid"] for e in est.values())
                + 8.0 * sum(frame_sizes) * len(self.im_shape))

        def what():
            width = _core().es_kernel_params(self.tol, self.upsampfac)[0]
            grid = " x ".join(str(_core().fine_grid_size(n, self.upsampfac, width)) for n in self.im_shape)
            return f"Nufft: a plan for im_shape {self.im_shape} with {sum(frame_sizes)} samples (fine grid {grid})"

        check_memory(need, what, self.max_memory)

    def _check_apply_memory(self, method: str, out_bytes: float, copy_bytes: float, batch: int):
        need = out_bytes + copy_bytes + self._plans[0].execution_bytes(batch)  # all frames: one grid size
        check_memory(need, lambda: f"Nufft.{method} of {batch} transforms", self.max_memory)

    # ---- plan facts -------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self._plans[0].width

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self._plans[0].grid_shape)

    # ---- ragged frames: per-frame views of the samples ------------------------------------------------
    def split(self, y) -> list:
        """Ragged frames: the per-frame views ``y[..., frame_offsets[f]:frame_offsets[f + 1]]`` of data
        ``y`` of shape ``(..., M_total)`` (numpy or torch), each ``(..., M_f)``."""
        self._require_ragged("split")
        if not _array.is_array(y) or y.ndim < 1 or y.shape[-1] != self.sample_shape[0]:
            raise ValueError(f"Nufft.split: expected an array of shape (..., {self.sample_shape[0]}), got "
                             f"{getattr(y, 'shape', type(y).__name__)}")
        o = self.frame_offsets
        return [y[..., int(o[f]):int(o[f + 1])] for f in range(len(self.frame_sizes))]

    def concat(self, frames) -> object:
        """Ragged frames: the inverse of :meth:`split`. ``frames[f]`` has shape ``(..., M_f)`` or
        ``(..., *sample_shape_f)`` (the shape of frame f's trajectory without its last axis), all with
        the same leading axes and of one kind (numpy or torch); returns ``(..., M_total)``."""
        self._require_ragged("concat")
        if len(frames) != len(self.frame_sizes):
            raise ValueError(f"Nufft.concat: expected {len(self.frame_sizes)} frames, got {len(frames)}")
        flat = []
        for f, (a, shape) in enumerate(zip(frames, self.frame_sample_shapes)):
            if not _array.is_array(a):
                raise TypeError(f"Nufft.concat: frame {f} must be a numpy array or torch tensor, got "
                                f"{type(a).__name__}")
            s = tuple(a.shape)
            if s[len(s) - len(shape):] == tuple(shape) and len(s) >= len(shape):
                lead = s[: len(s) - len(shape)]
            elif s and s[-1] == self.frame_sizes[f]:
                lead = s[:-1]
            else:
                raise ValueError(f"Nufft.concat: frame {f} must have shape (..., {self.frame_sizes[f]}) or "
                                 f"(..., {', '.join(map(str, shape))}), got {s}")
            flat.append(a.reshape(tuple(lead) + (self.frame_sizes[f],)))
        leads = {tuple(a.shape[:-1]) for a in flat}
        if len(leads) != 1:
            raise ValueError(f"Nufft.concat: the frames have different leading axes {sorted(leads)}")
        xp = _array.xp_of(flat[0])
        return xp.cat(flat, dim=-1) if _array.is_torch(flat[0]) else xp.concatenate(flat, axis=-1)

    def _require_ragged(self, what):
        if not self.ragged:
            raise ValueError(f"Nufft.{what}: only for ragged frames (a list of per-frame trajectories); equal-size "
                             "frames are axes of the data already")

    # ---- shape rules: size-1 frame axes broadcast against batch axes ------------------------------------
    def _lead_matches(self, lead) -> bool:
        F = len(self.frame_shape)
        if len(lead) < F:
            return False
        tail = lead[len(lead) - F:]
        return all(f == 1 or f == t for f, t in zip(self.frame_shape, tail))

    def _check_lead(self, x, core, what):
        self._check_array(x, what)
        check_device(x, f"Nufft.{what}")
        shape = tuple(x.shape)
        k = len(core)
        if len(shape) < k or shape[len(shape) - k:] != core or not self._lead_matches(shape[: len(shape) - k]):
            fs = ", ".join(map(str, self.frame_shape + core))
            raise ValueError(f"Nufft.{what}: expected shape (..., {fs}) (size-1 frame axes broadcast), got {shape}")

    def check_input(self, x):
        if self.ragged:
            self._check(x, self.ishape, "forward")
            check_device(x, "Nufft.forward")
        else:
            self._check_lead(x, self.im_shape, "forward")

    def check_output(self, y):
        if self.ragged:
            self._check(y, self.oshape, "adjoint")
            check_device(y, "Nufft.adjoint")
        else:
            self._check_lead(y, self.sample_shape, "adjoint")

    # ---- execution ---------------------------------------------------------------------------------
    def _cores(self, method: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Trailing (input, output) shapes of one call; the axes before them are passed through (with
        equal-size frames, the frame axes are among them)."""
        img, smp = (self.ishape, self.oshape) if self.ragged else (self.im_shape, self.sample_shape)
        return (img, smp) if method == "forward" else (smp, img)

    def _frame_jobs(self, lead, method: str):
        """``(frame, src_index, dst_index, batch)`` per frame: the slabs of the input and output that
        frame's plan maps (``batch`` transforms); ``method``: "forward", "adjoint" or "normal" (image to
        image). ``lead``: the input's axes before its trailing :meth:`_cores` (the image axes for
        "normal" with equal-size frames, ``ishape`` with ragged frames)."""
        if self.ragged:
            o, d = self.frame_offsets, len(self.im_shape)
            batch = math.prod(lead)
            for f in range(len(self._plans)):
                img = (Ellipsis, f) + (slice(None),) * d
                smp = (Ellipsis, slice(int(o[f]), int(o[f + 1])))
                src, dst = {"forward": (img, smp), "adjoint": (smp, img), "normal": (img, img)}[method]
                yield f, src, dst, batch
            return
        F = len(self.frame_shape)
        if F == 0:
            yield 0, (Ellipsis,), (Ellipsis,), math.prod(lead)
            return
        off = len(lead) - F
        batch = math.prod(lead) // math.prod(f for f in self.frame_shape if f != 1)
        for k, fi in enumerate(np.ndindex(self.frame_shape)):
            idx = [slice(None)] * len(lead)
            for j, f in enumerate(fi):
                if self.frame_shape[j] != 1:
                    idx[off + j] = f
            yield k, tuple(idx), tuple(idx), batch

    def _run(self, a, method: str):
        if on_gpu(a):  # cupy array or CUDA tensor: run on the caller's device and stream
            from .nufft_cuda import run_on_gpu

            return run_on_gpu(self, a, method)
        core_in, core_out = self._cores(method)
        arr = _array.to_numpy(a)
        lead = arr.shape[: arr.ndim - len(core_in)]
        batch = math.prod(lead)
        self._check_apply_memory(method, batch * math.prod(core_out) * self.dtype.itemsize,
                                 2 * arr.size * self.dtype.itemsize, batch)
        scale = 1.0
        if self.check_finite:
            arr = np.ascontiguousarray(arr)
            scale = input_scale(arr, self.dtype, f"Nufft.{method}")
            if scale != 1.0:
                arr = arr * self.dtype.type(scale)  # a scaled copy: the input is never written
        out = np.empty(lead + core_out, dtype=self.dtype)
        for f, si, di, _ in self._frame_jobs(lead, method):
            plan = self._plans[f]
            src = np.ascontiguousarray(arr[si])
            dst = out[di]
            if dst.flags.c_contiguous:  # the kernel writes straight into the output
                getattr(plan, method)(src, dst)
            else:
                tmp = np.empty(dst.shape, dtype=self.dtype)
                getattr(plan, method)(src, tmp)
                out[di] = tmp
        if scale != 1.0:
            out = undo_input_scale(out, scale, self.dtype, f"Nufft.{method}")
        return _array.like(out, a)

    def _forward(self, x):
        return self._run(x, "forward")

    def _adjoint(self, y):
        return self._run(y, "adjoint")

    # ---- normal operator by Toeplitz embedding -------------------------------------------------------
    def _normal(self, x):
        return self.toeplitz()._forward(x)

    def toeplitz(self, weights=None) -> "ToeplitzNormal":
        """``A^H diag(weights) A`` as an operator evaluated by Toeplitz embedding (FFTs on a 2N grid).

        ``weights`` (real or complex numbers, finite; shape broadcastable to ``(*frame_shape,
        *sample_shape)``, i.e. ``(M_total,)`` for ragged frames) are typically density-compensation or
        noise weights; None means ones. The embedding kernels (one per frame) are computed once (one
        NUFFT on the 2N grid per frame) and kept on this Nufft: for ``weights=None`` and, by content
        (:func:`~recon.ops.backend.array_digest`), for the last few host weight arrays, so an operator
        rebuilt per call with the same trajectory and weights (inside a network, with
        :meth:`cached`) does not recompute them.
        """
        if weights is None:
            key = None
        elif _array.is_torch(weights) and weights.requires_grad:
            return ToeplitzNormal(self, weights)  # its value may change between calls: never cached
        else:
            try:
                key = array_digest(weights)
            except (TypeError, ValueError):
                return ToeplitzNormal(self, weights)  # the constructor says what is wrong
        if key not in self._toeplitz:
            if len(self._toeplitz) >= _TOEPLITZ_CACHE:
                self._toeplitz.pop(next(k for k in self._toeplitz if k is not None), None)
            self._toeplitz[key] = ToeplitzNormal(self, weights)
        return self._toeplitz[key]


#: Weighted Toeplitz operators kept per Nufft (besides the unweighted one).
_TOEPLITZ_CACHE = 4


class _Points(NamedTuple):
    """A validated trajectory split into frames (see :meth:`Nufft._parse_points`)."""

    frames: list            # per frame: C-contiguous float64 (M_f, d)
    frame_shape: tuple
    sample_shape: tuple
    frame_sample_shapes: list
    num_points: int         # samples per frame (ragged: all frames)


def is_frame_list(coord) -> bool:
    """A list/tuple of arrays (numpy, torch, cupy): ragged frames. Nested lists of numbers are one array."""
    return isinstance(coord, (list, tuple)) and all(_array.is_array(c) for c in coord)


def _coord_array(coord, im_shape: tuple[int, ...], what: str) -> np.ndarray:
    """``coord`` (numpy array, CPU tensor or nested list) checked and converted to float64 numpy
    ``(..., d)``: float32/float64, finite, inside [-N/2, N/2] per axis."""
    d = len(im_shape)
    if _array.is_torch(coord) and coord.device.type != "cpu":
        raise ValueError(f"Nufft: expected a CPU {what} (numpy array or CPU tensor), got a tensor on {coord.device}; "
                         "plans are built on the host")
    if _array.is_cupy(coord):
        raise ValueError(f"Nufft: expected a CPU {what} (numpy array or CPU tensor), got a cupy array; "
                         "plans are built on the host")
    if not _array.is_array(coord):
        try:
            coord = np.asarray(coord)
        except ValueError:
            raise ValueError(f"Nufft: {what} must be an array of shape (..., {d}) (got a ragged nested list; "
                             "pass per-frame trajectories as a list of arrays)") from None
    if _array.dtype_name(coord) not in ("float32", "float64"):
        raise TypeError(f"Nufft: {what} must be float32 or float64, got {_array.dtype_name(coord)}")
    coord = np.asarray(_array.to_numpy(coord), dtype=np.float64)
    if coord.ndim < 1 or coord.shape[-1] != d:
        raise ValueError(f"Nufft: {what} must have shape (..., M, {d}) for a {d}D image, got {coord.shape}")
    if not np.isfinite(coord).all():
        raise ValueError(f"Nufft: {what} contains NaN or Inf")
    half = np.asarray(im_shape, dtype=np.float64) / 2
    if coord.size and (np.abs(coord) > half).any():
        bad = np.abs(coord).reshape(-1, d).max(0)
        raise ValueError(f"Nufft: coordinates must lie in [-N/2, N/2] cycles/FOV per axis "
                         f"(N/2 = {half.tolist()}); got max |k| = {bad.tolist()} in {what}. "
                         "Scale a trajectory given in cycles/sample by the matrix size.")
    return coord


def _toeplitz_weights(weights, samples: tuple[int, ...]) -> np.ndarray:
    """Toeplitz weights checked like data (numbers, finite, host array) and broadcast to ``samples``:
    a complex128 array of shape ``samples``."""
    if _array.is_cupy(weights) or (_array.is_torch(weights) and weights.device.type != "cpu"):
        raise ValueError("Nufft.toeplitz: weights must be a numpy array or CPU tensor (the PSF is computed on "
                         "the host)")
    w = _array.to_numpy(weights) if _array.is_array(weights) else np.asarray(weights)
    if w.dtype.kind not in "biufc":
        raise TypeError(f"Nufft.toeplitz: weights must be real or complex numbers, got dtype {w.dtype}")
    if not np.isfinite(w).all():
        raise ValueError("Nufft.toeplitz: weights contain NaN or Inf")
    try:
        w = np.broadcast_to(w, samples)
    except ValueError:
        raise ValueError(f"Nufft.toeplitz: weights of shape {w.shape} do not broadcast to the samples "
                         f"{samples}") from None
    return w.astype(np.complex128)


class ToeplitzNormal(Operator):
    """``A^H W A`` of a :class:`Nufft` ``A`` through its point-spread function on a 2N grid:
    zero-pad to 2N, FFT, multiply by the PSF's FFT, inverse FFT, crop. Self-adjoint for real W."""

    def __init__(self, nufft: Nufft, weights=None):
        super().__init__(nufft.ishape, nufft.ishape, nufft.dtype)
        self.nufft = nufft
        N = nufft.im_shape
        d = len(N)
        big = tuple(2 * n for n in N)
        F = len(nufft._plans)
        o = nufft.frame_offsets
        # weights of all samples, flat in frame order (equal-size frames: (F, M) flattened)
        w = (np.ones(int(o[-1]), dtype=np.complex128) if weights is None
             else _toeplitz_weights(weights, nufft.oshape).reshape(-1))
        self.real_weights = bool(np.all(np.imag(w) == 0))
        core = _core()
        psf_tol = max(min(nufft.tol, 1e-6) * 0.1, 1e-12)
        kernel_dtype = np.float32 if nufft.dtype == np.complex64 and self.real_weights else \
            (np.float64 if self.real_weights else nufft.dtype)
        est = core.NufftPlan128.memory_estimate(max(nufft.frame_sizes), list(big), psf_tol, 2.0, nufft.nthreads)
        cells = float(math.prod(big))
        check_memory(est["plan"] + est["grid"] + 2 * 16 * cells + F * cells * np.dtype(kernel_dtype).itemsize,
                     f"Nufft.toeplitz: the kernels of {F} frame(s) on the 2N grid {big}", nufft.max_memory)
        kernels = []
        for f in range(F):
            # PSF psf(r) = sum_j w_j exp(+2 pi i k_j r / N) for r in [-N, N): a type-1 NUFFT on the 2N grid
            # with coordinates 2k (cycles per 2N-FOV); the plan's 1/sqrt(prod 2N) is undone below.
            plan = core.NufftPlan128(np.ascontiguousarray(2.0 * nufft._coord[f]), list(big), psf_tol, 2.0,
                                     nufft.nthreads)
            psf = np.empty(big, dtype=np.complex128)
            plan.adjoint(np.ascontiguousarray(w[int(o[f]):int(o[f + 1])]), psf)
            psf *= math.sqrt(float(np.prod(big))) / float(np.prod(N))
            import scipy.fft

            K = scipy.fft.fftn(np.fft.ifftshift(psf), workers=nufft.nthreads)
            K = K.real if self.real_weights else K
            kernels.append(K.astype(kernel_dtype))
        self.kernels = kernels
        self._torch_kernels = {}
        self._d = d
        self._big = big

    def check_input(self, x):
        self.nufft.check_input(x)

    check_output = check_input

    def _pad_slices(self):
        return tuple(slice(n - n // 2, n - n // 2 + n) for n in self.nufft.im_shape)

    def _apply(self, x, K):
        d = self._d
        axes = tuple(range(-d, 0))
        lead = x.shape[: x.ndim - d]
        sl = (Ellipsis,) + self._pad_slices()
        if _array.is_torch(x):
            import torch

            key = (id(K), x.device.type, x.device.index)
            if key not in self._torch_kernels:
                self._torch_kernels[key] = torch.as_tensor(K).to(x.device)
            Kt = self._torch_kernels[key]
            pad = torch.zeros(tuple(lead) + self._big, dtype=x.dtype, device=x.device)
            pad[sl] = x
            z = torch.fft.ifftn(torch.fft.fftn(torch.fft.ifftshift(pad, dim=axes), dim=axes) * Kt, dim=axes)
            return torch.fft.fftshift(z, dim=axes)[sl].contiguous()
        return _circular_convolve_pruned(x, K, self.nufft.im_shape, self.nufft.nthreads)

    def _forward(self, x):
        batch = math.prod(x.shape[: x.ndim - self._d])
        check_memory(3.0 * batch * math.prod(self._big) * self.dtype.itemsize,  # padded grid, its FFT, output
                     lambda: f"Nufft.normal of {batch} images", self.nufft.max_memory)
        if batch == 0:  # nothing to transform (torch's FFT refuses empty batches)
            return _array.xp_of(x).zeros_like(x)
        scale = 1.0
        if self.nufft.check_finite:
            scale = input_scale(x, self.dtype, "Nufft.normal")
            if scale != 1.0:
                x = x * scale  # a scaled copy (numpy or torch): the input is never written
        out = self._convolve(x)
        return out if scale == 1.0 else undo_input_scale(out, scale, self.dtype, "Nufft.normal")

    def _convolve(self, x):
        if len(self.kernels) == 1 and not self.nufft.ragged:
            return self._apply(x, self.kernels[0])
        out = _array.xp_of(x).empty_like(x)
        core = self.nufft.ishape if self.nufft.ragged else self.nufft.im_shape
        for f, src, dst, _ in self.nufft._frame_jobs(x.shape[: x.ndim - len(core)], "normal"):
            out[dst] = self._apply(x[src], self.kernels[f])
        return out

    def _adjoint(self, y):
        if self.real_weights:
            return self._forward(y)
        raise NotImplementedError("adjoint of a Toeplitz normal operator with complex weights")


def _circular_convolve_pruned(x: np.ndarray, K: np.ndarray, im_shape, workers: int) -> np.ndarray:
    """``crop(ifft(fft(pad(x)) * K))`` on the 2N grid (numpy): the Toeplitz normal's convolution.

    Circular convolution commutes with circular shifts, so the centring shifts cancel and ``x`` can
    sit in the first ``N`` entries of each axis; the FFT along the last axis then runs only over the
    rows holding data (forward) and only over the rows kept (inverse): 3/4 of the work of a full
    2N-grid FFT pair in 2D, and no shift copies.
    """
    import scipy.fft

    d = len(im_shape)
    big = tuple(2 * n for n in im_shape)
    lead = x.shape[: x.ndim - d]
    nl = len(lead)
    pad = np.zeros(lead + big, dtype=x.dtype)
    pad[(Ellipsis,) + tuple(slice(0, n) for n in im_shape)] = x
    keep = (slice(None),) * nl + tuple(slice(0, n) for n in im_shape[:-1])
    pad[keep] = scipy.fft.fft(pad[keep], axis=-1, workers=workers)
    if d > 1:
        pad = scipy.fft.fftn(pad, axes=tuple(range(nl, nl + d - 1)), workers=workers, overwrite_x=True)
    pad *= K
    if d > 1:
        pad = scipy.fft.ifftn(pad, axes=tuple(range(nl, nl + d - 1)), workers=workers, overwrite_x=True)
    out = scipy.fft.ifft(pad[keep], axis=-1, workers=workers, overwrite_x=True)
    return np.ascontiguousarray(out[..., : im_shape[-1]]).astype(x.dtype, copy=False)
