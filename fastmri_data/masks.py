"""Undersampling masks with fastMRI's semantics (``fastmri.data.subsample``), on numpy.

A mask function is built from lists ``center_fractions`` and ``accelerations`` (paired, or any
combination with ``allow_any_combination=True``) and a seed. Calling it with a k-space shape gives
``(mask, num_low_frequencies)``; the mask is float32 with shape ``(1, ..., 1, W)``, acting on the
phase-encode axis, which is the **last** axis of recon's complex k-space arrays (fastMRI's torch
tensors carry a trailing real/imag axis, so there it is ``shape[-2]``: the same axis).

For ``W`` columns, one draw proceeds exactly as fastMRI's ``MaskFunc.sample_mask``:

1. choose ``(center_fraction, acceleration)``: ``rng.randint(len(center_fractions))`` picks a pair
   (or ``rng.choice`` on each list when ``allow_any_combination``);
2. ``num_low_frequencies = round(W * center_fraction)``; the centre mask is ones on
   ``[pad, pad + num_low_frequencies)`` with ``pad = (W - num_low_frequencies + 1) // 2``;
3. the acceleration mask (below); the result is the elementwise max of the two.

Acceleration masks:

- ``RandomMaskFunc``: column j is kept when ``rng.uniform(size=W)[j] < p`` with
  ``p = (W / acceleration - num_low_frequencies) / (W - num_low_frequencies)`` (so the expected
  number of kept columns is ``W / acceleration``).
- ``EquispacedMaskFunc``: ones at ``offset, offset + acceleration, ...`` with
  ``offset = rng.randint(0, round(acceleration))`` unless given.
- ``EquispacedMaskFractionFunc``: spacing ``a' = acceleration (L - W) / (L acceleration - W)`` with
  ``L = num_low_frequencies`` (so that centre plus equispaced lines total about ``W / acceleration``),
  ``offset = rng.randint(0, round(a'))`` unless given, ones at
  ``round(arange(offset, W - 1, a'))`` (numpy's round-half-to-even, as fastMRI).

Randomness comes from a ``numpy.random.RandomState(seed)`` owned by the mask function; a call with
``seed=...`` reseeds it for that call and restores its state afterwards (fastMRI's ``temp_seed``),
so ``mask_func(shape, seed=s)`` is a pure function of ``s``.
"""

from __future__ import annotations

import contextlib

import numpy as np


@contextlib.contextmanager
def _temp_seed(rng: np.random.RandomState, seed):
    if seed is None:
        yield
        return
    state = rng.get_state()
    rng.seed(seed)
    try:
        yield
    finally:
        rng.set_state(state)


class MaskFunc:
    """Base class: centre + acceleration mask (see the module docstring)."""

    def __init__(self, center_fractions, accelerations, allow_any_combination: bool = False, seed=None):
        self.center_fractions = [float(c) for c in np.atleast_1d(center_fractions)]
        self.accelerations = [a for a in np.atleast_1d(accelerations).tolist()]
        if not self.center_fractions or not self.accelerations:
            raise ValueError("center_fractions and accelerations must be non-empty")
        if len(self.center_fractions) != len(self.accelerations) and not allow_any_combination:
            raise ValueError(
                f"{len(self.center_fractions)} center_fractions vs {len(self.accelerations)} accelerations; "
                "pass equal lengths or allow_any_combination=True"
            )
        if any(not 0.0 <= c <= 1.0 for c in self.center_fractions):
            raise ValueError(f"center_fractions must lie in [0, 1], got {self.center_fractions}")
        if any(not a >= 1 for a in self.accelerations):
            raise ValueError(f"accelerations must be >= 1, got {self.accelerations}")
        self.allow_any_combination = bool(allow_any_combination)
        self.rng = np.random.RandomState(seed)

    def __call__(self, shape, offset: int | None = None, seed=None) -> tuple[np.ndarray, int]:
        """Mask for k-space of ``shape`` (phase encode last): ``(mask (1,...,1,W) float32, num_low_frequencies)``."""
        shape = tuple(int(n) for n in shape)
        if len(shape) < 1 or shape[-1] < 1:
            raise ValueError(f"shape must end with the phase-encode size >= 1, got {shape}")
        with _temp_seed(self.rng, seed):
            center, accel, nlf = self.sample_mask(shape, offset)
        mask = np.maximum(center, accel).astype(np.float32)
        return mask.reshape((1,) * (len(shape) - 1) + (shape[-1],)), nlf

    def sample_mask(self, shape, offset):
        num_cols = shape[-1]
        cf, acc = self.choose_acceleration()
        nlf = int(round(num_cols * cf))
        center = self.calculate_center_mask(num_cols, nlf)
        accel = np.asarray(self.calculate_acceleration_mask(num_cols, acc, offset, nlf), dtype=np.float32)
        return center, accel, nlf

    @staticmethod
    def calculate_center_mask(num_cols: int, num_low_freqs: int) -> np.ndarray:
        mask = np.zeros(num_cols, dtype=np.float32)
        pad = (num_cols - num_low_freqs + 1) // 2
        mask[pad:pad + num_low_freqs] = 1
        return mask

    def choose_acceleration(self):
        if self.allow_any_combination:
            return self.rng.choice(self.center_fractions), self.rng.choice(self.accelerations)
        choice = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[choice], self.accelerations[choice]

    def calculate_acceleration_mask(self, num_cols, acceleration, offset, num_low_frequencies):
        raise NotImplementedError


