"""GPU execution of :class:`recon.ops.Nufft` on ``recon._cuda`` (cupy arrays and CUDA torch tensors).

``Nufft._run`` calls :func:`run_on_gpu` for GPU inputs. The pipeline mirrors the CPU plan
(``csrc/nufft/nufft.cpp``) step for step, on the caller's device and current stream:

* forward (type 2): ``pad`` (deconvolve, scale by 1/sqrt(prod N), zero-pad at centred positions)
  -> unnormalised forward FFT of the fine grid (exponent sign -1) -> ``interpolate``;
* adjoint (type 1): ``spread`` -> unnormalised inverse FFT (sign +1, no 1/n) -> ``crop`` (and deconvolve).

The four steps are CUDA kernels of ``recon._cuda``; the FFT is done by the caller's library
(``cupy.fft`` for cupy arrays, ``torch.fft`` for torch tensors) because the module links no cuFFT.
The device plan (sorted samples, bins, sub-problems) is built from the CPU plan's numbers (Horner
coefficients, deconvolution factors, fine-grid shape, scale), so CPU and GPU use the same weights,
and is cached on the Nufft object per device. Batches (coils) run in one launch per step, in chunks
whose fine grids fit in :data:`settings` ``["grid_bytes"]``.

:func:`run_host_emulation` runs the same orchestration on numpy arrays with
``recon._cuda.HostNufftPlan*`` (the kernels' per-element code in host loops): the tests use it to
check the pipeline on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np

from .. import _array
from .nufft import input_scale, undo_input_scale

#: Tunables (change through :func:`using`). spread_method: "auto" (shared-memory tiles when they
#: fit, else global atomics), "sm" or "gm"; bin_shape: None (automatic) or one bin edge per axis;
#: max_subproblem: samples per shared-memory sub-problem; grid_bytes: fine-grid memory per chunk of
#: batch items.
settings = {"spread_method": "auto", "bin_shape": None, "max_subproblem": 1024, "grid_bytes": 1 << 31}

_lock = threading.Lock()


@contextlib.contextmanager
def using(**kw):
    """Temporarily change :data:`settings` (plans built meanwhile are cached under these settings)."""
    unknown = set(kw) - set(settings)
    if unknown:
        raise ValueError(f"nufft_cuda.using: unknown settings {sorted(unknown)}; known: {sorted(settings)}")
    old = dict(settings)
    settings.update(kw)
    try:
        yield
    finally:
        settings.clear()
        settings.update(old)


def _cuda():
    from .. import _cuda as mod

    return mod


# ---- backends: how to allocate, address, FFT and synchronise arrays of one library ---------------

class _Backend:
    kind = "?"

    def device(self, a) -> int:
        raise NotImplementedError

    def prepare(self, a):
        """A C-contiguous array holding the values of ``a`` (resolving lazy views)."""
        raise NotImplementedError

    def all_finite(self, a) -> bool:
        raise NotImplementedError

    def empty(self, shape, dtype, device):
        raise NotImplementedError

    def handle(self, flat, b0: int, nb: int):
        """Address of rows ``b0 .. b0+nb`` of a C-contiguous 2D array ``flat`` (batch, unit)."""
        raise NotImplementedError

    def fftn(self, grid, axes):
        """Unnormalised forward FFT (exponent sign -1)."""
        raise NotImplementedError

    def ifftn_unnormalised(self, grid, axes):
        """Unnormalised inverse FFT (exponent sign +1, no 1/n)."""
        raise NotImplementedError

    def device_context(self, device):
        return contextlib.nullcontext()

    def stream(self, device) -> int:
        return 0


class _CupyBackend(_Backend):
    kind = "cupy"

    def __init__(self):
        import cupy

        self.cp = cupy

    def device(self, a):
        return int(a.device.id)

    def prepare(self, a):
        return self.cp.ascontiguousarray(a)

    def all_finite(self, a):
        return bool(self.cp.isfinite(a).all())

    def empty(self, shape, dtype, device):
        return self.cp.empty(shape, dtype=dtype)

    def handle(self, flat, b0, nb):
        return int(flat.data.ptr) + b0 * flat.shape[1] * flat.itemsize

    def fftn(self, grid, axes):
        return self.cp.ascontiguousarray(self.cp.fft.fftn(grid, axes=axes))

    def ifftn_unnormalised(self, grid, axes):
        return self.cp.ascontiguousarray(self.cp.fft.ifftn(grid, axes=axes, norm="forward"))

    def device_context(self, device):
        return self.cp.cuda.Device(device)

    def stream(self, device):
        return int(self.cp.cuda.get_current_stream().ptr)


class _TorchBackend(_Backend):
    kind = "torch"

    def __init__(self):
        import torch

        self.torch = torch

    def device(self, a):
        return int(a.device.index if a.device.index is not None else self.torch.cuda.current_device())

    def prepare(self, a):
        a = a.detach()
        if a.is_conj():
            a = a.resolve_conj()
        if a.is_neg():
            a = a.resolve_neg()
        return a.contiguous()

    def all_finite(self, a):
        return bool(self.torch.isfinite(a).all())

    def empty(self, shape, dtype, device):
        return self.torch.empty(tuple(shape), dtype=getattr(self.torch, np.dtype(dtype).name),
                                device=self.torch.device("cuda", device))

    def handle(self, flat, b0, nb):
        return int(flat.data_ptr()) + b0 * flat.shape[1] * flat.element_size()

    def fftn(self, grid, axes):
        return self.torch.fft.fftn(grid, dim=axes).contiguous()

    def ifftn_unnormalised(self, grid, axes):
        return self.torch.fft.ifftn(grid, dim=axes, norm="forward").contiguous()

    def device_context(self, device):
        return self.torch.cuda.device(device)

    def stream(self, device):
        return int(self.torch.cuda.current_stream(device).cuda_stream)


class _HostBackend(_Backend):
    """numpy arrays and HostNufftPlan: the emulation used by tests without a GPU."""

    kind = "host"

    def device(self, a):
        return -1

    def prepare(self, a):
        return np.ascontiguousarray(a)

    def all_finite(self, a):
        return bool(np.isfinite(a).all())

    def empty(self, shape, dtype, device):
        return np.empty(shape, dtype=dtype)

    def handle(self, flat, b0, nb):
        return flat[b0:b0 + nb]

    def fftn(self, grid, axes):
        import scipy.fft

        return np.ascontiguousarray(scipy.fft.fftn(grid, axes=axes))

    def ifftn_unnormalised(self, grid, axes):
        import scipy.fft

        return np.ascontiguousarray(scipy.fft.ifftn(grid, axes=axes, norm="forward"))


def _backend_of(a) -> _Backend:
    if _array.is_cupy(a):
        return _CupyBackend()
    if _array.is_torch(a) and a.device.type == "cuda":
        return _TorchBackend()
    raise TypeError(f"nufft_cuda: expected a cupy array or a CUDA torch tensor, got {_array.backend_name(a)}")


# ---- plans -------------------------------------------------------------------------------------------

class _HostPlanAdapter:
    """HostNufftPlan with the device plan's calling convention (handles are numpy views)."""

    def __init__(self, plan):
        self.plan = plan

    def pad(self, x, grid, batch, stream):
        self.plan.pad(x, grid)

    def interpolate(self, grid, y, batch, stream):
        self.plan.interpolate(grid, y)

    def spread(self, y, grid, batch, stream):
        self.plan.spread(y, grid)

    def crop(self, grid, x, batch, stream):
        self.plan.crop(grid, x)

    def __getattr__(self, name):
        return getattr(self.plan, name)


