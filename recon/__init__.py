"""recon: fast MRI/CT reconstruction with exact-adjoint NUFFT and CT operators.

Importing recon needs neither a GPU nor CUDA libraries: the CUDA module ``recon._cuda`` is optional.
"""

__version__ = "0.1.0"

from . import conventions  # noqa: F401
from .ops import Operator  # noqa: F401


def cuda_available() -> bool:
    """True when the optional CUDA module is built and a CUDA device is visible (checked once)."""
    from .ops.backend import cuda_available as check

    return check()
