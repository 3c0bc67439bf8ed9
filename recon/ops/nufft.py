"""Non-uniform FFT operator (type 2 forward, type 1 adjoint) on the C++ kernels of ``recon._core``.

Convention: see :mod:`recon.conventions` (cycles per FOV, centred positions, 1/sqrt(prod N) scaling,
identical to ``sigpy.nufft``/``sigpy.nufft_adjoint``).
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Sequence

import numpy as np

from .. import _array
from .backend import check_device, check_threads, default_threads, on_gpu
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
_SAFE_EXPONENT = {"complex64": 40, "complex128": 400}


def input_scale(a, dtype, what: str) -> float:
    """The power of two by which the NUFFT scales the input ``a`` (1.0 for ordinary magnitudes).

    One pass over ``a`` (:func:`recon._array.max_abs`) that also rejects NaN/Inf with a ValueError
    naming ``what``. Outside the safe range (:data:`_SAFE_EXPONENT`) the scale brings the largest
    magnitude into [0.5, 1); powers of two keep the scaling exact."""
    m = _array.max_abs(a)
    if not math.isfinite(m):
        raise ValueError(f"{what}: input contains NaN or Inf")
    e = _SAFE_EXPONENT[np.dtype(dtype).name]
    if m == 0.0 or 2.0**-e <= m <= 2.0**e:
        return 1.0
    return math.ldexp(1.0, -math.frexp(m)[1])


def undo_input_scale(out, scale: float, dtype, what: str):
    """``out / scale`` (in place where possible); ValueError when the true result exceeds ``dtype``."""
    with np.errstate(over="ignore"):  # reported below, as an error
        out = out * (1.0 / scale) if _array.is_torch(out) else np.multiply(out, 1.0 / scale, out=out)
    if not math.isfinite(_array.max_abs(out)):
        raise ValueError(f"{what}: the result exceeds the range of {np.dtype(dtype).name} (the input's largest "
                         f"magnitude is about {1.0 / scale:.3g}); use complex128 or scale the data")
    return out


# ---- memory: estimate before allocating, refuse what does not fit ---------------------------------------

#: Allocations below this size are not checked against the system (reading it costs a few microseconds).
_SMALL_ALLOCATION = 64 << 20
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _parse_bytes(text: str) -> float:
    """'8G', '512M', '1.5e9', '4096' (binary units, an optional 'B'/'iB') as bytes."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        v = float(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        v = float("nan")
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"RECON_MAX_MEMORY={text!r} is not a positive size (e.g. 8G, 512M, 1e9)")
    return v


