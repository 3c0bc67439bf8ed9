"""Motion-resolved reconstruction of binned golden-angle data: XD-GRASP and the binned baselines.

XD-GRASP (Feng et al., MRM 2016) reconstructs all motion states ``x = (x_1, ..., x_B)`` together::

    min_x  1/2 sum_b ||A_b x_b - y_b||^2  +  lam_t ||D_t x||_1  +  lam_s sum_b TV(x_b)

with ``A_b = sqrt(W_b) F_b S`` (coil maps ``S``, the NUFFT ``F_b`` of bin ``b``'s spokes, Pipe-Menon
density weights ``W_b``: weighted least squares, as recon's CG-SENSE), ``D_t`` the differences between
neighbouring bins (periodic for phase bins, whose first and last states are neighbours) and ``TV`` the
isotropic 2D total variation of each state. With a prior image ``p`` (a previous scan or the
motion-averaged image, registered) the spatial term becomes PICCS-like (Chen et al. 2008)::

    lam_s sum_b (alpha TV(x_b - p) + (1 - alpha) TV(x_b))

A stack of stars is split along z first: the inverse FFT along kz turns the data into ``Z``
independent 2D radial problems (:meth:`recon.mri.dynamic.data.SpokeData.slices`), solved one after
the other. The bins are ragged frames of one :class:`recon.ops.Nufft` (bins hold different numbers of
spokes) whose Toeplitz normal operators (one kernel per bin, ``Nufft.toeplitz(w)``) are built once and
shared by all slices: ``A^H A x = S^H (F^H W F) S x``.

Solvers (:mod:`recon.solvers`, step objects run by ``run``):

- ``"admm"`` (default): split ``z = (D_t x, D x)``; the x-update ``(A^H A + rho K^H K) x = A^H y + rho
  K^H v`` by a few warm-started CG steps on the Toeplitz normal operator (:func:`cg_x_update`), the
  z-update by soft thresholding (l1, l2,1, shifted by ``D p`` for the prior);
- ``"pdhg"``: Chambolle-Pock on ``K = Stack([A, D_t, D, (D)])`` with the NUFFT forward and adjoint.

Scaling (so that ``lam_t``/``lam_s`` are relative, as in ``recon.mri.recon``): the problem is solved for
``A / sqrt(L)`` (``L`` 1.2 x a power iteration of ``A^H A`` on the central slice) and data divided by
``sqrt(L) s``, ``s`` the 99th percentile of the zero-filled images' magnitude over all slices and bins;
images are multiplied back by ``s``.

Baselines on the same data, maps and weights: :func:`zero_filled_bins` (density-compensated gridding
of each bin, ``S^H``-combined) and :func:`cg_sense_bins` (each bin alone by CG-SENSE).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

#: default relative weights and iterations (tuned on the simulator's abdomen: docs/dynamic.md)
DEFAULT_LAM_T = 0.03
DEFAULT_LAM_S = 0.005
DEFAULT_ITERS = 30
DEFAULT_RHO = 0.1
DEFAULT_CG_ITERS = 3
SOLVERS = ("admm", "pdhg")


@dataclass
class BinnedData:
    """Binned golden-angle data, ready for the per-slice problems: ``frames`` (per bin the spokes
    ``(n_b, S, 2)``), ``nufft`` (ragged frames), density ``weights`` ``(M,)``, ``y`` ``(Z, C, M)`` the data
    of every slice multiplied by ``sqrt(weights)``, ``members`` the angles of each bin, ``im_shape``
    ``(Ny, Nx)``; ``toeplitz`` (``F^H W F``, its kernels computed on first use, then shared)."""

    frames: list
    members: list
    nufft: object
    weights: np.ndarray
    y: np.ndarray
    im_shape: tuple

    @functools.cached_property
    def toeplitz(self):
        return self.nufft.toeplitz(self.weights)

    @property
    def n_bins(self) -> int:
        return len(self.frames)

    @property
    def n_slices(self) -> int:
        return self.y.shape[0]

    @property
    def sqrt_weights(self) -> np.ndarray:
        return np.sqrt(self.weights)


def bin_data(data, bins, *, tol: float = 1e-4, slices=None) -> BinnedData:
    """:class:`BinnedData` of :class:`~recon.mri.dynamic.data.SpokeData` ``data`` for ``bins``
    (:class:`~recon.mri.dynamic.binning.Bins`, over ``data``'s angles); ``slices`` the z slices to keep
    (indices; default all). ValueError for an empty bin."""
    from ...ops import Nufft
    from ..dcf import pipe_menon_dcf

    if bins.index.shape != (data.n_angles,):
        raise ValueError(f"bins cover {bins.index.shape[0]} angles, the data {data.n_angles}")
    members = [bins.members(b) for b in range(bins.n_bins)]
    empty = [b for b, m in enumerate(members) if m.size == 0]
    if empty:
        raise ValueError(f"bin(s) {empty} received no spokes: use fewer bins or equal-count edges")
    im_shape = tuple(data.im_shape[1:])
    frames = [np.ascontiguousarray(data.spokes[m]) for m in members]
    nufft = Nufft(frames, im_shape, tol=tol)
    w = pipe_menon_dcf(frames, im_shape).astype(np.float32)
    k = data.slices()[_slice_index(slices, data.im_shape[0])]               # (Z, C, A, S)
    y = np.concatenate([k[:, :, m].reshape(k.shape[0], k.shape[1], -1) for m in members], axis=-1)
    y *= np.sqrt(w)
    return BinnedData(frames, members, nufft, w, y.astype(np.complex64), im_shape)


def slice_operator(bd: BinnedData, maps_z):
    """``(adjoint, normal)`` of one slice's ``A = sqrt(W) F S`` (images ``(B, Ny, Nx)`` -> data ``(C, M)``)
    through the parts all slices share: ``adjoint(y) = S^H F^H (sqrt(W) y)``, ``normal(x) = S^H (F^H W F)
    S x`` by the shared Toeplitz kernels. (:func:`slice_sense` gives ``A`` as an operator.)"""
    from ...ops.sense import SenseMaps

    S = SenseMaps(np.ascontiguousarray(maps_z[:, None]), 3, core_shape=(bd.n_bins,) + bd.im_shape)
    sw, F, T = bd.sqrt_weights, bd.nufft, bd.toeplitz

    def adjoint(y):
        return S.adjoint(F.adjoint((y * sw).astype(np.complex64)))

    def normal(x):
        return S.adjoint(T(S.forward(x)))

    return adjoint, normal


def slice_sense(bd: BinnedData, maps_z):
    """One slice's ``A = sqrt(W) F S`` as a :class:`recon.ops.NonCartesianSense` over the bins' frames."""
    from ...ops import NonCartesianSense

    return NonCartesianSense(maps_z, bd.frames, tol=bd.nufft.tol, weights=bd.weights, check=False)


def _slice_index(slices, n: int) -> np.ndarray:
    idx = np.arange(n) if slices is None else np.arange(n)[slices]
    if idx.size == 0:
        raise ValueError(f"slices {slices!r} select none of the {n} slices")
    return np.atleast_1d(idx)


def estimate_maps(data, *, method: str = "espirit", calib_width: int | None = None, crop: float | None = None,
                  tol: float = 1e-4, slices=None) -> np.ndarray:
    """Coil maps ``(Z, C, Ny, Nx)`` of every slice (or of ``slices``) from all spokes together (the
    motion-averaged data): the gridded k-space centre (``recon.mri.coils.calib_from_noncartesian``)
    and ``method`` (espirit | lowres | walsh; ESPIRiT crop default 0.8 as for non-Cartesian data)."""
    from .. import coils
    from ..dcf import pipe_menon_dcf
    from ..pipeline import default_calib_width
    from ..recon import DEFAULT_CROP_NONCARTESIAN

    im_shape = tuple(data.im_shape[1:])
    k = data.slices()[_slice_index(slices, data.im_shape[0])]
    cw = calib_width or default_calib_width(k.shape[1:], False, im_shape)
    w = pipe_menon_dcf(data.spokes, im_shape)
    kw = {"crop": DEFAULT_CROP_NONCARTESIAN if crop is None else crop} if method == "espirit" else {}
    maps = np.empty((k.shape[0], k.shape[1]) + im_shape, dtype=np.complex64)
    for z in range(k.shape[0]):
        calib = coils.calib_from_noncartesian(k[z], data.spokes, im_shape, cw, dcf=w, tol=tol)
        maps[z] = coils.maps_from_calib(calib, im_shape, method, **kw)
    return maps


@dataclass
class DynamicRecon:
    """Images ``(B, Z, Ny, Nx)`` complex64 of a motion-resolved method, its parameters ``info``, the
    per-slice solver histories and the time taken (s)."""

    images: np.ndarray
    method: str
    info: dict = field(default_factory=dict)
    histories: list = field(default_factory=list)
    elapsed_s: float = 0.0


def _check_maps(bd, maps):
    maps = np.asarray(maps)
    if maps.ndim != 4 or maps.shape[0] != bd.n_slices or maps.shape[1] != bd.y.shape[1] or \
            tuple(maps.shape[2:]) != bd.im_shape:
        raise ValueError(f"maps must be (slices={bd.n_slices}, coils={bd.y.shape[1]}, {bd.im_shape[0]}, "
                         f"{bd.im_shape[1]}), got {maps.shape}")
    return maps.astype(np.complex64, copy=False)


def _scaling(bd, maps, power_iters: int = 12):
    """(L, s, zero-filled images (Z, B, Ny, Nx)): the normalisation of the module docstring."""
    from ...solvers import power_iteration

    x_zf = np.stack([slice_operator(bd, maps[z])[0](bd.y[z]) for z in range(bd.n_slices)])
    s = float(np.percentile(np.abs(x_zf), 99))
    if not s > 0:
        raise ValueError("the zero-filled images are zero: no signal in the data (or the maps are zero)")
    zc = int(np.argmax(np.abs(x_zf).reshape(bd.n_slices, -1).sum(1)))
    _, normal = slice_operator(bd, maps[zc])
    L = 1.2 * power_iteration(normal, np.zeros((bd.n_bins,) + bd.im_shape, np.complex64), power_iters)
    if not L > 0:
        raise ValueError("the binned SENSE operator is zero")
    return L, s, x_zf


def zero_filled_bins(bd: BinnedData, maps) -> DynamicRecon:
    """Each bin by density-compensated gridding, coils combined by ``S^H``: ``(B, Z, Ny, Nx)``."""
    t0 = time.perf_counter()
    maps = _check_maps(bd, maps)
    x = np.stack([slice_operator(bd, maps[z])[0](bd.y[z]) for z in range(bd.n_slices)])
    return DynamicRecon(np.ascontiguousarray(np.moveaxis(x, 0, 1)), "zf", {}, [], time.perf_counter() - t0)


def cg_sense_bins(bd: BinnedData, maps, *, lam: float = 1e-3, iters: int = 15, progress=None) -> DynamicRecon:
    """Each bin alone by CG-SENSE (density-weighted, Tikhonov ``lam`` relative to ``||A||^2``,
    ``iters`` CG steps per bin; bins solved as independent batch items)."""
    from ...solvers import cg

    t0 = time.perf_counter()
    maps = _check_maps(bd, maps)
    L, s, x_zf = _scaling(bd, maps)
    out, hists = [], []
    for z in _slices(bd.n_slices, progress, "cg-sense"):
        _, normal = slice_operator(bd, maps[z])
        rhs = (x_zf[z] / (L * s)).astype(np.complex64)
        x, h = cg(lambda v, normal=normal: normal(v) / L, rhs, None, max_iter=iters, tol=0.0, damping=lam, batch_ndim=1,
                  progress=False)
        out.append(x * s)
        hists.append(h)
    images = np.ascontiguousarray(np.moveaxis(np.stack(out), 0, 1)).astype(np.complex64)
    return DynamicRecon(images, "sense", {"lam": lam, "iters": iters, "lipschitz": L, "scale": s}, hists,
                        time.perf_counter() - t0)


def _slices(n, progress, desc):
    if not progress:
        return range(n)
    from tqdm.auto import tqdm

    return tqdm(range(n), desc=desc, leave=False)


def _moreau(prox_conj):
    """The prox of ``f`` from the prox of its conjugate: ``prox_{t f}(v) = v - t prox_{f*/t}(v / t)``."""

    def prox(v, t):
        return v - prox_conj(v * (1.0 / t), 1.0 / t) * t

    return prox


def _regularizer(shape, lam_t, lam_s, periodic, prior_n, alpha):
    """(operators, conjugate proxes) of ``lam_t ||D_t x||_1 + lam_s [alpha TV(x - p) + (1 - alpha) TV(x)]``
    on images ``shape`` = (B, Ny, Nx) (the prior ``p`` (Ny, Nx), normalised, or None)."""
    from ...ops import FiniteDifference
    from ...solvers import project_l2inf_ball, project_linf_ball

    Dt = FiniteDifference(shape, axes=(0,), boundary="periodic" if periodic else "neumann")
    Ds = FiniteDifference(shape, axes=(1, 2))
    ops = [Dt, Ds]
    conj = [lambda p, s: project_linf_ball(p, lam_t)]
    if prior_n is None or alpha == 0:
        conj.append(lambda p, s: project_l2inf_ball(p, lam_s, axis=-4))
        return ops, conj
    c = Ds(np.ascontiguousarray(np.broadcast_to(prior_n, shape)).astype(np.complex64))
    conj.append(lambda p, s: project_l2inf_ball(p - s * c, lam_s * alpha, axis=-4))
    if alpha < 1:
        ops.append(Ds)
        conj.append(lambda p, s: project_l2inf_ball(p, lam_s * (1 - alpha), axis=-4))
    return ops, conj


def objective(bd: BinnedData, maps, images, *, lam_t: float = DEFAULT_LAM_T, lam_s: float = DEFAULT_LAM_S,
              periodic: bool = False) -> float:
    """XD-GRASP's objective (module docstring, no prior) of ``images`` ``(B, Z, Ny, Nx)`` in the
    normalised units the solvers use (data divided by ``sqrt(L) s``, images by ``s``)."""
    from ...ops import FiniteDifference

    maps = _check_maps(bd, maps)
    L, s, _ = _scaling(bd, maps)
    shape = (bd.n_bins,) + bd.im_shape
    Dt = FiniteDifference(shape, axes=(0,), boundary="periodic" if periodic else "neumann")
    Ds = FiniteDifference(shape, axes=(1, 2))
    total = 0.0
    for z in range(bd.n_slices):
        x = (np.asarray(images)[:, z] / s).astype(np.complex64)
        r = slice_sense(bd, maps[z])(x) / math.sqrt(L) - bd.y[z] / (math.sqrt(L) * s)
        total += 0.5 * float(np.vdot(r, r).real) + lam_t * float(np.abs(Dt(x)).sum())
        total += lam_s * float(np.sqrt((np.abs(Ds(x)) ** 2).sum(0)).sum())
    return total


def xdgrasp_bins(bd: BinnedData, maps, *, lam_t: float = DEFAULT_LAM_T, lam_s: float = DEFAULT_LAM_S,
            iters: int = DEFAULT_ITERS, solver: str = "admm", rho: float = DEFAULT_RHO,
            cg_iters: int = DEFAULT_CG_ITERS, periodic: bool = False, prior=None, alpha: float = 0.5,
            progress=None) -> DynamicRecon:
    """XD-GRASP of binned data (module docstring): images ``(B, Z, Ny, Nx)``.

    ``lam_t``/``lam_s`` relative temporal/spatial weights; ``iters`` ADMM or PDHG iterations per slice;
    ``rho`` ADMM penalty and ``cg_iters`` CG steps per x-update; ``periodic`` temporal differences
    (phase bins); ``prior`` an image ``(Z, Ny, Nx)`` on the same grid and in the images' units with
    weight ``alpha`` in [0, 1] (PICCS)."""
    from ...ops import Stack
    from ...solvers import ADMM, PDHG, cg_x_update, run, separable

    t0 = time.perf_counter()
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    for name, v in (("lam_t", lam_t), ("lam_s", lam_s), ("rho", rho)):
        if not (math.isfinite(v) and v >= 0) or (name == "rho" and v == 0):
            raise ValueError(f"{name} must be a finite number {'> 0' if name == 'rho' else '>= 0'}, got {v}")
    for name, v in (("iters", iters), ("cg_iters", cg_iters)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    maps = _check_maps(bd, maps)
    if prior is not None:
        prior = np.asarray(prior)
        if prior.shape != (bd.n_slices,) + bd.im_shape or not np.all(np.isfinite(prior)):
            raise ValueError(f"prior must be a finite image {(bd.n_slices,) + bd.im_shape}, got {prior.shape}")
    L, s, x_zf = _scaling(bd, maps)
    shape = (bd.n_bins,) + bd.im_shape
    out, hists = [], []
    for z in _slices(bd.n_slices, progress, "xd-grasp"):
        _, normal = slice_operator(bd, maps[z])
        yn = (bd.y[z] / (math.sqrt(L) * s)).astype(np.complex64)
        AHy = (x_zf[z] / (L * s)).astype(np.complex64)
        pz = None if prior is None else (prior[z] / s).astype(np.complex64)
        ops, conj = _regularizer(shape, lam_t, lam_s, periodic, pz, alpha)
        if solver == "admm":
            K = Stack(ops)
            upd = cg_x_update(lambda v, normal=normal: normal(v) / L, AHy, K.normal, K.adjoint, cg_iter=cg_iters, cg_tol=0.0)
            alg = ADMM(upd, separable([_moreau(c) for c in conj], K), AHy, rho=rho, K=K)
        else:
            K = Stack([float(1.0 / math.sqrt(L)) * slice_sense(bd, maps[z])] + ops)
            knorm = math.sqrt(1.0 + sum(op.norm_sq_bound for op in ops))

            def data_conj(u, t, yn=yn):
                return (u - t * yn) / (1.0 + t)

            alg = PDHG(K, None, separable([data_conj] + conj, K), None, AHy, sigma=0.99 / knorm, tau=0.99 / knorm,
                       residuals=False)
        x, h = run(alg, iters, tol=0.0, progress=False)
        out.append(x * s)
        hists.append(h)
    images = np.ascontiguousarray(np.moveaxis(np.stack(out), 0, 1)).astype(np.complex64)
    info = {"lam_t": lam_t, "lam_s": lam_s, "iters": iters, "solver": solver, "lipschitz": L, "scale": s,
            "periodic": bool(periodic)}
    if solver == "admm":
        info.update(rho=rho, cg_iters=cg_iters)
    if prior is not None:
        info["alpha"] = alpha
    return DynamicRecon(images, "xdgrasp", info, hists, time.perf_counter() - t0)
