"""Unrolled networks on recon's operators: MoDL and E2E-VarNet for MRI, learned primal-dual and
learned unrolled PWLS for CT, each with an optional prior-image input, a dynamic (2+1)D MoDL,
safetensors weights with model cards, and the training library (see docs/nets.md).

``model(data, params, prior=None)`` (ARCHITECTURE.md); ``load(name_or_path)`` returns a model with
weights; ``train(TrainConfig(...))`` trains one; ``reconstruct_mri`` / ``reconstruct_ct`` run a model
on raw data with the checks of its model card. Importing this package registers ``method='net'``
in the MRI and CT pipelines (:mod:`recon.nets.methods`); torch is imported on first use of a name
below (so ``recon --help`` and ``recon train --help`` stay fast).
"""

import importlib

from .methods import register as _register

#: public name -> the module of this package that defines it (loaded on first use)
_NAMES = {
    "ARCHITECTURES": "base", "UnrolledNet": "base",
    "LearnedPrimalDual": "lpd", "LearnedPWLS": "lpd", "LPDConfig": "lpd", "PWLSNetConfig": "lpd",
    "MoDL": "modl", "MoDLConfig": "modl", "VarNet": "varnet", "VarNetConfig": "varnet",
    "load": "weights", "make_card": "weights", "read_card": "weights", "save": "weights", "shipped": "weights",
    "train": "train", "TrainConfig": "train",
    "MriTask": "simulate", "CtTask": "simulate", "DataConfig": "simulate", "SimulatedDataset": "simulate",
    "reconstruct_mri": "infer", "reconstruct_ct": "infer", "ModelCardWarning": "infer",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        mod = importlib.import_module(f".{_NAMES[name]}", __name__)
        if name == "train":
            return mod.train
        return getattr(mod, name)
    raise AttributeError(f"module 'recon.nets' has no attribute {name!r}")


_register()  # method 'net' of recon.mri.reconstruct and recon.ct.reconstruct
