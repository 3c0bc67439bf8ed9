"""MRI reconstruction methods: zero-filled, CG-SENSE, compressed sensing (L1-wavelet, TV).

Forward model (:mod:`recon.ops.sense`): ``y_c = P F (S_c x) + n_c`` with coil maps ``S`` (unit
root-sum-of-squares, as :mod:`recon.mri.coils` estimates them), ``F`` the centred orthonormal FFT
and ``P`` the sampling (Cartesian mask, or a NUFFT on a trajectory). For a single 2D slice the
k-space is ``(c, y, x)`` (Cartesian, zeros where not acquired) or ``(c, *sample_shape)`` with a
trajectory ``coord`` ``(*sample_shape, d)`` in cycles/FOV (non-Cartesian); 3D volumes add ``z``.

Methods (each returns a :class:`Recon` with the complex image, the solver's history and the maps):

- :func:`zero_filled`: ``F^{-1}`` of the zero-filled data (non-Cartesian: adjoint NUFFT of the
  density-compensated data), coils combined by root sum of squares, or by ``S^H`` given maps.
- :func:`cg_sense`: ``min_x ||A x - y||^2 + lam ||x||^2`` by conjugate gradients on the normal
  equations ``(A^H A + lam I) x = A^H y`` (Pruessmann et al. 2001, with Tikhonov damping).
- :func:`cs_wavelet`: ``min_x 1/2 ||A x - y||^2 + lam ||W x||_1`` (orthonormal wavelet ``W``, Haar by
  default with levels chosen from the image size, randomly shifted at every step: cycle spinning)
  by POGM or FISTA (Lustig et al. 2007).
- :func:`cs_tv`: ``min_x 1/2 ||A x - y||^2 + lam TV(x)`` (isotropic TV) by PDHG (Chambolle-Pock).

The regularised methods keep ``x = 0`` outside the maps' support (where ESPIRiT's maps are zero the
data say nothing about the image: only the regulariser would decide it). Every method stops on a
convergence criterion (:data:`DEFAULT_TOL`, tested every :data:`CHECK_EVERY` iterations) or at a
generous cap (:data:`DEFAULT_ITERS`); ``info['iterations']`` and ``info['converged']`` say which.

Scaling (so that ``lam`` means the same on every data set): the problem is solved for
``A' = A / sqrt(L)`` (``L`` >= largest eigenvalue of ``A^H A``: the exact bound
``max sum_c |S_c|^2 * max mask^2`` for Cartesian SENSE, 1.2 x a 15-step power iteration otherwise,
so ``||A'|| <= 1``) and data ``y' = y / (sqrt(L) s)`` with ``s`` the 99th percentile of the magnitude of
the zero-filled (density-compensated, ``S^H``-combined) image; the result is multiplied back by
``s``. ``lam`` is therefore relative: a Tikhonov weight relative to ``||A||^2`` and a sparsity
threshold relative to the image's bright level. Non-Cartesian data may be density-weighted
(``density_weights=True``: weighted least squares with Pipe-Menon weights, which converges in far
fewer iterations; see docs/mri.md for the trade-off).

Backends: k-space as a numpy array or a torch tensor (CPU or CUDA). A tensor is reconstructed in
torch on its device (``torch.fft``, the solvers' device scalars: the convergence test reads the
device every :data:`CHECK_EVERY` iterations, never when ``tol=0``) and the image, maps and data come back as tensors there; maps and masks
given as numpy follow the k-space. Host-side, once per call, are plan-time facts only: trajectories
and density weights (computed by :func:`recon.mri.dcf.pipe_menon_dcf`), the calibration box, and
scalars such as the image scale and ``||A||^2``. numpy results are those of the numpy code as it
was; torch results equal them to float32 rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .. import _array
from ..ops.backend import param_like
from ..ops.linear import cast_param
from ..ops.sense import CartesianSense, NonCartesianSense
from .coils import all_finite, centered_fft, host, rss, sampling_mask

METHODS = ("zf", "sense", "cs")
REGULARIZERS = ("wavelet", "tv")

#: default relative regularisation weights (see the module docstring for their meaning): the best of a
#: sweep at convergence on generated and real images (docs/mri.md, "Quality and defaults")
DEFAULT_LAMBDA = {"sense": 1e-2, "wavelet": 4e-3, "tv": 3e-3}
#: iteration caps (generous: the tolerance stops the solvers first on ordinary data)
DEFAULT_ITERS = {"sense": 200, "wavelet": 100, "tv": 600}
#: stopping tolerances: CG's relative residual of the damped normal equations; the relative change of
#: the iterate per iteration for POGM/FISTA and PDHG (docs/mri.md, "Quality and defaults")
DEFAULT_TOL = {"sense": 1e-4, "wavelet": 1e-3, "tv": 5e-5}
#: the convergence test reads the device every this many iterations (never with tol = 0)
CHECK_EVERY = 5
#: default wavelet of cs_wavelet and the smallest size of its coarsest band (pixels; see wavelet_level)
DEFAULT_WAVELET = "haar"
COARSEST_BAND = 4
#: ESPIRiT crop thresholds used by :func:`reconstruct`: SigPy's 0.95 for Cartesian data, BART's 0.8 for
#: non-Cartesian data, whose gridded calibration region is small and noisier (eigenvalues lower).
DEFAULT_CROP_CARTESIAN = 0.95
DEFAULT_CROP_NONCARTESIAN = 0.8


@dataclass
class Recon:
    """A reconstruction: ``image`` complex64 ``im_shape`` (numpy, or torch on the k-space's device);
    ``history`` the solver's (:class:`recon.solvers.History`, None for zero-filled); ``maps`` the coil
    maps used (like the image); ``info`` the parameters used."""

    image: object
    method: str
    history: object = None
    maps: object = None
    info: dict = field(default_factory=dict)

    @property
    def magnitude(self):
        """``|image|``, float32, like the image."""
        return cast_param(abs(self.image), np.float32)


# ---- the problem --------------------------------------------------------------------------------


def _check_kspace(kspace):
    """``kspace`` (numpy or torch, complex, (coils, ...), finite) as complex64 in its backend."""
    if not (isinstance(kspace, np.ndarray) or _array.is_torch(kspace)):
        raise TypeError(f"kspace: expected a numpy array or torch tensor, got {type(kspace).__name__}")
    if not _array.is_complex(kspace):
        raise TypeError(f"kspace: expected complex data, got {_array.dtype_name(kspace)}")
    if kspace.ndim < 2:
        raise ValueError(f"kspace: expected (coils, ...) data, got shape {tuple(kspace.shape)}")
    if not all_finite(kspace):
        raise ValueError("kspace: contains NaN or Inf")
    return cast_param(kspace, np.complex64)


def _follow(a, kspace, dtype=None):
    """A parameter (maps, mask, weights: numpy or torch) in the backend and on the device of the
    k-space, in ``dtype`` if given."""
    a = param_like(a if _array.is_torch(a) else np.asarray(a), kspace)
    return a if dtype is None else cast_param(a, dtype)


def _times(x, s: float):
    """``x * s`` in complex64 (``s`` rounded to float32 first, as the numpy code always did)."""
    if _array.is_torch(x):
        return cast_param(x * float(np.float32(s)), np.complex64)
    return (x * np.float32(s)).astype(np.complex64)


def _times_exact(x, s: float):
    """``x * s`` for a power of two ``s``: exact (computed in double precision for numpy, as before)."""
    if _array.is_torch(x):
        return cast_param(x * s, np.complex64)
    return (x * np.float64(s)).astype(np.complex64)


def _percentile99(a) -> float:
    """``np.percentile(a, 99)`` (linear interpolation) of a real numpy array or tensor."""
    if not _array.is_torch(a):
        return float(np.percentile(a, 99))
    v = a.reshape(-1).sort().values
    pos = 0.99 * (v.numel() - 1)
    lo = math.floor(pos)
    a_lo, a_hi = host(v[[lo, min(lo + 1, v.numel() - 1)]]).astype(np.float64)  # one transfer
    return float(a_lo + (pos - lo) * (a_hi - a_lo))


@dataclass
class Problem:
    """A SENSE problem ``y = A x`` prepared for the solvers (normalised; see the module docstring)."""

    A: object
    y: object  # normalised data, like the k-space
    scale: float
    lipschitz: float
    x_zf: object  # zero-filled S^H-combined image (unnormalised), like the k-space
    im_shape: tuple
    info: dict
    maps: object = None  # the maps of A (complex64, like the k-space)
    #: where the maps are non-zero (bool, like the k-space), or None when they are non-zero everywhere:
    #: the SENSE model has no information outside it, so the regularised methods keep x = 0 there
    support: object = None


def _dcf(coord, im_shape, dcf):
    """Density weights on the host (plan-time): Pipe-Menon for the host trajectory ``coord``, or
    ``dcf`` (numpy or torch) broadcast to the samples."""
    from .dcf import pipe_menon_dcf

    if dcf is None:
        return pipe_menon_dcf(coord, im_shape)
    return np.array(np.broadcast_to(host(dcf, np.float32), coord.shape[:-1]))  # owned: tensors may share it


def sense_problem(kspace, maps, *, coord=None, mask=None, dcf=None, density_weights: bool = True,
                  tol: float = 1e-4, power_iters: int = 15) -> Problem:
    """Build the normalised SENSE problem for :func:`cg_sense`, :func:`cs_wavelet`, :func:`cs_tv`.

    Cartesian when ``coord`` is None: ``kspace`` ``(c, *im_shape)``, ``mask`` (default: the non-zero
    pattern of the data) broadcastable to ``im_shape``. Non-Cartesian: ``kspace``
    ``(c, *sample_shape)``, ``coord`` ``(*sample_shape, d)``; ``dcf`` (default Pipe-Menon) is used for
    the zero-filled scale and, with ``density_weights``, as least-squares weights. A torch
    ``kspace`` gives a torch problem on its device (maps, mask and weights follow it).
    """
    from ..solvers import power_iteration

    kspace = _check_kspace(kspace)
    # data of extreme but finite magnitude (|k| ~ 1e-40 or 3e38 in float32) are brought near 1 by a
    # power of two before anything is squared or summed, and the scale goes back in at the end;
    # scaling by a power of two is exact, so ordinary data give bit-identical results
    k_scale = data_scale(kspace)
    if k_scale != 1.0:
        kspace = _times_exact(kspace, 1.0 / k_scale)
    maps = _follow(maps, kspace, np.complex64)
    if maps.ndim < 3 or maps.shape[0] != kspace.shape[0]:
        raise ValueError(f"maps have {maps.shape[0]} coils, kspace {kspace.shape[0]}")
    im_shape = tuple(maps.shape[1:])
    info = {}
    if coord is None:
        if tuple(kspace.shape[1:]) != im_shape:
            raise ValueError(f"Cartesian kspace {tuple(kspace.shape)} and maps {tuple(maps.shape)} differ in image "
                             "shape")
        mask = sampling_mask(kspace) if mask is None else _follow(mask, kspace)
        A = CartesianSense(maps, mask, ndim=len(im_shape))
        y = kspace * A.mask
        x_zf = A.H(y)
        info["sampled_fraction"] = float((mask != 0).sum()) / math.prod(mask.shape)  # = over im_shape
    else:
        coord = host(coord, np.float32)
        if tuple(kspace.shape[1:]) != coord.shape[:-1]:
            raise ValueError(f"kspace {tuple(kspace.shape)} and coord {coord.shape} do not match: expected kspace "
                             f"(coils, {', '.join(map(str, coord.shape[:-1]))})")
        w = _dcf(coord, im_shape, dcf)
        # torch data were checked above and the solvers test the result once at the end: a NaN scan
        # per NUFFT call would wait for the device at every iteration
        scan = not _array.is_torch(kspace)
        if density_weights:
            A = NonCartesianSense(maps, coord, tol=tol, weights=w, check_finite=scan)
            y = cast_param(kspace * param_like(A.sqrt_weights, kspace), np.complex64)
            x_zf = A.H(y)
        else:
            A = NonCartesianSense(maps, coord, tol=tol, check_finite=scan)
            y = kspace
            x_zf = A.H(cast_param(kspace * param_like(w, kspace), np.complex64))
        info["density_weights"] = bool(density_weights)
    s = _percentile99(abs(x_zf))
    if not s > 0:
        raise ValueError("the zero-filled image is zero: no signal in the data (or the maps are all zero)")
    if coord is None:
        # exact bound, tight for binary masks: ||A||^2 <= max_r sum_c |S_c(r)|^2 * max(mask^2)
        L = float((abs(maps) ** 2).sum(0).max()) * (float(A.mask2.max()) if A.mask2 is not None else 1.0)
    else:
        # power iteration from a random start approaches ||A||^2 from below (measured on the radial
        # cardiac sample: 96.5 % of it after 15 steps): a 20 % margin keeps the proximal-gradient step
        # 1/L safe (momentum methods diverge for steps above 1/||A||^2)
        L = power_iteration(A.normal, _array.zeros(kspace, A.ishape), power_iters) * 1.2
    if not L > 0:
        raise ValueError("the SENSE operator is zero (empty mask or zero maps)")
    An = float(1.0 / np.sqrt(L)) * A
    yn = _times(y, 1.0 / (np.sqrt(L) * s))
    s *= k_scale
    if not np.isfinite(np.float32(s)):
        raise ValueError(f"the image scale {s:.3g} exceeds the float32 range: scale the k-space down")
    info.update(lipschitz=float(L), scale=s)
    if k_scale != 1.0:
        x_zf = _times_exact(x_zf, k_scale)
    support = (abs(maps) ** 2).sum(0) > 0
    n_in = int(support.sum())
    info["support_fraction"] = n_in / math.prod(im_shape)
    if n_in == math.prod(im_shape):
        support = None
    return Problem(An, yn, s, float(L), x_zf, im_shape, info, maps, support)


def data_scale(kspace) -> float:
    """The power of two nearest above ``max(|Re k|, |Im k|)`` (1 for all-zero or non-finite data):
    dividing by it brings data of any finite magnitude into [0.5, 1) exactly (numpy or torch)."""
    m = max(float(abs(kspace.real).max()), float(abs(kspace.imag).max())) if 0 not in tuple(kspace.shape) else 0.0
    if not (m > 0 and math.isfinite(m)):
        return 1.0
    return math.ldexp(1.0, math.frexp(m)[1])


# ---- methods ------------------------------------------------------------------------------------


def zero_filled(kspace, *, maps=None, coord=None, im_shape: Sequence[int] | None = None, dcf=None,
                tol: float = 1e-4) -> Recon:
    """Zero-filled reconstruction: inverse FFT (Cartesian) or density-compensated adjoint NUFFT
    (non-Cartesian, ``dcf`` default Pipe-Menon); coils combined by RSS, or by ``S^H`` with maps
    (complex result). Cartesian fully sampled data with unit-RSS maps give the exact image."""
    from ..ops.nufft import Nufft

    kspace = _check_kspace(kspace)
    if coord is None:
        imgs = cast_param(centered_fft(kspace, tuple(range(1, kspace.ndim)), inverse=True), np.complex64)
    else:
        coord = host(coord, np.float32)
        if im_shape is None:
            im_shape = maps.shape[1:] if maps is not None else None
        if im_shape is None:
            raise ValueError("non-Cartesian zero-filled reconstruction needs im_shape (or maps)")
        im_shape = tuple(int(n) for n in im_shape)
        if tuple(kspace.shape[1:]) != coord.shape[:-1]:
            raise ValueError(f"kspace {tuple(kspace.shape)} and coord {coord.shape} do not match")
        w = _dcf(coord, im_shape, dcf)
        imgs = Nufft(coord, im_shape, tol=tol).adjoint(cast_param(kspace * param_like(w, kspace), np.complex64))
    if maps is None:
        image = cast_param(rss(imgs), np.complex64)
    else:
        maps = _follow(maps, kspace)
        if tuple(maps.shape) != tuple(imgs.shape):
            raise ValueError(f"maps {tuple(maps.shape)} do not match the coil images {tuple(imgs.shape)}")
        image = cast_param((maps.conj() * imgs).sum(0), np.complex64)
    return Recon(image, "zf", None, maps, {"combine": "rss" if maps is None else "sense"})


def _prepare(kspace, maps, coord, mask, dcf, density_weights, tol, problem, power_iters=15):
    if problem is not None:
        return problem
    if maps is None:
        raise ValueError("this method needs coil sensitivity maps (see recon.mri.coils.estimate_maps)")
    return sense_problem(kspace, maps, coord=coord, mask=mask, dcf=dcf, density_weights=density_weights, tol=tol,
                         power_iters=power_iters)


def _budget(method: str, max_iter, tol):
    """``(max_iter, tol)`` with the method's defaults for None, checked."""
    max_iter = DEFAULT_ITERS[method] if max_iter is None else max_iter
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    tol = DEFAULT_TOL[method] if tol is None else float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be finite and >= 0, got {tol}")
    return int(max_iter), tol


def _lambda(P: Problem, method: str, lam) -> float:
    """``lam`` checked, or :data:`DEFAULT_LAMBDA` ``[method]`` when None."""
    lam = DEFAULT_LAMBDA[method] if lam is None else float(lam)
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    return lam


def _result(x, P: Problem, method: str, hist, maps, info) -> Recon:
    """The solver's normalised iterate ``x`` back in image units, as a :class:`Recon`."""
    image = _times(x, P.scale)
    return Recon(image, method, hist, P.maps if maps is None else _follow(maps, image), info)


def cg_sense(kspace=None, maps=None, *, coord=None, mask=None, dcf=None, lam: float | None = None,
             max_iter: int | None = None, tol: float | None = None, density_weights: bool = True,
             nufft_tol: float = 1e-4, progress=None, callback=None, problem: Problem | None = None) -> Recon:
    """CG-SENSE with Tikhonov damping ``lam`` (relative to ``||A||^2``; default
    :data:`DEFAULT_LAMBDA` ``['sense']``). Stops when the relative residual of the damped normal
    equations is below ``tol`` (default :data:`DEFAULT_TOL`, tested every :data:`CHECK_EVERY`
    iterations; 0: never) or after ``max_iter`` iterations (default :data:`DEFAULT_ITERS`); the
    iterations used are in ``info['iterations']``."""
    from ..solvers import CG

    # L only scales the damping here (CG needs no step size): a short power iteration will do
    P = _prepare(kspace, maps, coord, mask, dcf, density_weights, nufft_tol, problem, power_iters=10)
    max_iter, tol = _budget("sense", max_iter, tol)
    lam = _lambda(P, "sense", lam)
    rhs = P.A.H(P.y)
    x, hist = _run(CG(P.A.normal, rhs, damping=lam), max_iter, tol, callback, progress)
    info = dict(P.info, lam=lam, **_stop_info(hist, max_iter, tol))
    return _result(x, P, "sense", hist, maps, info)


def wavelet_level(im_shape: Sequence[int], coarsest: int = COARSEST_BAND) -> int:
    """Decomposition levels for an image of ``im_shape``: as many as keep the coarsest band at least
    ``coarsest`` pixels along the smallest axis (at least 1). PyWavelets' maximum depth pads the
    image to a multiple of ``2**level`` (Haar at 8 levels pads 320 to 512); this depth pads little
    (320: 6 levels, no padding) and was as good as the maximum (within 0.03 dB at 160 and 180, where
    3 levels lost 0.1-0.4 dB; docs/mri.md)."""
    n = min(int(v) for v in im_shape)
    return max(1, math.floor(math.log2(max(n / coarsest, 1.0))))


def _on_support(prox, support):
    """``prox`` followed by zeroing outside ``support`` (None: ``prox`` itself)."""
    if support is None:
        return prox
    return lambda v, t: prox(v, t) * support


def _run(alg, max_iter, tol, callback, progress):
    """The solver loop with the convergence test every :data:`CHECK_EVERY` iterations (none at tol=0)."""
    from ..solvers import run

    return run(alg, max_iter, tol=tol, check_every=CHECK_EVERY if tol > 0 else None, callback=callback,
               progress=progress)


def _stop_info(hist, max_iter, tol) -> dict:
    return {"max_iter": max_iter, "tol": tol, "iterations": hist.n_iter, "converged": bool(hist.converged)}


def cs_wavelet(kspace=None, maps=None, *, coord=None, mask=None, dcf=None, lam: float | None = None,
               max_iter: int | None = None, tol: float | None = None, solver: str = "pogm",
               wave: str = DEFAULT_WAVELET, level: int | None = None, cycle_spin: bool = True, seed: int = 0,
               density_weights: bool = True, nufft_tol: float = 1e-4, progress=None, callback=None,
               problem: Problem | None = None) -> Recon:
    """L1-wavelet compressed sensing ``min 1/2 ||A x - y||^2 + lam ||W x||_1`` (normalised) by
    ``solver`` 'pogm' (default) or 'fista' with step ``1/||A||^2 = 1``, started from the
    ``S^H``-combined zero-filled image, with ``x = 0`` outside the maps' support (the prox is
    followed by that projection).

    ``lam`` default :data:`DEFAULT_LAMBDA` ``['wavelet']``. ``wave`` a PyWavelets orthogonal wavelet
    with ``level`` levels (None: :func:`wavelet_level`). ``cycle_spin``: shift the wavelet grid by a
    random (``seed``) offset at each proximal step (translation-invariant thresholding on average, as
    BART's ``pics`` does; removes blocky wavelet artefacts). Stops when the relative change of the
    iterate is below ``tol`` (default :data:`DEFAULT_TOL`, tested every :data:`CHECK_EVERY`
    iterations; 0: never) or after ``max_iter`` iterations (default :data:`DEFAULT_ITERS`); the
    iterations used are in ``info['iterations']``."""
    from ..solvers import FISTA, POGM, L1Wavelet

    P = _prepare(kspace, maps, coord, mask, dcf, density_weights, nufft_tol, problem)
    max_iter, tol = _budget("wavelet", max_iter, tol)
    if solver not in ("pogm", "fista"):
        raise ValueError(f"solver must be 'pogm' or 'fista', got {solver!r}")
    level = wavelet_level(P.im_shape) if level is None else level
    lam = _lambda(P, "wavelet", lam)
    reg = L1Wavelet(P.im_shape, lam, wave=wave, level=level)
    A, y = P.A, P.y
    AHy = A.H(y)

    def grad(x):
        return A.normal(x) - AHy

    if cycle_spin:
        rng = np.random.default_rng(seed)
        axes = tuple(range(-len(P.im_shape), 0))
        block = 2 ** reg.W.level

        def roll(v, sh):
            return v.roll(sh, dims=axes) if _array.is_torch(v) else np.roll(v, sh, axis=axes)

        def prox(v, t):  # the shifts are drawn on the host: nothing waits for the device
            sh = tuple(int(s) for s in rng.integers(0, block, len(axes)))
            return roll(reg.prox(roll(v, sh), t), tuple(-s for s in sh))
    else:
        prox = reg.prox

    x0 = _array.copy(AHy)
    prox = _on_support(prox, P.support) if lam > 0 else None
    alg = POGM(grad, prox, x0, 1.0, n_iter=max_iter) if solver == "pogm" else FISTA(grad, prox, x0, 1.0)
    x, hist = _run(alg, max_iter, tol, callback, progress)
    info = dict(P.info, lam=lam, solver=solver, wave=wave, level=reg.W.level, cycle_spin=bool(cycle_spin),
                **_stop_info(hist, max_iter, tol))
    return _result(x, P, "cs", hist, maps, dict(info, regularizer="wavelet"))


def cs_tv(kspace=None, maps=None, *, coord=None, mask=None, dcf=None, lam: float | None = None,
          max_iter: int | None = None, tol: float | None = None, density_weights: bool = True,
          nufft_tol: float = 1e-4, progress=None, callback=None, problem: Problem | None = None) -> Recon:
    """Total-variation compressed sensing ``min 1/2 ||A x - y||^2 + lam TV(x)`` (isotropic, over all
    image axes; ``lam`` default :data:`DEFAULT_LAMBDA` ``['tv']``) with ``x = 0`` outside the maps'
    support, by PDHG with the split ``K x = (A x, D x)``, ``f(u, v) = 1/2 ||u - y||^2 + lam
    ||v||_{2,1}``, ``g`` the indicator of the support. Stopping as :func:`cs_wavelet` (relative
    change of the iterate)."""
    from ..ops import Stack
    from ..solvers import PDHG, TotalVariation, separable

    P = _prepare(kspace, maps, coord, mask, dcf, density_weights, nufft_tol, problem)
    max_iter, tol = _budget("tv", max_iter, tol)
    lam = _lambda(P, "tv", lam)
    A, y = P.A, P.y
    d = len(P.im_shape)
    tv = TotalVariation(lam, axes=tuple(range(-d, 0)))
    tv_ops, tv_conj = tv.split(P.im_shape, A.dtype)
    K = Stack([A] + tv_ops)                     # K x = (A x, D x), one stacked dual array

    def data_conj(u, s):                        # f1(u) = ||u - y||^2 / 2: prox of s f1*
        return (u - s * y) / (1.0 + s)

    support = P.support
    prox_g = None if support is None else (lambda v, t: v * support)   # projection onto the support

    # ||K||^2 <= ||A||^2 + ||D||^2 = 1 + norm_sq_bound: known bound, no power iteration needed
    knorm = float(np.sqrt(1.0 + tv.norm_sq_bound))
    step = 0.99 / knorm
    x0 = A.H(y)
    alg = PDHG(K, None, separable([data_conj] + tv_conj, K), prox_g, x0, sigma=step, tau=step)
    x, hist = _run(alg, max_iter, tol, callback, progress)
    info = dict(P.info, lam=lam, solver="pdhg", regularizer="tv", **_stop_info(hist, max_iter, tol))
    return _result(x, P, "cs", hist, maps, info)


def reconstruct(kspace, method: str = "sense", *, maps=None, coord=None, im_shape=None, mask=None, dcf=None,
                map_method: str = "espirit", calib_width: int = 24, crop: float | None = None,
                regularizer: str = "wavelet",
                lam: float | None = None, max_iter: int | None = None, density_weights: bool = True,
                progress=None, **kw) -> Recon:
    """One slice/volume by ``method`` in :data:`METHODS` ('zf', 'sense', 'cs'), estimating maps by
    ``map_method`` when needed and not given (Cartesian: from the fully sampled centre;
    non-Cartesian: from the gridded centre of k-space, see :func:`recon.mri.coils.calib_from_noncartesian`)."""
    from . import coils

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    kspace = _check_kspace(kspace)
    if maps is None and (method != "zf"):
        mkw = {}
        if map_method == "espirit":
            mkw["crop"] = (DEFAULT_CROP_CARTESIAN if coord is None else DEFAULT_CROP_NONCARTESIAN) if crop is None else crop
        if coord is None:
            maps = coils.estimate_maps(kspace, map_method, calib_width, **mkw)
        else:
            if im_shape is None:
                raise ValueError("non-Cartesian reconstruction needs im_shape")
            w = _dcf(host(coord, np.float32), tuple(im_shape), dcf)
            calib = coils.calib_from_noncartesian(kspace, coord, im_shape, calib_width, dcf=w)
            maps = coils.maps_from_calib(calib, im_shape, map_method, **mkw)
            dcf = w
    if method == "zf":
        return zero_filled(kspace, maps=maps, coord=coord, im_shape=im_shape, dcf=dcf)
    common = dict(coord=coord, mask=mask, dcf=dcf, lam=lam, max_iter=max_iter, density_weights=density_weights,
                  progress=progress, **kw)
    if method == "sense":
        return cg_sense(kspace, maps, **common)
    if regularizer == "wavelet":
        return cs_wavelet(kspace, maps, **common)
    if regularizer == "tv":
        return cs_tv(kspace, maps, **common)
    raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {regularizer!r}")
