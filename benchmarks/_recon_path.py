"""Imported first by every runner here: recon comes from the installed package when one with its
compiled module is importable (``pip install .``), else from this checkout (a build in place,
``tools/dev_build.sh``), so a clone's source tree never shadows an installed recon."""

import sys
from pathlib import Path

try:
    import recon._core  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