def plan_arguments(op, frame: int) -> dict:
    """Arguments of recon._cuda.NufftPlan* for one frame of a Nufft, from its CPU plan."""
    cpu = op._plans[frame]
    d = len(op.im_shape)
    return dict(
        coord=np.ascontiguousarray(op._coord[frame], dtype=np.float64),
        image_shape=list(op.im_shape),
        grid_shape=[int(n) for n in cpu.grid_shape],
        width=int(cpu.width),
        horner=np.ascontiguousarray(cpu.horner, dtype=np.float64),
        deconv=[np.ascontiguousarray(cpu.deconvolution(a), dtype=np.float64) for a in range(d)],
        scale=float(cpu.scale),
        spread_method=str(settings["spread_method"]),
        bin_shape=[int(b) for b in settings["bin_shape"]] if settings["bin_shape"] else [],
        max_subproblem=int(settings["max_subproblem"]),
    )


def device_plans(op, backend: _Backend, device: int, stream: int = 0):
    """The cached device plans (one per frame) of a Nufft on ``device`` under the current settings."""
    key = (backend.kind, device, settings["spread_method"],
           tuple(settings["bin_shape"]) if settings["bin_shape"] else None, settings["max_subproblem"])
    with _lock:
        cache = op.__dict__.setdefault("_cuda_plans", {})
        plans = cache.get(key)
        if plans is not None:
            return plans
        mod = _cuda()
        suffix = "64" if op.dtype == np.complex64 else "128"
        plans = []
        for f in range(len(op._plans)):
            args = plan_arguments(op, f)
            if backend.kind == "host":
                plans.append(_HostPlanAdapter(getattr(mod, "HostNufftPlan" + suffix)(**args)))
            else:
                plans.append(getattr(mod, "NufftPlan" + suffix)(device=device, stream=stream, **args))
        cache[key] = plans
        return plans


# ---- execution ---------------------------------------------------------------------------------------

