"""GPU execution of :class:`recon.ops.Projector` (Joseph model) on ``recon._cuda``.

Interface for ``Projector._run`` (owned by the CT code; not wired in by this module)::

    if _array.is_cupy(a) or (_array.is_torch(a) and a.device.type == "cuda"):
        from .projector_cuda import run_on_gpu
        return run_on_gpu(self, a, method)          # method: "forward" or "adjoint"

The kernels (cuda/joseph_cuda.cu) run the per-ray code of cuda/joseph_device.cuh over
csrc/kernels/joseph.h, the header of the CPU projector: forward one thread per detector bin
(gather along its sub-rays), adjoint one thread per sub-ray scattering ``w * step * y`` into the
image with atomics, so the adjoint is the exact transpose of the forward (up to the order of the
float additions). The device projector is cached on the Projector per device. Output: the same
library and device as the input, computed on the library's current stream.

:func:`run_host_emulation` runs the same per-ray code in host loops on numpy arrays (tests).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .. import _array
from .nufft_cuda import _backend_of

_lock = threading.Lock()


def _cuda():
    from .. import _cuda as mod

    return mod


def projector_arguments(op) -> dict:
    """Arguments of recon._cuda.JosephProjectorF32/F64 (and the host emulation) for a Projector:
    the vector form of its geometry, built by the CPU projector's own builder."""
    from .projector import kernel_arguments

    return kernel_arguments(op.geometry, op.subsample)


def _suffix(op):
    if op.dtype == np.float32:
        return "F32"
    if op.dtype == np.float64:
        return "F64"
    raise TypeError(f"Projector: dtype must be float32 or float64, got {op.dtype.name}")


def device_projector(op, device: int, stream: int = 0):
    """The cached recon._cuda Joseph projector of ``op`` on ``device``."""
    with _lock:
        cache = op.__dict__.setdefault("_cuda_projectors", {})
        if device not in cache:
            cls = getattr(_cuda(), "JosephProjector" + _suffix(op))
            cache[device] = cls(device=device, stream=stream, **projector_arguments(op))
        return cache[device]


def _check(op, a, method):
    if method not in ("forward", "adjoint"):
        raise ValueError(f"projector_cuda: method must be 'forward' or 'adjoint', got {method!r}")
    dt = _array.dtype_name(a)
    if dt != op.dtype.name:
        raise TypeError(f"Projector: expected dtype {op.dtype.name}, got {dt}")
    core_in, core_out = (op.ishape, op.oshape) if method == "forward" else (op.oshape, op.ishape)
    k = len(core_in)
    if a.ndim < k or tuple(a.shape[a.ndim - k:]) != tuple(core_in):
        raise ValueError(f"Projector.{method}: expected shape (..., {', '.join(map(str, core_in))}), got {tuple(a.shape)}")
    return tuple(core_in), tuple(core_out)


def run_on_gpu(op, array, method: str):
    """``op.forward`` / ``op.adjoint`` of a cupy array or CUDA torch tensor, on its device."""
    backend = _backend_of(array)
    if _cuda().device_count() == 0:
        raise ValueError("Projector: got a GPU array, but recon._cuda sees no CUDA device")
    core_in, core_out = _check(op, array, method)
    device = backend.device(array)
    with backend.device_context(device):
        a = backend.prepare(array)
        if op.check_finite and not backend.all_finite(a):
            raise ValueError(f"Projector.{method}: input contains NaN or Inf")
        stream = backend.stream(device)
        proj = device_projector(op, device, stream)
        lead = tuple(a.shape[: a.ndim - len(core_in)])
        batch = math.prod(lead)
        out = backend.empty(lead + core_out, op.dtype, device)
        if batch == 0:
            return out
        src = backend.handle(a.reshape(batch, -1), 0, batch)
        dst = backend.handle(out.reshape(batch, -1), 0, batch)
        getattr(proj, method)(src, dst, batch, stream)
        return out


def run_host_emulation(op, array, method: str):
    """The GPU projector's per-ray code in host loops on a numpy array (for tests)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"run_host_emulation: expected a numpy array, got {type(array).__name__}")
    core_in, core_out = _check(op, array, method)
    a = np.ascontiguousarray(array)
    proj = getattr(_cuda(), "HostJosephProjector" + _suffix(op))(**projector_arguments(op))
    lead = a.shape[: a.ndim - len(core_in)]
    out = np.empty(lead + core_out, dtype=op.dtype)
    if out.size:
        getattr(proj, method)(a, out)
    return out


__all__ = ["run_on_gpu", "run_host_emulation", "device_projector", "projector_arguments"]
