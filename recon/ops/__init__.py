"""Linear operators with exact adjoints over numpy arrays and torch tensors."""

from .base import Adjoint, Compose, Normal, Operator, Scaled, Sum  # noqa: F401
from .linear import FFT, Identity, Matrix, Multiply  # noqa: F401
from .nufft import Nufft, ToeplitzNormal  # noqa: F401
from .projector import Projector  # noqa: F401
from .sense import CartesianSense, NonCartesianSense  # noqa: F401
from .finite_difference import FiniteDifference  # noqa: F401
from .wavelet import Wavelet  # noqa: F401
from .stack import Diag, Stack  # noqa: F401
