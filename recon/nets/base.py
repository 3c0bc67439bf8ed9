"""What every unrolled model shares: its config dataclass, the prior-image channels, gradient
checkpointing of unrolled stages, and the architecture registry used by the weights loader.

**Prior images.** A model built with ``prior=True`` takes an optional prior image (a previous,
registered scan of the same patient) as two extra input channels of every denoiser block: the
prior (MRI: its magnitude, normalised by its own 99th percentile, since the phase and receiver
gain of another scan are unrelated; CT: attenuation divided by the same scale as the image) and an
indicator channel (1 where a prior was given). Called **without** a prior, both channels are zero:
the shipped prior models are trained with prior dropout (a fraction of the batches have no prior),
so one set of weights serves both cases. A model built with ``prior=False`` refuses a prior
(ValueError) rather than silently ignoring it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .blocks import expand_as_item, item_scale

#: architecture name -> model class (filled by the model modules through :func:`register`)
ARCHITECTURES: dict = {}

PRIOR_CHANNELS = 2


def register(cls):
    ARCHITECTURES[cls.arch] = cls
    return cls


def architectures() -> dict:
    """:data:`ARCHITECTURES` with every model module imported (each registers its classes)."""
    from . import lpd, modl, varnet  # noqa: F401

    return ARCHITECTURES


class UnrolledNet(nn.Module):
    """Base of the models: ``model(data, params, prior=None)``; ``config`` is the model's config
    dataclass (saved in the model card); ``checkpointing=True`` recomputes each unrolled stage in
    the backward instead of storing its activations (memory bounded by one stage)."""

    arch = ""
    config_class = None

    def __init__(self, config=None, **kw):
        super().__init__()
        if config is None:
            config = self.config_class(**kw)
        elif kw:
            config = dataclasses.replace(config, **kw)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__}: config must be a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config
        self.checkpointing = False

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def stage(self, fn, *args):
        """``fn(*args)``, recomputed in the backward when :attr:`checkpointing` and training."""
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    # ---- prior -----------------------------------------------------------------------------------
    @property
    def prior_channels(self) -> int:
        return PRIOR_CHANNELS if self.config.prior else 0

    def prior_input(self, prior, image: torch.Tensor, scale: torch.Tensor | None, *, magnitude: bool):
        """The prior channels ``(B, 2, *im)`` for a normalised ``image`` ``(B, *im)`` (None for a
        model without prior input). ``scale`` ``(B,)`` divides the prior (CT); with ``magnitude`` the
        prior's magnitude is normalised by its own scale instead (MRI)."""
        if not self.config.prior:
            if prior is not None:
                raise ValueError(f"{type(self).__name__} was built without a prior input (prior=False); "
                                 "load a prior model to use a prior image")
            return None
        shape = tuple(image.shape)
        real_dtype = image.real.dtype if image.is_complex() else image.dtype
        if prior is None:
            return torch.zeros((shape[0], PRIOR_CHANNELS) + shape[1:], dtype=real_dtype, device=image.device)
        if not isinstance(prior, torch.Tensor):
            raise TypeError(f"prior: expected a torch tensor, got {type(prior).__name__}")
        if tuple(prior.shape) != shape:
            raise ValueError(f"prior: expected shape {shape} (one registered image per batch item), "
                             f"got {tuple(prior.shape)}")
        p = prior.to(image.device)
        if magnitude:
            p = p.abs().to(real_dtype)
            p = p / expand_as_item(item_scale(p), p)
        else:
            if p.is_complex():
                raise TypeError("prior: expected a real CT image, got complex values")
            p = p.to(real_dtype) / expand_as_item(scale, p)
        return torch.stack([p, torch.ones_like(p)], dim=1)