class RandomMaskFunc(MaskFunc):
    """Centre lines plus columns kept independently with probability chosen for ``W / acceleration`` in all."""

    def calculate_acceleration_mask(self, num_cols, acceleration, offset, num_low_frequencies):
        if num_cols == num_low_frequencies:
            prob = 0.0
            draws = self.rng.uniform(size=num_cols)
            return draws < prob
        prob = (num_cols / acceleration - num_low_frequencies) / (num_cols - num_low_frequencies)
        return self.rng.uniform(size=num_cols) < prob


class EquispacedMaskFunc(MaskFunc):
    """Centre lines plus every ``acceleration``-th column from a (random) offset."""

    def calculate_acceleration_mask(self, num_cols, acceleration, offset, num_low_frequencies):
        if offset is None:
            offset = self.rng.randint(0, high=round(acceleration))
        if int(acceleration) != acceleration:
            raise ValueError(f"EquispacedMaskFunc needs integer accelerations, got {acceleration}")
        mask = np.zeros(num_cols, dtype=np.float32)
        mask[int(offset)::int(acceleration)] = 1
        return mask


class EquispacedMaskFractionFunc(MaskFunc):
    """Centre lines plus equispaced columns at the adjusted spacing so the total is ``~W / acceleration``."""

    def calculate_acceleration_mask(self, num_cols, acceleration, offset, num_low_frequencies):
        denom = num_low_frequencies * acceleration - num_cols
        if denom == 0:
            raise ValueError("EquispacedMaskFractionFunc: centre fraction * acceleration == 1 leaves no spacing")
        adjusted = (acceleration * (num_low_frequencies - num_cols)) / denom
        if adjusted <= 0:
            raise ValueError(
                f"EquispacedMaskFractionFunc: centre ({num_low_frequencies} of {num_cols} columns) already exceeds "
                f"1/{acceleration} of k-space"
            )
        if offset is None:
            offset = self.rng.randint(0, high=round(adjusted))
        mask = np.zeros(num_cols, dtype=np.float32)
        idx = np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.int64)
        mask[idx] = 1.0
        return mask


_MASK_TYPES = {
    "random": RandomMaskFunc,
    "equispaced": EquispacedMaskFunc,
    "equispaced_fraction": EquispacedMaskFractionFunc,
}


def create_mask_for_mask_type(mask_type: str, center_fractions, accelerations, seed=None) -> MaskFunc:
    """``"random"``, ``"equispaced"`` or ``"equispaced_fraction"`` (fastMRI's names)."""
    if mask_type not in _MASK_TYPES:
        raise ValueError(f"mask_type must be one of {sorted(_MASK_TYPES)}, got {mask_type!r}")
    return _MASK_TYPES[mask_type](center_fractions, accelerations, seed=seed)


def apply_mask(kspace, mask_func: MaskFunc, offset=None, seed=None, padding=None):
    """Undersample ``kspace`` (phase encode last) as fastMRI's ``apply_mask``.

    Returns ``(masked_kspace, mask, num_low_frequencies)``. ``padding=(left, right)`` zeroes the mask
    outside the acquired columns ``[left, right)`` (the file's fastMRI padding).
    """
    kspace = np.asarray(kspace)
    mask, nlf = mask_func(kspace.shape, offset, seed)
    if padding is not None:
        left, right = (int(v) for v in padding)
        mask = mask.copy()
        mask[..., :left] = 0
        mask[..., right:] = 0
    return kspace * mask.astype(kspace.real.dtype) + 0.0, mask, nlf
