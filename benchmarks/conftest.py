"""pytest configuration of the benchmark suite (``pytest benchmarks/``; not run by CI).

Every library gets the same number of threads: ``RECON_BENCH_THREADS`` (default: all cores), set
here before any of them loads its thread pool.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

THREADS = int(os.environ.get("RECON_BENCH_THREADS", os.cpu_count() or 1))
for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RECON_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