def _read_number(path: str, key: str | None = None) -> float | None:
    """A number from a /proc or /sys file (the value after ``key:``, in kB for /proc; or the whole
    file); None when absent or unlimited."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    if key is None:
        return None if text.strip() in ("", "max") else float(text)
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1]) * 1024
    return None


def memory_limit(max_memory=None) -> tuple[float, str]:
    """``(bytes, where from)``: what a native operator may allocate now, the smallest of

    * ``max_memory`` (an operator's keyword, bytes) and the environment variable ``RECON_MAX_MEMORY``
      (bytes, or with a binary unit: ``8G``, ``512M``);
    * the memory the system has available (MemAvailable of /proc/meminfo, else sysconf);
    * what is left under a cgroup memory limit (containers) and under RLIMIT_AS (``ulimit -v``).
    """
    limits = []
    if max_memory is not None:
        limits.append((float(max_memory), "max_memory"))
    env = os.environ.get("RECON_MAX_MEMORY", "").strip()
    if env:
        limits.append((_parse_bytes(env), "RECON_MAX_MEMORY"))
    avail = _read_number("/proc/meminfo", "MemAvailable")
    if avail is None:
        try:
            avail = float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            avail = None
    if avail is not None:
        limits.append((avail, "available memory"))
    cg_max, cg_now = _read_number("/sys/fs/cgroup/memory.max"), _read_number("/sys/fs/cgroup/memory.current")
    if cg_max is not None and cg_now is not None:
        limits.append((max(cg_max - cg_now, 0.0), "cgroup memory.max"))
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append((max(soft - (_read_number("/proc/self/status", "VmSize") or 0.0), 0.0), "RLIMIT_AS"))
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else (math.inf, "no limit known")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_memory(need: float, what: str, max_memory=None):
    """ValueError when ``need`` bytes (about to be allocated by ``what``) exceed :func:`memory_limit`.
    Small needs are not checked against the system unless a limit is set explicitly."""
    if need <= _SMALL_ALLOCATION and max_memory is None and not os.environ.get("RECON_MAX_MEMORY"):
        return
    limit, source = memory_limit(max_memory)
    if need > limit:
        raise ValueError(f"{what} needs about {_fmt_bytes(need)}, more than the {_fmt_bytes(limit)} allowed "
                         f"({source}); use a smaller image, fewer samples or batches, or raise max_memory / "
                         "RECON_MAX_MEMORY if the memory is really there")


class Nufft(Operator):
    """NUFFT ``y = A x``: image ``(..., *im_shape)`` -> samples ``(..., *sample_shape)``.

    Parameters
    ----------
    coord : array ``(*frame_shape, *sample_shape, d)``
        k-space coordinates in cycles per FOV, each axis in ``[-N_a/2, N_a/2]``; last axis ordered
        like the image axes. The first ``frame_ndim`` axes index frames, each with its own
        trajectory (dynamic data); size-1 frame axes broadcast (e.g. ``(T, 1, M, d)`` against images
        ``(T, C, Ny, Nx)``: one trajectory per frame, shared by the coils).
    im_shape : image shape (2 or 3 entries).
    tol : requested relative accuracy (1e-2 .. 1e-6 in complex64, down to ~1e-12 in complex128),
        met on any trajectory: the kernel width is the narrowest whose estimated aliasing error is
        below ``tol``.
    dtype : complex64 or complex128.
    upsampfac : fine-grid oversampling (any in [1.2, 3]); None picks the cheapest of 1.25, 1.5, 1.75
        and 2.0 that meets ``tol`` (see :func:`choose_upsampfac`).
    nthreads : kernel threads, at most :func:`~recon.ops.backend.max_threads` (4 per core); default
        :func:`~recon.ops.backend.default_threads`.
    check_finite : one cheap pass over each input that raises ValueError on NaN/Inf and rescales inputs
        of extreme magnitude by a power of two (see :func:`input_scale`; complex64 handles data from
        ~1e-38 to ~1e38 without internal overflow or underflow). False skips both.

    Leading axes of the input beyond ``ishape`` are batch axes (coils, ...) sharing the plan.
    """

    def __init__(self, coord, im_shape: Sequence[int], tol: float = 1e-6, *, dtype="complex64",
                 upsampfac: float | None = None, frame_ndim: int = 0, nthreads: int | None = None,
                 check_finite: bool = True, max_memory: float | None = None):
        dtype = _complex_dtype(dtype)
        im_shape = _image_shape(im_shape)
        d = len(im_shape)
        if _array.is_torch(coord) and coord.device.type != "cpu":
            raise ValueError(f"Nufft: expected a CPU coord (numpy array or CPU tensor), got a tensor on {coord.device}; "
                             "plans are built on the host")
        if _array.is_cupy(coord):
            raise ValueError("Nufft: expected a CPU coord (numpy array or CPU tensor), got a cupy array; "
                             "plans are built on the host")
        if not _array.is_array(coord):
            coord = np.asarray(coord)
        if _array.dtype_name(coord) not in ("float32", "float64"):
            raise TypeError(f"Nufft: coord must be float32 or float64, got {_array.dtype_name(coord)}")
        coord = np.asarray(_array.to_numpy(coord), dtype=np.float64)
        if coord.ndim < 2 or coord.shape[-1] != d:
            raise ValueError(f"Nufft: coord must have shape (..., M, {d}) for a {d}D image, got {coord.shape}")
        frame_ndim = _integer(frame_ndim, "frame_ndim")
        if not 0 <= frame_ndim <= coord.ndim - 2:
            raise ValueError(f"Nufft: frame_ndim must lie in [0, {coord.ndim - 2}], got {frame_ndim}")
        if not np.isfinite(coord).all():
            raise ValueError("Nufft: coord contains NaN or Inf")
        half = np.asarray(im_shape, dtype=np.float64) / 2
        if (np.abs(coord) > half).any():
            bad = np.abs(coord).reshape(-1, d).max(0)
            raise ValueError(f"Nufft: coordinates must lie in [-N/2, N/2] cycles/FOV per axis "
                             f"(N/2 = {half.tolist()}); got max |k| = {bad.tolist()}. "
                             "Scale a trajectory given in cycles/sample by the matrix size.")
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

        self.frame_shape = tuple(coord.shape[:frame_ndim])
        self.sample_shape = tuple(coord.shape[frame_ndim:-1])
        self.im_shape = im_shape
        self.tol = tol
        self.num_points = int(np.prod(self.sample_shape))
        self.nthreads = nthreads
        self.upsampfac = upsampfac if upsampfac is not None else choose_upsampfac(tol, im_shape, self.num_points,
                                                                                  dtype)
        self.check_finite = bool(check_finite)
        self.max_memory = max_memory
        super().__init__(self.frame_shape + im_shape, self.frame_shape + self.sample_shape, dtype)

        plan_cls = getattr(_core(), _PLAN_CLASSES[dtype.name])
        frames = coord.reshape((int(np.prod(self.frame_shape)), self.num_points, d))
        self._check_plan_memory(plan_cls, [self.num_points] * len(frames))
        self._coord = frames  # float64, (F, M, d)
        self._plans = [plan_cls(np.ascontiguousarray(c), list(im_shape), self.tol, self.upsampfac, self.nthreads)
                       for c in frames]
        self._toeplitz = {}

    def _check_plan_memory(self, plan_cls, frame_sizes):
        """Refuse (ValueError) plans for these frames whose memory (plans, building one, one fine grid,
        the float64 trajectory) exceeds :func:`memory_limit`, before anything is allocated."""
        est = [plan_cls.memory_estimate(m, list(self.im_shape), self.tol, self.upsampfac, self.nthreads)
               for m in frame_sizes]
        need = (sum(e["plan"] for e in est) + max(e["grid"] for e in est)
                + 8.0 * sum(frame_sizes) * len(self.im_shape))
        width = _core().es_kernel_params(self.tol, self.upsampfac)[0]
        grid = " x ".join(str(_core().fine_grid_size(n, self.upsampfac, width)) for n in self.im_shape)
        check_memory(need, f"Nufft: a plan for im_shape {self.im_shape} with {sum(frame_sizes)} samples "
                           f"(fine grid {grid})", self.max_memory)

    def _check_apply_memory(self, method: str, out_bytes: float, copy_bytes: float, batch: int):
        need = out_bytes + copy_bytes + max(p.execution_bytes(batch) for p in self._plans)
        check_memory(need, f"Nufft.{method} of {batch} transforms", self.max_memory)

    # ---- plan facts -------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self._plans[0].width

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self._plans[0].grid_shape)

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
        self._check_lead(x, self.im_shape, "forward")

    def check_output(self, y):
        self._check_lead(y, self.sample_shape, "adjoint")

    # ---- execution ---------------------------------------------------------------------------------
    def _frames(self, lead):
        """(plan, index) pairs: the index selects one frame's slab of the leading axes."""
        F = len(self.frame_shape)
        if F == 0:
            yield self._plans[0], (Ellipsis,)
            return
        off = len(lead) - F
        for fi, plan in zip(np.ndindex(self.frame_shape), self._plans):
            idx = [slice(None)] * len(lead)
            for j, f in enumerate(fi):
                if self.frame_shape[j] != 1:
                    idx[off + j] = f
            yield plan, tuple(idx)

    def _run(self, a, core_in, core_out, method: str):
        if on_gpu(a):  # cupy array or CUDA tensor: run on the caller's device and stream
            from .nufft_cuda import run_on_gpu

            return run_on_gpu(self, a, core_in, core_out, method)
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
        for plan, idx in self._frames(lead):
            src = np.ascontiguousarray(arr[idx])
            dst = out[idx]
            if dst.flags.c_contiguous:  # the kernel writes straight into the output
                getattr(plan, method)(src, dst)
            else:
                tmp = np.empty(dst.shape, dtype=self.dtype)
                getattr(plan, method)(src, tmp)
                out[idx] = tmp
        if scale != 1.0:
            out = undo_input_scale(out, scale, self.dtype, f"Nufft.{method}")
        return _array.like(out, a)

    def _forward(self, x):
        return self._run(x, self.im_shape, self.sample_shape, "forward")

    def _adjoint(self, y):
        return self._run(y, self.sample_shape, self.im_shape, "adjoint")

    # ---- normal operator by Toeplitz embedding -------------------------------------------------------
    def _normal(self, x):
        return self.toeplitz()._forward(x)

    def toeplitz(self, weights=None) -> "ToeplitzNormal":
        """``A^H diag(weights) A`` as an operator evaluated by Toeplitz embedding (FFTs on a 2N grid).

        ``weights`` (real or complex, shape broadcastable to ``(*frame_shape, *sample_shape)``) are
        typically density-compensation or noise weights; None means ones. The embedding kernel is
        computed once (one NUFFT on the 2N grid) and cached for ``weights=None``.
        """
        if weights is None:
            if None not in self._toeplitz:
                self._toeplitz[None] = ToeplitzNormal(self, None)
            return self._toeplitz[None]
        return ToeplitzNormal(self, weights)


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
        M = nufft.num_points
        if weights is None:
            w = np.ones((F, M), dtype=np.complex128)
        else:
            w = _toeplitz_weights(weights, nufft.frame_shape + nufft.sample_shape).reshape(F, M)
        self.real_weights = bool(np.all(np.imag(w) == 0))
        core = _core()
        psf_tol = max(min(nufft.tol, 1e-6) * 0.1, 1e-12)
        kernel_dtype = np.float32 if nufft.dtype == np.complex64 and self.real_weights else \
            (np.float64 if self.real_weights else nufft.dtype)
        est = core.NufftPlan128.memory_estimate(M, list(big), psf_tol, 2.0, nufft.nthreads)
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
            plan.adjoint(np.ascontiguousarray(w[f]), psf)
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
                     f"Nufft.normal of {batch} images", self.nufft.max_memory)
        scale = 1.0
        if self.nufft.check_finite:
            scale = input_scale(x, self.dtype, "Nufft.normal")
            if scale != 1.0:
                x = x * scale  # a scaled copy (numpy or torch): the input is never written
        out = self._convolve(x)
        return out if scale == 1.0 else undo_input_scale(out, scale, self.dtype, "Nufft.normal")

    def _convolve(self, x):
        if len(self.kernels) == 1:
            return self._apply(x, self.kernels[0])
        xp = _array.xp_of(x)
        out = xp.empty_like(x) if not _array.is_torch(x) else x.new_empty(x.shape)
        lead = x.shape[: x.ndim - self._d]
        for (plan, idx), K in zip(self.nufft._frames(lead), self.kernels):
            out[idx] = self._apply(x[idx], K)
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
