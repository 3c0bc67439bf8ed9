"""The one home of recon's memory limits: what an operation may allocate now, checked before it
allocates (a clear ValueError instead of a MemoryError deep inside, or the machine swapping).

:func:`memory_limit` is the smallest of an explicit ``max_memory`` (bytes), the environment variable
``RECON_MAX_MEMORY`` (``8G``, ``512M``, ``1e9``), the memory the system has available (MemAvailable),
what a cgroup limit leaves (containers) and what RLIMIT_AS (``ulimit -v``) leaves. Native operators
and CT helpers call :func:`check_memory`; readers use half of the limit for what one read may
allocate (``recon.io.limits``). A leaf module: it imports nothing from recon.
"""

from __future__ import annotations

import math
import os

#: Allocations below this size are not checked against the system (reading it costs a few microseconds).
_SMALL_ALLOCATION = 64 << 20
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> float:
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
        limits.append((parse_bytes(env), "RECON_MAX_MEMORY"))
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


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_memory(need: float, what, max_memory=None):
    """ValueError when ``need`` bytes (about to be allocated by ``what``: a string, or a function
    giving it, called only for the message) exceed :func:`memory_limit`. Small needs are not checked
    against the system unless a limit is set explicitly."""
    if need <= _SMALL_ALLOCATION and max_memory is None and "RECON_MAX_MEMORY" not in os.environ:
        return
    limit, source = memory_limit(max_memory)
    if need > limit:
        what = what() if callable(what) else what
        raise ValueError(f"{what} needs about {fmt_bytes(need)}, more than the {fmt_bytes(limit)} allowed "
                         f"({source}); use a smaller image, fewer samples or batches, or raise max_memory / "
                         "RECON_MAX_MEMORY if the memory is really there")
