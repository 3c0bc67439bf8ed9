#!/usr/bin/env python
"""GPU NUFFT benchmark: recon (recon._cuda) against cuFINUFFT and torchkbnufft (those importable).

    python benchmarks/gpu.py                    # full run (needs a CUDA GPU; a few minutes on an H100)
    python benchmarks/gpu.py --cases 2d --libs recon,cufinufft --targets 1e-3
    python benchmarks/gpu.py --smoke            # tiny sizes, CPU arrays, recon only: checks this script

The cases, libraries and report live in ``recon.bench.nufft_gpu`` (see its docstring); results go to
benchmarks/results/<gpu-name>.md and .png. ``recon bench --device cuda`` runs the same cases.
"""

import sys
from pathlib import Path

import _recon_path  # noqa: E402,F401  (recon: the installed package, else this checkout)

from recon.bench.nufft_gpu import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(results=Path(__file__).resolve().parent / "results"))
