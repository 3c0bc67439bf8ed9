"""How much memory a reader may allocate: the one home of the limit every reader checks.

A file declares its sizes (a dataset's shape, counters that span a k-space, sample counts); a
hostile or corrupt file can declare terabytes in a few bytes (compressed or sparse datasets). Each
reader computes what it would allocate *before* allocating and refuses more than
``max_read_bytes()``: ``RECON_MAX_READ_BYTES`` (bytes) when set, else half of
:func:`recon._memory.memory_limit` (the memory available now, under ``RECON_MAX_MEMORY``, a cgroup
limit and what ``ulimit -v`` leaves). Readers take
``max_bytes=`` to set it per call (the tests use a small limit instead of allocating gigabytes).
"""

from __future__ import annotations

import os

ENV = "RECON_MAX_READ_BYTES"


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
    from .._memory import memory_limit

    limit, _ = memory_limit()
    return int(min(limit, 2.0**62)) // 2


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
