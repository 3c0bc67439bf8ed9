"""Orthonormal discrete wavelet transform (periodization), on numpy arrays and torch tensors (any device).

The transform is PyWavelets' ``wavedecn(x, wave, mode='periodization', level)`` with the coefficients
packed by ``coeffs_to_array`` (approximation in the leading corner, each level's details beside it),
on an image zero-padded at its end to a multiple of ``2**level`` along every transformed axis.

One analysis step along an axis of even length ``N`` (filters ``lo``, ``hi`` = PyWavelets'
``dec_lo``, ``dec_hi`` of length ``L``)::

    a[k] = sum_j lo[j] x[(2k + L/2 - j) mod N],   d[k] = sum_j hi[j] x[(2k + L/2 - j) mod N]

computed in polyphase form (the even and odd samples, circularly extended, as shifted views), so it
runs in the array library of the input: numpy keeps PyWavelets' compiled transform (faster on the CPU,
see ``docs/solvers.md``), torch tensors use these lines on their device (CPU or GPU, no host copy).
The adjoint is the exact transpose of the same lines; for an orthogonal wavelet it is the inverse.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from .. import _array
from .base import Operator
from .finite_difference import normalize_axes

__all__ = ["Wavelet", "dwt_forward", "dwt_adjoint"]


# ---- the transform in the input's array library -----------------------------------------------------

def _circular(x, left: int, right: int):
    """``x`` extended circularly along its last axis: ``out[i] = x[(i - left) mod M]``."""
    M = x.shape[-1]
    if left <= M and right <= M:
        parts = ([x[..., M - left:]] if left else []) + [x] + ([x[..., :right]] if right else [])
        return _array.concatenate(parts, -1) if len(parts) > 1 else x
    reps = -(-(left + right) // M) + 2       # tiny arrays (coarse levels of small images)
    tiled = _array.concatenate([x] * reps, -1)
    start = (-left) % M
    return tiled[..., start: start + left + M + right]


def _phases(L: int):
    """Per filter tap j: (parity of the input sample, shift in half-length samples)."""
    c = L // 2
    return [((c - j) % 2, (c - j) // 2) for j in range(L)]


def _analysis_last(x, lo, hi):
    """One analysis step along the last axis (even length): returns ``(a, d)``."""
    M = x.shape[-1] // 2
    taps = _phases(len(lo))
    smin, smax = min(s for _, s in taps), max(s for _, s in taps)
    ext = [_circular(x[..., p::2], -smin, smax) for p in (0, 1)]
    a = d = None
    for (p, s), h, g in zip(taps, lo, hi):
        v = ext[p][..., s - smin: s - smin + M]
        a = v * h if a is None else a + v * h
        d = v * g if d is None else d + v * g
    return a, d


def _synthesis_last(a, d, lo, hi):
    """The transpose of :func:`_analysis_last` along the last axis."""
    M = a.shape[-1]
    taps = _phases(len(lo))
    smin, smax = min(s for _, s in taps), max(s for _, s in taps)
    ea, ed = _circular(a, smax, -smin), _circular(d, smax, -smin)
    out = [None, None]
    for (p, s), h, g in zip(taps, lo, hi):
        sl = (Ellipsis, slice(smax - s, smax - s + M))
        v = ea[sl] * h + ed[sl] * g
        out[p] = v if out[p] is None else out[p] + v
    x = _array.stack(out, -1)
    return x.reshape(tuple(x.shape[:-2]) + (2 * M,))


def _region(ndim, axes, size):
    idx = [slice(None)] * ndim
    for a, s in zip(axes, size):
        idx[a] = slice(0, s)
    return tuple(idx)


def dwt_forward(x, lo, hi, level: int, axes: Sequence[int]):
    """Multi-level periodized DWT of ``x`` over ``axes`` (sizes divisible by ``2**level``), in
    PyWavelets' ``coeffs_to_array`` layout. ``lo``/``hi``: decomposition filters (floats)."""
    out = _array.copy(x)
    size = [x.shape[a] for a in axes]
    for _ in range(level):
        reg = _region(x.ndim, axes, size)
        block = out[reg]
        for a in axes:
            t = _array.moveaxis(block, a, -1)
            block = _array.moveaxis(_array.concatenate(_analysis_last(t, lo, hi), -1), -1, a)
        out[reg] = block
        size = [s // 2 for s in size]
    return out


def dwt_adjoint(y, lo, hi, level: int, axes: Sequence[int]):
    """The adjoint (= inverse) of :func:`dwt_forward`."""
    out = _array.copy(y)
    full = [y.shape[a] for a in axes]
    for lev in reversed(range(level)):
        size = [s >> lev for s in full]
        reg = _region(y.ndim, axes, size)
        block = out[reg]
        for a in reversed(axes):
            t = _array.moveaxis(block, a, -1)
            h = t.shape[-1] // 2
            block = _array.moveaxis(_synthesis_last(t[..., :h], t[..., h:], lo, hi), -1, a)
        out[reg] = block
    return out


# ---- the operator ------------------------------------------------------------------------------------

class Wavelet(Operator):
    """Orthonormal discrete wavelet transform ``W: C^shape -> C^padded_shape`` (periodization).

    The transformed ``axes`` (default: all of ``shape``) are zero-padded at their end to a multiple
    of ``2**level`` (``padded_shape``); the coefficients of all levels are packed into one array of
    that shape exactly as ``pywt.coeffs_to_array(pywt.wavedecn(x, wave, 'periodization', level))``.
    For an orthogonal wavelet (``haar``, ``db*``, ``sym*``, ``coif*``):

    - ``||W x|| = ||x||`` and ``W^H W x = x`` always (``W^H`` = inverse transform, then crop);
    - ``W W^H = I`` only when no padding occurs; otherwise ``W W^H`` projects onto the range of ``W``.

    ``level`` defaults to ``max(1, pywt.dwt_max_level(min size, filter length))``. Leading batch
    axes pass through. numpy arrays go through PyWavelets; torch tensors through
    :func:`dwt_forward`/:func:`dwt_adjoint` on their own device (equal to PyWavelets to rounding).
    Real or complex.
    """

    def __init__(self, shape: Sequence[int], wave: str = "db4", level: int | None = None,
                 axes: Sequence[int] | None = None, dtype="complex64"):
        import pywt

        shape = tuple(int(s) for s in shape)
        if len(shape) == 0 or any(s < 1 for s in shape):
            raise ValueError(f"Wavelet: shape must be non-empty with positive sizes, got {shape}")
        try:
            wav = pywt.Wavelet(wave)
        except (ValueError, TypeError) as e:
            raise ValueError(f"Wavelet: unknown wavelet {wave!r} ({e})") from None
        if not wav.orthogonal:
            raise ValueError(f"Wavelet: {wave!r} is not orthogonal; use db*, sym*, coif* or haar")
        axes = normalize_axes(range(len(shape)) if axes is None else axes, len(shape), "Wavelet")
        if len(axes) == 0:
            raise ValueError("Wavelet: axes must name at least one axis")
        if level is None:
            level = max(1, pywt.dwt_max_level(min(shape[a] for a in axes), wav.dec_len))
        if isinstance(level, bool) or int(level) != level or int(level) < 1:
            raise ValueError(f"Wavelet: level must be an integer >= 1, got {level!r}")
        level = int(level)
        m = 2 ** level
        padded = list(shape)
        for a in axes:
            padded[a] = -(-shape[a] // m) * m
        super().__init__(shape, tuple(padded), dtype)
        self.wave, self.level, self.axes = wave, level, axes
        self.padded_shape = tuple(padded)
        self.needs_padding = self.padded_shape != shape
        self.dec_lo = tuple(float(v) for v in wav.dec_lo)
        self.dec_hi = tuple(float(v) for v in wav.dec_hi)
        self._slices = {}

    # numpy: PyWavelets ------------------------------------------------------------------------------
    def _pywt_axes(self, ndim):
        return tuple(ndim + a for a in self.axes)

    def _coeff_slices(self, ndim):
        import pywt

        if ndim not in self._slices:
            dummy = np.zeros((1,) * (ndim - len(self.ishape)) + self.padded_shape, dtype=np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                c = pywt.wavedecn(dummy, self.wave, mode="periodization", level=self.level,
                                  axes=self._pywt_axes(ndim))
            sl = pywt.coeffs_to_array(c, axes=self._pywt_axes(ndim))[1]
            keep = set(self._pywt_axes(ndim))

            def fix(t):  # untransformed (batch, or non-wavelet core) axes take everything
                return tuple(s if i in keep else slice(None) for i, s in enumerate(t))

            self._slices[ndim] = [fix(sl[0])] + [{k: fix(v) for k, v in d.items()} for d in sl[1:]]
        return self._slices[ndim]

    def _forward_pywt(self, x):
        import pywt

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "level too high" for tiny test images
            c = pywt.wavedecn(x, self.wave, mode="periodization", level=self.level,
                              axes=self._pywt_axes(x.ndim))
        arr = pywt.coeffs_to_array(c, axes=self._pywt_axes(x.ndim))[0]
        return np.ascontiguousarray(arr.astype(x.dtype, copy=False))

    def _adjoint_pywt(self, y):
        import pywt

        c = pywt.array_to_coeffs(y, self._coeff_slices(y.ndim), output_format="wavedecn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            x = pywt.waverecn(c, self.wave, mode="periodization", axes=self._pywt_axes(y.ndim))
        return x.astype(y.dtype, copy=False)

    # the operator -----------------------------------------------------------------------------------
    def _forward(self, x):
        x = _array.pad_end(x, [p - s for p, s in zip(self.padded_shape, self.ishape)])
        if isinstance(x, np.ndarray):
            return self._forward_pywt(x)
        return dwt_forward(x, self.dec_lo, self.dec_hi, self.level, self.axes)

    def _adjoint(self, y):
        if isinstance(y, np.ndarray):
            x = self._adjoint_pywt(y)
        else:
            x = dwt_adjoint(y, self.dec_lo, self.dec_hi, self.level, self.axes)
        if self.needs_padding:
            x = x[(Ellipsis,) + tuple(slice(0, s) for s in self.ishape)]
        return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x.contiguous()