def _execute(plan, backend, src, dst, batch, method, grid_shape, dtype, device, stream):
    """One frame: ``batch`` items of ``src`` (C-contiguous) into ``dst`` (C-contiguous)."""
    if batch == 0:
        return
    axes = tuple(range(1, len(grid_shape) + 1))
    ngrid = math.prod(grid_shape)
    src_flat = src.reshape(batch, math.prod(src.shape) // batch)  # explicit: a frame may hold no samples
    dst_flat = dst.reshape(batch, math.prod(dst.shape) // batch)
    itemsize = np.dtype(dtype).itemsize
    chunk = max(1, min(batch, int(settings["grid_bytes"]) // max(1, ngrid * itemsize)))
    for b0 in range(0, batch, chunk):
        nb = min(chunk, batch - b0)
        grid = backend.empty((nb,) + tuple(grid_shape), dtype, device)
        if method == "forward":
            plan.pad(backend.handle(src_flat, b0, nb), backend.handle(grid.reshape(nb, ngrid), 0, nb), nb, stream)
            grid = backend.fftn(grid, axes)
            plan.interpolate(backend.handle(grid.reshape(nb, ngrid), 0, nb), backend.handle(dst_flat, b0, nb), nb,
                             stream)
        else:
            plan.spread(backend.handle(src_flat, b0, nb), backend.handle(grid.reshape(nb, ngrid), 0, nb), nb, stream)
            grid = backend.ifftn_unnormalised(grid, axes)
            plan.crop(backend.handle(grid.reshape(nb, ngrid), 0, nb), backend.handle(dst_flat, b0, nb), nb, stream)


def _run(op, a, method, backend):
    if method not in ("forward", "adjoint"):
        raise ValueError(f"nufft_cuda: method must be 'forward' or 'adjoint', got {method!r}")
    dt = _array.dtype_name(a)
    if dt != op.dtype.name:
        raise TypeError(f"Nufft: expected dtype {op.dtype.name}, got {dt}")
    core_in, core_out = op._cores(method)
    k = len(core_in)
    if a.ndim < k or tuple(a.shape[a.ndim - k:]) != core_in:
        raise ValueError(f"Nufft: expected shape (..., {', '.join(map(str, core_in))}), got {tuple(a.shape)}")
    device = backend.device(a)
    with backend.device_context(device) if device >= 0 else contextlib.nullcontext():
        a = backend.prepare(a)
        scale = 1.0
        if op.check_finite:  # NaN/Inf rejected, extreme magnitudes rescaled: as on the CPU
            scale = input_scale(a, op.dtype, f"Nufft.{method}")
            if scale != 1.0:
                a = a * scale
        stream = backend.stream(device) if device >= 0 else 0
        plans = device_plans(op, backend, device, stream)
        lead = tuple(a.shape[: a.ndim - k])
        out = backend.empty(lead + core_out, op.dtype, device)
        grid_shape = tuple(int(n) for n in op._plans[0].grid_shape)
        # one frame at a time, like the CPU path (Nufft._frame_jobs: equal-size frames index leading axes,
        # ragged frames pick an image along the frame axis and a segment of the samples)
        for f, si, di, batch in op._frame_jobs(lead, method):
            whole = si == di == (Ellipsis,)
            src = a if whole else backend.prepare(a[si])
            dst = out if whole else backend.empty(tuple(out[di].shape), op.dtype, device)
            _execute(plans[f], backend, src, dst, batch, method, grid_shape, op.dtype, device, stream)
            if not whole:
                out[di] = dst
        return out if scale == 1.0 else undo_input_scale(out, scale, op.dtype, f"Nufft.{method}")


def run_on_gpu(nufft_op, array, method):
    """Apply ``nufft_op`` (forward or adjoint) to a cupy array or CUDA torch tensor on its device.

    Called by ``Nufft._run``; returns an array of the same library on the same device, computed on
    the library's current stream (asynchronous, like any cupy/torch operation).
    """
    backend = _backend_of(array)
    mod = _cuda()
    if mod.device_count() == 0:
        raise ValueError("Nufft: got a GPU array, but recon._cuda sees no CUDA device")
    return _run(nufft_op, array, method, backend)


def run_host_emulation(nufft_op, array, method: str):
    """Forward or adjoint of ``nufft_op`` on a numpy array through the GPU pipeline, with the CUDA
    kernels replaced by their host emulation (recon._cuda.HostNufftPlan*). For tests."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"run_host_emulation: expected a numpy array, got {type(array).__name__}")
    return _run(nufft_op, array, method, _HostBackend())


def is_available() -> bool:
    """True when recon._cuda imports and sees at least one device."""
    try:
        return _cuda().device_count() > 0
    except ImportError:
        return False
    except Exception:  # noqa: BLE001 - a broken driver counts as unavailable
        return False


__all__ = ["run_on_gpu", "run_host_emulation", "device_plans", "plan_arguments", "settings", "using",
           "is_available"]
