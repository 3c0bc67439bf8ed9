"""recon: fast MRI/CT reconstruction with exact-adjoint NUFFT and CT operators.

Importing recon needs neither a GPU nor CUDA libraries: the CUDA module ``recon._cuda`` is optional.
"""

__version__ = "0.1.0"

from . import conventions  # noqa: F401
from .ops import Operator  # noqa: F401


def cuda_available() -> bool:
    """True when the optional CUDA module is built and a CUDA device is visible."""
    try:
        from . import _cuda  # noqa: F401
    except ImportError:
        return False
    try:
        return bool(_cuda.device_count() > 0)
    except Exception:
        return False
