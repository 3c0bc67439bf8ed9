"""The one backend home of the native operators (Nufft, Projector, and what builds on them).

- where an array lives: :func:`on_gpu`, :func:`device_key`;
- whether the CUDA module can run (:func:`cuda_available`, checked once and cached);
- the GPU gate every native operator passes before dispatching (:func:`require_cuda`);
- the kernels' thread count (:func:`default_threads`, :func:`check_threads`, capped at :func:`max_threads`);
- a small LRU cache of plans (:data:`plan_cache`), so that operators built per call from per-batch
  parameters (a trajectory inside a network's forward) reuse plans built before.

Nothing here imports torch or cupy unless the caller's arrays already come from them.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import numbers
import os
import threading
import warnings

import numpy as np

from .. import _array


def on_gpu(x) -> bool:
    """True for a cupy array or a CUDA torch tensor."""
    return _array.is_cupy(x) or (_array.is_torch(x) and x.device.type == "cuda")


def device_key(x) -> tuple:
    """A hashable name of the device holding ``x``: ``("cpu",)`` or ``("cuda", index)``."""
    if _array.is_torch(x):
        return (x.device.type, x.device.index) if x.device.type != "cpu" else ("cpu",)
    if _array.is_cupy(x):
        return ("cuda", int(x.device.id))
    return ("cpu",)


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when the optional module ``recon._cuda`` imports and sees a CUDA device (checked once)."""
    try:
        from .. import _cuda
    except ImportError:
        return False
    try:
        return bool(_cuda.device_count() > 0)
    except Exception:  # noqa: BLE001 - a broken driver counts as unavailable
        return False


def require_cuda(what: str):
    """Raise a clear ValueError when a GPU array reached ``what`` but the CUDA path cannot run."""
    if not cuda_available():
        raise ValueError(f"{what}: got a GPU array, but the CUDA module recon._cuda is not built or no CUDA "
                         "device is visible; pass a numpy array or a CPU torch tensor")


def check_device(x, what: str):
    """CPU or CUDA arrays only; GPU arrays only when the CUDA module can run."""
    if _array.is_torch(x) and x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{what}: expected a CPU or CUDA tensor, got device {x.device}")
    if on_gpu(x):
        require_cuda(what)


def max_threads() -> int:
    """Most kernel threads an operator accepts: 4 per core (``recon._core.max_threads``, the one home
    of the cap; the C++ entry points refuse more themselves). More only oversubscribes the cores, and
    OpenMP aborts or crashes when asked for tens of thousands of threads."""
    from .. import _core

    return int(_core.max_threads())


def check_threads(nthreads, what: str) -> int:
    """An explicit thread count as an int: a positive integer (numpy integers too) at most
    :func:`max_threads`; ValueError naming ``what`` otherwise."""
    cap = max_threads()
    if isinstance(nthreads, bool) or not isinstance(nthreads, numbers.Integral) or not 1 <= nthreads <= cap:
        raise ValueError(f"{what}: nthreads must be a positive integer at most {cap} (4 per core) or None, "
                         f"got {nthreads!r}")
    return int(nthreads)


def default_threads() -> int:
    """Threads used by the kernels: RECON_NUM_THREADS, else OMP_NUM_THREADS, else all cores.

    A value above :func:`max_threads` is clamped to it with a RuntimeWarning (an environment variable
    is set once for many programs, so it does not make every operator fail); a RECON_NUM_THREADS that
    is not a positive integer is ignored with a warning."""
    for var in ("RECON_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if not v:
            continue
        if not (v.isdigit() and int(v) > 0):
            if var == "RECON_NUM_THREADS":
                warnings.warn(f"RECON_NUM_THREADS={v!r} is not a positive integer; ignored", RuntimeWarning,
                              stacklevel=2)
            continue  # OMP_NUM_THREADS may be a list ("4,2") for nested regions: not ours to read
        n, cap = int(v), max_threads()
        if n > cap:
            warnings.warn(f"{var}={n} exceeds the cap of {cap} threads (4 per core); using {cap}",
                          RuntimeWarning, stacklevel=2)
            return cap
        return n
    return os.cpu_count() or 1


# ---- plan cache -------------------------------------------------------------------------------------

def array_digest(a) -> str:
    """A content hash of a host array (dtype, shape and bytes): part of a plan-cache key."""
    a = np.ascontiguousarray(_array.to_numpy(a))
    h = hashlib.blake2b(digest_size=16)
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


class PlanCache:
    """A thread-safe least-recently-used cache ``key -> plan`` holding at most ``max_entries`` plans.

    ``get(key, build)`` returns the cached plan or calls ``build()`` once and keeps the result. Set
    ``RECON_PLAN_CACHE=0`` to disable caching (every call builds)."""

    def __init__(self, max_entries: int = 32):
        self.max_entries = int(max_entries)
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key, build):
        if os.environ.get("RECON_PLAN_CACHE", "1") == "0" or self.max_entries <= 0:
            return build()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        plan = build()
        with self._lock:
            self.misses += 1
            self._items[key] = plan
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return plan

    def clear(self):
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self):
        return len(self._items)


#: The process-wide plan cache used by the native operators.
plan_cache = PlanCache()


# ---- operator parameters (coil maps, masks, weights) in the backend of the input -------------------

def param_like(p, ref, cache: dict | None = None):
    """An operator parameter ``p`` (numpy array or torch tensor) in the backend and on the device of
    the input ``ref``.

    - torch ``ref``: a torch tensor on ``ref.device``. A torch ``p`` is used as it is (moved with
      ``.to``, which keeps its gradient); a numpy ``p`` is converted once per device and kept in
      ``cache`` (a dict owned by the operator).
    - numpy ``ref``: a numpy array (a torch ``p`` is detached and copied to the host: numpy inputs
      carry no gradients).
    - cupy ``ref``: ``cupy.asarray(p)``.
    """
    if _array.is_torch(ref):
        if _array.is_torch(p):
            return p if p.device == ref.device else p.to(ref.device)
        key = (id(p), ref.device.type, ref.device.index)
        if cache is not None and key in cache:
            return cache[key][1]
        import torch

        t = torch.as_tensor(np.asarray(p)).to(ref.device)
        if cache is not None:
            cache[key] = (p, t)  # keeps p alive so its id stays valid
        return t
    if _array.is_cupy(ref):
        import cupy

        return cupy.asarray(_array.to_numpy(p) if _array.is_torch(p) and not p.is_cuda else p)
    if _array.is_torch(p):
        return p.detach().cpu().resolve_conj().numpy()
    return p
