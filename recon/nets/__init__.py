"""Unrolled networks on recon's operators: MoDL and E2E-VarNet for MRI, learned primal-dual and
learned unrolled PWLS for CT, each with an optional prior-image input, a dynamic (2+1)D MoDL,
safetensors weights with model cards, and the training library (see docs/nets.md).

``model(data, params, prior=None)`` (ARCHITECTURE.md); ``load(name_or_path)`` returns a model with
weights; ``train(TrainConfig(...))`` trains one; ``reconstruct_mri`` / ``reconstruct_ct`` run a model
on raw data with the checks of its model card.
"""

from .base import ARCHITECTURES, UnrolledNet  # noqa: F401
from .lpd import LearnedPrimalDual, LearnedPWLS, LPDConfig, PWLSNetConfig  # noqa: F401
from .modl import MoDL, MoDLConfig  # noqa: F401
from .varnet import VarNet, VarNetConfig  # noqa: F401
from .weights import load, make_card, read_card, save, shipped  # noqa: F401


def __getattr__(name):
    # the training library and inference helpers import simulation code: load them on first use
    if name in ("train", "TrainConfig"):
        from . import train as _t

        return getattr(_t, name)
    if name in ("MriTask", "CtTask", "DataConfig", "SimulatedDataset"):
        from . import simulate

        return getattr(simulate, name)
    if name in ("reconstruct_mri", "reconstruct_ct"):
        from . import infer

        return getattr(infer, name)
    raise AttributeError(f"module 'recon.nets' has no attribute {name!r}")
