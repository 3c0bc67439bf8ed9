"""How much memory a reader may allocate: the one home of the limit every reader checks.

A file declares its sizes (a dataset's shape, counters that span a k-space, sample counts); a
hostile or corrupt file can declare terabytes in a few bytes (compressed or sparse datasets). Each
reader computes what it would allocate *before* allocating and refuses more than
``max_read_bytes()``: ``RECON_MAX_READ_BYTES`` (bytes) when set, else half of the memory available
now (``MemAvailable`` of /proc/meminfo; the physical memory where that is unknown), and at most half
of the address space a ``ulimit -v`` (RLIMIT_AS) leaves the process. Readers take
``max_bytes=`` to set it per call (the tests use a small limit instead of allocating gigabytes).
"""

from __future__ import annotations

import os

ENV = "RECON_MAX_READ_BYTES"


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _address_space_left() -> int | None:
    """Bytes of address space RLIMIT_AS leaves this process (None when unlimited or unknown)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft < 0:
            return None
        used = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
        return max(int(soft) - used, 0)
    except (ImportError, OSError, ValueError, IndexError):
        return None


def max_read_bytes() -> int:
    """The default limit (bytes) on what one read may allocate (see the module docstring)."""
    v = os.environ.get(ENV)
    if v:
        try:
            n = int(float(v))
        except ValueError:
            raise ValueError(f"{ENV} must be a number of bytes, got {v!r}") from None
        if n <= 0:
            raise ValueError(f"{ENV} must be > 0, got {v!r}")
        return n
    left = _address_space_left()
    avail = _available_bytes()
    return (avail if left is None else min(avail, left)) // 2


def _fmt(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def check_read_size(nbytes, what: str, *, max_bytes: int | None = None, error=ValueError) -> None:
    """Raise ``error`` (one line naming ``what`` and both sizes) when ``nbytes`` exceeds the limit.

    ``nbytes`` may be a Python int of any size (computed from declared shapes without overflow).
    """
    limit = max_read_bytes() if max_bytes is None else int(max_bytes)
    if int(nbytes) > limit:
        raise error(f"{what} would need {_fmt(int(nbytes))}, more than the read limit of {_fmt(limit)} "
                    f"(half the available memory; set {ENV} to change it)")


def nbytes_of(shape, itemsize: int) -> int:
    """Bytes of an array of ``shape`` and ``itemsize`` as an exact Python int (no overflow)."""
    n = int(itemsize)
    for s in shape:
        n *= int(s)
    return n
