"""The NUFFT benchmarks' shared pieces (trajectories, exact subset references, one adapter per library,
calibration): they live in ``recon.bench.nufft`` (installed with recon, used by ``recon bench``); this
module keeps the name the runners and the pytest-benchmark suite import."""


import _recon_path  # noqa: E402,F401  (recon: the installed package, else this checkout)

from recon.bench.nufft import *  # noqa: E402,F403
from recon.bench.nufft import __doc__ as __doc__  # noqa: E402,F401
